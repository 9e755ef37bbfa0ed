// LoRA as PEFT does it: LoraConfig, get_peft_model, PeftModel with PEFT's names and files (adapter_config.json and
// adapter_model.safetensors that Python's peft loads). The adapters live in the native model (native/lora.cc), so
// forward, generate, the Trainer's native step and distributed training all see them.
import { existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { totalmem } from "node:os";
import { join } from "node:path";
import {
  check,
  inFile,
  invalid,
  InvalidArgumentError,
  isPlainObject,
  native,
  readingFile,
  withStack,
} from "./errors.js";
import { localDir, resolveHubFile } from "./hub.js";
import { GPT2LMHeadModel, PreTrainedModel, type ModelCore } from "./model.js";
import { LlamaFamilyConfig } from "./models/llama.js";
import { readConfigJson, type PretrainedConfig } from "./config.js";
import type { GenerationConfig } from "./generation_config.js";
import { load_file, save_file } from "./safetensors.js";
import { Tensor } from "./tensor.js";

/** Where adapter keys live in PEFT's files and names: PeftModel -> LoraModel -> the transformers model. */
const PREFIX = "base_model.model.";

export interface LoraConfigOptions {
  r?: number;
  lora_alpha?: number;
  lora_dropout?: number;
  target_modules?: string[] | string | null;
  bias?: "none";
  fan_in_fan_out?: boolean;
  task_type?: "CAUSAL_LM" | null;
  use_rslora?: boolean;
  init_lora_weights?: boolean;
  layers_to_transform?: number[] | number | null;
  inference_mode?: boolean;
  base_model_name_or_path?: string | null;
  revision?: string | null;
  modules_to_save?: null;
}

const OPTIONS = [
  "r",
  "lora_alpha",
  "lora_dropout",
  "target_modules",
  "bias",
  "fan_in_fan_out",
  "task_type",
  "use_rslora",
  "init_lora_weights",
  "layers_to_transform",
  "inference_mode",
  "base_model_name_or_path",
  "revision",
  "modules_to_save",
] as const;

/**
 * adapter_config.json keys of PEFT 0.21 that torchlm reads only at their defaults: any other value changes what the
 * adapter computes (DoRA, per-module ranks, ...), so it is refused rather than ignored.
 */
const PEFT_DEFAULTS: Record<string, unknown> = {
  peft_type: "LORA",
  use_dora: false,
  lora_bias: false,
  alpha_pattern: {},
  rank_pattern: {},
  layer_replication: null,
  layers_pattern: null,
  exclude_modules: null,
  target_parameters: null,
  trainable_token_indices: null,
  use_qalora: false,
  megatron_config: null,
  auto_mapping: null,
  loftq_config: {},
  eva_config: null,
  corda_config: null,
  alora_invocation_tokens: null,
  arrow_config: null,
  use_bdlora: null,
  kasa_config: null,
  lora_ga_config: null,
  monteclora_config: null,
  velora_config: null,
};
/** Keys PEFT writes that do not change the computation. */
const PEFT_INERT = ["peft_version", "megatron_core", "qalora_group_size", "ensure_weight_tying"];

/** PEFT's LoraConfig (the options torchlm supports; PEFT's defaults). */
export class LoraConfig {
  readonly peft_type = "LORA";
  r = 8;
  lora_alpha = 8;
  lora_dropout = 0;
  target_modules: string[] | string | null = null;
  bias = "none" as const;
  fan_in_fan_out = false;
  task_type: "CAUSAL_LM" | null = null;
  use_rslora = false;
  init_lora_weights = true;
  layers_to_transform: number[] | number | null = null;
  inference_mode = false;
  base_model_name_or_path: string | null = null;
  revision: string | null = null;
  modules_to_save: null = null;

  constructor(options: LoraConfigOptions = {}) {
    if (!isPlainObject(options)) throw invalid("LoraConfig options", "an object", options);
    check.knownKeys("LoraConfig", options, OPTIONS);
    const o = options as Record<string, unknown>;
    if (o.r !== undefined) this.r = check.integer("r", o.r, 1);
    if (this.r > 2 ** 31 - 1) throw invalid("r", "a rank below 2^31", o.r);
    if (o.lora_alpha !== undefined) this.lora_alpha = check.number("lora_alpha", o.lora_alpha, 0, Infinity, true);
    if (o.lora_dropout !== undefined) this.lora_dropout = check.number("lora_dropout", o.lora_dropout, 0, 1);
    if (this.lora_dropout === 1) throw invalid("lora_dropout", "number in [0, 1)", 1);
    if (o.target_modules !== undefined && o.target_modules !== null) {
      const t = o.target_modules;
      if (typeof t === "string") this.target_modules = check.string("target_modules", t);
      else if (Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === "string" && x.length > 0))
        this.target_modules = [...t] as string[];
      else throw invalid("target_modules", "a non-empty array of module names, a regular expression string or null", t);
    }
    if (o.bias !== undefined && o.bias !== "none") {
      throw new InvalidArgumentError(
        `LoraConfig bias ${JSON.stringify(o.bias)} is not supported: torchlm trains no biases with LoRA (bias: "none")`,
      );
    }
    if (o.fan_in_fan_out !== undefined) this.fan_in_fan_out = check.boolean("fan_in_fan_out", o.fan_in_fan_out);
    if (o.task_type !== undefined && o.task_type !== null)
      this.task_type = check.oneOf("task_type", o.task_type, ["CAUSAL_LM"] as const);
    if (o.use_rslora !== undefined) this.use_rslora = check.boolean("use_rslora", o.use_rslora);
    if (o.init_lora_weights !== undefined && o.init_lora_weights !== true) {
      throw new InvalidArgumentError(
        `LoraConfig init_lora_weights ${JSON.stringify(o.init_lora_weights)} is not supported: torchlm initialises ` +
          `as PEFT's default (true)`,
      );
    }
    if (o.layers_to_transform !== undefined && o.layers_to_transform !== null) {
      const l = o.layers_to_transform;
      const list = typeof l === "number" ? [l] : l;
      if (!Array.isArray(list) || list.length === 0)
        throw invalid("layers_to_transform", "a layer index, an array of them or null", l);
      list.forEach((x, i) => check.integer(`layers_to_transform[${i}]`, x, 0));
      this.layers_to_transform = typeof l === "number" ? l : [...list];
    }
    if (o.inference_mode !== undefined) this.inference_mode = check.boolean("inference_mode", o.inference_mode);
    if (o.base_model_name_or_path !== undefined && o.base_model_name_or_path !== null)
      this.base_model_name_or_path = check.stringOrEmpty("base_model_name_or_path", o.base_model_name_or_path);
    if (o.revision !== undefined && o.revision !== null) this.revision = check.string("revision", o.revision);
    if (o.modules_to_save !== undefined && o.modules_to_save !== null) {
      throw new InvalidArgumentError("LoraConfig modules_to_save is not supported: torchlm trains only the adapters");
    }
  }

  /** The adapter's scale: lora_alpha / r (lora_alpha / sqrt(r) with use_rslora). */
  get scaling(): number {
    return this.use_rslora ? this.lora_alpha / Math.sqrt(this.r) : this.lora_alpha / this.r;
  }

  /** adapter_config.json as PEFT 0.21 writes it. */
  to_dict(): Record<string, unknown> {
    const d: Record<string, unknown> = {
      ...PEFT_DEFAULTS,
      peft_version: "0.21.2",
      megatron_core: "megatron.core",
      qalora_group_size: 16,
      ensure_weight_tying: false,
    };
    for (const k of OPTIONS) d[k] = (this as Record<string, unknown>)[k];
    d.peft_type = "LORA";
    d.target_modules = Array.isArray(this.target_modules) ? [...this.target_modules].sort() : this.target_modules;
    return Object.fromEntries(Object.entries(d).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** Reads an adapter_config.json object; settings that would change what the adapter computes are refused. */
  static from_dict(d: Record<string, unknown>, where = "adapter_config.json"): LoraConfig {
    if (!isPlainObject(d)) throw invalid(where, "an object", d);
    if (d.peft_type !== undefined && d.peft_type !== "LORA")
      throw new InvalidArgumentError(`${where} is a ${String(d.peft_type)} adapter: torchlm loads LORA adapters`);
    const options: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(d)) {
      if ((OPTIONS as readonly string[]).includes(k)) options[k] = v;
      else if (k in PEFT_DEFAULTS) {
        if (v !== null && v !== undefined && JSON.stringify(v) !== JSON.stringify(PEFT_DEFAULTS[k]))
          throw new InvalidArgumentError(`${where} sets ${k} to ${JSON.stringify(v)}, which torchlm does not support`);
      } else if (!PEFT_INERT.includes(k)) {
        throw new InvalidArgumentError(`${where} has an unknown key ${k}`);
      }
    }
    return new LoraConfig(options as LoraConfigOptions);
  }

  /** Reads adapter_config.json from a directory or a Hub repository. */
  static async from_pretrained(
    idOrDir: string,
    options: { revision?: string; local_files_only?: boolean } = {},
  ): Promise<LoraConfig> {
    const file = await adapterFile(idOrDir, "adapter_config.json", options);
    return readingFile(file, async () => LoraConfig.from_dict(await readConfigJson(file), file));
  }
}

/** Where LoRA can sit in an architecture, with PEFT's names (as after base_model.model.). */
export interface LoraLayout {
  /** Each block's layers LoRA can adapt, by block. */
  adaptable: string[][];
  /** Every other module of the model, which a list of targets must not name. */
  others: string[];
  /** PEFT's default target_modules for the model_type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
  defaults: string[];
  /** A module's name in the native model. */
  native: (module: string) => string;
  /** PEFT's fan_in_fan_out: GPT-2's Conv1D stores weights [in, out], nn.Linear [out, in]. */
  fan_in_fan_out: boolean;
  /** The layers LoRA adapts, in words, for the error that refuses another. */
  kinds: string;
}

const blocks = <T>(n: number, f: (i: number) => T[]): T[][] => Array.from({ length: n }, (_, i) => f(i));

/** The LoRA layout of a model: GPT-2's Conv1D layers, or a Llama-family block's seven linear layers. */
export function loraLayout(model: PreTrainedModel): LoraLayout {
  const config: PretrainedConfig = model.config;
  if (model instanceof GPT2LMHeadModel) {
    const n = model.config.n_layer;
    const block = ["", ".ln_1", ".attn", ".attn.attn_dropout", ".attn.resid_dropout", ".ln_2", ".mlp", ".mlp.act"];
    return {
      adaptable: blocks(n, (i) =>
        ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].map((m) => `transformer.h.${i}.${m}`),
      ),
      others: ["transformer", "transformer.wte", "transformer.wpe", "transformer.drop", "transformer.ln_f", "lm_head"]
        .concat(blocks(n, (i) => [...block, ".mlp.dropout"].map((m) => `transformer.h.${i}${m}`)).flat())
        .concat(["transformer.h"]),
      defaults: ["c_attn"],
      native: (m) => m.slice("transformer.".length),
      fan_in_fan_out: true,
      kinds: "a Conv1D layer: torchlm's LoRA adapts GPT-2's c_attn, c_proj and c_fc",
    };
  }
  if (config instanceof LlamaFamilyConfig) {
    const n = config.num_hidden_layers;
    const linear = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"].concat([
      "mlp.gate_proj",
      "mlp.up_proj",
      "mlp.down_proj",
    ]);
    const block = ["", ".self_attn", ".mlp", ".mlp.act_fn", ".input_layernorm", ".post_attention_layernorm"].concat(
      config.model_type === "qwen3" ? [".self_attn.q_norm", ".self_attn.k_norm"] : [],
    );
    return {
      adaptable: blocks(n, (i) => linear.map((m) => `model.layers.${i}.${m}`)),
      others: ["model", "model.embed_tokens", "model.layers", "model.norm", "model.rotary_emb", "lm_head"].concat(
        blocks(n, (i) => block.map((m) => `model.layers.${i}${m}`)).flat(),
      ),
      defaults: ["q_proj", "v_proj"],
      native: (m) => m,
      fan_in_fan_out: false,
      kinds:
        "a linear layer of a block: torchlm's LoRA adapts q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj and " +
        "down_proj",
    };
  }
  throw new InvalidArgumentError(
    `LoRA is not supported for ${config.model_type} models yet: train the full model instead`,
  );
}

/**
 * The modules a config adapts in a model of this layout (PEFT's full names), matched as PEFT matches: a list entry
 * equals a module's name or ends it after a dot; a string is a regular expression over the whole name; "all-linear"
 * is every adaptable layer. A target naming another kind of module, or nothing, is an error.
 */
export function loraModules(config: LoraConfig, layout: LoraLayout): string[] {
  const n_layer = layout.adaptable.length;
  const targets = config.target_modules ?? layout.defaults;
  let matches: (key: string) => boolean;
  if (targets === "all-linear") matches = () => true;
  else if (typeof targets === "string") {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${targets})$`);
    } catch {
      throw invalid("target_modules", "a valid regular expression", targets);
    }
    matches = (key) => re.test(key);
  } else matches = (key) => targets.some((t) => key === t || key.endsWith("." + t));
  const layers = config.layers_to_transform === null ? null : new Set([config.layers_to_transform].flat());
  if (layers)
    for (const l of layers)
      if (l >= n_layer)
        throw new InvalidArgumentError(`layers_to_transform has layer ${l} but the model has ${n_layer} layers`);
  const wrong = targets === "all-linear" ? [] : layout.others.filter(matches);
  if (wrong.length > 0 && typeof targets !== "string")
    throw new InvalidArgumentError(`LoRA target ${wrong[0]} is not ${layout.kinds}`);
  const chosen = layout.adaptable.flatMap((ms, i) => (layers && !layers.has(i) ? [] : ms.filter(matches)));
  if (chosen.length === 0) {
    throw new InvalidArgumentError(
      `Target modules ${JSON.stringify(targets)} not found in the base model. Please check the target modules and ` +
        `try again.`,
    );
  }
  return chosen;
}

/** Refuses a rank whose adapters (A and B of each target, float32) would not fit in half this machine's memory. */
function checkAdapterFits(model: PreTrainedModel, targets: string[], r: number): void {
  const shapes = new Map(model.named_parameters().map(([n, t]) => [n, t.shape]));
  let elements = 0;
  for (const t of targets) {
    const [a = 0, b = 0] = shapes.get(`${t}.weight`) ?? [];
    elements += r * (a + b);
  }
  const bytes = elements * 4;
  if (bytes > totalmem() / 2)
    throw new InvalidArgumentError(
      `LoRA rank r ${r} would make ${(bytes / 2 ** 30).toFixed(1)} GiB of adapters, more than half of this ` +
        `machine's memory (${(totalmem() / 2 ** 30).toFixed(1)} GiB)`,
    );
}

async function adapterFile(
  idOrDir: string,
  name: string,
  options: { revision?: string; local_files_only?: boolean },
): Promise<string> {
  const dir = localDir(idOrDir);
  if (dir) {
    const f = join(dir, name);
    if (!existsSync(f))
      throw new InvalidArgumentError(
        `${dir} has no ${name}` +
          (name === "adapter_model.safetensors" && existsSync(join(dir, "adapter_model.bin"))
            ? " (only adapter_model.bin, a pickle format torchlm does not load)"
            : ""),
      );
    return f;
  }
  return (await resolveHubFile(idOrDir, name, { revision: options.revision, offline: options.local_files_only }))!;
}

/** A model LoRA can adapt: its layout says where (another architecture is refused, saying so). */
function checkLoraModel(model: unknown): asserts model is PreTrainedModel {
  if (!(model instanceof PreTrainedModel)) throw invalid("model", "a PreTrainedModel", model);
  loraLayout(model);
}

/** Adds LoRA adapters to a model in place, as PEFT's get_peft_model does, and returns the PeftModel that wraps it. */
export function get_peft_model<M extends PreTrainedModel>(
  model: M,
  peft_config: LoraConfig,
  adapter_name = "default",
): PeftModel<M> {
  checkLoraModel(model);
  if (!(peft_config instanceof LoraConfig)) throw invalid("peft_config", "a LoraConfig", peft_config);
  if (adapter_name !== "default")
    throw new InvalidArgumentError(
      `adapter_name ${JSON.stringify(adapter_name)} is not supported: torchlm holds one adapter, "default"`,
    );
  return new PeftModel(model, peft_config, !peft_config.inference_mode);
}

// PeftModel is a PreTrainedModel to the Trainer, pipeline and generate, but its static from_pretrained takes PEFT's
// arguments (model, adapter): the base class's static side is left out of its type.
const ModelBase = PreTrainedModel as unknown as new (
  config: PretrainedConfig,
  core: ModelCore,
  generation_config: GenerationConfig,
) => PreTrainedModel;

/** PEFT's PeftModel (PeftModelForCausalLM) over a model: the same weights, plus LoRA adapters. */
export class PeftModel<M extends PreTrainedModel = PreTrainedModel> extends ModelBase {
  declare config: M["config"];
  peft_config: Record<string, LoraConfig>;
  readonly active_adapter = "default";
  readonly #base: M;

  /** @internal Use get_peft_model or PeftModel.from_pretrained. */
  constructor(model: M, config: LoraConfig, trainable: boolean) {
    super(model.config, model._core, model.generation_config);
    if (model._native.loraParameters().length > 0)
      throw new InvalidArgumentError("The model already has LoRA adapters: merge_and_unload() or unload() them first");
    if (model._core.pending > 0)
      throw new InvalidArgumentError("The model has calls in flight: await them before adding adapters");
    const layout = loraLayout(model);
    const targets = loraModules(config, layout);
    checkAdapterFits(model, targets, config.r);
    const modules = targets.map(layout.native);
    if (config.fan_in_fan_out !== layout.fan_in_fan_out) {
      // as PEFT: the layer's own layout wins, with PEFT's warning
      process.emitWarning(
        layout.fan_in_fan_out
          ? "fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True."
          : "fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to " +
              "False.",
        "PeftWarning",
      );
      config.fan_in_fan_out = layout.fan_in_fan_out;
    }
    if (config.base_model_name_or_path === null && model.name_or_path)
      config.base_model_name_or_path = model.name_or_path;
    this.#base = model;
    this.name_or_path = model.name_or_path;
    this.peft_config = { default: config };
    native(() =>
      model._native.addLora({ modules, r: config.r, scaling: config.scaling, dropout: config.lora_dropout, trainable }),
    );
  }

  /** The adapters' A and B, named as in PEFT's files after base_model.model. */
  #lora(): [string, Tensor][] {
    return this._native.loraParameters().map(([n, t]) => [n, new Tensor(t)]);
  }

  /** The wrapped model (which carries the adapters too until merge_and_unload). */
  get_base_model(): M {
    return this.#base;
  }

  /** Parameters with PEFT's names: base weights of adapted layers under base_layer, adapters as lora_A.default. */
  override named_parameters(): [string, Tensor][] {
    const lora = new Map(this.#lora());
    const out: [string, Tensor][] = [];
    const base = super.named_parameters();
    const moduleOf = (name: string) => name.replace(/\.(weight|bias)$/, "");
    base.forEach(([name, t], i) => {
      const module = moduleOf(name);
      const adapted = lora.has(`${module}.lora_A.weight`);
      out.push([PREFIX + (adapted ? `${module}.base_layer.${name.slice(module.length + 1)}` : name), t]);
      // the adapter after its layer's weight and bias
      if (adapted && (i + 1 === base.length || moduleOf(base[i + 1]![0]) !== module)) {
        out.push([`${PREFIX}${module}.lora_A.default.weight`, lora.get(`${module}.lora_A.weight`)!]);
        out.push([`${PREFIX}${module}.lora_B.default.weight`, lora.get(`${module}.lora_B.weight`)!]);
      }
    });
    return out;
  }

  override num_parameters(options: { exclude_embeddings?: boolean } = {}): number {
    return super.num_parameters(options) + this.#lora().reduce((n, [, t]) => n + t.numel(), 0);
  }

  /** [trainable parameters, all parameters], as PEFT counts them. */
  get_nb_trainable_parameters(): [number, number] {
    const all = this.named_parameters();
    return [all.filter(([, t]) => t.requires_grad).reduce((n, [, t]) => n + t.numel(), 0), this.num_parameters()];
  }

  /** Prints "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364", as PEFT does. */
  print_trainable_parameters(): void {
    const [trainable, all] = this.get_nb_trainable_parameters();
    const f = (n: number) => n.toLocaleString("en-US");
    console.log(
      `trainable params: ${f(trainable)} || all params: ${f(all)} || trainable%: ` +
        `${((100 * trainable) / all).toFixed(4)}`,
    );
  }

  /**
   * Writes adapter_config.json and adapter_model.safetensors (PEFT's keys), which Python's PeftModel.from_pretrained
   * loads.
   */
  override async save_pretrained(dir: string): Promise<void> {
    check.string("save_directory", dir);
    await mkdir(dir, { recursive: true });
    const tensors: Record<string, Tensor> = {};
    for (const [name, t] of this.#lora()) tensors[PREFIX + name] = t;
    // after the calls queued before it, so a Trainer checkpoint holds the weights of its step
    await this._enqueue(() => save_file(tensors, join(dir, "adapter_model.safetensors"), { format: "pt" }));
    const config = { ...this.peft_config.default!.to_dict(), inference_mode: true };
    const tmp = join(dir, `.adapter_config.json.tmp-${process.pid}`);
    await writeFile(tmp, JSON.stringify(config, null, 2) + "\n");
    await rename(tmp, join(dir, "adapter_config.json")).catch(async (e) => {
      await rm(tmp, { force: true });
      throw e;
    });
  }

  /** Folds the adapters into the base weights and returns the base model (the fast decoding paths apply again). */
  async merge_and_unload(): Promise<M> {
    await withStack(() => this._enqueue(() => this._native.removeLora({ merge: true })));
    return this.#base;
  }

  /** Removes the adapters without merging and returns the base model as it was. */
  async unload(): Promise<M> {
    await withStack(() => this._enqueue(() => this._native.removeLora({ merge: false })));
    return this.#base;
  }

  /**
   * Loads an adapter (adapter_config.json + adapter_model.safetensors, from a directory or the Hub) onto `model`.
   * As PEFT: for inference unless is_trainable.
   */
  static async from_pretrained<B extends PreTrainedModel>(
    model: B,
    model_id: string,
    options: { is_trainable?: boolean; adapter_name?: string; revision?: string; local_files_only?: boolean } = {},
  ): Promise<PeftModel<B>> {
    checkLoraModel(model);
    check.string("model_id", model_id);
    if (!isPlainObject(options)) throw invalid("options", "an object", options);
    check.knownKeys("PeftModel.from_pretrained", options, [
      "is_trainable",
      "adapter_name",
      "revision",
      "local_files_only",
    ]);
    const trainable = options.is_trainable === undefined ? false : check.boolean("is_trainable", options.is_trainable);
    if (options.adapter_name !== undefined && options.adapter_name !== "default")
      throw new InvalidArgumentError(
        `adapter_name ${JSON.stringify(options.adapter_name)} is not supported: torchlm holds one adapter, "default"`,
      );
    const configFile = await adapterFile(model_id, "adapter_config.json", options);
    const config = await readingFile(configFile, async () =>
      LoraConfig.from_dict(await readConfigJson(configFile), configFile),
    );
    config.inference_mode = !trainable;
    const weights = await adapterFile(model_id, "adapter_model.safetensors", options);
    await model._core.queue;
    let peft: PeftModel<B>;
    try {
      peft = new PeftModel(model, config, trainable);
    } catch (e) {
      throw inFile(e, configFile);
    }
    try {
      await peft._copy_adapter(weights);
    } catch (e) {
      await peft._enqueue(() => peft._native.removeLora({ merge: false }));
      if (e instanceof InvalidArgumentError)
        e.message +=
          ` (the adapters are as ${configFile} describes them: r ${config.r}, target_modules ` +
          `${JSON.stringify(config.target_modules)})`;
      throw e;
    }
    return peft;
  }

  /** @internal The adapters (named as in PEFT's files) copied in place from a safetensors file. */
  async _copy_adapter(file: string): Promise<void> {
    await readingFile(file, () => this.#copy_adapter(file));
  }

  async #copy_adapter(file: string): Promise<void> {
    const loaded = await load_file(file, { device: this.device });
    const pairs = Object.entries(loaded).map(([k, t]) => {
      const name = k.startsWith(PREFIX) ? k.slice(PREFIX.length) : k;
      return [name.replace(/\.lora_([AB])\.default\.weight$/, ".lora_$1.weight"), t._t] as [string, typeof t._t];
    });
    await withStack(() => this._enqueue(() => this._native.copyLora(pairs)));
  }

  /** @internal A Trainer checkpoint holds the adapter only. */
  override async _load_checkpoint_weights(dir: string): Promise<void> {
    await this._copy_adapter(join(dir, "adapter_model.safetensors"));
  }
}
