// Inference linears over many rows on oneDNN's sgemm (native/gemm.cc) against libtorch's addmm / matmul, and
// the tiny golden model's logits against PyTorch's (test/fixtures/golden-tiny.json) with the path taken.
import { GPT2LMHeadModel } from "../lib/index.js";
import { probes } from "../lib/native.js";
import { flatten, golden, maxAbsDiff, pick, tinyModelDir } from "./helpers/tiny.js";

afterEach(() => probes.setGemm(true));

/** Logits of one forward pass with the oneDNN path on or off, and how many linears took it. */
async function logits(model: GPT2LMHeadModel, ids: number[][], on: boolean, requires_grad = false): Promise<{ out: Float32Array; golden: number[]; calls: number }> {
  probes.setGemm(on);
  const c0 = probes.gemmCalls();
  const o = await model.forward({ input_ids: ids, requires_grad });
  const out = Float32Array.from(o.logits.data() as Float32Array);
  const golden_ = model.config.vocab_size === 50257 ? pick(o.logits, golden.columns) : [];
  o.logits.dispose();
  return { out, golden: golden_, calls: probes.gemmCalls() - c0 };
}

const maybe = probes.gemmAvailable ? describe : describe.skip;

maybe("oneDNN sgemm for inference linears", () => {
  test("odd shapes: the same logits as addmm and matmul; every linear and the LM head take the path", async () => {
    // n_embd 40, n_inner 100, vocab 1001: no size a multiple of a vector width
    const model = await GPT2LMHeadModel.from_config({ vocab_size: 1001, n_positions: 64, n_embd: 40, n_layer: 2, n_head: 4, n_inner: 100 }, { seed: 3 });
    const ids = [[1, 2, 3, 999, 17], [5, 6, 7, 8, 1000]];
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

  test("not taken where a gradient is wanted (training keeps autograd's addmm)", async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const r = await logits(model, golden.input_ids, true, true);
    expect(r.calls).toBe(0);
    await model.dispose();
  });
});
