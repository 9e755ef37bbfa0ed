import { readFile } from "node:fs/promises";
import { check, invalid, InvalidArgumentError, isPlainObject } from "./errors.js";
import type { PretrainedConfig } from "./config.js";

/** Options of generate(), with Hugging Face's names and defaults. */
export interface GenerationOptions {
  max_length?: number;
  max_new_tokens?: number | null;
  min_length?: number;
  min_new_tokens?: number | null;
  do_sample?: boolean;
  early_stopping?: boolean | "never";
  num_beams?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  min_p?: number | null;
  typical_p?: number;
  repetition_penalty?: number;
  no_repeat_ngram_size?: number;
  bad_words_ids?: number[][] | null;
  num_return_sequences?: number;
  length_penalty?: number;
  pad_token_id?: number | null;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  use_cache?: boolean;
}

export const GENERATION_KEYS: readonly (keyof GenerationOptions)[] = [
  "max_length",
  "max_new_tokens",
  "min_length",
  "min_new_tokens",
  "do_sample",
  "early_stopping",
  "num_beams",
  "temperature",
  "top_k",
  "top_p",
  "min_p",
  "typical_p",
  "repetition_penalty",
  "no_repeat_ngram_size",
  "bad_words_ids",
  "num_return_sequences",
  "length_penalty",
  "pad_token_id",
  "bos_token_id",
  "eos_token_id",
  "use_cache",
];

/** Keys Python writes into generation_config.json that do not change decoding here. */
const IGNORED_KEYS = [
  "_from_model_config",
  "transformers_version",
  "output_scores",
  "return_dict_in_generate",
  "output_attentions",
  "output_hidden_states",
  "decoder_start_token_id",
];

/** Hugging Face's GenerationConfig: defaults, validation, merging and generation_config.json. */
export class GenerationConfig implements GenerationOptions {
  max_length = 20;
  max_new_tokens: number | null = null;
  min_length = 0;
  min_new_tokens: number | null = null;
  do_sample = false;
  early_stopping: boolean | "never" = false;
  num_beams = 1;
  temperature = 1.0;
  top_k = 50;
  top_p = 1.0;
  min_p: number | null = null;
  typical_p = 1.0;
  repetition_penalty = 1.0;
  no_repeat_ngram_size = 0;
  bad_words_ids: number[][] | null = null;
  num_return_sequences = 1;
  length_penalty = 1.0;
  pad_token_id: number | null = null;
  bos_token_id: number | null = null;
  eos_token_id: number | number[] | null = null;
  use_cache = true;

  constructor(options: GenerationOptions = {}) {
    this.update(options);
  }

  /** Applies options (unknown keys and bad values are errors naming them). */
  update(options: GenerationOptions | Record<string, unknown>): this {
    if (!isPlainObject(options) && !(options instanceof GenerationConfig))
      throw invalid("generation options", "an object", options);
    for (const [k, v] of Object.entries(options)) {
      if (IGNORED_KEYS.includes(k)) continue;
      if (!(GENERATION_KEYS as readonly string[]).includes(k))
        throw new InvalidArgumentError(`Unknown generation option ${k}`);
      if (v === undefined) continue;
      (this as unknown as Record<string, unknown>)[k] = v;
    }
    this.validate();
    return this;
  }

  validate(): void {
    check.integer("max_length", this.max_length, 1);
    if (this.max_new_tokens !== null) check.integer("max_new_tokens", this.max_new_tokens, 1);
    check.integer("min_length", this.min_length, 0);
    if (this.min_new_tokens !== null) check.integer("min_new_tokens", this.min_new_tokens, 0);
    check.boolean("do_sample", this.do_sample);
    if (this.early_stopping !== "never") check.boolean("early_stopping", this.early_stopping);
    check.integer("num_beams", this.num_beams, 1);
    check.number("temperature", this.temperature, 0, Infinity, true);
    check.integer("top_k", this.top_k, 0);
    check.number("top_p", this.top_p, 0, 1, true);
    if (this.min_p !== null) check.number("min_p", this.min_p, 0, 1);
    check.number("typical_p", this.typical_p, 0, 1, true);
    check.number("repetition_penalty", this.repetition_penalty, 0, Infinity, true);
    check.integer("no_repeat_ngram_size", this.no_repeat_ngram_size, 0);
    check.integer("num_return_sequences", this.num_return_sequences, 1);
    check.number("length_penalty", this.length_penalty);
    check.boolean("use_cache", this.use_cache);
    for (const k of ["pad_token_id", "bos_token_id"] as const) if (this[k] !== null) check.integer(k, this[k], 0);
    eosIds(this.eos_token_id).forEach((id, i) =>
      check.integer(Array.isArray(this.eos_token_id) ? `eos_token_id[${i}]` : "eos_token_id", id, 0),
    );
    if (this.bad_words_ids !== null) {
      if (
        !Array.isArray(this.bad_words_ids) ||
        this.bad_words_ids.some(
          (w) => !Array.isArray(w) || w.length === 0 || w.some((x) => !Number.isInteger(x) || x < 0),
        )
      )
        throw invalid("bad_words_ids", "a list of non-empty lists of token ids", this.bad_words_ids);
    }
    if (!this.do_sample && this.num_beams === 1 && this.num_return_sequences > 1)
      throw new InvalidArgumentError(
        "Greedy decoding does not support num_return_sequences other than 1: set do_sample: true or num_beams > 1",
      );
    if (this.num_beams > 1 && this.num_return_sequences > this.num_beams)
      throw new InvalidArgumentError(
        `num_return_sequences (${this.num_return_sequences}) must be at most num_beams (${this.num_beams})`,
      );
    if (this.num_beams > 1 && this.do_sample)
      throw new InvalidArgumentError(
        "Beam sampling (num_beams > 1 with do_sample) is not supported: use one or the other",
      );
  }

  /** A copy with options applied. */
  merge(options: GenerationOptions | Record<string, unknown>): GenerationConfig {
    return new GenerationConfig({ ...this.to_dict() } as GenerationOptions).update(options);
  }

  static from_model_config(config: PretrainedConfig): GenerationConfig {
    const g = new GenerationConfig();
    g.bos_token_id = config.bos_token_id ?? null;
    g.eos_token_id = config.eos_token_id ?? null;
    if (typeof config.pad_token_id === "number") g.pad_token_id = config.pad_token_id;
    return g;
  }

  static async from_json_file(path: string): Promise<GenerationConfig> {
    const json = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    return new GenerationConfig().update(json);
  }

  to_dict(): Record<string, unknown> {
    return Object.fromEntries(GENERATION_KEYS.map((k) => [k, (this as unknown as Record<string, unknown>)[k]]));
  }

  /** What Python writes: only the values that differ from the defaults. */
  to_json_string(): string {
    const d = new GenerationConfig();
    const out: Record<string, unknown> = {};
    for (const k of GENERATION_KEYS) {
      const v = (this as unknown as Record<string, unknown>)[k];
      if (JSON.stringify(v) !== JSON.stringify((d as unknown as Record<string, unknown>)[k])) out[k] = v;
    }
    return JSON.stringify(out, null, 2) + "\n";
  }
}

/** eos_token_id as a list: none, one or several (a chat model's end of turn beside its end of text). */
export function eosIds(eos: number | number[] | null): number[] {
  return eos === null ? [] : Array.isArray(eos) ? eos : [eos];
}
