// generate() and generate_stream(): options merged and checked here, decoding runs natively.
import { AbortError, check, invalid, InvalidArgumentError, isPlainObject, withStack } from "./errors.js";
import { eosIds, GenerationConfig, GENERATION_KEYS, type GenerationOptions } from "./generation_config.js";
import { Tensor } from "./tensor.js";
import type { NativeGenerateConfig } from "./native.js";
import type { IdsLike, PreTrainedModel } from "./model.js";
import { idsTensor } from "./model.js";

/** A Hugging Face-style streamer: put() gets each step's new ids, end() is called at the end. */
export interface Streamer {
  put(tokens: number[]): void;
  end(): void;
}

export interface GenerateOptions extends GenerationOptions {
  attention_mask?: IdsLike | null;
  generation_config?: GenerationConfig;
  /** Seeds sampling for this call only. */
  seed?: number;
  /** Cancels the call: the Promise rejects with an AbortError. */
  signal?: AbortSignal;
  streamer?: Streamer;
}

const CALL_KEYS = ["attention_mask", "generation_config", "seed", "signal", "streamer"];

interface Prepared {
  ids: Tensor;
  mask: Tensor | null;
  native: NativeGenerateConfig;
  signal?: AbortSignal;
  streamer?: Streamer;
}

function prepare(model: PreTrainedModel, input_ids: IdsLike, options: GenerateOptions): Prepared {
  if (!isPlainObject(options)) throw invalid("options", "an object of generation options", options);
  for (const k of Object.keys(options)) {
    if (!CALL_KEYS.includes(k) && !(GENERATION_KEYS as readonly string[]).includes(k))
      throw new InvalidArgumentError(`Unknown generation option ${k}`);
  }
  const { attention_mask, generation_config, seed, signal, streamer, ...rest } = options;
  const base = generation_config ?? model.generation_config;
  if (!(base instanceof GenerationConfig)) throw invalid("generation_config", "a GenerationConfig", base);
  const g = base.merge(rest);
  const ids = idsTensor(input_ids, "input_ids");
  if (ids.shape.length !== 2)
    throw invalid("input_ids", "ids of shape [batch, sequence]", `shape [${ids.shape.join(", ")}]`);
  const T = ids.shape[1]!;
  const mask =
    attention_mask === undefined || attention_mask === null ? null : idsTensor(attention_mask, "attention_mask");
  if (mask && (mask.shape.length !== 2 || mask.shape[0] !== ids.shape[0] || mask.shape[1] !== T))
    throw invalid("attention_mask", `a mask of shape [${ids.shape.join(", ")}]`, `shape [${mask.shape.join(", ")}]`);
  if (seed !== undefined) check.integer("seed", seed, 0, Number.MAX_SAFE_INTEGER);
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid("signal", "an AbortSignal", signal);
  if (
    streamer !== undefined &&
    (typeof streamer !== "object" || typeof streamer.put !== "function" || typeof streamer.end !== "function")
  )
    throw invalid("streamer", "an object with put() and end()", streamer);
  return { ids, mask, native: nativeGenerateConfig(model, g, T, seed ?? null), signal, streamer };
}

/** A merged GenerationConfig as the native decoder's options, for a prompt of T tokens (checked against the model). */
export function nativeGenerateConfig(
  model: PreTrainedModel,
  g: GenerationConfig,
  T: number,
  seed: number | null,
): NativeGenerateConfig {
  // max_new_tokens wins; otherwise max_length counts the prompt, as in Hugging Face.
  const maxNew = g.max_new_tokens ?? g.max_length - T;
  if (maxNew < 1)
    throw new InvalidArgumentError(
      `The prompt has ${T} tokens, which is already max_length ${g.max_length}: set max_new_tokens`,
    );
  if (T + maxNew > model.config.max_position_embeddings) {
    const field = "n_positions" in model.config ? "n_positions" : "max_position_embeddings";
    throw new InvalidArgumentError(
      `The prompt (${T} tokens) and max_new_tokens (${maxNew}) are longer than the model's ${field} ` +
        `${model.config.max_position_embeddings}`,
    );
  }
  const eos = eosIds(g.eos_token_id);
  const pad = g.pad_token_id ?? eos[0] ?? 0;
  return {
    max_new_tokens: maxNew,
    min_new_tokens: g.min_new_tokens ?? 0,
    min_length: g.min_length,
    do_sample: g.do_sample,
    temperature: g.temperature,
    top_k: g.do_sample ? g.top_k : 0,
    top_p: g.top_p,
    min_p: g.min_p ?? 0,
    typical_p: g.typical_p,
    repetition_penalty: g.repetition_penalty,
    no_repeat_ngram_size: g.no_repeat_ngram_size,
    bad_words_ids: g.bad_words_ids ?? [],
    eos_token_ids: eos,
    pad_token_id: pad,
    num_beams: g.num_beams,
    num_return_sequences: g.num_return_sequences,
    length_penalty: g.length_penalty,
    early_stopping: g.early_stopping === true ? "always" : g.early_stopping === "never" ? "never" : "heuristic",
    use_cache: g.use_cache,
    seed,
  };
}

function abortError(signal: AbortSignal): AbortError {
  return new AbortError(signal.reason instanceof Error ? signal.reason.message : "generation was aborted");
}

async function run(model: PreTrainedModel, p: Prepared, onTokens: ((t: number[]) => void) | null): Promise<Tensor> {
  if (p.signal?.aborted) throw abortError(p.signal);
  const cancel = new Int32Array(new SharedArrayBuffer(4));
  const onAbort = () => Atomics.store(cancel, 0, 1);
  p.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const out = await withStack(() =>
      model._enqueue(() =>
        model._native.generate({
          input_ids: p.ids._t,
          attention_mask: p.mask?._t ?? null,
          config: p.native,
          on_tokens: onTokens,
          cancel,
        }),
      ),
    );
    return new Tensor(out);
  } catch (e) {
    if (p.signal?.aborted) throw abortError(p.signal);
    throw e;
  } finally {
    p.signal?.removeEventListener("abort", onAbort);
  }
}

export async function generate(
  model: PreTrainedModel,
  input_ids: IdsLike,
  options: GenerateOptions = {},
): Promise<Tensor> {
  const p = prepare(model, input_ids, options);
  if (!p.streamer) return run(model, p, null);
  const T = p.ids.shape[1]!;
  let sent = 0;
  const out = await run(model, p, (t) => {
    sent++;
    p.streamer!.put(t);
  });
  // Steps whose callback had not arrived when the call settled are sent from the result.
  const rows = out.tolist() as number[][];
  for (let s = T + sent; s < out.shape[1]!; s++) p.streamer.put(rows.map((r) => r[s]!));
  p.streamer.end();
  return out;
}

/** New token ids, one array (a value per row) per step, as they are made. */
export async function* generate_stream(
  model: PreTrainedModel,
  input_ids: IdsLike,
  options: GenerateOptions = {},
): AsyncGenerator<number[]> {
  const p = prepare(model, input_ids, options);
  if (p.native.num_beams !== 1)
    throw new InvalidArgumentError("generate_stream does not support beam search (num_beams > 1)");
  const T = p.ids.shape[1]!;
  const queue: number[][] = [];
  let wake: (() => void) | null = null;
  let finished = false;
  let failure: unknown = null;
  let sent = 0;
  let result: Tensor | null = null;
  const controller = new AbortController();
  const signal = p.signal ? AbortSignal.any([p.signal, controller.signal]) : controller.signal;
  const done = run(model, { ...p, signal }, (t) => {
    queue.push(t);
    wake?.();
  })
    .then(
      (r) => {
        result = r;
      },
      (e) => {
        failure = e;
      },
    )
    .finally(() => {
      finished = true;
      wake?.();
    });
  try {
    for (;;) {
      while (queue.length) {
        sent++;
        yield queue.shift()!;
      }
      if (finished) break;
      await new Promise<void>((r) => {
        wake = r;
      });
      wake = null;
    }
    await done;
    if (failure) throw failure;
    const r = result as Tensor | null;
    if (r) {
      const rows = r.tolist() as number[][];
      for (let s = T + sent; s < r.shape[1]!; s++) yield rows.map((row) => row[s]!);
      r.dispose();
    }
  } finally {
    if (!finished) {
      controller.abort();
      await done;
    }
  }
}
