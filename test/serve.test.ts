// torchlm serve against OpenAI's own clients (the openai npm package, and Python's in the test venv): completions
// equal to generate()'s tokens, streamed and not, stop strings, seeds, logprobs, cancellation, errors in OpenAI's body,
// 429 with Retry-After, the bearer key, Prometheus metrics, and SIGTERM's graceful exit through the CLI.
import { execFile, spawn } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { AutoTokenizer, GPT2LMHeadModel, get_num_threads, set_num_threads } from "../lib/index.js";
import { serve, type Server } from "../lib/serve.js";
import { ROOT, TEST_PYTHON } from "./helpers/python.js";
import { tinyModelDir } from "./helpers/tiny.js";

const KEY = "sk-test-key";
let dir: string;
let model: GPT2LMHeadModel;
let tok: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;
let server: Server;
let client: OpenAI;
let threads: number;

beforeAll(async () => {
  // One compute thread: CI runs two jest workers and a compiler on two cores, and two spinning OpenMP threads on a
  // shared core made the soak ten times slower (8 s alone, over 80 s beside three busy processes).
  threads = get_num_threads();
  set_num_threads(1);
  dir = tinyModelDir({ name: "serve-model" });
  tok = await AutoTokenizer.from_pretrained("gpt2");
  await tok.save_pretrained(dir);
  model = await GPT2LMHeadModel.from_pretrained(dir);
  server = await serve({ model, tokenizer: tok, model_name: "tiny", port: 0, max_batch: 4, api_key: KEY });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
});
afterAll(async () => {
  await server.close(1000);
  await model.dispose();
  set_num_threads(threads);
});

const PROMPT = "The quick brown fox";

async function generated(prompt: string, options: Record<string, unknown>): Promise<number[]> {
  const ids = tok.encode(prompt);
  const out = (await model.generate([ids], { eos_token_id: null, ...options })).tolist() as number[][];
  return out[0]!.slice(ids.length);
}

test("a greedy completion is generate()'s tokens, as text; usage counts them", async () => {
  const expected = tok.decode(await generated(PROMPT, { max_new_tokens: 12 }));
  const r = await client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 12, temperature: 0 });
  expect(r.object).toBe("text_completion");
  expect(r.choices[0]!.text).toBe(expected);
  expect(r.choices[0]!.finish_reason).toBe("length");
  expect(r.usage).toEqual({ prompt_tokens: tok.encode(PROMPT).length, completion_tokens: 12, total_tokens: 16 });
});

test("streaming gives the same text as server-sent events, then the finish reason", async () => {
  const whole = await client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 20, temperature: 0 });
  const stream = await client.completions.create({
    model: "tiny",
    prompt: PROMPT,
    max_tokens: 20,
    temperature: 0,
    stream: true,
  });
  let text = "";
  const reasons: (string | null)[] = [];
  for await (const chunk of stream) {
    text += chunk.choices[0]!.text;
    reasons.push(chunk.choices[0]!.finish_reason);
  }
  expect(text).toBe(whole.choices[0]!.text);
  expect(reasons.at(-1)).toBe("length");
  expect(reasons.slice(0, -1).every((r) => r === null)).toBe(true);
});

test("token-id prompts, n choices with a seed each: each equals generate() with that seed", async () => {
  const ids = tok.encode(PROMPT);
  const r = await client.completions.create({
    model: "tiny",
    prompt: ids,
    max_tokens: 10,
    temperature: 0.9,
    top_p: 0.95,
    n: 2,
    seed: 77,
  });
  const sampled = { max_new_tokens: 10, do_sample: true, temperature: 0.9, top_p: 0.95, top_k: 0 };
  expect(r.choices.map((c) => c.text)).toEqual([
    tok.decode(await generated(PROMPT, { ...sampled, seed: 77 })),
    tok.decode(await generated(PROMPT, { ...sampled, seed: 78 })),
  ]);
});

test("a stop string ends the text before it, with finish_reason stop; streamed, nothing past it shows", async () => {
  const full = tok.decode(await generated(PROMPT, { max_new_tokens: 24 }));
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
  const before = full.slice(0, full.indexOf(stop));
  const r = await client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 24, temperature: 0, stop });
  expect([r.choices[0]!.text, r.choices[0]!.finish_reason]).toEqual([before, "stop"]);
  const stream = await client.completions.create({
    model: "tiny",
    prompt: PROMPT,
    max_tokens: 24,
    temperature: 0,
    stop: [stop, "never-there"],
    stream: true,
  });
  let text = "";
  for await (const c of stream) text += c.choices[0]!.text;
  expect(text).toBe(before);
});

test("logprobs and echo", async () => {
  const r = await client.completions.create({
    model: "tiny",
    prompt: PROMPT,
    max_tokens: 5,
    temperature: 0,
    logprobs: 2,
    echo: true,
  });
  const c = r.choices[0]!;
  expect(c.text.startsWith(PROMPT)).toBe(true);
  const n = tok.encode(PROMPT).length;
  expect(c.logprobs!.tokens!.length).toBe(n + 5);
  expect(c.logprobs!.token_logprobs![0]).toBeNull(); // the first prompt token has no context
  for (const lp of c.logprobs!.token_logprobs!.slice(1)) expect(lp).toBeLessThanOrEqual(0);
  for (const top of c.logprobs!.top_logprobs!.slice(1)) expect(Object.keys(top!).length).toBeGreaterThanOrEqual(1);
  // greedy: each generated token is the likeliest one
  for (let i = n; i < n + 5; i++) {
    const top = c.logprobs!.top_logprobs![i]!;
    expect(Math.max(...Object.values(top))).toBeCloseTo(c.logprobs!.token_logprobs![i]!, 5);
  }
});

test("bad input gets OpenAI's error body: 400, 404 for an unknown model, 401 without the key", async () => {
  const bad = await client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: -1 }).catch((e) => e);
  expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
  expect(bad.status).toBe(400);
  expect(bad.error).toMatchObject({ type: "invalid_request_error", message: expect.stringContaining("max_tokens") });
  const long = await client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 500 }).catch((e) => e);
  expect([long.status, long.code]).toEqual([400, "context_length_exceeded"]);
  const unknown = await client.completions
    .create({ model: "gpt-5", prompt: PROMPT, max_tokens: 2 } as never)
    .catch((e) => e);
  expect([unknown.status, unknown.code]).toEqual([404, "model_not_found"]);
  const extra = await client.completions
    .create({ model: "tiny", prompt: PROMPT, max_tokens: 2, suffix: "x" } as never)
    .catch((e) => e);
  expect(extra.status).toBe(400);
  const nokey = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "wrong", maxRetries: 0 });
  const denied = await nokey.models.list().catch((e) => e);
  expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
  const raw = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: "{not json",
  });
  expect(raw.status).toBe(400);
  expect((await raw.json()).error.type).toBe("invalid_request_error");
});

test("/v1/models lists the model; /metrics has the counters and histograms", async () => {
  const models = await client.models.list();
  expect(models.data.map((m) => m.id)).toEqual(["tiny"]);
  const text = await (await fetch(`${server.url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } })).text();
  for (const name of [
    "torchlm_requests_total",
    "torchlm_generation_tokens_total",
    "torchlm_prompt_tokens_total",
    "torchlm_queue_depth",
    "torchlm_active_sequences",
    "torchlm_time_to_first_token_seconds_bucket",
    "torchlm_inter_token_latency_seconds_bucket",
  ])
    expect(text).toContain(name);
  expect(text).toMatch(/torchlm_requests_total\{route="\/v1\/completions",status="200"\} [1-9]/);
});

test("a client that disconnects cancels its request; a full queue gets 429 with Retry-After", async () => {
  // a model slow enough that a request is still running when its client goes
  const slowDir = tinyModelDir({ name: "serve-slow", config: { n_embd: 256, n_layer: 4, n_positions: 1024 } });
  const slow = await GPT2LMHeadModel.from_pretrained(slowDir);
  const small = await serve({ model: slow, tokenizer: tok, model_name: "slow", port: 0, max_batch: 1, max_queue: 0 });
  try {
    const c = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: "none", maxRetries: 0 });
    const controller = new AbortController();
    const stream = await c.completions.create(
      { model: "slow", prompt: PROMPT, max_tokens: 1000, temperature: 0, stream: true },
      { signal: controller.signal },
    );
    let chunks = 0;
    // the client ends its iteration when aborted
    for await (const _ of stream) if (++chunks === 2) controller.abort();
    expect(chunks).toBeLessThan(20);
    for (let i = 0; i < 100 && small.manager.running > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(small.manager.running).toBe(0);
    const metrics = await (await fetch(`${small.url}/metrics`)).text();
    expect(Number(/torchlm_generation_tokens_total (\d+)/.exec(metrics)![1])).toBeLessThan(500);

    const results = await Promise.all(
      [0, 1, 2].map((i) =>
        c.completions
          .create({ model: "slow", prompt: [1, 2, 3 + i], max_tokens: 200, temperature: 0 })
          .then(() => 200)
          .catch((e) => [e.status, e.headers?.get?.("retry-after")]),
      ),
    );
    expect(results).toContainEqual([429, "1"]);
    expect(results).toContain(200);
  } finally {
    await small.close(1000);
    await slow.dispose();
  }
}, 60_000);

test("Python's openai client: the same text, streamed or not, and a 400", async () => {
  const expected = tok.decode(await generated(PROMPT, { max_new_tokens: 9 }));
  const { stdout } = await promisify(execFile)(
    TEST_PYTHON,
    [join(ROOT, "scripts", "openai-client.py"), `${server.url}/v1`, KEY, "tiny", PROMPT, "9"],
    { encoding: "utf8" },
  );
  const out = JSON.parse(stdout.trim().split("\n").pop()!);
  expect(out.text).toBe(expected);
  expect(out.streamed).toBe(expected);
  expect(out.finish_reason).toBe("length");
  expect(out.usage.completion_tokens).toBe(9);
  expect(out.refused.status).toBe(400);
  expect(out.refused.body.type).toBe("invalid_request_error");
});

test("the CLI: 127.0.0.1, TORCHLM_API_KEY, --max-context-length; SIGTERM lets a request finish, exits 0", async () => {
  const cli = join(ROOT, "dist", "lib", "cli.js");
  const args = [cli, "serve", "-m", dir, "--port", "0", "--grace-period", "20", "--max-context-length", "80"];
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TORCHLM_API_KEY: "sk-from-env" },
  });
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (d) => {
      out += d;
      const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${out}`)));
  });
  // TORCHLM_API_KEY stands for --api-key
  expect((await fetch(`${url}/v1/models`)).status).toBe(401);
  const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sk-from-env", maxRetries: 0 });
  // a slot holds 80 tokens (the model has 128 positions): the prompt and 90 more do not fit
  const over = await c.completions.create({ model: dir, prompt: PROMPT, max_tokens: 90 }).catch((e) => e);
  expect([over.status, over.code]).toEqual([400, "context_length_exceeded"]);
  const stream = await c.completions.create({
    model: dir,
    prompt: PROMPT,
    max_tokens: 60,
    temperature: 0,
    stream: true,
  });
  let text = "";
  let reason: string | null = null;
  let signalled = false;
  for await (const chunk of stream) {
    text += chunk.choices[0]!.text;
    reason = chunk.choices[0]!.finish_reason ?? reason;
    if (!signalled) {
      signalled = true;
      child.kill("SIGTERM");
    }
  }
  const code = await new Promise<number | null>((r) =>
    child.exitCode !== null ? r(child.exitCode) : child.on("exit", r),
  );
  expect(code).toBe(0);
  expect(reason).toBe("length");
  expect(text).toBe(tok.decode(await generated(PROMPT, { max_new_tokens: 60 })));
  await expect(fetch(`${url}/health`)).rejects.toThrow();
}, 60_000);

test("a soak (CI's short version): 200 requests, 10% cancelled mid-stream, 1% malformed", async () => {
  const rss0 = process.memoryUsage().rss;
  const base = { model: "tiny", max_tokens: 24, temperature: 0.8, ignore_eos: true, stream: true };
  const post = (body: unknown, signal?: AbortSignal) =>
    fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
      signal,
    });
  let ok = 0,
    cancelled = 0,
    refused = 0;
  const one = async (i: number) => {
    if (i % 100 === 7) {
      const r = await post(i % 200 === 7 ? "{broken" : { ...base, max_tokens: "many" });
      expect(r.status).toBe(400);
      refused++;
      return;
    }
    const controller = new AbortController();
    const r = await post({ ...base, prompt: [1 + (i % 50), 2, 3], seed: i }, controller.signal);
    expect(r.status).toBe(200);
    let events = 0;
    try {
      for await (const _ of r.body!) if (++events === 3 && i % 10 === 3) controller.abort();
    } catch {
      cancelled++;
      return;
    }
    ok++;
  };
  // 8 clients at a time
  for (let i = 0; i < 200; i += 8) await Promise.all(Array.from({ length: 8 }, (_, k) => one(i + k)));
  expect([ok + cancelled + refused, refused]).toEqual([200, 2]);
  expect(cancelled).toBeGreaterThanOrEqual(15);
  for (let i = 0; i < 100 && server.manager.running + server.manager.waiting > 0; i++)
    await new Promise((r) => setTimeout(r, 20));
  expect([server.manager.running, server.manager.waiting]).toEqual([0, 0]);
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
  // the process lives on with its memory bounded (the short run's figure; the bench's soak measures a long one)
  expect(process.memoryUsage().rss).toBeLessThan(rss0 * 1.25 + 64e6);
}, 300_000);
