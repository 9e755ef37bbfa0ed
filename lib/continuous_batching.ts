// Continuous batching with Hugging Face's names: model.init_continuous_batching() gives a manager whose requests
// join and leave one running batch at every decoding step (native/core/serving/continuous_batching.h);
// model.generate_batch() runs a list of prompts through one.
import { check, invalid, InvalidArgumentError, isPlainObject, native, NativeError, withStack } from "./errors.js";
import { GenerationConfig, GENERATION_KEYS, type GenerationOptions } from "./generation_config.js";
import { nativeGenerateConfig } from "./generation.js";
import { binding, type NativeBatchEvent, type NativeContinuousBatching } from "./native.js";
import type { PreTrainedModel } from "./model.js";

export interface ContinuousBatchingOptions {
  /** Requests decoding at once: the KV cache's slots (default 16). More requests wait in the queue. */
  max_batch_size?: number;
  /** Tokens one step computes: a token of each running request, then chunks of joining prompts (default 512). A
   * smaller budget keeps each step short; a larger one lets a burst of prompts in within a step or two, which delays
   * each running request once rather than over many steps. */
  max_batch_tokens?: number;
  /** Each slot's length, prompt and new tokens together (default the model's max_position_embeddings). */
  max_context_length?: number;
}

export interface RequestOptions extends GenerationOptions {
  generation_config?: GenerationConfig;
  /** Seeds this request's sampling alone: the same tokens whatever runs beside it. */
  seed?: number;
  /** Report each token's log-probability and this many likeliest alternatives (0 to 20). */
  logprobs?: number;
  /** Cancels the request: its iterator ends and its result has status "cancelled". */
  signal?: AbortSignal;
}

/** A new token of a request, with its log-probability under the model when asked. */
export interface TokenOutput {
  token: number;
  logprob: number | null;
  /** [token, log-probability] of the likeliest tokens at that step, most likely first. */
  top_logprobs: [number, number][];
}

/** A request's end, as transformers' GenerationOutput. */
export interface GenerationOutput {
  request_id: string;
  prompt_ids: number[];
  generated_tokens: number[];
  logprobs: number[] | null;
  /** "stop": an end-of-sequence token; "length": max_new_tokens; "cancelled"; "error". */
  finish_reason: "stop" | "length" | "cancelled" | "error";
  status: "finished" | "cancelled" | "failed";
  error: string | null;
}

const CALL_KEYS = ["generation_config", "seed", "logprobs", "signal"];

/** A request in flight: iterate it for its tokens as they come, or await `result`. */
export class RequestHandle implements AsyncIterable<TokenOutput> {
  readonly request_id: string;
  readonly result: Promise<GenerationOutput>;
  #queue: TokenOutput[] = [];
  #ended = false;
  #wake: (() => void) | null = null;
  #iterated = false;
  #manager: ContinuousBatchingManager;

  /** @internal */
  constructor(manager: ContinuousBatchingManager, request_id: string, result: Promise<GenerationOutput>) {
    this.#manager = manager;
    this.request_id = request_id;
    this.result = result;
  }

  /** @internal */
  _push(t: TokenOutput | null): void {
    if (t) this.#queue.push(t);
    else this.#ended = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<TokenOutput> {
    if (this.#iterated) throw new InvalidArgumentError(`request ${this.request_id}'s tokens can be iterated once`);
    this.#iterated = true;
    let done = false;
    try {
      for (;;) {
        while (this.#queue.length) yield this.#queue.shift()!;
        if (this.#ended) break;
        await new Promise<void>((r) => {
          this.#wake = r;
        });
        this.#wake = null;
      }
      done = true;
    } finally {
      // a consumer that stops iterating early (break, an error) no longer wants the request
      if (!done) this.#manager.cancel_request(this.request_id);
    }
  }
}

interface Pending {
  handle: RequestHandle;
  prompt: number[];
  tokens: number[];
  logprobs: number[] | null;
  resolve: (o: GenerationOutput) => void;
  onAbort: (() => void) | null;
  signal: AbortSignal | undefined;
}

export class ContinuousBatchingManager {
  readonly model: PreTrainedModel;
  readonly max_batch_size: number;
  readonly max_batch_tokens: number;
  readonly max_context_length: number;
  #native: NativeContinuousBatching | null = null;
  #pending = new Map<number, Pending>();
  #ids = new Map<string, number>();
  #next = 0;
  #stopped = false;

  /** @internal use model.init_continuous_batching() */
  constructor(model: PreTrainedModel, options: Required<ContinuousBatchingOptions>) {
    this.model = model;
    this.max_batch_size = options.max_batch_size;
    this.max_batch_tokens = options.max_batch_tokens;
    this.max_context_length = options.max_context_length;
  }

  /** @internal */
  async _start(): Promise<this> {
    this.#native = await withStack(() =>
      binding.NativeContinuousBatching.create({
        model: this.model._native,
        max_batch_size: this.max_batch_size,
        max_context_length: this.max_context_length,
        max_batch_tokens: this.max_batch_tokens,
        on_events: (events) => this.#onEvents(events),
      }),
    );
    return this;
  }

  /** Requests holding a slot, and those queued for one. */
  get running(): number {
    return this.#native?.counts().running ?? 0;
  }
  get waiting(): number {
    return this.#native?.counts().waiting ?? 0;
  }

  /** Queues a request; it joins the running batch at the next step with a free slot. */
  add_request(input_ids: number[], options: RequestOptions = {}): RequestHandle {
    if (this.#stopped || !this.#native) throw new InvalidArgumentError("the continuous batching manager is stopped");
    if (!Array.isArray(input_ids) || input_ids.length === 0)
      throw invalid("input_ids", "a non-empty array of token ids", input_ids);
    input_ids.forEach((t, i) => check.integer(`input_ids[${i}]`, t, 0, this.model.config.vocab_size - 1));
    if (!isPlainObject(options)) throw invalid("options", "an object of generation options", options);
    for (const k of Object.keys(options))
      if (!CALL_KEYS.includes(k) && !(GENERATION_KEYS as readonly string[]).includes(k))
        throw new InvalidArgumentError(`Unknown generation option ${k}`);
    const { generation_config, seed, logprobs = -1, signal, ...rest } = options;
    const base = generation_config ?? this.model.generation_config;
    if (!(base instanceof GenerationConfig)) throw invalid("generation_config", "a GenerationConfig", base);
    const g = base.merge(rest);
    if (g.num_beams !== 1) throw new InvalidArgumentError("continuous batching does not run beam search (num_beams 1)");
    if (g.num_return_sequences !== 1)
      throw new InvalidArgumentError("continuous batching takes num_return_sequences 1: add the request again");
    if (seed !== undefined) check.integer("seed", seed, 0, Number.MAX_SAFE_INTEGER);
    if (logprobs !== -1) check.integer("logprobs", logprobs, 0, 20);
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid("signal", "an AbortSignal", signal);
    const config = nativeGenerateConfig(this.model, g, input_ids.length, seed ?? null);
    if (input_ids.length + config.max_new_tokens > this.max_context_length)
      throw new InvalidArgumentError(
        `The prompt (${input_ids.length} tokens) and max_new_tokens (${config.max_new_tokens}) are longer than the ` +
          `manager's max_context_length ${this.max_context_length}`,
      );
    const id = this.#next++;
    const request_id = `req_${id}`;
    let resolve!: (o: GenerationOutput) => void;
    const result = new Promise<GenerationOutput>((r) => (resolve = r));
    const handle = new RequestHandle(this, request_id, result);
    const p: Pending = {
      handle,
      prompt: [...input_ids],
      tokens: [],
      logprobs: logprobs >= 0 ? [] : null,
      resolve,
      onAbort: null,
      signal,
    };
    native(() => this.#native!.add({ id, input_ids: p.prompt, config, logprobs }));
    this.#pending.set(id, p);
    this.#ids.set(request_id, id);
    if (this.#pending.size === 1) this.#native.keepAlive({ on: true });
    if (signal) {
      p.onAbort = () => this.cancel_request(request_id);
      if (signal.aborted) p.onAbort();
      else signal.addEventListener("abort", p.onAbort, { once: true });
    }
    return handle;
  }

  /** Ends a request at the next step (its slot is freed then); unknown or finished ids are ignored. */
  cancel_request(request_id: string): void {
    const id = this.#ids.get(request_id);
    if (id !== undefined && this.#native) this.#native.cancel({ id });
  }

  /** Cancels every request and frees the KV cache. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await withStack(() => this.#native!.stop());
    // requests whose "cancelled" event had not arrived yet end here
    for (const id of [...this.#pending.keys()]) this.#finish(id, "cancelled", null);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #onEvents(events: NativeBatchEvent[]): void {
    for (const e of events) {
      const p = this.#pending.get(e.id);
      if (!p) continue;
      if ("token" in e) {
        p.tokens.push(e.token);
        p.logprobs?.push(e.logprob);
        p.handle._push({
          token: e.token,
          logprob: p.logprobs ? e.logprob : null,
          top_logprobs: e.top_logprobs,
        });
      } else {
        this.#finish(e.id, e.finish_reason, e.error);
      }
    }
  }

  #finish(id: number, reason: GenerationOutput["finish_reason"], error: string | null): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    this.#ids.delete(p.handle.request_id);
    if (p.onAbort) p.signal?.removeEventListener("abort", p.onAbort);
    if (this.#pending.size === 0 && this.#native) this.#native.keepAlive({ on: false });
    p.handle._push(null);
    p.resolve({
      request_id: p.handle.request_id,
      prompt_ids: p.prompt,
      generated_tokens: p.tokens,
      logprobs: p.logprobs,
      finish_reason: reason,
      status: reason === "cancelled" ? "cancelled" : reason === "error" ? "failed" : "finished",
      error,
    });
  }
}

export async function init_continuous_batching(
  model: PreTrainedModel,
  options: ContinuousBatchingOptions = {},
): Promise<ContinuousBatchingManager> {
  if (!isPlainObject(options)) throw invalid("options", "an object", options);
  check.knownKeys("init_continuous_batching", options, ["max_batch_size", "max_batch_tokens", "max_context_length"]);
  const n = model.config.max_position_embeddings;
  const {
    max_batch_size = 16,
    max_batch_tokens = Math.max(512, (max_batch_size ?? 16) + 16),
    max_context_length = n,
  } = options;
  check.integer("max_batch_size", max_batch_size, 1, 4096);
  check.integer("max_batch_tokens", max_batch_tokens, max_batch_size + 1, 1 << 20);
  check.integer("max_context_length", max_context_length, 2, n);
  if (model.device !== "cpu" && !model.device.startsWith("cuda"))
    throw new InvalidArgumentError(`continuous batching runs on the CPU or CUDA, not ${model.device}`);
  return new ContinuousBatchingManager(model, { max_batch_size, max_batch_tokens, max_context_length })._start();
}

/** Runs every prompt through one manager and returns their results in the inputs' order. */
export async function generate_batch(
  model: PreTrainedModel,
  inputs: number[][],
  generation_config?: GenerationConfig | RequestOptions,
  options: ContinuousBatchingOptions = {},
): Promise<GenerationOutput[]> {
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw invalid("inputs", "a non-empty array of token-id arrays", inputs);
  const request: RequestOptions =
    generation_config instanceof GenerationConfig ? { generation_config } : (generation_config ?? {});
  // slots as long as these requests need, not the model's whole context: a short batch then touches only the cache
  // memory it uses (first-touching a full-context cache cost more than the decoding, in the bench)
  const { generation_config: base = model.generation_config, seed: _s, logprobs: _l, signal: _g, ...rest } = request;
  const g = base instanceof GenerationConfig ? base.merge(rest) : null;
  const longest = Math.max(...inputs.map((i) => (Array.isArray(i) ? i.length : 0)));
  const need = g ? (g.max_new_tokens != null ? longest + g.max_new_tokens : g.max_length) : Infinity;
  const manager = await init_continuous_batching(model, {
    max_batch_size: Math.min(inputs.length, 16),
    max_context_length: Math.max(2, Math.min(model.config.max_position_embeddings, need)),
    ...options,
  });
  try {
    const handles = inputs.map((ids) => manager.add_request(ids, request));
    const results = await Promise.all(handles.map((h) => h.result));
    const failed = results.find((r) => r.status === "failed");
    if (failed) throw new NativeError(`generate_batch: ${failed.request_id} failed: ${failed.error}`);
    return results;
  } finally {
    await manager.stop();
  }
}
