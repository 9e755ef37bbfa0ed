// The batch-1 fast paths (matrix-vector kernels for the linears and the LM head, one-pass decoding attention,
// float32 activations over bfloat16 weights) against libtorch's own addmm / matmul / softmax path.
import { GPT2LMHeadModel, get_num_threads, set_num_threads, tensor } from "../lib/index.js";
import { probes } from "../bench/probes.js";
import { maxAbsDiff, tinyModelDir } from "./helpers/tiny.js";

afterEach(() => probes.setMatvec(true));

/** Logits of each decoding step (prompt, then one token at a time through the cache), fast paths on or off. */
async function steps(model: GPT2LMHeadModel, prompt: number[], next: number[], fast: boolean): Promise<Float32Array[]> {
  probes.setMatvec(fast);
  const calls = probes.matvecCalls();
  const out: Float32Array[] = [];
  let o = await model.forward({ input_ids: [prompt], use_cache: true });
  out.push(Float32Array.from(o.logits.float().data() as Float32Array));
  for (const t of next) {
    o = await model.forward({ input_ids: [[t]], past_key_values: o.past_key_values, use_cache: true });
    out.push(Float32Array.from(o.logits.float().data() as Float32Array));
  }
  // per cached step: 4 linears and one attention per layer, and the LM head
  if (fast) expect(probes.matvecCalls() - calls).toBe(next.length * (5 * model.config.n_layer + 1));
  else expect(probes.matvecCalls()).toBe(calls);
  return out;
}

describe("batch-1 decoding fast paths", () => {
  test("odd shapes (tails of every kernel): the same logits as addmm and matmul, step by step", async () => {
    // n_embd 40 (head dim 10), n_inner 100, vocab 1001: no size is a multiple of the vector width or of 4 rows
    const model = await GPT2LMHeadModel.from_config(
      { vocab_size: 1001, n_positions: 64, n_embd: 40, n_layer: 2, n_head: 4, n_inner: 100 },
      { seed: 3 },
    );
    const next = [5, 999, 17, 400, 3, 3, 1000, 0, 77, 12];
    const slow = await steps(model, [1, 2, 3], next, false);
    const fast = await steps(model, [1, 2, 3], next, true);
    slow.forEach((s, i) => expect(maxAbsDiff(fast[i]!, s)).toBeLessThan(1e-5));
    probes.setMatvec(false);
    const a = (await model.generate([[1, 2, 3]], { max_new_tokens: 20 })).tolist();
    probes.setMatvec(true);
    const b = (await model.generate([[1, 2, 3]], { max_new_tokens: 20 })).tolist();
    expect(b).toEqual(a);
    await model.dispose();
  });

  test.each([
    [96, 2],
    [100, 5],
  ])(
    "attention over 38 to 48 positions, n_embd %i, %i heads (16-row passes, 4-row passes, tail rows and columns): " +
      "the same logits as the reference",
    async (n_embd, n_head) => {
      const model = await GPT2LMHeadModel.from_config(
        { vocab_size: 503, n_positions: 64, n_embd, n_layer: 2, n_head },
        { seed: 11 },
      );
      const prompt = Array.from({ length: 37 }, (_, i) => (i * 37 + 5) % 503),
        next = [1, 502, 77, 300, 12, 0, 250, 9, 400, 33, 7];
      const slow = await steps(model, prompt, next, false);
      const fast = await steps(model, prompt, next, true);
      slow.forEach((s, i) => expect(maxAbsDiff(fast[i]!, s)).toBeLessThan(1e-5));
      await model.dispose();
    },
  );

  test.each([
    ["gelu", false],
    ["relu", true],
    ["gelu_pytorch_tanh", true],
  ])(
    "activation %s, scale_attn_by_inverse_layer_idx %s: fused decoding equals the reference path",
    async (activation_function, byLayer) => {
      const model = await GPT2LMHeadModel.from_config(
        {
          vocab_size: 301,
          n_positions: 64,
          n_embd: 48,
          n_layer: 3,
          n_head: 4,
          activation_function,
          scale_attn_by_inverse_layer_idx: byLayer,
        },
        { seed: 5 },
      );
      const next = [7, 300, 12, 0, 150];
      const slow = await steps(model, [1, 2, 3], next, false);
      const fast = await steps(model, [1, 2, 3], next, true);
      slow.forEach((s, i) => expect(maxAbsDiff(fast[i]!, s)).toBeLessThan(1e-5));
      await model.dispose();
    },
  );

  test("a batch-1 attention mask (left padding): fused decoding masks the reference's positions", async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const ids = [[50256, 50256, 464, 3290, 318]],
      attention_mask = [[0, 0, 1, 1, 1]];
    probes.setMatvec(false);
    const a = (await model.generate(ids, { attention_mask, max_new_tokens: 12, pad_token_id: 50256 })).tolist();
    probes.setMatvec(true);
    const calls = probes.matvecCalls();
    const b = (await model.generate(ids, { attention_mask, max_new_tokens: 12, pad_token_id: 50256 })).tolist();
    // the prompt's LM head, then 11 cached steps through the fused path: 4 linears and one attention per layer, the
    // head
    expect(probes.matvecCalls() - calls).toBe(1 + 11 * (5 * model.config.n_layer + 1));
    expect(b).toEqual(a);
    // the padding is really masked: unmasked, the same ids continue differently
    probes.setMatvec(true);
    const c = (
      await model.generate(ids, { attention_mask: [[1, 1, 1, 1, 1]], max_new_tokens: 12, pad_token_id: 50256 })
    ).tolist();
    expect(c).not.toEqual(b);
    await model.dispose();
  });

  test("GPT-2 shapes (the tiny golden model): fast decoding equals the reference path", async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const next = [318, 257, 922, 1110, 11, 290, 50256, 0];
    const slow = await steps(model, [464, 3290], next, false);
    const fast = await steps(model, [464, 3290], next, true);
    slow.forEach((s, i) => expect(maxAbsDiff(fast[i]!, s)).toBeLessThan(1e-5));
    await model.dispose();
  });

  test.each([40, 72, 96])(
    "bfloat16, n_embd %i (chunk pairs, a last odd chunk, tail columns): one row's linears and LM head as libtorch's",
    async (n_embd) => {
      const model = await GPT2LMHeadModel.from_config(
        { vocab_size: 1001, n_positions: 64, n_embd, n_layer: 2, n_head: 4, n_inner: 100 },
        { seed: 3 },
      );
      await model.to("bfloat16");
      const logits = async (fast: boolean) => {
        probes.setMatvec(fast);
        const calls = probes.matvecCalls();
        const o = await model.forward({ input_ids: [[17]] });
        // fast: each layer's 4 linears and the LM head (one position: no cache to attend over)
        expect(probes.matvecCalls() - calls).toBe(fast ? 4 * model.config.n_layer + 1 : 0);
        return Float32Array.from(o.logits.float().data() as Float32Array);
      };
      const slow = await logits(false),
        fast = await logits(true);
      // float32 sums in another order, rounded to bfloat16: logits here are under 2, where two of its steps are 2^-6;
      // a column left out would move them by about 0.05
      expect(Math.max(...slow.map(Math.abs))).toBeLessThan(2);
      expect(maxAbsDiff(fast, slow)).toBeLessThan(2 ** -6);
      await model.dispose();
    },
  );

  test("bfloat16 weights: float32 activations, logits near fp32's, 20 greedy tokens equal to fp32's", async () => {
    const f32 = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const b16 = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "bfloat16" });
    const prompt = tensor([[464, 3290, 318, 257]]);
    const a = (await f32.generate(prompt, { max_new_tokens: 20 })).tolist();
    const b = (await b16.generate(prompt, { max_new_tokens: 20 })).tolist();
    expect(b).toEqual(a);
    const lf = (await f32.forward({ input_ids: prompt })).logits;
    const lb = (await b16.forward({ input_ids: prompt })).logits;
    expect(lb.dtype).toBe("bfloat16");
    expect(maxAbsDiff(lb.float().data() as Float32Array, lf.data() as Float32Array)).toBeLessThan(0.05);
    await f32.dispose();
    await b16.dispose();
  });
});

test("big tensors made on the JavaScript thread grow no second OpenMP team (it slows all later)", async () => {
  // in a fresh process: counts its threads once the compute thread's team exists, then after a big tensor is made and
  // copied on the JavaScript thread (tensor methods run synchronously there, and these copies take parallel_for)
  const { execFileSync } = await import("node:child_process");
  const { join } = await import("node:path");
  // the compiled library, as cli.test.ts runs it
  const lib = join(import.meta.dirname ?? process.cwd(), "..", "dist", "lib");
  const script = `
    import { readdirSync } from "node:fs";
    const { tensor } = await import(${JSON.stringify(join(lib, "index.js"))});
    const { probes } = await import(${JSON.stringify(join(lib, "..", "bench", "probes.js"))});
    const n = () => readdirSync("/proc/self/task").length;
    await probes.readBandwidth(1 << 24, 1);
    const before = n();
    const big = tensor(new Float32Array(1 << 22).fill(1), { shape: [1 << 22] });
    const c = big.clone();
    console.log(JSON.stringify([before, n(), c.shape[0]]));`;
  const [before, after, len] = JSON.parse(
    execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" }).trim(),
  );
  expect(len).toBe(1 << 22);
  expect(after).toBe(before);
});

test("machine probes: read bandwidth on all threads and on one, first write of fresh memory", async () => {
  const all = await probes.readBandwidth(1 << 24, 2);
  const one = await probes.readBandwidth(1 << 24, 2, false);
  const touch = await probes.firstTouch(1 << 24);
  for (const v of [all, one]) expect(v).toBeGreaterThan(1e8); // bytes per second: any machine streams 100 MB/s
  expect(touch).toBeGreaterThan(0);
  expect(touch).toBeLessThan(10);
  expect(() => probes.firstTouch(-1)).toThrow("Expected integer between 1 and 1099511627776 for bytes but received -1");
  expect(() => probes.readBandwidth(1 << 20, 0.5)).toThrow(
    "Expected integer between 1 and 1000 for reps but received 0.5",
  );
});

describe("the streaming kernels' row split", () => {
  const threads0 = get_num_threads();
  afterAll(() => set_num_threads(threads0));

  test.each([1, 2, 3])("%i threads: every row exactly once, whatever the rows and blocks", async (threads) => {
    set_num_threads(threads);
    // row sizes giving blocks of 1, 5, 1, 7, 16, 21, 4 and 2 rows (8 KB a block)
    for (const [rows, rowBytes] of [
      [1, 8192],
      [2, 1638],
      [3, 8192],
      [100, 1170],
      [1000, 512],
      [50257, 390],
      [4, 2048],
      [5, 4096],
    ] as const) {
      const { visits } = await probes.streamRows(rows, rowBytes, rows, 1);
      expect(visits).toHaveLength(rows);
      expect(visits.every((v) => v === 1)).toBe(true);
    }
  });

  test("a lagging share is helped from its back, and still every row is visited once", async () => {
    set_num_threads(2);
    let helped = 0;
    for (let attempt = 0; attempt < 3 && helped === 0; attempt++) {
      // help needs both threads on a core: retried
      // blocks of 2 rows; the second half's rows take 300 microseconds each, the first half's nothing
      const r = await probes.streamRows(64, 4096, 32, 300);
      expect(r.visits.every((v) => v === 1)).toBe(true);
      helped = r.helped;
    }
    expect(helped).toBeGreaterThan(0);
  });

  test.each([1, 2])(
    "%i threads: the serial work after the rows runs once, after every row, while the other thread reads the next " +
      "matrix ahead",
    async (threads) => {
      set_num_threads(threads);
      for (const [rows, rowBytes] of [
        [1, 8192],
        [100, 1170],
        [50257, 390],
      ] as const) {
        const r = await probes.streamRows(rows, rowBytes, rows, 1, 200);
        expect(r.visits.every((v) => v === 1)).toBe(true);
        expect(r.then).toMatchObject({ calls: 1, rowsDone: rows });
        if (threads === 1 || rows === 1) expect(r.then!.prefetched).toBe(0); // nobody to read ahead
      }
      expect((await probes.streamRows(64, 4096, 64, 1)).then).toBeUndefined();
      if (threads === 1) return;
      let prefetched = 0;
      for (let attempt = 0; attempt < 3 && prefetched === 0; attempt++) {
        // both threads on a core: retried
        const r = await probes.streamRows(64, 4096, 64, 1, 5000);
        expect(r.then).toMatchObject({ calls: 1, rowsDone: 64 });
        prefetched = r.then!.prefetched;
      }
      // the first bytes of both shares of the 2 MB matrix, up to 1 MB (the cap) while the serial work's 5 ms last
      expect(prefetched).toBeGreaterThan(0);
      expect(prefetched).toBeLessThanOrEqual(1 << 20);
    },
  );
});
