// npm run bench -- --only=serve: serving under load. torchlm serve (a child process, fp32 and q8) and, where built,
// llama.cpp's own llama-server (--parallel, continuous batching; f32 and q8_0) on the same 124M-shaped weights, driven
// by the same load generator over HTTP: closed-loop clients (each sends its next request when the last one ends) at
// 1, 4, 8, 16 and 32 clients, streamed completions of a 32-token prompt and 64 new tokens (ignore_eos); 16 clients of
// 128-token prompts (time to first token); 16 clients of a mix (prompts of 32-512 tokens, 64-256 new ones); and open-
// loop Poisson arrivals of that mix. Aggregate output tokens/s, time to first token and inter-token latency (p50,
// p99), and, for torchlm, the server's event-loop delay while serving. --only=soak: a long run against torchlm q8.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../lib/package_root.js";

export interface LoadResult {
  clients: number | string;
  requests: number;
  tokens_per_s: number;
  ttft_p50_ms: number;
  ttft_p99_ms: number;
  itl_p50_ms: number;
  itl_p99_ms: number;
  eventloop_max_ms?: number;
}

interface ServerUnderTest {
  name: string;
  url: string;
  model: string;
  process: ChildProcess;
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** n token ids below `vocab` (50000 fits GPT-2's), from the seed. */
function prompt(seed: number, n: number, vocab = 50000): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s % vocab;
  });
}

/** A row gives up after this long: a server that stops answering must not stall the bench. */
const ROW_TIMEOUT_MS = 180_000;

/** One streamed completion: when its first token came, and the gaps between the next ones. A connection that fails
 *  before any answer (a server's accept queue full under load) is tried once more. */
async function request(server: ServerUnderTest, ids: number[], maxTokens: number, signal?: AbortSignal) {
  const start = performance.now();
  const send = () =>
    fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        model: server.model,
        prompt: ids,
        max_tokens: maxTokens,
        temperature: 0,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      }),
      signal: signal ?? null,
    });
  const res = await send().catch((e) => {
    if (signal?.aborted) throw e;
    return send();
  });
  if (!res.ok || !res.body) throw new Error(`${server.name}: HTTP ${res.status}: ${await res.text()}`);
  const times: number[] = [];
  let usage: number | null = null;
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const part of res.body) {
    buffered += decoder.decode(part as Uint8Array, { stream: true });
    let at: number;
    while ((at = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, at);
      buffered = buffered.slice(at + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const data = JSON.parse(event.slice(6));
      // a chunk per token (llama-server sends one per token too; the last carries the finish reason)
      if (data.choices?.[0] && data.choices[0].finish_reason == null) times.push(performance.now());
      if (data.usage?.completion_tokens != null) usage = data.usage.completion_tokens;
    }
  }
  return {
    ttft: times.length ? times[0]! - start : NaN,
    gaps: times.slice(1).map((t, i) => t - times[i]!),
    // the server's count where it gives one (a chunk can carry several tokens, or none)
    tokens: usage ?? times.length,
  };
}

async function eventLoopMaxMs(server: ServerUnderTest): Promise<number | undefined> {
  if (!server.name.startsWith("torchlm")) return undefined;
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_max_seconds (\S+)/m.exec(text);
  return m ? Number(m[1]) * 1000 : undefined;
}

/** A request of a workload: its prompt and how many tokens it asks for. */
type Work = (seed: number) => { ids: number[]; out: number };
const fixed =
  (promptLen: number, out: number, vocab?: number): Work =>
  (seed) => ({ ids: prompt(seed, promptLen, vocab), out });
/** Prompts of 32-512 tokens and 64-256 new ones, uniform, from the seed. */
const mixed =
  (vocab?: number): Work =>
  (seed) => {
    const u = (k: number) => ((Math.imul(seed * 7919 + k, 2654435761) >>> 0) % 10_000) / 10_000;
    return { ids: prompt(seed, 32 + Math.floor(u(1) * 481), vocab), out: 64 + Math.floor(u(2) * 193) };
  };

/** Closed loop: `clients` clients, each sending its next request as the last ends, `perClient` requests each. */
async function closedLoop(
  server: ServerUnderTest,
  clients: number,
  perClient: number,
  work: Work,
  label: number | string = clients,
) {
  const ttft: number[] = [];
  const itl: number[] = [];
  let tokens = 0;
  await eventLoopMaxMs(server); // resets the server's event-loop histogram
  const signal = AbortSignal.timeout(ROW_TIMEOUT_MS);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let r = 0; r < perClient; r++) {
        const w = work(c * 1000 + r + 1);
        const x = await request(server, w.ids, w.out, signal);
        ttft.push(x.ttft);
        itl.push(...x.gaps);
        tokens += x.tokens;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return {
    clients: label,
    requests: clients * perClient,
    tokens_per_s: tokens / seconds,
    ttft_p50_ms: percentile(ttft, 50),
    ttft_p99_ms: percentile(ttft, 99),
    itl_p50_ms: percentile(itl, 50),
    itl_p99_ms: percentile(itl, 99),
    eventloop_max_ms: await eventLoopMaxMs(server),
  };
}

/** Open loop: requests arrive as a Poisson process of `rate` a second, whatever is still running. */
async function openLoop(server: ServerUnderTest, rate: number, count: number, work: Work) {
  const ttft: number[] = [];
  const itl: number[] = [];
  let tokens = 0;
  let s = 12345;
  const uniform = () => ((s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff) + 1) / 2 ** 31;
  const signal = AbortSignal.timeout(ROW_TIMEOUT_MS);
  const t0 = performance.now();
  const running: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const w = work(9000 + i);
    running.push(
      request(server, w.ids, w.out, signal).then((x) => {
        ttft.push(x.ttft);
        itl.push(...x.gaps);
        tokens += x.tokens;
      }),
    );
    await new Promise((r) => setTimeout(r, (-Math.log(uniform()) / rate) * 1000));
  }
  await Promise.all(running);
  const seconds = (performance.now() - t0) / 1000;
  return {
    clients: `Poisson ${rate}/s, mixed`,
    requests: count,
    tokens_per_s: tokens / seconds,
    ttft_p50_ms: percentile(ttft, 50),
    ttft_p99_ms: percentile(ttft, 99),
    itl_p50_ms: percentile(itl, 50),
    itl_p99_ms: percentile(itl, 99),
  };
}

async function waitReady(name: string, child: ChildProcess, pattern: RegExp): Promise<string> {
  let out = "";
  return new Promise<string>((resolve, reject) => {
    const look = (d: Buffer) => {
      out += d;
      const m = pattern.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout?.on("data", look);
    child.stderr?.on("data", look);
    child.on("exit", (code) => reject(new Error(`${name} exited ${code}: ${out.slice(-2000)}`)));
  });
}

async function startTorchlm(root: string, weights: string, dtype: string, slots: number): Promise<ServerUnderTest> {
  const child = spawn(
    process.execPath,
    [
      join(root, "dist", "lib", "cli.js"),
      "serve",
      "-m",
      weights,
      "--dtype",
      dtype,
      "--port",
      "0",
      "--max-batch",
      String(slots),
      // as llama-server's -c below: each slot holds the mix's longest request
      "--max-context-length",
      "768",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const url = await waitReady("torchlm serve", child, /on (http:\/\/127\.0\.0\.1:\d+)/);
  return { name: `torchlm ${dtype}`, url, model: weights, process: child };
}

async function startLlamaServer(bin: string, gguf: string, slots: number, threads: number): Promise<ServerUnderTest> {
  const port = 18000 + Math.floor(Math.random() * 1000);
  // each slot holds the mix's longest request (512 prompt tokens + 256 new ones)
  const child = spawn(
    bin,
    [
      "-m",
      gguf,
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--parallel",
      String(slots),
      "-c",
      String(slots * 768),
      "-t",
      String(threads),
      "-tb",
      String(threads),
      "--cont-batching",
      "--no-webui",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  await waitReady("llama-server", child, /(listening on http|server is listening)/);
  return {
    name: `llama-server ${gguf.split("-").pop()!.replace(".gguf", "")}`,
    url: `http://127.0.0.1:${port}`,
    model: "gguf",
    process: child,
  };
}

export interface ServeShape {
  /** llama-server's GGUF of the same weights, by type (f32, q8_0) */
  gguf: (type: string) => string;
  /** prompts' token ids below this */
  vocab?: number;
  /** the closed loop's client counts; the 128-token, mixed and Poisson rows only where this is not given */
  levels?: number[];
}

export async function serveBench(
  root: string,
  weights: string,
  threads: number,
  quick: boolean,
  only?: string[],
  shape?: ServeShape,
) {
  const levels = shape?.levels ?? (quick ? [1, 4] : [1, 4, 8, 16, 32]);
  const promptLen = 32,
    out = quick ? 16 : 64,
    vocab = shape?.vocab;
  const rows: { server: string; results: LoadResult[] }[] = [];
  // built by bench/build-llama-server.sh
  const llamaBin = join(root, "bench", ".peers", "llama.cpp-build", "bin", "llama-server");
  const gguf = shape?.gguf ?? ((f: string) => join(root, "bench", ".weights", `gguf-${f}.gguf`));
  const targets: [string, () => Promise<ServerUnderTest>][] = [
    ["torchlm float32", () => startTorchlm(root, weights, "float32", 16)],
    ["torchlm q8", () => startTorchlm(root, weights, "q8", 16)],
  ];
  if (!quick && existsSync(llamaBin))
    for (const f of ["f32", "q8_0"])
      if (existsSync(gguf(f)))
        targets.push([`llama-server ${f}`, () => startLlamaServer(llamaBin, gguf(f), 16, threads)]);
  // --servers=torchlm,llama-server q8_0, ...: those whose names start so
  for (const [name, start] of targets) {
    if (only && !only.some((w) => name.startsWith(w))) continue;
    const server = await start();
    try {
      console.log(`serve bench: ${server.name}`);
      await closedLoop(server, 1, 1, fixed(promptLen, 4, vocab)); // warm-up
      const results: LoadResult[] = [];
      const report = (r: LoadResult) => {
        console.log(
          `  ${r.clients} clients: ${r.tokens_per_s.toFixed(1)} tokens/s, ` +
            `TTFT p50 ${r.ttft_p50_ms.toFixed(0)} ms p99 ${r.ttft_p99_ms.toFixed(0)} ms, ` +
            `ITL p50 ${r.itl_p50_ms.toFixed(1)} ms p99 ${r.itl_p99_ms.toFixed(1)} ms` +
            (r.eventloop_max_ms !== undefined ? `, event loop max ${r.eventloop_max_ms.toFixed(1)} ms` : ""),
        );
        results.push(r);
      };
      for (const clients of levels) {
        const perClient = Math.max(2, Math.ceil(16 / clients));
        report(await closedLoop(server, clients, quick ? 1 : perClient, fixed(promptLen, out, vocab)));
      }
      if (!quick && !shape?.levels) {
        report(await closedLoop(server, 16, 2, fixed(128, out), "16, 128-token prompts"));
        report(await closedLoop(server, 16, 2, mixed(), "16, mixed 32-512 / 64-256"));
        report(await openLoop(server, 2, 24, mixed()));
      }
      rows.push({ server: server.name, results });
    } finally {
      await stopServer(server);
    }
  }
  return rows;
}

/** SIGTERM, then SIGKILL for a server that ignores it. */
async function stopServer(server: ServerUnderTest) {
  const exited = new Promise((r) => server.process.once("exit", r));
  server.process.kill("SIGTERM");
  const timer = setTimeout(() => server.process.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

async function metric(server: ServerUnderTest, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

export interface SoakResult {
  requests: number;
  clients: number;
  completed: number;
  cancelled: number;
  malformed_refused: number;
  failed: number;
  failures: string[];
  seconds: number;
  rss_after_warmup_mb: number;
  rss_end_mb: number;
  rss_change: number;
  active_at_end: number;
  alive: boolean;
  passed: boolean;
}

/** The soak: `total` requests to torchlm serve q8 from 16 closed-loop clients, 10% cancelled mid-stream by their
 *  client, 1% malformed (each must get a 400). It fails on any failed valid request, a dead server, active sequences
 *  not back to 0, or RSS at the end more than 5% from RSS after the first 10% of the requests. */
export async function soakBench(root: string, weights: string, total: number): Promise<SoakResult> {
  const server = await startTorchlm(root, weights, "q8", 16);
  const clients = 16;
  const r: SoakResult = {
    requests: total,
    clients,
    completed: 0,
    cancelled: 0,
    malformed_refused: 0,
    failed: 0,
    failures: [],
    seconds: 0,
    rss_after_warmup_mb: NaN,
    rss_end_mb: NaN,
    rss_change: NaN,
    active_at_end: NaN,
    alive: false,
    passed: false,
  };
  const fail = (what: string) => {
    r.failed++;
    if (r.failures.length < 10) r.failures.push(what);
  };
  let next = 0;
  const t0 = performance.now();
  try {
    await closedLoop(server, 1, 1, fixed(32, 4)); // warm-up
    const one = async (i: number) => {
      const w = { ids: prompt(i + 1, 16 + (i % 112)), out: 16 + (i % 49) };
      if (i % 100 === 50) {
        // malformed: a negative max_tokens, or a prompt that is no prompt
        const body = i % 200 === 50 ? { model: server.model, prompt: w.ids, max_tokens: -1 } : { model: server.model };
        const res = await fetch(`${server.url}/v1/completions`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
        const answer = (await res.json()) as { error?: { type?: string } };
        if (res.status === 400 && answer.error?.type === "invalid_request_error") r.malformed_refused++;
        else fail(`malformed request ${i}: HTTP ${res.status}`);
        return;
      }
      if (i % 10 === 3) {
        // cancelled by its client after its second token
        const controller = new AbortController();
        let seen = 0;
        try {
          const res = await fetch(`${server.url}/v1/completions`, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({
              model: server.model,
              prompt: w.ids,
              max_tokens: 200,
              ignore_eos: true,
              stream: true,
            }),
            signal: controller.signal,
          });
          if (!res.ok || !res.body) return fail(`cancelled request ${i}: HTTP ${res.status}`);
          for await (const part of res.body) {
            seen += (new TextDecoder().decode(part as Uint8Array).match(/^data: \{/gm) ?? []).length;
            if (seen >= 2) {
              controller.abort();
              break;
            }
          }
          r.cancelled++;
        } catch (e) {
          if (controller.signal.aborted) r.cancelled++;
          else fail(`cancelled request ${i}: ${(e as Error).message}`);
        }
        return;
      }
      try {
        const x = await request(server, w.ids, w.out);
        if (x.tokens === w.out) r.completed++;
        else fail(`request ${i}: ${x.tokens} of ${w.out} tokens`);
      } catch (e) {
        fail(`request ${i}: ${(e as Error).message}`);
      }
    };
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (next < total) {
          const i = next++;
          await one(i);
          if (i === Math.floor(total / 10))
            r.rss_after_warmup_mb = (await metric(server, "process_resident_memory_bytes")) / 2 ** 20;
          if (i % 1000 === 999) console.log(`  soak: ${i + 1} of ${total} sent, ${r.failed} failed`);
        }
      }),
    );
    r.seconds = (performance.now() - t0) / 1000;
    for (let k = 0; k < 100 && (await metric(server, "torchlm_active_sequences")) > 0; k++)
      await new Promise((res) => setTimeout(res, 50));
    r.active_at_end = await metric(server, "torchlm_active_sequences");
    r.rss_end_mb = (await metric(server, "process_resident_memory_bytes")) / 2 ** 20;
    r.rss_change = r.rss_end_mb / r.rss_after_warmup_mb - 1;
    r.alive = (await fetch(`${server.url}/health`)).status === 200 && server.process.exitCode === null;
  } finally {
    await stopServer(server);
  }
  r.passed = r.failed === 0 && r.alive && r.active_at_end === 0 && Math.abs(r.rss_change) <= 0.05;
  return r;
}

export function renderSoak(r: SoakResult): string[] {
  return [
    `Soak: ${r.requests} requests to torchlm serve q8 from ${r.clients} clients in ${r.seconds.toFixed(0)} s: ` +
      `**${r.passed ? "passed" : "failed"}**.`,
    "",
    "| outcome | count |",
    "|---|---:|",
    `| completed | ${r.completed} |`,
    `| cancelled by their client mid-stream | ${r.cancelled} |`,
    `| malformed, refused with 400 | ${r.malformed_refused} |`,
    `| failed | ${r.failed} |`,
    "",
    `RSS ${r.rss_after_warmup_mb.toFixed(0)} MB after the first 10% of the requests, ${r.rss_end_mb.toFixed(0)} MB ` +
      `at the end (${(r.rss_change * 100).toFixed(1)}%); active sequences at the end: ${r.active_at_end}; ` +
      `server alive: ${r.alive ? "yes" : "no"}.` +
      (r.failures.length ? `\n\nFirst failures: ${r.failures.join("; ")}` : ""),
  ];
}

/** The batch API beside transformers': generate_batch of 16 prompts (32 tokens) x 64 new tokens, greedy, in process
 * (torchlm float32 and q8; transformers' generate_batch on PyTorch 2, paged eager attention, float32). */
export async function batchApi(weights: string, threads: number, quick: boolean): Promise<LoadResult[]> {
  const { GPT2LMHeadModel } = await import("../lib/index.js");
  const n = quick ? 4 : 16,
    out = quick ? 8 : 64;
  const inputs = Array.from({ length: n }, (_, i) => prompt(i + 1, 32));
  const rows: LoadResult[] = [];
  const row = (name: string, tokens: number, seconds: number): LoadResult => ({
    clients: name,
    requests: n,
    tokens_per_s: tokens / seconds,
    ttft_p50_ms: NaN,
    ttft_p99_ms: NaN,
    itl_p50_ms: NaN,
    itl_p99_ms: NaN,
  });
  for (const dtype of ["float32", "q8"] as const) {
    const m = await GPT2LMHeadModel.from_pretrained(weights, { dtype });
    await m.generate_batch([inputs[0]!], { max_new_tokens: 2 });
    const t0 = performance.now();
    const r = await m.generate_batch(inputs, { max_new_tokens: out, eos_token_id: null });
    const seconds = (performance.now() - t0) / 1000;
    rows.push(
      row(
        `torchlm generate_batch ${dtype}`,
        r.reduce((a, x) => a + x.generated_tokens.length, 0),
        seconds,
      ),
    );
    await m.dispose();
  }
  if (!quick) {
    try {
      const { benchPython } = await import("./peers.js");
      const { execFileSync } = await import("node:child_process");
      const root = packageRoot();
      const res = JSON.parse(
        execFileSync(
          await benchPython(),
          [join(root, "bench", "hf_cb_peer.py"), weights, String(threads), String(n), "32", String(out)],
          { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
        )
          .trim()
          .split("\n")
          .pop()!,
      );
      rows.push(row("transformers generate_batch float32", res.tokens, res.seconds));
    } catch (e) {
      console.log(`transformers' continuous batching skipped: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  return rows;
}

/** Prefill of 512 tokens at batch 1 (a server's time to first token): torchlm's generate with one new token, per
 * dtype, beside llama.cpp's own llama-bench pp512 on the same weights (f32, f16, q8_0, q4_0), medians of 3. */
export async function prefillBench(root: string, weights: string, threads: number, shape?: ServeShape) {
  const { AutoModelForCausalLM } = await import("../lib/index.js");
  const ids = [prompt(7, 512, shape?.vocab)];
  const rows: { engine: string; format: string; tokens_per_s: number }[] = [];
  for (const dtype of ["float32", "bfloat16", "q8", "q4"] as const) {
    const m = await AutoModelForCausalLM.from_pretrained(weights, { dtype });
    await m.generate([ids[0]!.slice(0, 64)], { max_new_tokens: 1 });
    const times: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      await m.generate(ids, { max_new_tokens: 1 });
      times.push((performance.now() - t0) / 1000);
    }
    rows.push({ engine: "torchlm", format: dtype, tokens_per_s: 512 / percentile(times, 50) });
    await m.dispose();
  }
  const llamaBench = join(root, "bench", ".peers", "llama.cpp-build", "bin", "llama-bench");
  if (existsSync(llamaBench)) {
    const { execFileSync } = await import("node:child_process");
    for (const f of ["f32", "f16", "bf16", "q8_0", "q4_0"]) {
      const gguf = shape?.gguf(f) ?? join(root, "bench", ".weights", `gguf-${f}.gguf`);
      if (!existsSync(gguf)) continue;
      const out = execFileSync(
        llamaBench,
        ["-m", gguf, "-p", "512", "-n", "0", "-t", String(threads), "-r", "3", "-o", "json"],
        { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
      );
      const r = JSON.parse(out) as { n_prompt: number; avg_ts: number; samples_ts?: number[] }[];
      const row = r.find((x) => x.n_prompt === 512)!;
      // the same statistic as torchlm's: the median of the 3 runs
      rows.push({
        engine: "llama-bench",
        format: f,
        tokens_per_s: row.samples_ts ? percentile(row.samples_ts, 50) : row.avg_ts,
      });
    }
  }
  for (const r of rows) console.log(`  prefill 512 ${r.engine} ${r.format}: ${r.tokens_per_s.toFixed(0)} tokens/s`);
  return rows;
}

/** The markdown table of a serve bench: a row per server and load. */
export function renderServe(rows: { server: string; results: LoadResult[] }[]): string[] {
  const lines = [
    "| server | clients | requests | output tokens/s | x 1 client | TTFT p50 / p99 ms | ITL p50 / p99 ms " +
      "| event loop max ms |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
  ];
  for (const { server, results } of rows) {
    const one = results.find((r) => r.clients === 1)?.tokens_per_s ?? NaN;
    for (const r of results)
      lines.push(
        `| ${server} | ${r.clients} | ${r.requests} | ${r.tokens_per_s.toFixed(1)} | ` +
          `${(r.tokens_per_s / one).toFixed(2)} | ${r.ttft_p50_ms.toFixed(0)} / ${r.ttft_p99_ms.toFixed(0)} | ` +
          `${r.itl_p50_ms.toFixed(1)} / ${r.itl_p99_ms.toFixed(1)} | ` +
          `${r.eventloop_max_ms === undefined ? "" : r.eventloop_max_ms.toFixed(1)} |`,
      );
  }
  return lines;
}
