// npm run bench -- --only=serve: serving under load. torchlm serve (a child process, fp32 and q8) and, where built,
// llama.cpp's own llama-server (--parallel, continuous batching; f32 and q8_0) on the same 124M-shaped weights, driven
// by the same load generator over HTTP: closed-loop clients (each sends its next request when the last one ends) at
// 1, 4, 8, 16 and 32 clients, streamed completions of a 32-token prompt and 64 new tokens (ignore_eos), and an
// open-loop run of Poisson arrivals. Aggregate output tokens/s, time to first token and inter-token latency (p50,
// p99), and, for torchlm, the server's event-loop delay while serving.
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

function prompt(seed: number, n: number): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s % 50000;
  });
}

/** One streamed completion: when its first token came, and the gaps between the next ones. */
async function request(server: ServerUnderTest, ids: number[], maxTokens: number) {
  const start = performance.now();
  const res = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      model: server.model,
      prompt: ids,
      max_tokens: maxTokens,
      temperature: 0,
      ignore_eos: true,
      stream: true,
    }),
  });
  if (!res.ok || !res.body) throw new Error(`${server.name}: HTTP ${res.status}: ${await res.text()}`);
  const times: number[] = [];
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
    }
  }
  return {
    ttft: times.length ? times[0]! - start : NaN,
    gaps: times.slice(1).map((t, i) => t - times[i]!),
    tokens: times.length,
  };
}

async function eventLoopMaxMs(server: ServerUnderTest): Promise<number | undefined> {
  if (!server.name.startsWith("torchlm")) return undefined;
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_max_seconds (\S+)/m.exec(text);
  return m ? Number(m[1]) * 1000 : undefined;
}

/** Closed loop: `clients` clients, each sending its next request as the last ends, `perClient` requests each. */
async function closedLoop(server: ServerUnderTest, clients: number, perClient: number, promptLen: number, out: number) {
  const ttft: number[] = [];
  const itl: number[] = [];
  let tokens = 0;
  await eventLoopMaxMs(server); // resets the server's event-loop histogram
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let r = 0; r < perClient; r++) {
        const x = await request(server, prompt(c * 1000 + r + 1, promptLen), out);
        ttft.push(x.ttft);
        itl.push(...x.gaps);
        tokens += x.tokens;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return {
    clients,
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
async function openLoop(server: ServerUnderTest, rate: number, count: number, promptLen: number, out: number) {
  const ttft: number[] = [];
  const itl: number[] = [];
  let tokens = 0;
  let s = 12345;
  const uniform = () => ((s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff) + 1) / 2 ** 31;
  const t0 = performance.now();
  const running: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    running.push(
      request(server, prompt(9000 + i, promptLen), out).then((x) => {
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
    clients: `Poisson ${rate}/s`,
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
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const url = await waitReady("torchlm serve", child, /on (http:\/\/127\.0\.0\.1:\d+)/);
  return { name: `torchlm ${dtype}`, url, model: weights, process: child };
}

async function startLlamaServer(bin: string, gguf: string, slots: number, threads: number): Promise<ServerUnderTest> {
  const port = 18000 + Math.floor(Math.random() * 1000);
  // each slot holds a prompt and its tokens (32 + 64, rounded up)
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
      String(slots * 128),
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

export async function serveBench(root: string, weights: string, threads: number, quick: boolean, only?: string[]) {
  const levels = quick ? [1, 4] : [1, 4, 8, 16, 32];
  const promptLen = 32,
    out = quick ? 16 : 64;
  const rows: { server: string; results: LoadResult[] }[] = [];
  // built by bench/build-llama-server.sh
  const llamaBin = join(root, "bench", ".peers", "llama.cpp-build", "bin", "llama-server");
  const gguf = (f: string) => join(root, "bench", ".weights", `gguf-${f}.gguf`);
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
      await closedLoop(server, 1, 1, promptLen, 4); // warm-up
      const results: LoadResult[] = [];
      for (const clients of levels) {
        const perClient = Math.max(2, Math.ceil(16 / clients));
        const r = await closedLoop(server, clients, quick ? 1 : perClient, promptLen, out);
        console.log(
          `  ${clients} clients: ${r.tokens_per_s.toFixed(1)} tokens/s, ` +
            `TTFT p50 ${r.ttft_p50_ms.toFixed(0)} ms p99 ${r.ttft_p99_ms.toFixed(0)} ms, ` +
            `ITL p50 ${r.itl_p50_ms.toFixed(1)} ms p99 ${r.itl_p99_ms.toFixed(1)} ms` +
            (r.eventloop_max_ms !== undefined ? `, event loop max ${r.eventloop_max_ms.toFixed(1)} ms` : ""),
        );
        results.push(r);
      }
      if (!quick) {
        const r = await openLoop(server, 2, 24, promptLen, out);
        console.log(`  ${r.clients}: ${r.tokens_per_s.toFixed(1)} tokens/s, TTFT p99 ${r.ttft_p99_ms.toFixed(0)} ms`);
        results.push(r);
      }
      rows.push({ server: server.name, results });
    } finally {
      server.process.kill("SIGTERM");
      await new Promise((r) => server.process.on("exit", r));
    }
  }
  return rows;
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
export async function prefillBench(root: string, weights: string, threads: number) {
  const { GPT2LMHeadModel } = await import("../lib/index.js");
  const ids = [prompt(7, 512)];
  const rows: { engine: string; format: string; tokens_per_s: number }[] = [];
  for (const dtype of ["float32", "bfloat16", "q8", "q4"] as const) {
    const m = await GPT2LMHeadModel.from_pretrained(weights, { dtype });
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
    for (const f of ["f32", "f16", "q8_0", "q4_0"]) {
      const gguf = join(root, "bench", ".weights", `gguf-${f}.gguf`);
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
