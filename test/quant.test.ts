// q8 and q4: 8- and 4-bit weights per block of 32 for decoding. Parity with an independent reference of each scheme
// (scripts/quant-check.py: transformers' GPT-2 with its linears computed from quantized weights, in float64), the
// decoding kernels against each other, fidelity against float32 on a trained model, and what a quantized model refuses.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  GPT2LMHeadModel,
  LoraConfig,
  Trainer,
  TrainingArguments,
  Dataset,
  get_peft_model,
  load_file,
  tensor,
} from "../lib/index.js";
import type { Tensor } from "../lib/index.js";
import { probes } from "../bench/probes.js";
import { readSafetensorsIndex } from "../lib/safetensors.js";
import type { Inputs } from "../lib/trainer.js";
import { prepareEmbedded } from "../examples/embedded.js";
import { movieReviews } from "../examples/reviews.js";
import { maxAbsDiff, tinyModelDir } from "./helpers/tiny.js";
import { ROOT, pythonJson } from "./helpers/python.js";

const scaleOf = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const rel = (a: Float32Array, b: Float32Array) => maxAbsDiff(a, b) / Math.max(1, scaleOf(b));
const ids = (n: number, seed: number) => {
  let s = seed;
  return Array.from({ length: n }, () => (s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff) % 50000);
};

// n_embd 64 and 96: inputs padded to a group of 128 (2 and 3 blocks of 32), and whole groups (the MLP's 256 and 384);
// 160: the MLP's 640 inputs are 20 blocks, past the 16 the kernels' scale pass takes a step, in an odd number of groups
describe.each([
  ["q8", 64],
  ["q4", 64],
  ["q8", 96],
  ["q4", 96],
  ["q4", 160],
] as const)("%s (n_embd %i) against an independent reference of the scheme", (dtype, nEmbd) => {
  const modelDir = () =>
    nEmbd === 64 ? tinyModelDir() : tinyModelDir({ config: { n_embd: nEmbd }, name: `e${nEmbd}` });
  const out = join(mkdtempSync(join(tmpdir(), "torchlm-quant-")), "ref.safetensors");
  const short = [ids(16, 1)],
    long = [ids(40, 2)];
  let ref16: Record<string, Float32Array>, ref40: Record<string, Float32Array>;
  beforeAll(async () => {
    const get = async (x: number[][]) => {
      pythonJson("quant-check.py", [
        "--model",
        modelDir(),
        "--ids",
        JSON.stringify(x),
        "--out",
        out,
        "--bits",
        dtype.slice(1),
      ]);
      const t = await load_file(out);
      return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.data() as Float32Array]));
    };
    ref16 = await get(short);
    ref40 = await get(long);
  });

  test("16 rows (integer kernels, activations quantized) and 40 rows (weights widened) match it", async () => {
    const q = await GPT2LMHeadModel.from_pretrained(modelDir(), { dtype });
    expect(q.dtype).toBe(dtype);
    const a = (await q.forward({ input_ids: short })).logits.data() as Float32Array;
    const b = (await q.forward({ input_ids: long })).logits.data() as Float32Array;
    // an activation within float32 noise of a rounding tie may round either way in torchlm and in the reference (q4 at
    // n_embd 96 has one: position 2's logits move by 1e-3, and later positions a little through attention): most
    // positions agree within 1e-5, every one within 2e-2
    const V = 50257,
      off: number[] = [];
    for (let t = 0; t < 16; t++)
      if (rel(a.subarray(t * V, (t + 1) * V), ref16.x8!.subarray(t * V, (t + 1) * V)) > 1e-5) off.push(t);
    expect(off.length).toBeLessThan(8);
    expect(rel(a, ref16.x8!)).toBeLessThan(2e-2);
    expect(rel(b, ref40.weights!)).toBeLessThan(1e-5);
    // and quantization did something: float32's logits are further away
    const f32 = await GPT2LMHeadModel.from_pretrained(modelDir());
    expect(rel((await f32.forward({ input_ids: long })).logits.data() as Float32Array, ref40.weights!)).toBeGreaterThan(
      100 * rel(b, ref40.weights!),
    );
    // the float model's parameter count, whatever the storage
    expect(q.num_parameters()).toBe(f32.num_parameters());
    await q.dispose();
    await f32.dispose();
  });

  test(
    "the fused batch-1 decoder and the general path give the same tokens; every kernel (VNNI, AVX2, scalar) the " +
      "same logits",
    async () => {
      const q = await GPT2LMHeadModel.from_pretrained(modelDir(), { dtype });
      const prompt = [ids(6, 3)];
      const fused = (await q.generate(prompt, { max_new_tokens: 20 })).tolist();
      probes.setMatvec(false); // the fused decoder off: every step through the general forward
      try {
        expect((await q.generate(prompt, { max_new_tokens: 20 })).tolist()).toEqual(fused);
      } finally {
        probes.setMatvec(true);
      }
      await q.dispose();
      // 12 rows: the batched kernels (8 + 4 rows a weight row)
      const url = (...path: string[]) => JSON.stringify(pathToFileURL(join(ROOT, "dist", ...path)).href);
      const script = `const t = await import(${url("lib", "index.js")});
      const n = await import(${url("bench", "probes.js")});
      const m = await t.GPT2LMHeadModel.from_pretrained(${JSON.stringify(modelDir())}, { dtype: "${dtype}" });
      const o = await m.forward({ input_ids: ${JSON.stringify([ids(12, 4)])} });
      console.log(JSON.stringify({ kernel: n.probes.q8Kernel(), logits: Array.from(o.logits.data()) }));`;
      const run = (kernel: string) =>
        JSON.parse(
          execFileSync(process.execPath, ["--input-type=module", "-e", script], {
            encoding: "utf8",
            maxBuffer: 1 << 28,
            env: { ...process.env, TORCHLM_Q8_KERNEL: kernel },
          })
            .trim()
            .split("\n")
            .pop()!,
        ) as { kernel: string; logits: number[] };
      const best = run(""),
        avx2 = run("avx2"),
        scalar = run("scalar");
      expect(scalar.kernel).toBe("scalar");
      expect(avx2.kernel).toBe(best.kernel === "scalar" ? "scalar" : "avx2");
      const f = (x: number[]) => Float32Array.from(x);
      // the kernels keep one order of float operations, so they agree to the bit
      expect(f(avx2.logits)).toEqual(f(scalar.logits));
      expect(f(best.logits)).toEqual(f(scalar.logits));
    },
  );
});

// The Llama family on the same engine: the blocks' nn.Linear layers and the LM head (tied, or untied and quantized as
// it loads) against the same reference; a q8 / q4 checkpoint saved and loaded back as it is; continuous batching.
describe.each([
  ["q8", "qwen2", true],
  ["q4", "qwen2", true],
  ["q8", "llama", false],
  ["q4", "llama", false],
] as const)("%s %s (tied head: %s) against the reference", (dtype, model_type, tied) => {
  const V = 320;
  const dir = mkdtempSync(join(tmpdir(), "torchlm-quant-llama-"));
  const out = join(dir, "ref.safetensors");
  const short = [ids(16, 1).map((x) => x % V)],
    long = [ids(40, 2).map((x) => x % V)];
  let ref16: Record<string, Float32Array>, ref40: Record<string, Float32Array>;
  beforeAll(async () => {
    const m = await AutoModelForCausalLM.from_config(
      {
        model_type,
        vocab_size: V,
        hidden_size: 64,
        intermediate_size: 160,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 128,
        tie_word_embeddings: tied,
      },
      { seed: 11 },
    );
    await m.save_pretrained(dir);
    await m.dispose();
    const get = async (x: number[][]) => {
      pythonJson("quant-check.py", [
        "--model",
        dir,
        "--ids",
        JSON.stringify(x),
        "--out",
        out,
        "--bits",
        dtype.slice(1),
      ]);
      const t = await load_file(out);
      return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.data() as Float32Array]));
    };
    ref16 = await get(short);
    ref40 = await get(long);
  });

  test("16 rows (activations quantized) and 40 rows (weights widened) match it; saved, it loads as it is", async () => {
    const q = await AutoModelForCausalLM.from_pretrained(dir, { dtype });
    expect(q.dtype).toBe(dtype);
    const a = (await q.forward({ input_ids: short })).logits.data() as Float32Array;
    const b = (await q.forward({ input_ids: long })).logits.data() as Float32Array;
    // as for GPT-2: an activation at a rounding tie may round either way, so most positions within 1e-5, all 2e-2
    const off: number[] = [];
    for (let t = 0; t < 16; t++)
      if (rel(a.subarray(t * V, (t + 1) * V), ref16.x8!.subarray(t * V, (t + 1) * V)) > 1e-5) off.push(t);
    expect(off.length).toBeLessThan(8);
    expect(rel(a, ref16.x8!)).toBeLessThan(2e-2);
    expect(rel(b, ref40.weights!)).toBeLessThan(1e-5);
    // the same 16 rows as a prompt into the KV cache: the fused decoder, a row per token on the integer kernels, each
    // row attending to those before it in the cache (bfloat16), gives the reference's numbers with bfloat16 keys and
    // values; without the rounding they would differ
    const calls = probes.matvecCalls();
    const cached = await q.forward({ input_ids: short, use_cache: true });
    expect(probes.matvecCalls()).toBeGreaterThan(calls);
    expect(cached.past_key_values![0]![0].dtype).toBe("bfloat16");
    const c = cached.logits.data() as Float32Array;
    let cOff = 0;
    for (let t = 0; t < 16; t++)
      if (rel(c.subarray(t * V, (t + 1) * V), ref16.x8_kv16!.subarray(t * V, (t + 1) * V)) > 1e-5) cOff++;
    expect(cOff).toBeLessThan(8);
    expect(rel(c, ref16.x8_kv16!)).toBeLessThan(2e-2);
    expect(rel(ref16.x8_kv16!, ref16.x8!)).toBeGreaterThan(1e-4);
    const f32 = await AutoModelForCausalLM.from_pretrained(dir);
    const fb = (await f32.forward({ input_ids: long })).logits.data() as Float32Array;
    expect(rel(fb, ref40.weights!)).toBeGreaterThan(100 * rel(b, ref40.weights!));
    expect(q.num_parameters()).toBe(f32.num_parameters());
    const saved = mkdtempSync(join(tmpdir(), "torchlm-quant-llama-saved-"));
    await q.save_pretrained(saved);
    const header = await readSafetensorsIndex(join(saved, "model.safetensors"));
    const dtypes = new Map(header.entries.map((e) => [e.name, e.dtype]));
    expect(dtypes.get("model.layers.0.mlp.down_proj.weight")).toBe(dtype === "q8" ? "I8" : "U8");
    expect(dtypes.get("lm_head.weight")).toBe(dtype === "q8" ? "I8" : "U8");
    expect(dtypes.get("model.embed_tokens.weight")).toBe("F32");
    const back = await AutoModelForCausalLM.from_pretrained(saved);
    expect(back.dtype).toBe(dtype);
    expect((await back.forward({ input_ids: long })).logits.data()).toEqual(b);
    // continuous batching: each request's greedy tokens are what generate gives it alone
    const prompts = [short[0]!.slice(0, 5), long[0]!.slice(0, 9), short[0]!.slice(3, 6)];
    const alone = [];
    for (const p of prompts) alone.push((await q.generate([p], { max_new_tokens: 8, eos_token_id: null })).tolist()[0]);
    const before = probes.matvecCalls();
    const batch = await q.generate_batch(prompts, { max_new_tokens: 8, eos_token_id: null });
    expect(probes.matvecCalls()).toBeGreaterThan(before); // the ragged steps took the fused decoder's rows
    expect(prompts.map((p, i) => [...p, ...batch[i]!.generated_tokens])).toEqual(alone);
    // batch 1 took the fused decoder; the general path gives the same tokens
    probes.setMatvec(false);
    try {
      for (const [i, p] of prompts.entries())
        expect((await q.generate([p], { max_new_tokens: 8, eos_token_id: null })).tolist()[0]).toEqual(alone[i]);
    } finally {
      probes.setMatvec(true);
    }
    for (const m of [q, f32, back]) await m.dispose();
  });
});

describe("fidelity on a trained model", () => {
  // pre-trained once into .cache: minutes on a fresh clone, so outside the tests' time
  let dir: string;
  beforeAll(async () => {
    dir = (await prepareEmbedded(join(ROOT, ".cache", "embedded"), () => undefined)).model;
  }, 900_000);

  // the issue's gates: perplexity within 1% (q8) and 5% (q4) of float32's; KL and agreement near the measured figures
  // (q8 +0.07%, 2.5e-5, 98.7%; q4, its LM head in 6 bits, +0.15%, 7.7e-4, 97.5%), through both paths a quantized model
  // computes: rows of 16 at once (the batched integer kernels) and one token at a time with the KV cache (the fused
  // decoder, its cache in bfloat16), each against float32's forward
  test.each([
    ["q8", 0.01, 1e-3, 0.97],
    ["q4", 0.05, 2e-3, 0.95],
  ] as const)(
    "over held-out text, %s's perplexity within %f of float32's, small KL, greedy agreement",
    async (dtype, pplGate, klGate, agreeGate) => {
      const tok = await AutoTokenizer.from_pretrained(dir);
      const f32 = await GPT2LMHeadModel.from_pretrained(dir);
      const q = await GPT2LMHeadModel.from_pretrained(dir, { dtype });
      // held-out reviews (another seed than the pre-training corpus), in rows of 16 tokens
      const stream = movieReviews(200, 99).text.flatMap((t) => tok.encode(t));
      const rows: number[][] = [];
      for (let i = 0; i + 16 <= stream.length && rows.length < 80; i += 16) rows.push(stream.slice(i, i + 16));
      const V = f32.config.vocab_size;
      const paths = { rows: { nll: 0, kl: 0, agree: 0 }, decoding: { nll: 0, kl: 0, agree: 0 } };
      let nllF = 0,
        n = 0;
      const exp = Math.exp; // a global's lookup in Jest's sandbox costs more than the exponential: 40 s of this test
      const score = (
        into: { nll: number; kl: number; agree: number },
        pf: Float32Array,
        pq: Float32Array,
        next: number,
      ) => {
        into.nll -= pq[next]!;
        let k = 0,
          af = 0,
          aq = 0;
        for (let v = 0; v < V; v++) {
          k += exp(pf[v]!) * (pf[v]! - pq[v]!);
          if (pf[v]! > pf[af]!) af = v;
          if (pq[v]! > pq[aq]!) aq = v;
        }
        into.kl += k;
        if (af === aq) into.agree++;
      };
      for (const row of rows) {
        const pf = (await f32.forward({ input_ids: [row] })).logits.log_softmax(-1).data() as Float32Array;
        const pq = (await q.forward({ input_ids: [row] })).logits.log_softmax(-1).data() as Float32Array;
        let past: [Tensor, Tensor][] | undefined;
        for (let t = 0; t + 1 < row.length; t++) {
          const step = await q.forward({ input_ids: [[row[t]!]], past_key_values: past, use_cache: true });
          past = step.past_key_values;
          expect(past![0]![0].dtype).toBe("bfloat16");
          const pd = step.logits.log_softmax(-1).data() as Float32Array;
          const at = pf.subarray(t * V, (t + 1) * V);
          nllF -= at[row[t + 1]!]!;
          score(paths.rows, at, pq.subarray(t * V, (t + 1) * V), row[t + 1]!);
          score(paths.decoding, at, pd, row[t + 1]!);
          n++;
        }
      }
      expect(n).toBeGreaterThanOrEqual(1000);
      const pplF = Math.exp(nllF / n);
      expect(pplF).toBeLessThan(200); // a trained model, so the comparison means something
      for (const [path, m] of Object.entries(paths)) {
        const pplQ = Math.exp(m.nll / n);
        console.log(
          `${dtype} fidelity (${path}) over ${n} positions: perplexity ${pplQ.toFixed(3)} against float32's ` +
            `${pplF.toFixed(3)} (${(100 * (pplQ / pplF - 1)).toFixed(3)}%), ` +
            `mean KL ${(m.kl / n).toExponential(2)}, greedy agreement ${((100 * m.agree) / n).toFixed(2)}%`,
        );
        expect(Math.abs(pplQ / pplF - 1)).toBeLessThan(pplGate);
        expect(m.kl / n).toBeLessThan(klGate);
        expect(m.agree / n).toBeGreaterThan(agreeGate);
      }
      await f32.dispose();
      await q.dispose();
    },
    300_000,
  );
});

test.each([
  // n_embd 64: the inputs padded to 128, the scales not
  [
    "q8",
    "I8",
    [192, 128],
    {
      quant_method: "torchlm",
      format: "q8",
      bits: 8,
      group_size: 32,
      symmetric: true,
      scale_dtype: "float16",
      packing: "lanes4",
    },
  ],
  [
    "q4",
    "U8",
    [192, 64],
    {
      quant_method: "torchlm",
      format: "q4",
      bits: 4,
      group_size: 32,
      symmetric: true,
      scale_dtype: "float16",
      packing: "lanes4",
      lm_head_bits: 6,
    },
  ],
] as const)(
  "save_pretrained writes the %s weights with a quantization_config; from_pretrained reads them back as they are",
  async (dtype, stDtype, shape, qc) => {
    const q = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype });
    const dir = mkdtempSync(join(tmpdir(), "torchlm-quant-"));
    await q.save_pretrained(dir);
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(config.quantization_config).toEqual(qc);
    const index = await readSafetensorsIndex(join(dir, "model.safetensors"));
    const byName = new Map(index.entries.map((e) => [e.name, e]));
    expect(byName.get("transformer.h.0.attn.c_attn.weight")).toMatchObject({ dtype: stDtype, shape });
    expect(byName.get("transformer.h.0.attn.c_attn.weight_scale")).toMatchObject({ dtype: "F16", shape: [192, 2] });
    // the LM head: int8 under q8, 6 bits (96 bytes a group of 128) under q4
    expect(byName.get("lm_head.weight")).toMatchObject(
      dtype === "q8" ? { dtype: "I8", shape: [50257, 128] } : { dtype: "U8", shape: [50257, 96] },
    );
    const back = await GPT2LMHeadModel.from_pretrained(dir);
    expect(back.dtype).toBe(dtype);
    const x = [ids(12, 9)];
    expect(Array.from((await back.forward({ input_ids: x })).logits.data() as Float32Array)).toEqual(
      Array.from((await q.forward({ input_ids: x })).logits.data() as Float32Array),
    );
    expect((await back.generate(x, { max_new_tokens: 8 })).tolist()).toEqual(
      (await q.generate(x, { max_new_tokens: 8 })).tolist(),
    );
    await expect(GPT2LMHeadModel.from_pretrained(dir, { dtype: "bfloat16" })).rejects.toThrow(
      `holds ${dtype} weights: load it without a dtype, or with dtype "${dtype}"`,
    );
    // the other format's config on these tensors: the stored dtype does not fit, and the loader says so
    const other = dtype === "q8" ? "q4" : "q8";
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        ...config,
        quantization_config: {
          ...qc,
          format: other,
          bits: other === "q8" ? 8 : 4,
          lm_head_bits: other === "q4" ? 6 : undefined,
        },
      }),
    );
    await expect(GPT2LMHeadModel.from_pretrained(dir)).rejects.toThrow(
      `${other} checkpoint has ${dtype === "q8" ? "int8" : "uint8"} tensor h.0.attn.c_attn.weight but ${other} ` +
        `stores ${other === "q8" ? "int8" : "uint8"}`,
    );
    // an earlier torchlm's layout (float32 scales, blocks in input order) is named as such
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({ ...config, quantization_config: { ...qc, scale_dtype: undefined, packing: undefined } }),
    );
    await expect(GPT2LMHeadModel.from_pretrained(dir)).rejects.toThrow(
      `config.json describes ${dtype} weights in the layout of an earlier torchlm (float32 scales, no lane packing): ` +
        `quantize the ` +
        `float32 checkpoint again`,
    );
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({ ...config, quantization_config: { quant_method: "bitsandbytes", load_in_8bit: true } }),
    );
    await expect(GPT2LMHeadModel.from_pretrained(dir)).rejects.toThrow(
      /has a quantization_config torchlm does not load/,
    );
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, quantization_config: undefined }));
    await expect(GPT2LMHeadModel.from_pretrained(dir)).rejects.toThrow(
      new RegExp(
        `model\\.safetensors holds the quantized tensor \\S+ \\(${dtype === "q8" ? "I8" : "U8"}\\), but ` +
          `\\S+config\\.json has no quantization_config saying how to read it`,
      ),
    );
    await q.dispose();
    await back.dispose();
  },
);

test.each(["q8", "q4"] as const)(
  "%s: a left-padded batch decodes each row as batch 1 does (its bfloat16 cache read as it is)",
  async (dtype) => {
    const q = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype });
    // 3 x 5 prompt positions: the prefill too through the integer kernels (over 16 rows it widens the weights instead,
    // whose numbers differ from the rows alone by the activations' quantization)
    const rows = [ids(5, 11), ids(3, 12), ids(4, 13)];
    const width = Math.max(...rows.map((r) => r.length));
    const padded = rows.map((r) => [...Array(width - r.length).fill(0), ...r]);
    const mask = rows.map((r) => [...Array(width - r.length).fill(0), ...r.map(() => 1)]);
    const calls = probes.matvecCalls();
    const batch = (await q.generate(padded, { attention_mask: mask, max_new_tokens: 12 })).tolist() as number[][];
    expect(probes.matvecCalls()).toBeGreaterThan(calls); // the rows went through the fused decoder's attention
    for (let b = 0; b < rows.length; b++) {
      const alone = (await q.generate([rows[b]!], { max_new_tokens: 12 })).tolist() as number[][];
      expect(batch[b]!.slice(width - rows[b]!.length)).toEqual(alone[0]);
    }
    await q.dispose();
  },
);

test("a q8 or q4 model generates, and refuses what it cannot do with a clear error", async () => {
  const q8 = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "q8" });
  expect((await q8.generate([[1, 2, 3]], { max_new_tokens: 4, num_beams: 2 })).shape).toEqual([1, 7]);
  expect(
    (
      await q8.generate(
        [
          [1, 2, 3],
          [4, 5, 6],
        ],
        { max_new_tokens: 4 },
      )
    ).shape,
  ).toEqual([2, 7]);
  const collate = (r: any[]): Inputs => {
    const x = tensor(r.map((e) => e.input_ids));
    return { input_ids: x, labels: x.clone() };
  };
  const args = new TrainingArguments({
    output_dir: mkdtempSync(join(tmpdir(), "torchlm-q8-")),
    max_steps: 1,
    disable_tqdm: true,
    plot_loss: false,
    save_strategy: "no",
  });
  await expect(
    new Trainer({
      model: q8,
      args,
      train_dataset: Dataset.from_dict({ input_ids: [[1, 2, 3, 4]] }),
      data_collator: collate,
    }).train(),
  ).rejects.toThrow(/Training a q8 model is not supported/);
  await expect(q8.to("bfloat16")).rejects.toThrow(/a q8 model stays on the CPU/);
  expect(() => get_peft_model(q8, new LoraConfig())).toThrow(/LoRA on a q8 model is not supported/);
  await expect(GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "q5" as never })).rejects.toThrow(
    /Expected one of .*"q4" for dtype but received "q5"/,
  );
  await expect(
    GPT2LMHeadModel.from_pretrained(tinyModelDir({ config: { n_embd: 48 }, name: "e48" }), { dtype: "q8" }),
  ).rejects.toThrow("q8 needs input sizes that are multiples of 32, but a weight has 48");
  await q8.dispose();
  // q4 the same
  const q4 = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "q4" });
  expect((await q4.generate([[1, 2, 3]], { max_new_tokens: 4, num_beams: 2 })).shape).toEqual([1, 7]);
  await expect(
    new Trainer({
      model: q4,
      args,
      train_dataset: Dataset.from_dict({ input_ids: [[1, 2, 3, 4]] }),
      data_collator: collate,
    }).train(),
  ).rejects.toThrow(/Training a q4 model is not supported/);
  expect(() => get_peft_model(q4, new LoraConfig())).toThrow(/LoRA on a q4 model is not supported/);
  await expect(
    GPT2LMHeadModel.from_pretrained(tinyModelDir({ config: { n_embd: 48 }, name: "e48" }), { dtype: "q4" }),
  ).rejects.toThrow("q4 needs input sizes that are multiples of 32, but a weight has 48");
  await q4.dispose();
  // quantizing as it loads checks each Conv1D weight against the config before quantizing it, as a float load does
  const wrong = mkdtempSync(join(tmpdir(), "torchlm-q4-shape-"));
  for (const f of ["model.safetensors", "config.json"])
    writeFileSync(join(wrong, f), readFileSync(join(tinyModelDir(), f)));
  writeFileSync(
    join(wrong, "config.json"),
    JSON.stringify({ ...JSON.parse(readFileSync(join(wrong, "config.json"), "utf8")), n_inner: 288 }),
  );
  await expect(GPT2LMHeadModel.from_pretrained(wrong, { dtype: "q4" })).rejects.toThrow(
    "tensor h.0.mlp.c_fc.weight has shape [64, 256] but the config needs [64, 288]",
  );
});
