// The Llama family: Llama (SmolLM2, Llama 3.2), Qwen2 (Qwen2.5) and Qwen3. One native model (native/core/model/llama)
// computes all three; each config says only what differs (Qwen2's q/k/v biases, Qwen3's q/k norms), as transformers'
// modular files do.
import type { NativeLlamaConfig } from "../addon_types.js";
import { PretrainedConfig, readConfigJson } from "../config.js";
import { check, InvalidArgumentError, isPlainObject } from "../errors.js";
import { PreTrainedModel } from "../model.js";

/** transformers 5's rope_parameters (older configs' rope_theta and rope_scaling are read into it). */
export interface RopeParameters {
  rope_type: string;
  rope_theta: number;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
  [key: string]: unknown;
}

const ROPE_TYPES = ["default", "linear", "llama3"] as const;

/**
 * What Llama, Qwen2 and Qwen3 configs share, with LlamaConfig's names and defaults. Unknown fields are kept, as in
 * Python. Each concrete config sets its own defaults and then reads the given values (class fields are set after a
 * base constructor runs, so the base cannot).
 */
export abstract class LlamaFamilyConfig extends PretrainedConfig {
  vocab_size = 32000;
  hidden_size = 4096;
  intermediate_size = 11008;
  num_hidden_layers = 32;
  num_attention_heads = 32;
  num_key_value_heads: number | null = null;
  head_dim: number | null = null;
  hidden_act = "silu";
  max_position_embeddings = 2048;
  initializer_range = 0.02;
  rms_norm_eps = 1e-6;
  use_cache = true;
  tie_word_embeddings = false;
  rope_parameters: RopeParameters | null = null;
  attention_dropout = 0;

  /** Checks the values and reads the rope settings in either form into rope_parameters. */
  protected init(values: Record<string, unknown>): void {
    const name = this.constructor.name;
    if (!isPlainObject(values)) throw new InvalidArgumentError(`${name} expects an object of config values`);
    const model_type = this.model_type;
    Object.assign(this, values);
    if (this.model_type !== model_type)
      throw new InvalidArgumentError(
        `${name} is for model_type ${JSON.stringify(model_type)}, not ${JSON.stringify(this.model_type)}`,
      );
    for (const k of [
      "vocab_size",
      "hidden_size",
      "intermediate_size",
      "num_hidden_layers",
      "num_attention_heads",
      "max_position_embeddings",
    ] as const)
      check.integer(`config.${k}`, this[k], 1, 1e8);
    const H = this.num_attention_heads;
    this.num_key_value_heads ??= H;
    check.integer("config.num_key_value_heads", this.num_key_value_heads, 1, H);
    if (H % this.num_key_value_heads !== 0)
      throw new InvalidArgumentError(
        `config.num_attention_heads (${H}) must be divisible by config.num_key_value_heads ` +
          `(${this.num_key_value_heads})`,
      );
    if (this.head_dim === null || this.head_dim === undefined) {
      if (this.hidden_size % H !== 0)
        throw new InvalidArgumentError(
          `config.hidden_size (${this.hidden_size}) must be divisible by config.num_attention_heads (${H}) when ` +
            `config.head_dim is not given`,
        );
      this.head_dim = this.hidden_size / H;
    }
    check.integer("config.head_dim", this.head_dim, 2, 1e5);
    if (this.head_dim % 2 !== 0) throw new InvalidArgumentError(`config.head_dim (${this.head_dim}) must be even`);
    check.oneOf("config.hidden_act", this.hidden_act, ["silu"]);
    check.number("config.rms_norm_eps", this.rms_norm_eps, 0, 1, true);
    check.number("config.attention_dropout", this.attention_dropout, 0, 1);
    check.number("config.initializer_range", this.initializer_range, 0, 10);
    check.boolean("config.tie_word_embeddings", this.tie_word_embeddings);
    if (
      this.use_sliding_window === true ||
      (Array.isArray(this.layer_types) && this.layer_types.some((t) => t !== "full_attention"))
    )
      throw new InvalidArgumentError(
        `config.use_sliding_window / sliding_attention layers are not supported by torchlm`,
      );
    this.rope_parameters = this.readRope();
  }

  /** transformers 5's rope_parameters, or the older rope_theta and rope_scaling ("type" or "rope_type"). */
  private readRope(): RopeParameters {
    const given = this.rope_parameters ?? (this.rope_scaling as Record<string, unknown> | null | undefined) ?? {};
    if (!isPlainObject(given)) throw new InvalidArgumentError("config.rope_parameters must be an object");
    const g = given as Record<string, unknown>;
    const rope_type = (g.rope_type ?? g.type ?? "default") as string;
    const rope_theta = (g.rope_theta ?? this.rope_theta ?? 10000) as number;
    check.oneOf("config.rope_parameters.rope_type", rope_type, ROPE_TYPES);
    check.number("config.rope_parameters.rope_theta", rope_theta, 0, Infinity, true);
    const rope: RopeParameters = { ...g, rope_type, rope_theta };
    delete rope.type;
    if (rope_type !== "default") check.number("config.rope_parameters.factor", rope.factor, 0, Infinity, true);
    if (rope_type === "llama3") {
      check.number("config.rope_parameters.low_freq_factor", rope.low_freq_factor, 0, Infinity, true);
      check.number("config.rope_parameters.high_freq_factor", rope.high_freq_factor, 0, Infinity, true);
      check.integer(
        "config.rope_parameters.original_max_position_embeddings",
        rope.original_max_position_embeddings,
        1,
        1e9,
      );
      if (rope.high_freq_factor === rope.low_freq_factor)
        throw new InvalidArgumentError("config.rope_parameters: high_freq_factor must differ from low_freq_factor");
    }
    delete this.rope_theta;
    delete this.rope_scaling;
    return rope;
  }

  /** The family's switches: biases on q/k/v, on o_proj and on the MLP; Qwen3's q/k norms. */
  protected abstract switches(): Pick<NativeLlamaConfig, "qkv_bias" | "o_bias" | "mlp_bias" | "qk_norm">;

  num_parameters(): number {
    const E = this.hidden_size,
      I = this.intermediate_size,
      D = this.head_dim!,
      Q = this.num_attention_heads * D,
      KV = this.num_key_value_heads! * D;
    const s = this.switches();
    const attn =
      E * Q + 2 * E * KV + Q * E + (s.qkv_bias ? Q + 2 * KV : 0) + (s.o_bias ? E : 0) + (s.qk_norm ? 2 * D : 0);
    const mlp = 3 * E * I + (s.mlp_bias ? 2 * I + E : 0);
    const head = this.tie_word_embeddings ? 0 : this.vocab_size * E;
    return this.vocab_size * E + this.num_hidden_layers * (attn + mlp + 2 * E) + E + head;
  }

  embedding_parameters(): number {
    return this.vocab_size * this.hidden_size;
  }

  /** @internal */
  _native_config(): NativeLlamaConfig {
    const r = this.rope_parameters!;
    return {
      architecture: "llama",
      vocab_size: this.vocab_size,
      max_position_embeddings: this.max_position_embeddings,
      hidden_size: this.hidden_size,
      intermediate_size: this.intermediate_size,
      num_hidden_layers: this.num_hidden_layers,
      num_attention_heads: this.num_attention_heads,
      num_key_value_heads: this.num_key_value_heads!,
      head_dim: this.head_dim!,
      rms_norm_eps: this.rms_norm_eps,
      attention_dropout: this.attention_dropout,
      initializer_range: this.initializer_range,
      tie_word_embeddings: this.tie_word_embeddings,
      ...this.switches(),
      rope: {
        rope_type: r.rope_type as NativeLlamaConfig["rope"]["rope_type"],
        rope_theta: r.rope_theta,
        factor: r.factor ?? 1,
        low_freq_factor: r.low_freq_factor ?? 1,
        high_freq_factor: r.high_freq_factor ?? 4,
        original_max_position_embeddings: r.original_max_position_embeddings ?? this.max_position_embeddings,
      },
    };
  }
}

/** Hugging Face's LlamaConfig. */
export class LlamaConfig extends LlamaFamilyConfig {
  model_type = "llama";
  override bos_token_id: number | null = 1;
  override eos_token_id: number | number[] | null = 2;
  attention_bias = false;
  mlp_bias = false;
  pretraining_tp = 1;

  constructor(values: Record<string, unknown> = {}) {
    super();
    this.init(values);
    check.boolean("config.attention_bias", this.attention_bias);
    check.boolean("config.mlp_bias", this.mlp_bias);
  }
  static async from_json_file(path: string): Promise<LlamaConfig> {
    return new LlamaConfig(await readConfigJson(path));
  }
  protected switches() {
    return { qkv_bias: this.attention_bias, o_bias: this.attention_bias, mlp_bias: this.mlp_bias, qk_norm: false };
  }
  protected default_architectures(): string[] {
    return ["LlamaForCausalLM"];
  }
}

/** Hugging Face's Qwen2Config: Llama with biases on q_proj, k_proj and v_proj. */
export class Qwen2Config extends LlamaFamilyConfig {
  model_type = "qwen2";
  override vocab_size = 151936;
  override intermediate_size = 22016;
  override max_position_embeddings = 32768;
  use_sliding_window = false;

  constructor(values: Record<string, unknown> = {}) {
    super();
    this.init(values);
  }
  static async from_json_file(path: string): Promise<Qwen2Config> {
    return new Qwen2Config(await readConfigJson(path));
  }
  protected switches() {
    return { qkv_bias: true, o_bias: false, mlp_bias: false, qk_norm: false };
  }
  protected default_architectures(): string[] {
    return ["Qwen2ForCausalLM"];
  }
}

/** Hugging Face's Qwen3Config: Llama with an RMSNorm on each head's query and key. */
export class Qwen3Config extends LlamaFamilyConfig {
  model_type = "qwen3";
  override vocab_size = 151936;
  override intermediate_size = 22016;
  override max_position_embeddings = 32768;
  override head_dim: number | null = 128;
  attention_bias = false;
  use_sliding_window = false;

  constructor(values: Record<string, unknown> = {}) {
    super();
    this.init(values);
    check.boolean("config.attention_bias", this.attention_bias);
  }
  static async from_json_file(path: string): Promise<Qwen3Config> {
    return new Qwen3Config(await readConfigJson(path));
  }
  protected switches() {
    return { qkv_bias: this.attention_bias, o_bias: this.attention_bias, mlp_bias: false, qk_norm: true };
  }
  protected default_architectures(): string[] {
    return ["Qwen3ForCausalLM"];
  }
}

/** Llama with a language-modelling head (tied to the token embeddings where the config says so). */
export class LlamaForCausalLM extends PreTrainedModel {
  static override config_class = LlamaConfig;
  static override architectures: readonly string[] = ["LlamaForCausalLM"];
  static override quantizable = true;
  declare config: LlamaConfig;
}

export class Qwen2ForCausalLM extends PreTrainedModel {
  static override config_class = Qwen2Config;
  static override architectures: readonly string[] = ["Qwen2ForCausalLM"];
  static override quantizable = true;
  declare config: Qwen2Config;
}

export class Qwen3ForCausalLM extends PreTrainedModel {
  static override config_class = Qwen3Config;
  static override architectures: readonly string[] = ["Qwen3ForCausalLM"];
  static override quantizable = true;
  declare config: Qwen3Config;
}
