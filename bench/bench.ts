// npm run bench: torchlm against Hugging Face transformers on PyTorch 2 (bench/hf_peer.py), plain PyTorch eager
// (bench/baseline.py) and transformers.js, on the same GPT-2 124M-shaped weights written here from a seed (never
// committed), in the same run, rounds interleaved, as ratios. Results: bench/results/.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { availableParallelism } from "node:os";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { AutoTokenizer, GPT2LMHeadModel, get_num_threads, load_dataset, tensor, torch_info, type Tensor } from "../lib/index.js";
import { writeReviewsParquet } from "../examples/embedded.js";
import { binding, packageRoot } from "../lib/native.js";

const root = packageRoot();
const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const only = argv.find((a) => a.startsWith("--only="))?.slice(7).split(",");
const want = (k: string) => !only || only.includes(k);
const weightsDir = join(root, "bench", ".weights", quick ? "gpt2-tiny" : "gpt2-124m");
const CONFIG = quick
  ? { model_type: "gpt2", vocab_size: 50257, n_positions: 256, n_embd: 128, n_layer: 2, n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }
  : { model_type: "gpt2", vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };

function median(xs: number[]): number { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; }
async function timed(fn: () => Promise<unknown>, warmup: number, runs: number): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) { const t0 = performance.now(); await fn(); t.push((performance.now() - t0) / 1000); }
  return median(t);
}
function rnd(seed: number) { let s = seed; return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31; }
// Memory-read GB/s as the decoding kernels see it: every thread streaming a 256 MB buffer, the best of 5 passes.
const readGBs = async (allThreads = true) => (await binding.readBandwidth(256 * 1024 * 1024, 5, allThreads)) / 1e9;
const randIds = (B: number, T: number, seed: number) => { const r = rnd(seed); return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(r() * 50257))); };

/** A peer in a child process that answers one JSON line per command line, so its runs interleave with torchlm's. */
class Peer {
  #lines: string[] = [];
  #waiters: { res: (l: string) => void; rej: (e: Error) => void }[] = [];
  #exited: Error | null = null;
  ready: Record<string, unknown> = {};
  private constructor(private name: string, private child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (l) => { const w = this.#waiters.shift(); if (w) w.res(l); else this.#lines.push(l); });
    child.on("exit", (c) => { this.#exited = new Error(`${name} exited (${c})`); for (const w of this.#waiters.splice(0)) w.rej(this.#exited); });
  }
  #next(): Promise<string> {
    const l = this.#lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.#exited) return Promise.reject(this.#exited);
    return new Promise((res, rej) => this.#waiters.push({ res, rej }));
  }
  static async start(name: string, cmd: string, args: string[]): Promise<Peer> {
    const p = new Peer(name, spawn(cmd, args, { stdio: ["pipe", "pipe", "inherit"] }));
    p.ready = JSON.parse(await p.#next());
    if (!p.ready.ready) throw new Error(JSON.stringify(p.ready));
    return p;
  }
  async run(cmd: string): Promise<{ seconds: number; tokens?: number[] }> {
    this.child.stdin!.write(cmd + "\n");
    const r = JSON.parse(await this.#next());
    if (r.error) throw new Error(`${this.name}: ${r.error}`);
    return r;
  }
  /** Ends the child and waits for it to exit (its thread pool must not share the cores with what is measured next). */
  stop(): Promise<void> {
    if (this.#exited) return Promise.resolve();
    return new Promise((res) => { this.child.once("exit", () => res()); this.child.stdin!.end("quit\n"); });
  }
}

/**
 * The bench's own Python (bench/.peers/venv: the pinned torch, transformers and onnx), made on first use;
 * TORCHLM_BENCH_PYTHON names another one that has them.
 */
let benchPy: string | undefined = process.env.TORCHLM_BENCH_PYTHON || undefined;
async function benchPython(): Promise<string> {
  if (benchPy) return benchPy;
  // the build scripts' plain ES module, from the package root (tsc does not copy it into dist/)
  const { ensureVenv } = await import(pathToFileURL(join(root, "scripts", "python-env.mjs")).href);
  return (benchPy ??= ensureVenv(join(root, "bench", ".peers", "venv"), "bench", { why: "the bench's Python peers" }) as string);
}

/** transformers.js (bench/peer/run.mjs) on an ONNX export of the weights, both installed on first use. */
async function startTransformersJs(weightsDir: string, threads: number): Promise<Peer> {
  const dir = join(root, "bench", "peer");
  if (!existsSync(join(dir, "node_modules", "@huggingface", "transformers"))) {
    console.log("installing transformers.js into bench/peer (npm install --ignore-scripts)");
    execFileSync("npm", ["install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", dir], { stdio: ["ignore", "inherit", "inherit"] });
  }
  const onnxDir = weightsDir + "-onnx";
  if (!existsSync(join(onnxDir, "onnx", "model.onnx"))) {
    console.log(`exporting the weights to ONNX (${onnxDir}) with torch.onnx.export`);
    execFileSync(await benchPython(), [join(root, "bench", "export_onnx.py"), weightsDir, onnxDir], { stdio: ["ignore", "ignore", "inherit"] });
  }
  return Peer.start("transformers.js", process.execPath, [join(dir, "run.mjs"), onnxDir, String(threads)]);
}

async function main() {
  const threads = get_num_threads();
  console.log(`torchlm bench: ${quick ? "tiny" : "GPT-2 124M"} shapes, fp32, ${threads} threads, libtorch ${torch_info().torch_version}`);
  if (!existsSync(join(weightsDir, "model.safetensors"))) {
    console.log(`writing seeded random weights to ${weightsDir}`);
    const m = await GPT2LMHeadModel.from_config(CONFIG, { seed: 0 });
    await m.save_pretrained(weightsDir);
    await m.dispose();
  }
  const results: Record<string, number> = {};
  if (want("datasets")) {
    // IMDB-sized data: 25,000 reviews, about 33 MB of text, loaded from parquet and tokenized with map as the tutorial does.
    const file = join(root, "bench", ".weights", "imdb-25k.parquet");
    if (!existsSync(file)) { mkdirSync(join(root, "bench", ".weights"), { recursive: true }); await writeReviewsParquet(file, 25_000, 7, 6); }
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const ds = await load_dataset(file, { split: "train" });
    const tok = await AutoTokenizer.from_pretrained("gpt2");
    tok.pad_token = tok.eos_token;
    tok.padding_side = "left";
    const tokenized = await ds.map((b: { text: string[] }) => {
      const t = tok(b.text, { max_length: 64, padding: "max_length", truncation: true, return_tensors: "pt" });
      return { input_ids: t.input_ids, attention_mask: (t.input_ids as Tensor).ne(tok.pad_token_id!).long() };
    }, { batched: true, remove_columns: ds.column_names, disable_progress: true });
    results.imdb_load_and_tokenize_s = (performance.now() - t0) / 1000;
    results.imdb_text_mb = ds.column("text").reduce((a: number, t) => a + Buffer.byteLength(t as string), 0) / 1e6;
    results.imdb_rows = tokenized.length;
    results.imdb_rss_growth_mb = (process.memoryUsage().rss - rss0) / 1e6;
  }
  // Machine limits, measured in the same run: matmul GFLOP/s and memory-read GB/s.
  {
    // GPT-2's MLP shape on the compute thread with libtorch's threads, the best of the oneDNN linear and addmm
    results.matmul_gflops = (await binding.matmulLimit(1024, 768, 3072, 5)) / 1e9;
    results.memory_read_gbs = await readGBs();
  }
  // The peers run in child processes that answer one run per request, so that their runs interleave with torchlm's
  // (a shared machine's memory bandwidth can drift by 2x over minutes: runs minutes apart are not comparable).
  const noPeers = argv.includes("--no-peers");
  let hf: Peer | null = null, peer: Peer | null = null;
  let hfNote = "", jsNote = "";
  if (noPeers) hfNote = "transformers not run (--no-peers)";
  else {
    try {
      hf = await Peer.start("transformers", await benchPython(), [join(root, "bench", "hf_peer.py"), weightsDir, String(threads)]);
    } catch (e) {
      hfNote = `transformers skipped: ${(e as Error).message.split("\n")[0]}`;
    }
  }
  if ((want("forward") || want("decode1")) && !noPeers && !argv.includes("--no-transformers-js")) {
    try {
      peer = await startTransformersJs(weightsDir, threads);
    } catch (e) {
      jsNote = `transformers.js skipped: ${(e as Error).message.split("\n")[0]}`;
    }
  } else jsNote = "transformers.js not run";
  const js: Record<string, number> = {};
  const hfr: Record<string, number> = {};
  if (hf) hfr.load_s = hf.ready.load_s as number;
  let sameTokens: boolean | undefined, sameTokensHf: boolean | undefined;
  /** One warm-up each, then rounds of torchlm then every peer; the median seconds of each side. */
  const interleaved = async (ours: () => Promise<number>, peers: [Peer | null, string][]) => {
    await ours();
    for (const [p, cmd] of peers) if (p) await p.run(cmd);
    const mine: number[] = [], theirs: number[][] = peers.map(() => []);
    const last: ({ seconds: number; tokens?: number[] } | undefined)[] = peers.map(() => undefined);
    for (let r = 0; r < rounds; r++) {
      mine.push(await ours());
      for (const [i, [p, cmd]] of peers.entries()) if (p) { last[i] = await p.run(cmd); theirs[i]!.push(last[i]!.seconds); }
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
    const run = async () => { const t = performance.now(); const o = await model.forward({ input_ids: ids }); o.logits.dispose(); return (performance.now() - t) / 1000; };
    const r = await interleaved(run, [[hf, "forward"], [peer, "forward"]]);
    results.forward_tokens_per_s = (16 * 64) / r.ours;
    if (r.theirs[0]) hfr.forward_tokens_per_s = (16 * 64) / r.theirs[0];
    if (r.theirs[1]) js.forward_tokens_per_s = (16 * 64) / r.theirs[1];
  }
  {
    // Three fresh processes load as a user's script does (the harness's own heap makes its load slower) and give peak
    // RSS. Each alternates with a process that only first-writes as much fresh memory: a virtual machine's host may
    // take freed memory back, and touching it again then costs from 0.1 to over 1 s for 500 MB.
    const worker = (...args: string[]) => JSON.parse(execFileSync(process.execPath, [join(root, "dist", "bench", "rss-worker.js"), weightsDir, ...args], { encoding: "utf8" }).trim());
    const rs: { load_s: number; max_rss_bytes: number; baseline_rss_bytes: number; weights_bytes: number }[] = [], touch: number[] = [];
    for (let r = 0; r < 3; r++) {
      rs.push(worker());
      touch.push(worker("touch").touch_s);
    }
    results.from_pretrained_s = median(rs.map((r) => r.load_s));
    results.fresh_memory_first_touch_s = median(touch);
    results.inference_peak_rss_over_weights = median(rs.map((r) => r.max_rss_bytes / r.weights_bytes));
    results.inference_model_rss_over_weights = median(rs.map((r) => (r.max_rss_bytes - r.baseline_rss_bytes) / r.weights_bytes));
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
    const bw: number[] = [], bw1: number[] = [];
    let tokens: number[] = [];
    const r = await interleaved(async () => {
      bw.push(await readGBs());
      bw1.push(await readGBs(false));
      const g = await greedy(model);
      tokens = g.tokens;
      return g.seconds;
    }, [[hf, "decode1"], [peer, "decode1"]]);
    fp32Tokens = tokens;
    results.decode_b1_tokens_per_s = 128 / r.ours;
    results.memory_read_gbs_during_decode = median(bw);
    results.decode_b1_fraction_of_bandwidth_limit = results.decode_b1_tokens_per_s / ((results.memory_read_gbs_during_decode * 1e9) / weightsBytes);
    results.memory_read_one_thread_gbs_during_decode = median(bw1);
    results.decode_b1_fraction_of_one_thread_limit = results.decode_b1_tokens_per_s / ((results.memory_read_one_thread_gbs_during_decode * 1e9) / weightsBytes);
    if (r.theirs[0]) { hfr.decode_b1_tokens_per_s = 128 / r.theirs[0]; sameTokensHf = JSON.stringify(fp32Tokens) === JSON.stringify(r.last[0]?.tokens); }
    if (r.theirs[1]) { js.decode_b1_tokens_per_s = 128 / r.theirs[1]; sameTokens = JSON.stringify(fp32Tokens) === JSON.stringify(r.last[1]?.tokens); }
  }
  await peer?.stop();
  if (want("decode1") || want("bf16")) {
    // bfloat16 weights (float32 activations), batch 1: speed, and where greedy tokens first differ from fp32's
    const b16 = await GPT2LMHeadModel.from_pretrained(weightsDir, { dtype: "bfloat16" });
    let toks: number[] = [];
    const s = await timed(async () => { toks = (await greedy(b16)).tokens; }, 2, rounds);
    results.decode_b1_bf16_tokens_per_s = 128 / s;
    results.decode_b1_bf16_fraction_of_bandwidth_limit = results.decode_b1_bf16_tokens_per_s / ((results.memory_read_gbs_during_decode ?? (await readGBs())) * 1e9 / (weightsBytes / 2));
    fp32Tokens ??= (await greedy(model)).tokens;
    results.bf16_greedy_first_difference = fp32Tokens.findIndex((t, i) => t !== toks[i]);
    await b16.dispose();
  }
  if (want("decode8")) {
    const p8 = randIds(8, 8, 3);
    const run = async () => { const t = performance.now(); (await model.generate(p8, { max_new_tokens: 128 })).dispose(); return (performance.now() - t) / 1000; };
    const r = await interleaved(run, [[hf, "decode8"]]);
    results.decode_b8_tokens_per_s = (8 * 128) / r.ours;
    if (r.theirs[0]) hfr.decode_b8_tokens_per_s = (8 * 128) / r.theirs[0];
  }
  if (want("sample1")) {
    const s = await timed(async () => (await model.generate(prompt, { max_new_tokens: 128, do_sample: true, top_k: 50, top_p: 0.9, seed: 1 })).dispose(), 1, 3);
    results.sample_b1_tokens_per_s = 128 / s;
  }
  if (want("train")) {
    // One native training step (forward, loss, backward, clipping, AdamW) against transformers' Trainer steps with the
    // same arguments, at the tutorial's 16 x 64 and at 4 x 1024, where attention matters.
    model.train();
    const named = model.named_parameters();
    const opt = new binding.NativeAdamW([{ params: named.map(([, t]) => t._t), weight_decay: 0.1 }], 0.9, 0.999, 1e-8);
    const trainRounds = quick ? 2 : 3;
    const settings = [["train_tokens_per_s", 16, 64, false], ["train_long_tokens_per_s", 4, quick ? 256 : 1024, false],
      ["train_bf16_tokens_per_s", 16, 64, true]] as const;
    for (const [key, B, T, bf16] of settings) {
      const x = tensor(randIds(B, T, 1));
      const ours: number[] = [], theirs: number[] = [];
      const amp = bf16 ? 1 : 0;  // the binding's autocast code: 1 = bfloat16
      await opt.trainStep(model._native, x._t, null, x._t, 1, { lr: 1e-4, max_grad_norm: 1 }, amp);
      for (let r = 0; r < trainRounds; r++) {
        const t = performance.now();
        await opt.trainStep(model._native, x._t, null, x._t, 1, { lr: 1e-4, max_grad_norm: 1 }, amp);
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
    results.train_fraction_of_matmul_limit = (results.train_tokens_per_s! * flopsPerToken) / (results.matmul_gflops! * 1e9);
    model.eval();
  }
  await hf?.stop();
  results.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  await model.dispose();

  if (want("ddp") && binding.distributedAvailable) {
    // Data-parallel scaling (a figure, not a target): one global batch of 16 x 64 per step, as 1 process with
    // every core or as one rank per core with one thread each (c10d/Gloo over loopback).
    const cores = Math.min(availableParallelism(), 16);
    const steps = quick ? 6 : 3;
    const worker = join(root, "dist", "bench", "ddp-worker.js");
    const runOne = (cmd: string[], threadsEnv: string) => JSON.parse(execFileSync(process.execPath, cmd,
      { encoding: "utf8", env: { ...process.env, OMP_NUM_THREADS: threadsEnv, TORCHLM_NO_PROGRESS: "1" }, stdio: ["ignore", "pipe", "inherit"] }).trim().split("\n").pop()!);
    const single = runOne([worker, weightsDir, "16", String(steps)], String(cores));
    const multi = runOne([join(root, "dist", "lib", "cli.js"), "launch", "--nproc-per-node", String(cores), "--master-port", "0", worker, weightsDir, String(16 / cores), String(steps)], "1");
    results.ddp_ranks = cores;
    results.train_1proc_tokens_per_s = single.tokens_per_s;
    results.train_ddp_tokens_per_s = multi.tokens_per_s;
  }

  // plain PyTorch eager from Python (bench/baseline.py: the same loop written with torch.nn.functional), alone after the rest
  let py: Record<string, number> | null = null;
  let pyNote = "";
  try {
    const which = ["forward", "train", "decode1", "decode8"].filter(want).join(",");
    const python = await benchPython();
    const runPy = (what: string) => JSON.parse(execFileSync(python, [join(root, "bench", "baseline.py"), weightsDir, String(threads), what], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }));
    const p = runPy(which);
    // a fresh process's load + 32 tokens, for peak RSS as rss-worker measures it
    const r = runPy("rss");
    py = { ...p, inference_peak_rss_over_weights: r.max_rss_bytes / r.weights_bytes, runtime_rss_mb: r.baseline_rss_bytes / 1e6 };
  } catch (e) {
    pyNote = `PyTorch eager skipped: ${(e as Error).message.split("\n")[0]}`;
  }
  const L = results.train_long_context ?? 1024;
  const rows: [string, number | undefined, number | undefined, number | undefined, number | undefined][] = [
    ["forward tokens/s (16 x 64)", results.forward_tokens_per_s, hfr.forward_tokens_per_s, py?.forward_tokens_per_s, js.forward_tokens_per_s],
    ["training tokens/s (16 x 64, AdamW, clip)", results.train_tokens_per_s, hfr.train_tokens_per_s, py?.train_tokens_per_s, undefined],
    [`training tokens/s (4 x ${L}, AdamW, clip)`, results.train_long_tokens_per_s, hfr.train_long_tokens_per_s, undefined, undefined],
    ["training tokens/s (16 x 64, bf16 autocast)", results.train_bf16_tokens_per_s, hfr.train_bf16_tokens_per_s, undefined, undefined],
    ["greedy decode tokens/s (batch 1, 8 + 128)", results.decode_b1_tokens_per_s, hfr.decode_b1_tokens_per_s, py?.decode_b1_tokens_per_s, js.decode_b1_tokens_per_s],
    ["greedy decode tokens/s (batch 1, bf16 weights)", results.decode_b1_bf16_tokens_per_s, undefined, undefined, undefined],
    ["greedy decode tokens/s (batch 8, 8 + 128)", results.decode_b8_tokens_per_s, hfr.decode_b8_tokens_per_s, py?.decode_b8_tokens_per_s, undefined],
    ["sampling tokens/s (batch 1, top-k 50, top-p 0.9)", results.sample_b1_tokens_per_s, undefined, undefined, undefined],
    [`Trainer tokens/s, ${results.ddp_ranks} ranks x 1 thread (DDP, Gloo)`, results.train_ddp_tokens_per_s, undefined, undefined, undefined],
    [`Trainer tokens/s, 1 process x ${results.ddp_ranks} threads`, results.train_1proc_tokens_per_s, undefined, undefined, undefined],
    ["from_pretrained s", results.from_pretrained_s, hfr.load_s, py?.load_s, undefined],
    ["IMDB-sized load_dataset + map (25,000 reviews) s", results.imdb_load_and_tokenize_s, undefined, undefined, undefined],
  ].filter(([, v]) => v !== undefined) as [string, number | undefined, number | undefined, number | undefined, number | undefined][];
  const ratio = (k: string, v: number, p: number | undefined) => p === undefined ? "-" : k.endsWith(" s") ? (p / v).toFixed(2) + "x faster" : (v / p).toFixed(2) + "x";
  const cell = (v: number | undefined) => v === undefined ? "-" : v.toFixed(2);
  const table = [`| measure | torchlm | transformers ${hf?.ready.transformers ?? ""} | ratio | PyTorch eager | ratio | transformers.js | ratio |`, "|---|---:|---:|---:|---:|---:|---:|---:|",
    ...rows.map(([k, v, h, p, j]) => `| ${k} | ${cell(v)} | ${cell(h)} | ${ratio(k, v!, h)} | ${cell(p)} | ${ratio(k, v!, p)} | ${cell(j)} | ${ratio(k, v!, j)} |`)];
  const extra = [`matmul ${results.matmul_gflops!.toFixed(1)} GFLOP/s, memory read ${results.memory_read_gbs!.toFixed(1)} GB/s (measured in this run); libtorch ${torch_info().torch_version}${hf ? `; transformers ${hf.ready.transformers} on PyTorch ${hf.ready.torch}, attention "${hf.ready.attn_implementation}"` : ""}`,
    results.decode_b1_fraction_of_bandwidth_limit !== undefined ? `batch-1 decode at ${(100 * results.decode_b1_fraction_of_bandwidth_limit).toFixed(0)}% of the memory-bandwidth limit (memory read ${results.memory_read_gbs_during_decode!.toFixed(1)} GB/s, every thread streaming, measured between the decoding runs; forward, decode and training steps alternate with the peers' runs, medians of ${rounds}); ${(100 * results.decode_b1_fraction_of_one_thread_limit!).toFixed(0)}% of one thread's streaming limit (${results.memory_read_one_thread_gbs_during_decode!.toFixed(1)} GB/s, ${(results.memory_read_one_thread_gbs_during_decode! * 1e9 / weightsBytes).toFixed(0)} tokens/s)` : "",
    results.decode_b1_bf16_fraction_of_bandwidth_limit !== undefined ? `batch-1 decode with bf16 weights at ${(100 * results.decode_b1_bf16_fraction_of_bandwidth_limit).toFixed(0)}% of the memory-bandwidth limit for half the bytes` : "",
    results.bf16_greedy_first_difference !== undefined ? `bf16 weights: greedy tokens ${results.bf16_greedy_first_difference < 0 ? "equal fp32's for all 128" : `equal fp32's for the first ${results.bf16_greedy_first_difference} of 128`}` : "",
    results.train_fraction_of_matmul_limit !== undefined ? `training (16 x 64) at ${(100 * results.train_fraction_of_matmul_limit).toFixed(0)}% of the matmul limit (6 FLOPs per parameter and token plus attention's, as llm.c counts)` : "",
    `from_pretrained: the median of 3 fresh processes (${results.from_pretrained_in_harness_s!.toFixed(2)} s inside this harness, after its other work); first writing as much fresh memory alone took ${results.fresh_memory_first_touch_s!.toFixed(2)} s (median of 3 processes alternating with the loads); transformers' figure is its from_pretrained in the peer process`,
    `peak RSS of inference (a fresh process: load, decode 32 tokens) ${results.inference_peak_rss_over_weights!.toFixed(2)}x the weights with Node and libtorch's code (${results.runtime_rss_mb!.toFixed(0)} MB before loading), ${results.inference_model_rss_over_weights!.toFixed(2)}x for what loading and decoding added; PyTorch eager ${py?.inference_peak_rss_over_weights === undefined ? "not measured" : `${py.inference_peak_rss_over_weights.toFixed(2)}x (${py.runtime_rss_mb!.toFixed(0)} MB before loading)`}; peak RSS of this harness ${results.peak_rss_mb!.toFixed(0)} MB`,
    `peak RSS per dtype (load from the float32 file + 32 tokens, a fresh process each, over that dtype's weights): float32 ${results.inference_peak_rss_over_weights!.toFixed(2)}x (the model adds ${results.inference_model_rss_over_weights!.toFixed(2)}x), bfloat16 ${results.inference_peak_rss_bf16_over_weights!.toFixed(2)}x (the model adds ${results.inference_model_rss_bf16_over_weights!.toFixed(2)}x)`,
    results.imdb_load_and_tokenize_s !== undefined ? `IMDB-sized data: ${results.imdb_rows} rows, ${results.imdb_text_mb!.toFixed(1)} MB of text, loaded from parquet and tokenized (max_length 64) in ${results.imdb_load_and_tokenize_s.toFixed(1)} s; RSS grew ${results.imdb_rss_growth_mb!.toFixed(0)} MB` : "",
    results.train_ddp_tokens_per_s !== undefined ? `data-parallel scaling: ${results.ddp_ranks} ranks reach ${(results.train_ddp_tokens_per_s / results.train_1proc_tokens_per_s!).toFixed(2)}x the tokens/s of one process using the same cores` : "",
    sameTokensHf === undefined ? "" : `greedy tokens (batch 1, 128) ${sameTokensHf ? "identical to" : "DIFFERENT from"} transformers' generate on the same weights`,
    sameTokens === undefined ? "" : `greedy tokens (batch 1, 128) ${sameTokens ? "identical to" : "DIFFERENT from"} transformers.js's on the same weights`,
    hfNote, pyNote, jsNote].filter(Boolean);
  console.log("\n" + table.join("\n") + "\n\n" + extra.map((l) => `- ${l}`).join("\n"));
  if (only) {
    console.log("\n(a partial run with --only: bench/results/ left as it was)");
    return;
  }
  const dir = join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  const name = `${quick ? "tiny" : "gpt2-124m"}-cpu-${threads}t`;
  writeFileSync(join(dir, `${name}.json`), JSON.stringify({ date: stamp, threads, libtorch: torch_info().torch_version, torchlm: results, transformers: hf ? { ...hf.ready, ...hfr } : null, pytorch_eager: py, transformers_js: peer ? js : null, same_greedy_tokens_as_transformers: sameTokensHf, same_greedy_tokens_as_transformers_js: sameTokens, notes: [hfNote, pyNote, jsNote].filter(Boolean) }, null, 2) + "\n");
  writeFileSync(join(dir, `${name}.md`), `# ${name} (${stamp})\n\n${table.join("\n")}\n\n${extra.map((l) => `- ${l}`).join("\n")}\n`);
  console.log(`\nwritten to ${join(dir, name)}.{json,md}`);
}

await main();
