// `torchlm serve`: an OpenAI-compatible HTTP server (Fastify, its JSON-schema validation) over one continuous batching
// manager, with Prometheus metrics (prom-client). Every request's tokens come from the manager, so many clients share
// each decoding step.
import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ContinuousBatchingManager, GenerationOutput, RequestHandle, TokenOutput } from "./continuous_batching.js";
import { CHAT_PAGE } from "./chat_page.js";
import { InvalidArgumentError, TorchlmError } from "./errors.js";
import { eosIds } from "./generation_config.js";
import type { PreTrainedModel } from "./model.js";
import type { PreTrainedTokenizerFast as PreTrainedTokenizer } from "./tokenizer.js";

export interface ServeOptions {
  model: PreTrainedModel;
  /** Text prompts and text out; without one, prompts must be token ids and choices' text is empty. */
  tokenizer: PreTrainedTokenizer | null;
  /** The name /v1/models lists and responses carry. */
  model_name: string;
  host?: string;
  port?: number;
  /** Requests decoding at once (the manager's slots). */
  max_batch?: number;
  /** Requests waiting for a slot before new ones get 429. */
  max_queue?: number;
  /** Tokens a step computes (decoding rows, then prefill). */
  max_batch_tokens?: number;
  /** Tokens a slot holds, prompt and output (default: the model's positions; the KV cache is this times max_batch). */
  max_context_length?: number;
  /** Every route but /health and the chat page then needs `Authorization: Bearer <api_key>`. */
  api_key?: string | null;
  /** Fastify's logger (off by default). */
  logger?: boolean;
}

export interface Server {
  app: FastifyInstance;
  manager: ContinuousBatchingManager;
  url: string;
  /** Stops accepting; requests in flight finish within grace_ms, then are cancelled; then the manager stops. */
  close(grace_ms?: number): Promise<void>;
}

type Prompt = string | string[] | number[] | number[][];
/** What both endpoints take to sample. */
interface SamplingBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  repetition_penalty?: number | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  stop?: string | string[] | null;
  seed?: number | null;
  ignore_eos?: boolean | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  user?: string;
}
interface CompletionBody extends SamplingBody {
  prompt: Prompt;
  logprobs?: number | null;
  echo?: boolean | null;
}
type ContentPart = { type: string; text?: string };
interface ChatBody extends SamplingBody {
  messages: { role: string; content?: string | ContentPart[] | null; [key: string]: unknown }[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  tools?: Record<string, unknown>[] | null;
  tool_choice?: unknown;
  parallel_tool_calls?: boolean | null;
  /** vLLM's extension: variables of the chat template (`enable_thinking`, ...). */
  chat_template_kwargs?: Record<string, unknown> | null;
}

const nullable = (schema: Record<string, unknown>) => ({ anyOf: [schema, { type: "null" }] });
/** The sampling fields of both endpoints. */
const samplingProperties = {
  model: { type: "string" },
  max_tokens: nullable({ type: "integer", minimum: 1 }),
  temperature: nullable({ type: "number", minimum: 0, maximum: 2 }),
  top_p: nullable({ type: "number", exclusiveMinimum: 0, maximum: 1 }),
  top_k: nullable({ type: "integer", minimum: -1 }),
  min_p: nullable({ type: "number", minimum: 0, maximum: 1 }),
  repetition_penalty: nullable({ type: "number", exclusiveMinimum: 0 }),
  n: nullable({ type: "integer", minimum: 1, maximum: 16 }),
  stream: nullable({ type: "boolean" }),
  stream_options: nullable({
    type: "object",
    additionalProperties: false,
    properties: { include_usage: { type: "boolean" } },
  }),
  stop: nullable({
    anyOf: [{ type: "string" }, { type: "array", maxItems: 4, items: { type: "string", minLength: 1 } }],
  }),
  seed: nullable({ type: "integer", minimum: 0 }),
  // vLLM's and llama-server's extension: generate max_tokens whatever the tokens (benchmarks use it)
  ignore_eos: nullable({ type: "boolean" }),
  // accepted at their neutral value only: the engine has no presence or frequency penalty
  presence_penalty: nullable({ type: "number", const: 0 }),
  frequency_penalty: nullable({ type: "number", const: 0 }),
  user: { type: "string" },
} as const;

const chatSchema = {
  type: "object",
  required: ["model", "messages"],
  additionalProperties: false,
  properties: {
    ...samplingProperties,
    messages: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["role"],
        properties: {
          role: { enum: ["system", "developer", "user", "assistant", "tool"] },
          content: nullable({
            anyOf: [
              { type: "string" },
              {
                type: "array",
                items: { type: "object", required: ["type"], properties: { type: { type: "string" } } },
              },
            ],
          }),
          name: { type: "string" },
          tool_calls: { type: "array", items: { type: "object" } },
          tool_call_id: { type: "string" },
        },
      },
    },
    max_completion_tokens: nullable({ type: "integer", minimum: 1 }),
    logprobs: nullable({ type: "boolean" }),
    top_logprobs: nullable({ type: "integer", minimum: 0, maximum: 5 }),
    tools: nullable({ type: "array", items: { type: "object" } }),
    // the template is told of the tools; the reply is text, so a choice among them changes nothing here
    tool_choice: {},
    parallel_tool_calls: nullable({ type: "boolean" }),
    chat_template_kwargs: nullable({ type: "object" }),
  },
} as const;

const completionSchema = {
  type: "object",
  required: ["model", "prompt"],
  additionalProperties: false,
  properties: {
    ...samplingProperties,
    prompt: {
      anyOf: [
        { type: "string" },
        { type: "array", minItems: 1, items: { type: "string" } },
        { type: "array", minItems: 1, items: { type: "integer", minimum: 0 } },
        { type: "array", minItems: 1, items: { type: "array", minItems: 1, items: { type: "integer", minimum: 0 } } },
      ],
    },
    logprobs: nullable({ type: "integer", minimum: 0, maximum: 5 }),
    echo: nullable({ type: "boolean" }),
  },
} as const;

/** OpenAI's error body. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

function errorBody(e: HttpError) {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: "torchlm_requests_total",
    help: "HTTP requests by route and status code",
    labelNames: ["route", "status"],
    registers: [this.registry],
  });
  readonly promptTokens = new Counter({
    name: "torchlm_prompt_tokens_total",
    help: "Prompt tokens of accepted requests",
    registers: [this.registry],
  });
  readonly generatedTokens = new Counter({
    name: "torchlm_generation_tokens_total",
    help: "Tokens generated",
    registers: [this.registry],
  });
  readonly ttft = new Histogram({
    name: "torchlm_time_to_first_token_seconds",
    help: "From a request's arrival to its first token",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly itl = new Histogram({
    name: "torchlm_inter_token_latency_seconds",
    help: "Between a request's consecutive tokens",
    buckets: [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56],
    registers: [this.registry],
  });
  constructor(manager: ContinuousBatchingManager) {
    // the process's own: memory, and the event loop's delay (nodejs_eventloop_lag_max_seconds since the last scrape)
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "torchlm_queue_depth",
      help: "Requests waiting for a slot",
      registers: [this.registry],
      collect() {
        this.set(manager.waiting);
      },
    });
    new Gauge({
      name: "torchlm_active_sequences",
      help: "Requests holding a slot (prefilling or decoding)",
      registers: [this.registry],
      collect() {
        this.set(manager.running);
      },
    });
  }
}

/** Text out of tokens as they come: what is safe to show (no partial UTF-8 character, no possible start of a stop
 * string), and where a stop string ends the text. */
class Detokenizer {
  #tokens: number[] = [];
  #shown = 0; // characters already given out
  text = "";
  stopped = false;
  constructor(
    private readonly tokenizer: PreTrainedTokenizer | null,
    private readonly stop: string[],
    /** The tokens that end a reply: not part of its text. */
    private readonly eos: Set<number> = new Set(),
  ) {}

  /** The new text that can be shown after this token. */
  push(token: number): string {
    if (!this.tokenizer || this.stopped || this.eos.has(token)) return "";
    this.#tokens.push(token);
    let text = this.tokenizer.decode(this.#tokens);
    for (const s of this.stop) {
      const at = text.indexOf(s, Math.max(0, this.#shown - s.length + 1));
      if (at >= 0) {
        text = text.slice(0, at);
        this.stopped = true;
      }
    }
    this.text = text;
    let end = text.length;
    if (!this.stopped) {
      while (end > this.#shown && text[end - 1] === "\uFFFD") end--; // a character split across tokens
      // hold back what could begin a stop string
      for (const s of this.stop)
        for (let k = Math.min(s.length - 1, end - this.#shown); k > 0; k--)
          if (text.slice(end - k, end) === s.slice(0, k)) {
            end -= k;
            break;
          }
    }
    const out = text.slice(this.#shown, Math.max(end, this.#shown));
    this.#shown = Math.max(end, this.#shown);
    return out;
  }

  /** What was held back, at the end. */
  flush(): string {
    const out = this.text.slice(this.#shown);
    this.#shown = this.text.length;
    return out;
  }
}

interface Choice {
  index: number;
  handle: RequestHandle;
  prompt: number[];
  detok: Detokenizer;
  tokens: TokenOutput[];
}

export async function serve(options: ServeOptions): Promise<Server> {
  const { model, tokenizer, model_name } = options;
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 8000;
  const maxQueue = options.max_queue ?? 256;
  const apiKey = options.api_key ?? null;
  const manager = await model.init_continuous_batching({
    max_batch_size: options.max_batch ?? 16,
    ...(options.max_batch_tokens ? { max_batch_tokens: options.max_batch_tokens } : {}),
    ...(options.max_context_length ? { max_context_length: options.max_context_length } : {}),
  });
  const metrics = new Metrics(manager);
  const created = Math.floor(Date.now() / 1000);
  let draining = false;

  const app = Fastify({
    logger: options.logger ?? false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    bodyLimit: 32 << 20,
  });

  app.setErrorHandler((err: Error & { validation?: unknown; statusCode?: number }, _req, reply) => {
    const e =
      err instanceof HttpError
        ? err
        : err.validation
          ? new HttpError(400, `Invalid request: ${err.message}`, "invalid_request_error")
          : err instanceof InvalidArgumentError
            ? new HttpError(400, err.message, "invalid_request_error")
            : (err.statusCode ?? 500) < 500
              ? new HttpError(err.statusCode!, err.message, "invalid_request_error")
              : new HttpError(500, err instanceof TorchlmError ? err.message : "internal error", "server_error");
    if (e.status === 429) reply.header("Retry-After", "1");
    reply.status(e.status).send(errorBody(e));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send(errorBody(new HttpError(404, `No route ${req.method} ${req.url}`, "invalid_request_error")));
  });
  app.addHook("onRequest", async (req) => {
    // the chat page holds nothing: what it asks for next needs the key
    if (apiKey === null || req.url === "/health" || req.url === "/") return;
    if (req.headers.authorization !== `Bearer ${apiKey}`)
      throw new HttpError(401, "Incorrect API key provided", "invalid_request_error", null, "invalid_api_key");
  });
  app.addHook("onResponse", async (req, reply) => {
    metrics.requests.inc({ route: req.routeOptions.url ?? "unknown", status: String(reply.statusCode) });
  });

  app.get("/", async (_req, reply) => reply.type("text/html; charset=utf-8").send(CHAT_PAGE));
  app.get("/health", async (_req, reply) => {
    if (draining) return reply.status(503).send({ status: "draining" });
    return { status: "ok" };
  });
  app.get("/v1/models", async () => ({
    object: "list",
    data: [{ id: model_name, object: "model", created, owned_by: "torchlm" }],
  }));
  app.get("/metrics", async (_req, reply) => {
    reply.header("Content-Type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.post("/v1/completions", { schema: { body: completionSchema } }, async (req, reply) =>
    complete(req as FastifyRequest<{ Body: CompletionBody }>, reply),
  );
  app.post("/v1/chat/completions", { schema: { body: chatSchema } }, async (req, reply) =>
    chat(req as FastifyRequest<{ Body: ChatBody }>, reply),
  );

  function promptIds(prompt: Prompt): number[][] {
    const asIds = (p: string | number[]): number[] => {
      if (typeof p !== "string") return p;
      if (!tokenizer)
        throw new HttpError(400, "this server has no tokenizer: send the prompt as token ids", "invalid_request_error");
      return tokenizer.encode(p);
    };
    const list: (string | number[])[] =
      typeof prompt === "string"
        ? [prompt]
        : typeof prompt[0] === "number"
          ? [prompt as number[]]
          : (prompt as (string | number[])[]);
    const V = model.config.vocab_size;
    return list.map((p, i) => {
      const ids = asIds(p);
      if (ids.length === 0) throw new HttpError(400, `prompt ${i} is empty`, "invalid_request_error", "prompt");
      const bad = ids.find((t) => t >= V);
      if (bad !== undefined)
        throw new HttpError(
          400,
          `token id ${bad} is outside the vocabulary [0, ${V})`,
          "invalid_request_error",
          "prompt",
        );
      return ids;
    });
  }

  /** What both endpoints ask of the engine. */
  interface Run {
    body: SamplingBody;
    prompts: number[][];
    n: number;
    stop: string[];
    max_tokens: number;
    /** Tokens that end a reply beside the model's own eos (a chat template's end of turn); left out of the text. */
    eos: number[];
    /** Top logprobs per token, or -1 for none. */
    logprobs: number;
  }

  function checkModel(name: string) {
    if (name !== model_name)
      throw new HttpError(
        404,
        `The model ${name} does not exist: this server has ${model_name}`,
        "invalid_request_error",
        "model",
        "model_not_found",
      );
    if (draining) throw new HttpError(503, "the server is shutting down", "server_error");
  }

  /** Admits the run (its context and the queue), adds one request per prompt and choice, and cancels them when the
   *  client goes away before they finish. */
  function start(run: Run, reply: FastifyReply): { choices: Choice[]; promptTokens: number; done: () => void } {
    const { body: b, prompts, n, max_tokens } = run;
    const limit = manager.max_context_length;
    for (const p of prompts)
      if (p.length + max_tokens > limit)
        throw new HttpError(
          400,
          `This model's maximum context length is ${limit} tokens. However, you requested ${p.length + max_tokens} ` +
            `tokens (${p.length} in the prompt, ${max_tokens} for the completion).`,
          "invalid_request_error",
          "max_tokens",
          "context_length_exceeded",
        );
    if (manager.waiting + prompts.length * n > maxQueue + manager.max_batch_size - manager.running)
      throw new HttpError(
        429,
        "The server is busy: too many requests are queued; retry shortly",
        "requests",
        null,
        "rate_limit_exceeded",
      );
    const temperature = b.temperature ?? 1;
    const greedy = temperature === 0;
    const modelEos = eosIds(model.generation_config.eos_token_id);
    const eos = b.ignore_eos ? null : [...new Set([...modelEos, ...run.eos])];
    const sampling = {
      max_new_tokens: max_tokens,
      ...(eos === null || run.eos.length ? { eos_token_id: eos && eos.length ? eos : null } : {}),
      do_sample: !greedy,
      ...(greedy ? {} : { temperature, top_p: b.top_p ?? 1, top_k: b.top_k && b.top_k > 0 ? b.top_k : 0 }),
      ...(b.min_p ? { min_p: b.min_p } : {}),
      ...(b.repetition_penalty ? { repetition_penalty: b.repetition_penalty } : {}),
      logprobs: run.logprobs,
    };
    const hidden = new Set(eos ?? []);
    const choices: Choice[] = [];
    for (const [pi, p] of prompts.entries())
      for (let j = 0; j < n; j++)
        choices.push({
          index: pi * n + j,
          prompt: p,
          detok: new Detokenizer(tokenizer, run.stop, hidden),
          tokens: [],
          handle: manager.add_request(p, {
            ...sampling,
            // each of n choices its own seed, so that they differ and each is reproducible
            ...(b.seed != null ? { seed: b.seed + j } : {}),
          }),
        });
    const promptTokens = prompts.reduce((a, p) => a + p.length, 0) * n;
    metrics.promptTokens.inc(promptTokens);
    let finished = false;
    reply.raw.on("close", () => {
      if (!finished) for (const c of choices) manager.cancel_request(c.handle.request_id);
    });
    return { choices, promptTokens, done: () => (finished = true) };
  }

  /** A choice's tokens as they come, through its detokenizer; a stop string ends its request. */
  async function consume(c: Choice, arrived: number, onText: (text: string, t: TokenOutput | null) => void) {
    let last = 0;
    for await (const t of c.handle) {
      const now = performance.now();
      if (c.tokens.length === 0) metrics.ttft.observe((now - arrived) / 1000);
      else metrics.itl.observe((now - last) / 1000);
      last = now;
      metrics.generatedTokens.inc();
      c.tokens.push(t);
      onText(c.detok.push(t.token), t);
      if (c.detok.stopped) manager.cancel_request(c.handle.request_id);
    }
    const r = await c.handle.result;
    const rest = c.detok.flush();
    if (rest) onText(rest, null);
    return r;
  }

  function finishReason(c: Choice, r: GenerationOutput): "stop" | "length" {
    return c.detok.stopped || r.finish_reason === "stop" ? "stop" : "length";
  }

  /** The results of a whole (not streamed) run: a failure is a 500. */
  async function results(choices: Choice[], arrived: number): Promise<GenerationOutput[]> {
    const out = await Promise.all(choices.map((c) => consume(c, arrived, () => {})));
    if (out.some((r) => r.status === "failed"))
      throw new HttpError(500, out.find((r) => r.error)?.error ?? "generation failed", "server_error");
    return out;
  }

  const usage = (promptTokens: number, completionTokens: number) => ({
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  });

  /** Server-sent events, as OpenAI streams them: `send` each chunk, then `data: [DONE]`. */
  function openStream(reply: FastifyReply): { send: (data: unknown) => void; end: () => void } {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" });
    return {
      send: (data) => {
        if (!raw.destroyed) raw.write(`data: ${JSON.stringify(data)}\n\n`);
      },
      end: () => {
        if (!raw.destroyed) raw.write("data: [DONE]\n\n");
        raw.end();
      },
    };
  }

  async function complete(req: FastifyRequest<{ Body: CompletionBody }>, reply: FastifyReply) {
    const arrived = performance.now();
    const b = req.body;
    checkModel(b.model);
    const run: Run = {
      body: b,
      prompts: promptIds(b.prompt),
      n: b.n ?? 1,
      stop: stopList(b.stop),
      max_tokens: b.max_tokens ?? 16,
      eos: [],
      logprobs: b.logprobs ?? -1,
    };
    const { choices, promptTokens, done } = start(run, reply);
    const id = `cmpl-${randomUUID()}`;
    const echo = b.echo ?? false;
    const promptLogprobs = echo && b.logprobs != null ? await promptLogprobsOf(choices, b.logprobs) : null;
    const logprobsOf = (c: Choice, pl: ChoiceLogprobs | null): ChoiceLogprobs | null => {
      if (b.logprobs == null) return null;
      const own = tokenLogprobs(c.tokens, tokenizer, "");
      return pl ? concatLogprobs(pl, own) : own;
    };
    const object = { object: "text_completion", model: model_name };

    if (!b.stream) {
      const out = await results(choices, arrived).finally(done);
      if (out.some((r) => r.status === "cancelled") && reply.raw.destroyed) return reply;
      return {
        id,
        ...object,
        created: Math.floor(Date.now() / 1000),
        choices: choices.map((c, i) => ({
          index: c.index,
          text: (echo ? promptText(c.prompt) : "") + c.detok.text,
          logprobs: logprobsOf(c, promptLogprobs?.[i] ?? null),
          finish_reason: finishReason(c, out[i]!),
        })),
        usage: usage(
          promptTokens,
          choices.reduce((a, c) => a + c.tokens.length, 0),
        ),
      };
    }

    const stream = openStream(reply);
    const chunk = (index: number, text: string, logprobs: unknown, finish_reason: string | null) =>
      stream.send({
        id,
        ...object,
        created: Math.floor(Date.now() / 1000),
        choices: [{ index, text, logprobs, finish_reason }],
      });
    if (echo) choices.forEach((c, i) => chunk(c.index, promptText(c.prompt), promptLogprobs?.[i] ?? null, null));
    try {
      const out = await Promise.all(
        choices.map((c) =>
          consume(c, arrived, (text, t) => {
            // a chunk per token, as OpenAI's; with a tokenizer, none for a token whose text is held back
            if (text || b.logprobs != null || (t && !tokenizer))
              chunk(c.index, text, t && b.logprobs != null ? tokenLogprobs([t], tokenizer, "") : null, null);
          }).then((r) => {
            chunk(c.index, "", null, finishReason(c, r));
            return r;
          }),
        ),
      );
      if (b.stream_options?.include_usage)
        stream.send({
          id,
          ...object,
          created: Math.floor(Date.now() / 1000),
          choices: [],
          usage: usage(
            promptTokens,
            out.reduce((a, r) => a + r.generated_tokens.length, 0),
          ),
        });
    } finally {
      done();
      stream.end();
    }
    return reply;
  }

  /** The conversation through the tokenizer's chat template, with the prompt of an assistant turn. */
  function chatIds(b: ChatBody): number[] {
    if (!tokenizer)
      throw new HttpError(400, "this server has no tokenizer, so it has no chat template", "invalid_request_error");
    if (tokenizer.chat_template === null)
      throw new HttpError(
        400,
        `${model_name} has no chat template (tokenizer_config.json's chat_template or chat_template.jinja): ` +
          "use /v1/completions",
        "invalid_request_error",
        "messages",
      );
    const messages = b.messages.map((m, i) => ({ ...m, content: messageText(m.content, i) }));
    try {
      return tokenizer.apply_chat_template(messages, {
        add_generation_prompt: true,
        return_dict: false,
        ...(b.tools ? { tools: b.tools } : {}),
        ...(b.chat_template_kwargs ?? {}),
      }) as number[];
    } catch (e) {
      if (e instanceof InvalidArgumentError) throw new HttpError(400, e.message, "invalid_request_error", "messages");
      throw e;
    }
  }

  async function chat(req: FastifyRequest<{ Body: ChatBody }>, reply: FastifyReply) {
    const arrived = performance.now();
    const b = req.body;
    checkModel(b.model);
    const top = b.logprobs ? (b.top_logprobs ?? 0) : -1;
    const turnEnd = tokenizer?.eos_token_id;
    const prompt = chatIds(b);
    const run: Run = {
      body: b,
      prompts: [prompt],
      n: b.n ?? 1,
      stop: stopList(b.stop),
      // as OpenAI's: without a limit, the reply may fill the context
      max_tokens: b.max_completion_tokens ?? b.max_tokens ?? Math.max(1, manager.max_context_length - prompt.length),
      eos: turnEnd == null ? [] : [turnEnd],
      logprobs: top,
    };
    const { choices, promptTokens, done } = start(run, reply);
    const id = `chatcmpl-${randomUUID()}`;
    const object = { model: model_name, system_fingerprint: null };
    const logprobsOf = (tokens: TokenOutput[]) => (top < 0 ? null : { content: chatLogprobs(tokens, tokenizer!) });

    if (!b.stream) {
      const out = await results(choices, arrived).finally(done);
      if (out.some((r) => r.status === "cancelled") && reply.raw.destroyed) return reply;
      return {
        id,
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        ...object,
        choices: choices.map((c, i) => ({
          index: c.index,
          message: { role: "assistant", content: c.detok.text, refusal: null },
          logprobs: logprobsOf(c.tokens),
          finish_reason: finishReason(c, out[i]!),
        })),
        usage: usage(
          promptTokens,
          choices.reduce((a, c) => a + c.tokens.length, 0),
        ),
      };
    }

    const stream = openStream(reply);
    const chunk = (choice: Record<string, unknown>) =>
      stream.send({
        id,
        object: "chat.completion.chunk",
        created: Math.floor(Date.now() / 1000),
        ...object,
        choices: [choice],
      });
    // the first chunk of each choice carries the role, as OpenAI's do
    for (const c of choices)
      chunk({ index: c.index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
    try {
      const out = await Promise.all(
        choices.map((c) =>
          consume(c, arrived, (text, t) => {
            if (text || (t && top >= 0))
              chunk({
                index: c.index,
                delta: { content: text },
                logprobs: t ? logprobsOf([t]) : null,
                finish_reason: null,
              });
          }).then((r) => {
            chunk({ index: c.index, delta: {}, logprobs: null, finish_reason: finishReason(c, r) });
            return r;
          }),
        ),
      );
      if (b.stream_options?.include_usage)
        stream.send({
          id,
          object: "chat.completion.chunk",
          created: Math.floor(Date.now() / 1000),
          ...object,
          choices: [],
          usage: usage(
            promptTokens,
            out.reduce((a, r) => a + r.generated_tokens.length, 0),
          ),
        });
    } finally {
      done();
      stream.end();
    }
    return reply;
  }

  function promptText(p: number[]): string {
    return tokenizer ? tokenizer.decode(p) : "";
  }

  // echo with logprobs: the prompt's own tokens scored by one forward pass (the first has none, as in OpenAI's API)
  async function promptLogprobsOf(choices: Choice[], top: number): Promise<ChoiceLogprobs[]> {
    const out: ChoiceLogprobs[] = [];
    for (const c of choices) {
      const { logits } = await model.forward({ input_ids: [c.prompt] });
      const lp = logits.log_softmax(-1);
      const rows = lp.tolist() as number[][][];
      lp.dispose();
      logits.dispose();
      const toks: TokenOutput[] = c.prompt.map((t, i) => {
        if (i === 0) return { token: t, logprob: null, top_logprobs: [] };
        const row = rows[0]![i - 1]!;
        const best = top > 0 ? [...row.keys()].sort((x, y) => row[y]! - row[x]!).slice(0, top) : [];
        return { token: t, logprob: row[t]!, top_logprobs: best.map((k) => [k, row[k]!] as [number, number]) };
      });
      out.push(tokenLogprobs(toks, tokenizer, ""));
    }
    return out;
  }

  await app.listen({ host, port });
  const address = app.server.address();
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${typeof address === "object" && address ? address.port : port}`;

  return {
    app,
    manager,
    url,
    async close(grace_ms = 30_000) {
      draining = true;
      const closing = app.close();
      const timer = setTimeout(() => void manager.stop(), grace_ms);
      try {
        await closing;
      } finally {
        clearTimeout(timer);
        await manager.stop();
      }
    },
  };
}

function stopList(stop: string | string[] | null | undefined): string[] {
  return stop == null ? [] : typeof stop === "string" ? [stop] : stop;
}

/** A message's content for the template: text parts joined (the templates of text models read a string). */
function messageText(content: string | ContentPart[] | null | undefined, i: number): string | null | undefined {
  if (!Array.isArray(content)) return content;
  return content
    .map((p, k) => {
      if (p.type !== "text" || typeof p.text !== "string")
        throw new HttpError(
          400,
          `messages[${i}].content[${k}] is a ${JSON.stringify(p.type)} part: this model reads text parts only`,
          "invalid_request_error",
          "messages",
        );
      return p.text;
    })
    .join("");
}

/** Chat logprobs as OpenAI gives them: each token's text, logprob and UTF-8 bytes, with its top alternatives. */
function chatLogprobs(tokens: TokenOutput[], tokenizer: PreTrainedTokenizer) {
  const entry = (token: number, logprob: number) => {
    const text = tokenizer.decode([token]);
    return { token: text, logprob, bytes: [...Buffer.from(text, "utf8")] };
  };
  return tokens
    .filter((t) => t.logprob !== null)
    .map((t) => ({ ...entry(t.token, t.logprob!), top_logprobs: t.top_logprobs.map(([k, v]) => entry(k, v)) }));
}

interface ChoiceLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

function tokenLogprobs(tokens: TokenOutput[], tokenizer: PreTrainedTokenizer | null, before: string): ChoiceLogprobs {
  const piece = (t: number) => (tokenizer ? tokenizer.decode([t]) : String(t));
  let offset = before.length;
  const out: ChoiceLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const t of tokens) {
    const s = piece(t.token);
    out.tokens.push(s);
    out.token_logprobs.push(t.logprob);
    out.top_logprobs.push(
      t.logprob === null ? null : Object.fromEntries(t.top_logprobs.map(([k, v]) => [piece(k), v])),
    );
    out.text_offset.push(offset);
    offset += s.length;
  }
  return out;
}

function concatLogprobs(a: ChoiceLogprobs, b: ChoiceLogprobs): ChoiceLogprobs {
  const end = a.text_offset.length
    ? a.text_offset[a.text_offset.length - 1]! + a.tokens[a.tokens.length - 1]!.length
    : 0;
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: [...a.top_logprobs, ...b.top_logprobs],
    text_offset: [...a.text_offset, ...b.text_offset.map((o) => o + end)],
  };
}
