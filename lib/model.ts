// PreTrainedModel, what every causal LM class shares (loading, forward, training mode, generation, saving), and
// GPT2LMHeadModel. Heavy calls run natively on a worker thread, one at a time per model.
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { totalmem } from "node:os";
import {
  check,
  DisposedError,
  inFile,
  invalid,
  InvalidArgumentError,
  isPlainObject,
  readingFile,
  withStack,
} from "./errors.js";
import { GPT2Config, PretrainedConfig, readConfigJson } from "./config.js";
import { checkDevice } from "./device.js";
import { localDir, resolveHubFile } from "./hub.js";
import { binding, type FloatDtype, type LoadShard, type NativeModel } from "./native.js";
import { readSafetensorsIndex } from "./safetensors.js";
import { asTensor, tensor, Tensor, type Dtype } from "./tensor.js";
import { GenerationConfig } from "./generation_config.js";
import { generate, generate_stream, type GenerateOptions } from "./generation.js";
import {
  generate_batch,
  init_continuous_batching,
  type ContinuousBatchingManager,
  type ContinuousBatchingOptions,
  type GenerationOutput,
  type RequestOptions,
} from "./continuous_batching.js";

export type IdsLike = Tensor | number[][] | number[];

export interface ForwardInputs {
  input_ids: IdsLike;
  attention_mask?: IdsLike | null;
  position_ids?: IdsLike | null;
  labels?: IdsLike | null;
  past_key_values?: [Tensor, Tensor][] | null;
  use_cache?: boolean;
  /** Record autograd (default: in training mode only, since Node has no `with torch.no_grad()`). */
  requires_grad?: boolean;
}

export interface CausalLMOutput {
  logits: Tensor;
  loss?: Tensor;
  past_key_values?: [Tensor, Tensor][];
}

export interface FromPretrainedOptions {
  device?: string;
  /** A float dtype, or "q8" / "q4": 8- or 4-bit weights per block of 32 for decoding (CPU, inference only), as
   * transformers.js names them. */
  dtype?: "float32" | "float16" | "bfloat16" | QuantDtype;
  torch_dtype?: "float32" | "float16" | "bfloat16";
  revision?: string;
  local_files_only?: boolean;
}

const FLOAT_DTYPES = ["float32", "float16", "bfloat16"] as const;
/**
 * The quantized dtypes: "q8" (int8 per block of 32, as llama.cpp's q8_0) and "q4" (4 bits per block of 32, as q4_0).
 */
export type QuantDtype = "q8" | "q4";
const QUANT_DTYPES = ["q8", "q4"] as const;
/** config.json's quantization_config for torchlm's quantized checkpoints (q8: int8 [out, in'] weights; q4: uint8
 * [out, in' / 2] nibbles, offset 8; in' is in rounded up to 128, each 128 inputs interleaved by 32-bit lane as the
 * kernels read them; a float16 scale per 32 inputs; q4's LM head in 6 bits: nibbles as q4's, then 32 bytes of 2-bit
 * highs a group). */
function quantConfig(format: QuantDtype): Record<string, unknown> {
  const common = {
    quant_method: "torchlm",
    format,
    bits: format === "q8" ? 8 : 4,
    group_size: 32,
    symmetric: true,
    scale_dtype: "float16",
    packing: "lanes4",
  };
  return format === "q8" ? common : { ...common, lm_head_bits: 6 };
}

/** Integer ids (nested arrays or a Tensor) as an int64 Tensor (a Tensor passes through as it is). */
export function idsTensor(v: IdsLike, name: string, device = "cpu"): Tensor {
  if (v instanceof Tensor) {
    if (v.dtype.startsWith("float") || v.dtype === "bfloat16")
      throw invalid(name, "integer ids", `a ${v.dtype} Tensor`);
    return v;
  }
  if (!Array.isArray(v)) throw invalid(name, "a Tensor or an array of integer ids", v);
  const rows = v.length > 0 && Array.isArray(v[0]) ? (v as number[][]) : [v as number[]];
  rows.forEach((r, i) => {
    if (!Array.isArray(r)) throw invalid(`${name}[${i}]`, "an array of integer ids", r);
    r.forEach((x, j) => {
      if (!Number.isInteger(x)) throw invalid(`${name}[${i}][${j}]`, "an integer id", x);
    });
  });
  return tensor(rows, { dtype: "int64", device });
}

/**
 * What every JavaScript view of one native model shares (a PeftModel and the model it wraps, as in Python):
 * the handle, the queue that keeps its calls in order, and its modes.
 */
export interface ModelCore {
  native: NativeModel | null;
  queue: Promise<unknown>;
  training: boolean;
  checkpointing: boolean;
  /** Calls queued or running: synchronous changes to the weights (get_peft_model) wait for none. */
  pending: number;
}

/** A model class's static side: its config class, the architectures it loads, what it can do natively. */
export interface CausalLMClass<M extends PreTrainedModel = PreTrainedModel> {
  new (config: PretrainedConfig, native: NativeModel | ModelCore, generation_config?: GenerationConfig): M;
  readonly config_class: { new (values?: Record<string, unknown>): PretrainedConfig };
  /** config.json's architectures this class loads (Hugging Face's class names). */
  readonly architectures: readonly string[];
  /** Whether q8 / q4 weights exist for it. */
  readonly quantizable: boolean;
}

/**
 * What every causal language model shares, as Hugging Face's PreTrainedModel: from_pretrained / from_config, forward,
 * generate, training mode, parameters, save_pretrained. Each architecture is a subclass naming its config class
 * (GPT2LMHeadModel here, the Llama family in lib/models/llama.ts); AutoModelForCausalLM (lib/auto.ts) picks one.
 */
export class PreTrainedModel {
  static config_class: { new (values?: Record<string, unknown>): PretrainedConfig } = GPT2Config;
  static architectures: readonly string[] = [];
  static quantizable = false;

  config: PretrainedConfig;
  generation_config: GenerationConfig;
  /** Where the weights came from (a directory), if loaded. */
  name_or_path?: string;
  /** @internal */
  readonly _core: ModelCore;

  /** @internal */
  constructor(config: PretrainedConfig, native: NativeModel | ModelCore, generation_config?: GenerationConfig) {
    this.config = config;
    this._core =
      "queue" in native
        ? native
        : { native, queue: Promise.resolve(), training: false, checkpointing: false, pending: 0 };
    this.generation_config = generation_config ?? GenerationConfig.from_model_config(config);
  }

  /** Loads from a local directory, the Hub cache, or the Hub (config.json + model.safetensors). */
  static async from_pretrained<M extends PreTrainedModel>(
    this: CausalLMClass<M>,
    idOrDir: string,
    options: FromPretrainedOptions = {},
  ): Promise<M> {
    check.string("pretrained_model_name_or_path", idOrDir);
    if (!isPlainObject(options)) throw invalid("options", "an object", options);
    check.knownKeys("from_pretrained", options, ["device", "dtype", "torch_dtype", "revision", "local_files_only"]);
    const device = checkDevice("device", options.device ?? "cpu");
    const requested = options.dtype ?? options.torch_dtype;
    if (requested !== undefined) check.oneOf("dtype", requested, [...FLOAT_DTYPES, ...QUANT_DTYPES] as const);
    const files = await resolveModelFiles(idOrDir, options, this.config_class);
    const config = await readingFile(
      files.config,
      async () => new this.config_class(await readConfigJson(files.config)),
    );
    // a checkpoint saved from a quantized model loads as it is; another quantization_config (bitsandbytes, GPTQ, ...)
    // is refused
    const qc = config.quantization_config as Record<string, unknown> | undefined;
    const saved =
      qc === undefined || qc === null
        ? null
        : (QUANT_DTYPES.find((f) => {
            const want = quantConfig(f);
            return (
              Object.keys(qc).length === Object.keys(want).length && Object.entries(want).every(([k, v]) => qc[k] === v)
            );
          }) ?? undefined);
    if (saved === undefined && qc?.quant_method === "torchlm" && qc.packing === undefined)
      throw new InvalidArgumentError(
        `${files.config} describes ${String(qc.format)} weights in the layout of an earlier torchlm (float32 ` +
          `scales, no lane packing): quantize the float32 checkpoint again`,
      );
    if (saved === undefined)
      throw new InvalidArgumentError(
        `${files.config} has a quantization_config torchlm does not load (${JSON.stringify(qc)}): torchlm loads ` +
          `its own q8 and q4 checkpoints`,
      );
    if (saved && requested !== undefined && requested !== saved)
      throw new InvalidArgumentError(
        `${idOrDir} holds ${saved} weights: load it without a dtype, or with dtype "${saved}"`,
      );
    const quantize = saved
      ? null
      : (QUANT_DTYPES as readonly string[]).includes(requested ?? "")
        ? (requested as QuantDtype)
        : null;
    if ((quantize || saved) && !this.quantizable)
      throw new InvalidArgumentError(
        `${quantize ?? saved} weights are not supported for ${config.model_type} models yet: load it in float32 or ` +
          `bfloat16`,
      );
    if ((quantize || saved) && device !== "cpu")
      throw new InvalidArgumentError(`${quantize ?? saved} weights run on the CPU, not on ${device}`);
    const dtype = quantize || saved ? "float32" : (requested as FloatDtype | undefined);
    checkFits(config, `The config in ${files.config}`, "load");
    if (config.architectures && !config.architectures.some((a) => this.architectures.includes(a)))
      throw new InvalidArgumentError(
        `${idOrDir} is a ${config.architectures.join(", ")}: ${this.name} loads ${this.architectures.join(", ")} ` +
          `checkpoints (AutoModelForCausalLM picks the class from config.json)`,
      );
    const shards = await readShards(files.weights);
    if (!saved)
      for (const shard of shards) {
        const q = shard.entries.find((e) => e.dtype === "I8" || e.dtype === "U8");
        if (q)
          throw new InvalidArgumentError(
            `${shard.path} holds the quantized tensor ${q.name} (${q.dtype}), but ${files.config} has no ` +
              `quantization_config saying how to read it`,
          );
      }
    const nm = await withStack(() =>
      binding.NativeModel.load({
        config: config._native_config(),
        shards,
        device,
        dtype: dtype ?? "float32",
        quantization: saved,
        quantize,
      }),
    ).catch((e: unknown) => {
      if (saved && e instanceof InvalidArgumentError)
        e.message += ` (read as ${saved}, as the quantization_config of ${files.config} says)`;
      throw inFile(e, shardNamed(e, shards, files.weights));
    });
    // save_pretrained writes it, and from_pretrained reads the weights back as they are
    if (quantize) config.quantization_config = quantConfig(quantize);
    let gen: GenerationConfig | undefined;
    if (files.generation_config) gen = await GenerationConfig.from_json_file(files.generation_config);
    const model = new this(config, nm, gen);
    model.name_or_path = idOrDir;
    return model;
  }

  /** A model with Hugging Face's random initialisation (seeded when `seed` is given). */
  static async from_config<M extends PreTrainedModel>(
    this: CausalLMClass<M>,
    config: PretrainedConfig | Record<string, unknown>,
    options: { device?: string; dtype?: Dtype; seed?: number } = {},
  ): Promise<M> {
    const cfg = config instanceof this.config_class ? config : new this.config_class(toValues(config));
    check.knownKeys("from_config", options, ["device", "dtype", "seed"]);
    const device = checkDevice("device", options.device ?? "cpu");
    const dtype = check.oneOf("dtype", options.dtype ?? "float32", FLOAT_DTYPES);
    if (options.seed !== undefined) check.integer("seed", options.seed, 0, Number.MAX_SAFE_INTEGER);
    checkFits(cfg, "The config", "create");
    const nm = await withStack(() =>
      binding.NativeModel.create({ config: cfg._native_config(), device, dtype, seed: options.seed ?? null }),
    );
    return new this(cfg, nm);
  }

  /** @internal The native model; throws when disposed. */
  get _native(): NativeModel {
    if (!this._core.native) throw new DisposedError("Model is disposed: it cannot be used after dispose()");
    return this._core.native;
  }

  /** Runs `fn` after every earlier call on this model has settled: calls on one model run in order. */
  /** @internal */
  _enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const core = this._core;
    core.pending++;
    const run = core.queue.then(fn, fn).finally(() => {
      core.pending--;
    });
    core.queue = run.catch(() => undefined);
    return run;
  }

  get device(): string {
    return this._native.device;
  }
  /** The weights' dtype: "float32", "float16", "bfloat16", or "q8" / "q4" for a quantized model. */
  get dtype(): string {
    return this._native.quantization || this._native.dtype;
  }
  get training(): boolean {
    return this._core.training;
  }

  /** Training mode: dropout on, autograd recorded by forward. */
  train(mode = true): this {
    check.boolean("mode", mode);
    this._core.training = mode;
    this._native.setTraining(mode);
    return this;
  }
  /** Evaluation mode: no dropout; forward records no autograd graph unless asked. */
  eval(): this {
    return this.train(false);
  }

  /**
   * Gradient checkpointing, as Hugging Face's: in training, each block keeps only its input for backward and runs
   * again there (with the same dropout masks), trading about a third more compute for most of the activations' memory.
   */
  gradient_checkpointing_enable(): void {
    this._native.setGradientCheckpointing(true);
    this._core.checkpointing = true;
  }
  gradient_checkpointing_disable(): void {
    this._native.setGradientCheckpointing(false);
    this._core.checkpointing = false;
  }
  get is_gradient_checkpointing(): boolean {
    return this._core.checkpointing;
  }

  /** Moves the weights: `await model.to("cuda")`, `await model.to("bfloat16")`. */
  async to(target: string | { device?: string; dtype?: Dtype }): Promise<this> {
    let device: string | null = null;
    let dtype: FloatDtype | null = null;
    if (typeof target === "string") {
      if ((FLOAT_DTYPES as readonly string[]).includes(target)) dtype = target as FloatDtype;
      else device = checkDevice("device", target);
    } else if (isPlainObject(target)) {
      if (target.device !== undefined) device = checkDevice("device", target.device);
      if (target.dtype !== undefined) dtype = check.oneOf("dtype", target.dtype, FLOAT_DTYPES);
    } else throw invalid("target", "a device, a dtype or { device, dtype }", target);
    await withStack(() => this._enqueue(() => this._native.to({ device, dtype })));
    return this;
  }

  /** The forward pass: logits, the shifted LM loss when `labels` are given, and the KV cache when asked. */
  async forward(inputs: ForwardInputs): Promise<CausalLMOutput> {
    if (!isPlainObject(inputs)) throw invalid("inputs", "an object with input_ids", inputs);
    check.knownKeys("forward", inputs, [
      "input_ids",
      "attention_mask",
      "position_ids",
      "labels",
      "past_key_values",
      "use_cache",
      "requires_grad",
      "token_type_ids",
    ]);
    if (inputs.input_ids === undefined) throw invalid("input_ids", "a Tensor or an array of integer ids", undefined);
    const ids = idsTensor(inputs.input_ids, "input_ids");
    const opt = (v: IdsLike | null | undefined, name: string) =>
      v === undefined || v === null ? null : idsTensor(v, name)._t;
    const mask = opt(inputs.attention_mask, "attention_mask");
    const pos = opt(inputs.position_ids, "position_ids");
    const labels = opt(inputs.labels, "labels");
    let past: null | Tensor[] = null;
    if (inputs.past_key_values) {
      if (!Array.isArray(inputs.past_key_values))
        throw invalid("past_key_values", "an array of [key, value] pairs", inputs.past_key_values);
      past = inputs.past_key_values.flatMap((kv, i) => {
        if (!Array.isArray(kv) || kv.length !== 2) throw invalid(`past_key_values[${i}]`, "a [key, value] pair", kv);
        return [asTensor(kv[0], `past_key_values[${i}][0]`), asTensor(kv[1], `past_key_values[${i}][1]`)];
      });
    }
    const useCache = inputs.use_cache === undefined ? false : check.boolean("use_cache", inputs.use_cache);
    const grad =
      inputs.requires_grad === undefined ? this._core.training : check.boolean("requires_grad", inputs.requires_grad);
    const out = await withStack(() =>
      this._enqueue(() =>
        this._native.forward({
          input_ids: ids._t,
          attention_mask: mask,
          position_ids: pos,
          labels,
          past_key_values: past ? past.map((t) => t._t) : null,
          use_cache: useCache,
          grad,
        }),
      ),
    );
    const result: CausalLMOutput = { logits: new Tensor(out.logits) };
    if (out.loss) result.loss = new Tensor(out.loss);
    if (out.past_key_values) {
      const kv: [Tensor, Tensor][] = [];
      for (let i = 0; i < out.past_key_values.length; i += 2)
        kv.push([new Tensor(out.past_key_values[i]!), new Tensor(out.past_key_values[i + 1]!)]);
      result.past_key_values = kv;
    }
    return result;
  }

  /** Same as forward: Python's `model(**inputs)`. */
  call(inputs: ForwardInputs): Promise<CausalLMOutput> {
    return this.forward(inputs);
  }

  /** Generates continuations: [batch, prompt + new] ids. See GenerationConfig for the options. */
  generate(input_ids: IdsLike, options: GenerateOptions = {}): Promise<Tensor> {
    return generate(this, input_ids, options);
  }

  /** Yields new token ids (one array per step, a value per row) as they are made. */
  generate_stream(input_ids: IdsLike, options: GenerateOptions = {}): AsyncGenerator<number[]> {
    return generate_stream(this, input_ids, options);
  }

  /** A continuous batching manager on this model: requests join and leave one running batch at every step. */
  init_continuous_batching(options: ContinuousBatchingOptions = {}): Promise<ContinuousBatchingManager> {
    return init_continuous_batching(this, options);
  }

  /** Generates for every prompt through continuous batching; one result per input, in order. */
  generate_batch(
    inputs: number[][],
    generation_config?: GenerationConfig | RequestOptions,
    options: ContinuousBatchingOptions = {},
  ): Promise<GenerationOutput[]> {
    return generate_batch(this, inputs, generation_config, options);
  }

  /** Parameters as [name, Tensor] pairs with Hugging Face's names; they share the model's storage. */
  named_parameters(): [string, Tensor][] {
    return this._native.parameters().map(([n, t]) => [n, new Tensor(t)]);
  }
  /** Parameters, in Hugging Face's order. */
  parameters(): Tensor[] {
    return this.named_parameters().map(([, t]) => t);
  }
  /**
   * The number of parameters (a tied lm_head counted once); without the input embeddings on request.
   */
  num_parameters(options: { exclude_embeddings?: boolean } = {}): number {
    check.knownKeys("num_parameters", options, ["exclude_embeddings"]);
    const all = this._native.numParameters();
    return options.exclude_embeddings ? all - this.config.embedding_parameters() : all;
  }
  /** Drops every parameter's gradient. */
  zero_grad(): void {
    this._native.zeroGrad();
  }

  /** Writes config.json, generation_config.json and model.safetensors as Python's save_pretrained does. */
  async save_pretrained(dir: string): Promise<void> {
    check.string("save_directory", dir);
    await mkdir(dir, { recursive: true });
    await withStack(() => this._enqueue(() => this._native.save({ path: join(dir, "model.safetensors") })));
    await writeFile(join(dir, "config.json"), this.config.to_json_string());
    await writeFile(join(dir, "generation_config.json"), this.generation_config.to_json_string());
  }

  /** @internal A Trainer checkpoint's weights copied into the parameters in place (optimizers keep holding them). */
  async _load_checkpoint_weights(dir: string): Promise<void> {
    const file = join(dir, "model.safetensors");
    await readingFile(file, async () => {
      const weights = await readSafetensorsIndex(file);
      await withStack(() =>
        this._enqueue(() =>
          this._native.loadWeights({ path: weights.path, data_start: weights.dataStart, entries: weights.entries }),
        ),
      );
    });
  }

  /** Frees the weights now (after calls already queued); later use throws. */
  async dispose(): Promise<void> {
    await this._enqueue(async () => {
      this._core.native?.dispose();
      this._core.native = null;
    });
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

/** GPT-2 with a language-modelling head (tied to the token embeddings), as in Hugging Face. */
export class GPT2LMHeadModel extends PreTrainedModel {
  static override config_class = GPT2Config;
  static override architectures: readonly string[] = ["GPT2LMHeadModel", "GPT2Model"];
  static override quantizable = true;
  declare config: GPT2Config;
}

/** A config given as an object (or another class's instance) as plain values. */
function toValues(config: PretrainedConfig | Record<string, unknown>): Record<string, unknown> {
  if (!isPlainObject(config) && !(config instanceof PretrainedConfig))
    throw invalid("config", "a config or an object of config values", config);
  return config instanceof PretrainedConfig ? config.to_dict() : config;
}

interface ModelFiles {
  config: string;
  /** model.safetensors, or a sharded checkpoint's model.safetensors.index.json */
  weights: string;
  generation_config: string | null;
}

const INDEX = "model.safetensors.index.json";

/** A sharded checkpoint's index: the shard files in order, each tensor's file checked against its header. */
async function readShardIndex(path: string): Promise<{ files: string[]; weight_map: Map<string, string> }> {
  const json = await readConfigJson(path);
  const map = json.weight_map;
  if (!isPlainObject(map)) throw new InvalidArgumentError(`${path} has no weight_map object`);
  const weight_map = new Map<string, string>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== "string" || !/^[\w.-]+\.safetensors$/.test(file) || file.startsWith("."))
      throw new InvalidArgumentError(
        `${path}: weight_map's ${JSON.stringify(name)} names ${JSON.stringify(file)}, ` +
          `not a .safetensors file beside it`,
      );
    weight_map.set(name, file);
  }
  if (weight_map.size === 0) throw new InvalidArgumentError(`${path} has an empty weight_map`);
  return { files: [...new Set(weight_map.values())], weight_map };
}

/** The shard an error from the loader is about: the one holding a tensor it names (or the only one). */
function shardNamed(e: unknown, shards: LoadShard[], weights: string): string {
  if (shards.length === 1) return shards[0]!.path;
  const message = e instanceof Error ? e.message : "";
  // native messages name tensors without the checkpoint's "transformer." / "model." prefix
  const names = (m: string) => new Set(m.split(/[\s,:;()'"]+/).map((w) => w.replace(/^(transformer|model)\./, "")));
  const said = names(message);
  const hit = shards.find((s) => s.entries.some((t) => said.has(t.name.replace(/^(transformer|model)\./, ""))));
  return hit?.path ?? weights;
}

/** The safetensors headers of a checkpoint: one file, or every shard an index names (each name where it says). */
async function readShards(weights: string): Promise<LoadShard[]> {
  if (!weights.endsWith(INDEX)) {
    const index = await readSafetensorsIndex(weights);
    return [{ path: weights, data_start: index.dataStart, entries: index.entries }];
  }
  const { files, weight_map } = await readShardIndex(weights);
  const dir = dirname(weights);
  const shards: LoadShard[] = [];
  for (const file of files) {
    const index = await readSafetensorsIndex(join(dir, file));
    for (const e of index.entries) {
      const where = weight_map.get(e.name);
      if (where !== file)
        throw new InvalidArgumentError(
          `${join(dir, file)} holds ${e.name}, which ${weights} places ${where ? `in ${where}` : "nowhere"}`,
        );
    }
    for (const [name, f] of weight_map)
      if (f === file && !index.entries.some((e) => e.name === name))
        throw new InvalidArgumentError(`${weights} places ${name} in ${file}, which does not hold it`);
    shards.push({ path: join(dir, file), data_start: index.dataStart, entries: index.entries });
  }
  return shards;
}

/** Refuses a model whose float32 parameters alone would not fit in this machine's memory. */
function checkFits(config: PretrainedConfig, what: string, action: string): void {
  const bytes = config.num_parameters() * 4;
  if (bytes > totalmem()) {
    const name = config.model_type === "gpt2" ? "GPT-2" : config.model_type;
    throw new InvalidArgumentError(
      `${what} describes a ${name} of ${config.num_parameters().toExponential(2)} parameters ` +
        `(${(bytes / 2 ** 30).toFixed(1)} GiB in float32), ` +
        `more than this machine's memory (${(totalmem() / 2 ** 30).toFixed(1)} GiB): refusing to ${action} it`,
    );
  }
}

async function resolveModelFiles(
  idOrDir: string,
  options: FromPretrainedOptions,
  config_class: { new (values?: Record<string, unknown>): PretrainedConfig },
): Promise<ModelFiles> {
  const dir = localDir(idOrDir);
  if (dir) {
    const config = join(dir, "config.json");
    let weights = join(dir, "model.safetensors");
    if (!existsSync(config)) throw new InvalidArgumentError(`${dir} has no config.json`);
    if (!existsSync(weights) && existsSync(join(dir, INDEX))) weights = join(dir, INDEX);
    else if (!existsSync(weights)) {
      const hint = existsSync(join(dir, "pytorch_model.bin"))
        ? " (only pytorch_model.bin, a pickle format torchlm does not load: convert it to safetensors)"
        : "";
      throw new InvalidArgumentError(`${dir} has no model.safetensors (nor ${INDEX})${hint}`);
    }
    const gen = join(dir, "generation_config.json");
    return { config, weights, generation_config: existsSync(gen) ? gen : null };
  }
  const o = { revision: options.revision, offline: options.local_files_only };
  const config = (await resolveHubFile(idOrDir, "config.json", o))!;
  // a config asking for more than this machine can hold is refused before its weights are downloaded
  checkFits(new config_class(await readConfigJson(config)), idOrDir, "download or load");
  // one file, else a sharded checkpoint: its index, then every shard it names beside it
  let weights = await resolveHubFile(idOrDir, "model.safetensors", { ...o, progress: true, required: false });
  if (!weights) {
    weights = (await resolveHubFile(idOrDir, INDEX, o))!;
    for (const file of (await readShardIndex(weights)).files)
      await resolveHubFile(idOrDir, file, { ...o, progress: true });
  }
  const generation_config = await resolveHubFile(idOrDir, "generation_config.json", { ...o, required: false });
  return { config, weights, generation_config };
}
