// Linears over many rows on oneDNN (native/gemm.cc), for inference and training, against libtorch's addmm / matmul
// and autograd, and the tiny golden model's logits against PyTorch's (test/fixtures/golden-tiny.json) with the path
// taken.
import { GPT2LMHeadModel } from "../lib/index.js";
import { probes } from "../bench/probes.js";
import { flatten, golden, maxAbsDiff, pick, tinyModelDir } from "./helpers/tiny.js";

afterEach(() => probes.setGemm(true));

/** Logits of one forward pass with the oneDNN path on or off, and how many linears took it. */
async function logits(
  model: GPT2LMHeadModel,
  ids: number[][],
  on: boolean,
  requires_grad = false,
): Promise<{ out: Float32Array; golden: number[]; calls: number }> {
  probes.setGemm(on);
  const c0 = probes.gemmCalls();
  const o = await model.forward({ input_ids: ids, requires_grad });
  const out = Float32Array.from(o.logits.data() as Float32Array);
  const golden_ = model.config.vocab_size === 50257 ? pick(o.logits, golden.columns) : [];
  o.logits.dispose();
  return { out, golden: golden_, calls: probes.gemmCalls() - c0 };
}

const maybe = probes.gemmAvailable ? describe : describe.skip;

maybe("oneDNN for linears over many rows", () => {
  test("odd shapes: the same logits as addmm and matmul; every linear and the LM head take the path", async () => {
    // n_embd 40, n_inner 100, vocab 1001: no size a multiple of a vector width
    const model = await GPT2LMHeadModel.from_config(
      { vocab_size: 1001, n_positions: 64, n_embd: 40, n_layer: 2, n_head: 4, n_inner: 100 },
      { seed: 3 },
    );
    const ids = [
      [1, 2, 3, 999, 17],
      [5, 6, 7, 8, 1000],
    ];
    const slow = await logits(model, ids, false);
    const fast = await logits(model, ids, true);
    expect(slow.calls).toBe(0);
    expect(fast.calls).toBe(4 * 2 + 1);
    expect(maxAbsDiff(fast.out, slow.out)).toBeLessThan(1e-5);
    await model.dispose();
  });

  test("the tiny golden model: logits within 1e-4 of PyTorch's", async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const fast = await logits(model, golden.input_ids, true);
    expect(fast.calls).toBeGreaterThan(0);
    expect(maxAbsDiff(fast.golden, flatten(golden.logits))).toBeLessThan(1e-4);
    await model.dispose();
  });

  test("training through a custom autograd function: loss and every gradient as addmm's", async () => {
    const model = await GPT2LMHeadModel.from_config(
      {
        vocab_size: 1001,
        n_positions: 64,
        n_embd: 40,
        n_layer: 2,
        n_head: 4,
        n_inner: 100,
        resid_pdrop: 0,
        embd_pdrop: 0,
        attn_pdrop: 0,
      },
      { seed: 3 },
    );
    model.train();
    const ids = [
      [1, 2, 3, 999, 17],
      [5, 6, 7, 8, 1000],
    ];
    const run = async (on: boolean) => {
      probes.setGemm(on);
      const c0 = probes.gemmCalls();
      model.zero_grad();
      const o = await model.forward({ input_ids: ids, labels: ids });
      o.loss!.backward();
      const grads = model
        .named_parameters()
        .map(([n, t]) => [n, Float32Array.from(t.grad!.data() as Float32Array)] as const);
      return { loss: o.loss!.item() as number, grads, calls: probes.gemmCalls() - c0 };
    };
    const slow = await run(false);
    const fast = await run(true);
    expect(slow.calls).toBe(0);
    expect(fast.calls).toBe(2 * (4 * 2 + 1)); // the forward and the input gradient of every linear and the LM head
    expect(Math.abs(fast.loss - slow.loss)).toBeLessThan(1e-6);
    for (const [i, [name, g]] of fast.grads.entries()) {
      const scale = Math.max(...g.map(Math.abs), 1e-6);
      expect([name, maxAbsDiff(g, slow.grads[i]![1]) / scale < 1e-5]).toEqual([name, true]);
    }
    await model.dispose();
  });
});
