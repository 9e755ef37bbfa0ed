import {
  tensor,
  cat,
  Tensor,
  range,
  default_device,
  cuda_is_available,
  mps_is_available,
  set_num_threads,
  get_num_threads,
  set_seed,
} from "../lib/index.js";

describe("Tensor", () => {
  test("builds from nested arrays and typed arrays", () => {
    const a = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(a.shape).toEqual([2, 3]);
    expect(a.dtype).toBe("int64");
    expect(a.device).toBe("cpu");
    expect(a.tolist()).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const f = tensor(new Float32Array([1.5, 2.5, 3.5, 4.5]), { shape: [2, 2] });
    expect(f.dtype).toBe("float32");
    expect(f.tolist()).toEqual([
      [1.5, 2.5],
      [3.5, 4.5],
    ]);
    expect(tensor([0.5, 1]).dtype).toBe("float32");
    expect(tensor([true, false]).tolist()).toEqual([true, false]);
    expect(tensor([2 ** 40]).tolist()).toEqual([2 ** 40]);
  });

  test("view operations, as in torch", () => {
    const a = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(a.permute(1, 0).tolist()).toEqual([
      [1, 4],
      [2, 5],
      [3, 6],
    ]);
    expect([a.stride(), a.stride(-1), a.is_contiguous()]).toEqual([[3, 1], 1, true]);
    expect([a.permute(1, 0).stride(), a.permute(1, 0).is_contiguous(), a.permute(1, 0).contiguous().stride()]).toEqual([
      [1, 3],
      false,
      [2, 1],
    ]);
    expect([
      a.slice(1, 0, 3, 2).is_contiguous(),
      tensor([[1, 2, 3]])
        .permute(1, 0)
        .is_contiguous(),
    ]).toEqual([false, true]); // a gap; a size-1 dim's stride is free
    expect(a.reshape(3, 2).tolist()).toEqual([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    expect(a.view([6]).tolist()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(a.slice(1, -2).tolist()).toEqual([
      [2, 3],
      [5, 6],
    ]);
    expect(a.slice(1, 0, -1).tolist()).toEqual([
      [1, 2],
      [4, 5],
    ]);
    expect(a.get(-1).tolist()).toEqual([4, 5, 6]);
    expect(a.argmax(1).tolist()).toEqual([2, 2]);
    expect(a.ne(2).long().tolist()).toEqual([
      [1, 0, 1],
      [1, 1, 1],
    ]);
    expect(a.float().mean().item()).toBeCloseTo(3.5);
    expect(a.sum(0).tolist()).toEqual([5, 7, 9]);
    expect(cat([a, a], 0).shape).toEqual([4, 3]);
    const s = tensor([[0.0, Math.log(3)]])
      .softmax(-1)
      .tolist() as number[][];
    expect(s[0]![1]).toBeCloseTo(0.75, 6);
    expect(tensor([1.0, 2.0]).to("float16").dtype).toBe("float16");
  });

  test("dispose, Symbol.dispose and use after dispose", () => {
    const a = tensor([1, 2, 3]);
    a.dispose();
    expect(a.disposed).toBe(true);
    expect(() => a.shape).toThrow("Tensor is disposed: it cannot be used after dispose()");
    expect(() => a.tolist()).toThrow(/disposed/);
    a.dispose(); // twice is fine
    let b: Tensor;
    {
      using t = tensor([1]);
      b = t;
      expect(t.item()).toBe(1);
    }
    expect(b.disposed).toBe(true);
  });

  test("bad arguments name the problem", () => {
    expect(() => tensor([[1, 2], [3]])).toThrow(
      "Expected an array of length 2 (rows must be the same length) for data[1] but received an array of length 1",
    );
    expect(() => tensor([1], { dtype: "float8" as never })).toThrow(/for dtype but received "float8"/);
    expect(() => tensor([1, 2, 3]).reshape(2, 2)).toThrow(
      'Expected a shape of 3 elements (like [3], at most one -1) for shape but received "[2, 2]"',
    );
    expect(tensor([1, 2, 3, 4]).reshape(-1, 2).shape).toEqual([2, 2]);
    expect(() => tensor([[1, 2]]).permute(0, 0)).toThrow(
      'Expected a permutation of the 2 dimensions (0..1) for dims but received "[0, 0]"',
    );
    expect(() => tensor([1, 2]).slice(3, 0)).toThrow("Expected integer between -1 and 0 for dim but received 3");
    expect(() => tensor([1]).to("tpu")).toThrow(/Expected cpu, cuda, cuda:N or mps for device but received tpu/);
    expect(() => tensor([1.5], { dtype: "int64" })).toThrow(/integers for dtype int64/);
  });
});

describe("devices, threads, seeds, range", () => {
  test("the default device is CPU here", () => {
    expect(["cpu", "cuda", "mps"]).toContain(default_device());
    if (!cuda_is_available() && !mps_is_available()) expect(default_device()).toBe("cpu");
  });
  test("threads default to the cores available and can be set", () => {
    const n = get_num_threads();
    expect(n).toBeGreaterThanOrEqual(1);
    set_num_threads(1);
    expect(get_num_threads()).toBe(1);
    set_num_threads(n);
    expect(() => set_num_threads(0)).toThrow("Expected integer between 1 and 1024 for num_threads but received 0");
  });
  test("set_seed validates", () => {
    expect(() => set_seed(-1)).toThrow(/for seed but received -1/);
    set_seed(42);
  });
  test("range as in Python", () => {
    expect(range(3)).toEqual([0, 1, 2]);
    expect(range(2, 5)).toEqual([2, 3, 4]);
    expect(range(5, 0, -2)).toEqual([5, 3, 1]);
  });
});
