import { readFile } from "node:fs/promises";
import type { NativeConfig } from "./addon_types.js";
import { check, InvalidArgumentError, isPlainObject } from "./errors.js";

/**
 * What every model's config shares (Hugging Face's PretrainedConfig): the names the engine reads, whatever the
 * architecture calls them (GPT2Config maps max_position_embeddings onto n_positions, as its attribute_map does).
 * Unknown fields are kept, as in Python.
 */
export abstract class PretrainedConfig {
  abstract model_type: string;
  architectures?: string[];
  abstract vocab_size: number;
  abstract max_position_embeddings: number;
  abstract hidden_size: number;
  abstract num_hidden_layers: number;
  abstract num_attention_heads: number;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  task_specific_params?: Record<string, Record<string, unknown>>;
  [key: string]: unknown;

  /** The parameter count this config implies. */
  abstract num_parameters(): number;
  /** The parameters of the input embeddings (num_parameters' exclude_embeddings leaves them out). */
  abstract embedding_parameters(): number;
  /** @internal What the native model reads; every key present. */
  abstract _native_config(): NativeConfig;
  /** The class names written to config.json's architectures. */
  protected abstract default_architectures(): string[];

  to_dict(): Record<string, unknown> {
    return { ...this, architectures: this.architectures ?? this.default_architectures() };
  }

  to_json_string(): string {
    return JSON.stringify(this.to_dict(), null, 2) + "\n";
  }
}

/** config.json as an object; an unreadable or malformed file is an error naming it. */
export async function readConfigJson(path: string): Promise<Record<string, unknown>> {
  let raw: string;
  try {
    raw = await readFile(path, "utf8");
  } catch (e) {
    throw new InvalidArgumentError(`Cannot read ${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new InvalidArgumentError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(json)) throw new InvalidArgumentError(`${path} does not hold a JSON object`);
  return json as Record<string, unknown>;
}

/** Hugging Face's activation names, each with the kernel it runs in the addon (which knows only the kernels). */
export const ACTIVATIONS = {
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu: "gelu",
  relu: "relu",
} as const;

/** Hugging Face's GPT2Config, with its names and defaults. Unknown fields are kept, as in Python. */
export class GPT2Config extends PretrainedConfig {
  model_type = "gpt2";
  vocab_size = 50257;
  n_positions = 1024;
  n_embd = 768;
  n_layer = 12;
  n_head = 12;
  n_inner: number | null = null;
  activation_function = "gelu_new";
  resid_pdrop = 0.1;
  embd_pdrop = 0.1;
  attn_pdrop = 0.1;
  layer_norm_epsilon = 1e-5;
  initializer_range = 0.02;
  scale_attn_weights = true;
  scale_attn_by_inverse_layer_idx = false;
  reorder_and_upcast_attn = false;
  use_cache = true;
  override bos_token_id = 50256;
  override eos_token_id: number | number[] = 50256;

  // Hugging Face's GPT2Config.attribute_map: the common names read and write GPT-2's own
  get max_position_embeddings(): number {
    return this.n_positions;
  }
  set max_position_embeddings(v: number) {
    this.n_positions = v;
  }
  get hidden_size(): number {
    return this.n_embd;
  }
  set hidden_size(v: number) {
    this.n_embd = v;
  }
  get num_hidden_layers(): number {
    return this.n_layer;
  }
  set num_hidden_layers(v: number) {
    this.n_layer = v;
  }
  get num_attention_heads(): number {
    return this.n_head;
  }
  set num_attention_heads(v: number) {
    this.n_head = v;
  }

  constructor(values: Record<string, unknown> = {}) {
    super();
    if (!isPlainObject(values)) throw new InvalidArgumentError("GPT2Config expects an object of config values");
    Object.assign(this, values);
    if (this.model_type !== "gpt2")
      throw new InvalidArgumentError(
        `Unknown model_type ${JSON.stringify(this.model_type)} for GPT2Config, which is gpt2's ` +
          `(AutoModelForCausalLM picks the class by model_type)`,
      );
    for (const k of ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head"] as const)
      check.integer(`config.${k}`, this[k], 1, 1e7);
    if (this.n_inner !== null && this.n_inner !== undefined) check.integer("config.n_inner", this.n_inner, 1, 1e8);
    if (this.n_embd % this.n_head !== 0)
      throw new InvalidArgumentError(
        `config.n_embd (${this.n_embd}) must be divisible by config.n_head (${this.n_head})`,
      );
    check.oneOf("config.activation_function", this.activation_function, Object.keys(ACTIVATIONS));
    for (const k of ["resid_pdrop", "embd_pdrop", "attn_pdrop"] as const) check.number(`config.${k}`, this[k], 0, 1);
    check.number("config.layer_norm_epsilon", this.layer_norm_epsilon, 0, 1, true);
    if (this.reorder_and_upcast_attn)
      throw new InvalidArgumentError("config.reorder_and_upcast_attn is not supported by torchlm");
  }

  /** Loads config.json; an unknown model_type is an error naming it. */
  static async from_json_file(path: string): Promise<GPT2Config> {
    return new GPT2Config(await readConfigJson(path));
  }

  /** The parameter count this config implies (the LM head is tied to wte). */
  num_parameters(): number {
    const E = this.n_embd,
      I = this.n_inner ?? 4 * E;
    const block = 2 * E + (3 * E * E + 3 * E) + (E * E + E) + 2 * E + (E * I + I) + (I * E + E);
    return this.vocab_size * E + this.n_positions * E + this.n_layer * block + 2 * E;
  }

  /** The token and position embeddings. */
  embedding_parameters(): number {
    return (this.vocab_size + this.n_positions) * this.n_embd;
  }

  protected default_architectures(): string[] {
    return ["GPT2LMHeadModel"];
  }

  /** @internal */
  _native_config(): NativeConfig {
    return {
      architecture: "gpt2",
      vocab_size: this.vocab_size,
      n_positions: this.n_positions,
      n_embd: this.n_embd,
      n_layer: this.n_layer,
      n_head: this.n_head,
      n_inner: this.n_inner ?? null,
      layer_norm_epsilon: this.layer_norm_epsilon,
      embd_pdrop: this.embd_pdrop,
      attn_pdrop: this.attn_pdrop,
      resid_pdrop: this.resid_pdrop,
      activation: ACTIVATIONS[this.activation_function as keyof typeof ACTIVATIONS],
      scale_attn_weights: this.scale_attn_weights,
      scale_attn_by_inverse_layer_idx: this.scale_attn_by_inverse_layer_idx,
    };
  }
}
