// q8: int8 weights per block of 32 for decoding. Parity with an independent reference of the same scheme
// (scripts/quant-check.py: transformers' GPT-2 with its linears computed from quantized weights, in float64), the
// decoding kernels against each other, fidelity against float32 on a trained model, and what a q8 model refuses.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { AutoTokenizer, GPT2LMHeadModel, LoraConfig, Trainer, TrainingArguments, Dataset, get_peft_model, load_file, tensor } from "../lib/index.js";
import { probes } from "../lib/native.js";
import { readSafetensorsIndex } from "../lib/safetensors.js";
import type { Inputs } from "../lib/trainer.js";
import { prepareEmbedded } from "../examples/embedded.js";
import { movieReviews } from "../examples/reviews.js";
import { maxAbsDiff, tinyModelDir } from "./helpers/tiny.js";
import { ROOT, pythonJson } from "./helpers/python.js";

const scaleOf = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const rel = (a: Float32Array, b: Float32Array) => maxAbsDiff(a, b) / Math.max(1, scaleOf(b));
const ids = (n: number, seed: number) => { let s = seed; return Array.from({ length: n }, () => (s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff) % 50000); };

describe("q8 against an independent reference of the scheme", () => {
  const out = join(mkdtempSync(join(tmpdir(), "torchlm-q8-")), "ref.safetensors");
  const short = [ids(16, 1)], long = [ids(40, 2)];
  let ref16: Record<string, Float32Array>, ref40: Record<string, Float32Array>;
  beforeAll(async () => {
    const get = async (x: number[][]) => {
      pythonJson("quant-check.py", ["--model", tinyModelDir(), "--ids", JSON.stringify(x), "--out", out]);
      const t = await load_file(out);
      return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.data() as Float32Array]));
    };
    ref16 = await get(short);
    ref40 = await get(long);
  });

  test("16 rows (the int8 kernels: activations quantized too) and 40 rows (the weights widened) match it", async () => {
    const q8 = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "q8" });
    expect(q8.dtype).toBe("q8");
    const a = (await q8.forward({ input_ids: short })).logits.data() as Float32Array;
    const b = (await q8.forward({ input_ids: long })).logits.data() as Float32Array;
    expect(rel(a, ref16.x8!)).toBeLessThan(1e-5);
    expect(rel(b, ref40.weights!)).toBeLessThan(1e-5);
    // and quantization did something: float32's logits are further away
    const f32 = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    expect(rel((await f32.forward({ input_ids: short })).logits.data() as Float32Array, ref16.x8!)).toBeGreaterThan(10 * rel(a, ref16.x8!));
    await q8.dispose();
    await f32.dispose();
  });

  test("the fused batch-1 decoder and the general path give the same tokens; every kernel (VNNI, AVX2, scalar) the same logits", async () => {
    const q8 = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "q8" });
    const prompt = [ids(6, 3)];
    const fused = (await q8.generate(prompt, { max_new_tokens: 20 })).tolist();
    probes.setMatvec(false);  // the fused decoder off: every step through the general forward
    try {
      expect((await q8.generate(prompt, { max_new_tokens: 20 })).tolist()).toEqual(fused);
    } finally {
      probes.setMatvec(true);
    }
    await q8.dispose();
    const script = `const t = await import(${JSON.stringify(pathToFileURL(join(ROOT, "dist", "lib", "index.js")).href)});
      const n = await import(${JSON.stringify(pathToFileURL(join(ROOT, "dist", "lib", "native.js")).href)});
      const m = await t.GPT2LMHeadModel.from_pretrained(${JSON.stringify(tinyModelDir())}, { dtype: "q8" });
      const o = await m.forward({ input_ids: ${JSON.stringify([ids(8, 4)])} });
      console.log(JSON.stringify({ kernel: n.probes.q8Kernel(), logits: Array.from(o.logits.data()) }));`;
    const run = (kernel: string) => JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script],
      { encoding: "utf8", maxBuffer: 1 << 28, env: { ...process.env, TORCHLM_Q8_KERNEL: kernel } }).trim().split("\n").pop()!) as { kernel: string; logits: number[] };
    const best = run(""), avx2 = run("avx2"), scalar = run("scalar");
    expect(scalar.kernel).toBe("scalar");
    expect(avx2.kernel).toBe(best.kernel === "scalar" ? "scalar" : "avx2");
    const f = (x: number[]) => Float32Array.from(x);
    expect(rel(f(avx2.logits), f(scalar.logits))).toBeLessThan(1e-5);
    expect(rel(f(best.logits), f(scalar.logits))).toBeLessThan(1e-5);
  });
});

test("fidelity on a trained model: over held-out text, q8's perplexity within 1% of float32's, small KL, greedy agreement", async () => {
  const { model: dir } = await prepareEmbedded(join(ROOT, ".cache", "embedded"), () => undefined);
  const tok = await AutoTokenizer.from_pretrained(dir);
  const f32 = await GPT2LMHeadModel.from_pretrained(dir);
  const q8 = await GPT2LMHeadModel.from_pretrained(dir, { dtype: "q8" });
  // held-out reviews (another seed than the pre-training corpus), in rows of 16 tokens: the decoding kernels' path
  const stream = movieReviews(200, 99).text.flatMap((t) => tok.encode(t));
  const rows: number[][] = [];
  for (let i = 0; i + 16 <= stream.length && rows.length < 80; i += 16) rows.push(stream.slice(i, i + 16));
  let nllF = 0, nllQ = 0, kl = 0, agree = 0, n = 0;
  for (const row of rows) {
    const lf = (await f32.forward({ input_ids: [row] })).logits, lq = (await q8.forward({ input_ids: [row] })).logits;
    const pf = lf.log_softmax(-1).data() as Float32Array, pq = lq.log_softmax(-1).data() as Float32Array;
    const V = lf.shape[2]!;
    for (let t = 0; t + 1 < row.length; t++) {
      const o = t * V;
      nllF -= pf[o + row[t + 1]!]!;
      nllQ -= pq[o + row[t + 1]!]!;
      let k = 0, af = 0, aq = 0;
      for (let v = 0; v < V; v++) {
        k += Math.exp(pf[o + v]!) * (pf[o + v]! - pq[o + v]!);
        if (pf[o + v]! > pf[o + af]!) af = v;
        if (pq[o + v]! > pq[o + aq]!) aq = v;
      }
      kl += k;
      if (af === aq) agree++;
      n++;
    }
  }
  const pplF = Math.exp(nllF / n), pplQ = Math.exp(nllQ / n);
  console.log(`q8 fidelity over ${n} positions: perplexity ${pplQ.toFixed(3)} against float32's ${pplF.toFixed(3)} (${(100 * (pplQ / pplF - 1)).toFixed(3)}%), ` +
    `mean KL ${(kl / n).toExponential(2)}, greedy agreement ${(100 * agree / n).toFixed(2)}%`);
  expect(n).toBeGreaterThanOrEqual(1000);
  expect(pplF).toBeLessThan(200);  // a trained model, so the comparison means something
  expect(Math.abs(pplQ / pplF - 1)).toBeLessThan(0.01);
  expect(kl / n).toBeLessThan(1e-3);
  expect(agree / n).toBeGreaterThan(0.97);
  await f32.dispose();
  await q8.dispose();
}, 300_000);

test("save_pretrained writes the int8 weights with a quantization_config; from_pretrained reads them back as they are", async () => {
  const q8 = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "q8" });
  const dir = mkdtempSync(join(tmpdir(), "torchlm-q8-"));
  await q8.save_pretrained(dir);
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  expect(config.quantization_config).toEqual({ quant_method: "torchlm", format: "q8", bits: 8, group_size: 32, symmetric: true });
  const index = await readSafetensorsIndex(join(dir, "model.safetensors"));
  const byName = new Map(index.entries.map((e) => [e.name, e]));
  expect(byName.get("transformer.h.0.attn.c_attn.weight")).toMatchObject({ dtype: "I8", shape: [192, 64] });
  expect(byName.get("transformer.h.0.attn.c_attn.weight_scale")).toMatchObject({ dtype: "F32", shape: [192, 2] });
  expect(byName.get("lm_head.weight")).toMatchObject({ dtype: "I8", shape: [50257, 64] });
  const back = await GPT2LMHeadModel.from_pretrained(dir);
  expect(back.dtype).toBe("q8");
  const x = [ids(12, 9)];
  expect(Array.from((await back.forward({ input_ids: x })).logits.data() as Float32Array))
    .toEqual(Array.from((await q8.forward({ input_ids: x })).logits.data() as Float32Array));
  expect((await back.generate(x, { max_new_tokens: 8 })).tolist()).toEqual((await q8.generate(x, { max_new_tokens: 8 })).tolist());
  await expect(GPT2LMHeadModel.from_pretrained(dir, { dtype: "bfloat16" })).rejects.toThrow('holds q8 weights: load it without a dtype, or with dtype "q8"');
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, quantization_config: { quant_method: "bitsandbytes", load_in_8bit: true } }));
  await expect(GPT2LMHeadModel.from_pretrained(dir)).rejects.toThrow(/has a quantization_config torchlm does not load/);
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, quantization_config: undefined }));
  await expect(GPT2LMHeadModel.from_pretrained(dir)).rejects.toThrow(/tensor h\.0\.attn\.c_attn\.weight has dtype int8 but a floating dtype is needed/);
  await q8.dispose();
  await back.dispose();
});

test("a q8 model generates, and refuses what it cannot do with a clear error", async () => {
  const q8 = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "q8" });
  expect((await q8.generate([[1, 2, 3]], { max_new_tokens: 4, num_beams: 2 })).shape).toEqual([1, 7]);
  expect((await q8.generate([[1, 2, 3], [4, 5, 6]], { max_new_tokens: 4 })).shape).toEqual([2, 7]);
  const collate = (r: any[]): Inputs => { const x = tensor(r.map((e) => e.input_ids)); return { input_ids: x, labels: x.clone() }; };
  const args = new TrainingArguments({ output_dir: mkdtempSync(join(tmpdir(), "torchlm-q8-")), max_steps: 1, disable_tqdm: true, plot_loss: false, save_strategy: "no" });
  await expect(new Trainer({ model: q8, args, train_dataset: Dataset.from_dict({ input_ids: [[1, 2, 3, 4]] }), data_collator: collate }).train())
    .rejects.toThrow(/Training a q8 model is not supported/);
  await expect(q8.to("bfloat16")).rejects.toThrow(/a q8 model stays on the CPU/);
  expect(() => get_peft_model(q8, new LoraConfig())).toThrow(/LoRA on a q8 model is not supported/);
  await expect(GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "q4" as never })).rejects.toThrow(/Expected one of .*"q8" for dtype but received "q4"/);
  await expect(GPT2LMHeadModel.from_pretrained(tinyModelDir({ config: { n_embd: 48 }, name: "e48" }), { dtype: "q8" }))
    .rejects.toThrow("q8 needs input sizes that are multiples of 32, but a weight has 48");
  await q8.dispose();
});
