// The contract of the raw binding (native/*.cc), as node-llama-cpp keeps one: what each native function takes and
// returns. Calls take named option objects whose every key is required (null where a value may be absent), with
// string enums for modes; the C++ side (native/options.h) rejects a missing or mistyped key instead of assuming a
// default, so the defaults live in one place: GenerationConfig, TrainingArguments and the public API.

export type DeviceName = string;
export type FloatDtype = "float32" | "float16" | "bfloat16";
/** Mixed precision of a training step: none, bfloat16 autocast, or float16 autocast with loss scaling. */
export type Amp = "none" | "bfloat16" | "float16";
/** Hugging Face's early_stopping for beam search: false ("heuristic"), true ("always"), "never". */
export type EarlyStopping = "heuristic" | "always" | "never";
export type Reduction = "mean" | "sum" | "none";

export interface NativeTensor {
  readonly shape: number[];
  readonly strides: number[];
  readonly dtype: string;
  readonly device: string;
  readonly disposed: boolean;
  requires_grad: boolean;
  readonly grad: NativeTensor | null;
  data(): Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;
  item(): number | boolean;
  to(options: { device: DeviceName | null; dtype: string | null }): NativeTensor;
  permute(options: { dims: number[] }): NativeTensor;
  reshape(options: { shape: number[] }): NativeTensor;
  view(options: { shape: number[] }): NativeTensor;
  slice(options: { dim: number; start: number; end: number | null; step: number }): NativeTensor;
  contiguous(): NativeTensor;
  /** dim null: the index into the flattened tensor. */
  argmax(options: { dim: number | null; keepdim: boolean }): NativeTensor;
  softmax(options: { dim: number }): NativeTensor;
  log_softmax(options: { dim: number }): NativeTensor;
  backward(options: { gradient: NativeTensor | null }): void;
  detach(): NativeTensor;
  clone(): NativeTensor;
  compare(options: { op: "eq" | "ne" | "lt" | "le" | "gt" | "ge"; other: NativeTensor | number }): NativeTensor;
  arith(options: { op: "add" | "sub" | "mul" | "div"; other: NativeTensor | number }): NativeTensor;
  reduce(options: { op: "sum" | "mean" | "max" | "min"; dim: number | null; keepdim: boolean }): NativeTensor;
  matmul(options: { other: NativeTensor }): NativeTensor;
  dispose(): void;
}

export interface NativeTensorStatic {
  fromBuffer(options: { data: ArrayBufferView; shape: number[]; dtype: string; device: DeviceName }): NativeTensor;
  cat(options: { tensors: NativeTensor[]; dim: number }): NativeTensor;
}

/** One tensor of a safetensors header, with its byte range in the data section. */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** The config the native model reads, by architecture; every key present. */
export type NativeConfig = NativeGPT2Config | NativeLlamaConfig;

/** The part of GPT2Config the native GPT-2 reads. */
export interface NativeGPT2Config {
  architecture: "gpt2";
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_inner: number | null;
  layer_norm_epsilon: number;
  embd_pdrop: number;
  attn_pdrop: number;
  resid_pdrop: number;
  /** The MLP's activation kernel (lib/config.ts's ACTIVATIONS maps Hugging Face's names onto it). */
  activation: "gelu_tanh" | "gelu" | "relu";
  scale_attn_weights: boolean;
  scale_attn_by_inverse_layer_idx: boolean;
}

/** What the native Llama reads (Llama, Qwen2 and Qwen3 are its switches: lib/models/llama.ts). */
export interface NativeLlamaConfig {
  architecture: "llama";
  vocab_size: number;
  max_position_embeddings: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  attention_dropout: number;
  initializer_range: number;
  /** Biases on q_proj, k_proj and v_proj; on o_proj; on the MLP's three linears. */
  qkv_bias: boolean;
  o_bias: boolean;
  mlp_bias: boolean;
  /** Qwen3's RMSNorm of each head's query and key. */
  qk_norm: boolean;
  tie_word_embeddings: boolean;
  rope: {
    rope_type: "default" | "linear" | "llama3";
    rope_theta: number;
    factor: number;
    low_freq_factor: number;
    high_freq_factor: number;
    original_max_position_embeddings: number;
  };
}

/** One safetensors file of a checkpoint (several for a sharded one) and the entries of its header. */
export interface LoadShard {
  path: string;
  data_start: number;
  entries: SafetensorsEntry[];
}

export interface LoadRequest {
  config: NativeConfig;
  shards: LoadShard[];
  device: DeviceName;
  /** null: the file's float types as float32. */
  dtype: FloatDtype | null;
  /** A checkpoint that save_pretrained wrote from a quantized model (quantized weights and their scales), or null. */
  quantization: "q8" | "q4" | null;
  /** Quantize a float checkpoint as it loads (each Conv1D weight before the next is read), or null. */
  quantize: "q8" | "q4" | null;
}

export interface CreateRequest {
  config: NativeConfig;
  device: DeviceName;
  dtype: FloatDtype;
  seed: number | null;
}

export interface ForwardRequest {
  input_ids: NativeTensor;
  attention_mask: NativeTensor | null;
  position_ids: NativeTensor | null;
  labels: NativeTensor | null;
  /** k0, v0, k1, v1, ... */
  past_key_values: NativeTensor[] | null;
  use_cache: boolean;
  /** Record autograd. */
  grad: boolean;
}

export interface NativeForwardResult {
  logits: NativeTensor;
  loss?: NativeTensor;
  past_key_values?: NativeTensor[];
}

/** Decoding settings, resolved from a GenerationConfig (lib/generation.ts). */
export interface NativeGenerateConfig {
  max_new_tokens: number;
  min_new_tokens: number;
  min_length: number;
  do_sample: boolean;
  temperature: number;
  /** 0: off. */
  top_k: number;
  top_p: number;
  /** 0: off. */
  min_p: number;
  typical_p: number;
  repetition_penalty: number;
  no_repeat_ngram_size: number;
  bad_words_ids: number[][];
  eos_token_ids: number[];
  pad_token_id: number;
  num_beams: number;
  num_return_sequences: number;
  length_penalty: number;
  early_stopping: EarlyStopping;
  use_cache: boolean;
  seed: number | null;
}

export interface GenerateRequest {
  input_ids: NativeTensor;
  attention_mask: NativeTensor | null;
  config: NativeGenerateConfig;
  /** Called with each step's new ids (one per row). */
  on_tokens: ((tokens: number[]) => void) | null;
  /** A one-element Int32Array over a SharedArrayBuffer: set to 1 to cancel. */
  cancel: Int32Array | null;
}

export interface NativeModel {
  readonly device: string;
  readonly dtype: string;
  forward(request: ForwardRequest): Promise<NativeForwardResult>;
  generate(request: GenerateRequest): Promise<NativeTensor>;
  setTraining(on: boolean): void;
  /** Recompute each block in backward instead of keeping its activations (training with autograd only). */
  setGradientCheckpointing(on: boolean): void;
  to(options: { device: DeviceName | null; dtype: FloatDtype | null }): Promise<void>;
  parameters(): [string, NativeTensor][];
  numParameters(): number;
  zeroGrad(): void;
  save(request: { path: string }): Promise<void>;
  loadWeights(request: { path: string; data_start: number; entries: SafetensorsEntry[] }): Promise<void>;
  /** LoRA adapters on Conv1D modules ("h.0.attn.c_attn"); the base weights are frozen while adapters are on. */
  addLora(request: { modules: string[]; r: number; scaling: number; dropout: number; trainable: boolean }): void;
  /** The adapters' A and B as "transformer.h.0.attn.c_attn.lora_A.weight", ...; they share the model's storage. */
  loraParameters(): [string, NativeTensor][];
  /** Copies every adapter's A and B in place (names as loraParameters()). */
  copyLora(tensors: [string, NativeTensor][]): Promise<void>;
  /** Drops the adapters, folding them into the base weights with merge. */
  removeLora(request: { merge: boolean }): Promise<void>;
  /** "" for float weights, else the quantization ("q8" or "q4"). */
  readonly quantization: string;
  dispose(): void;
}

/** One step's news of one request of a NativeContinuousBatching: a new token, or the end of the request. */
export type NativeBatchEvent =
  | { id: number; token: number; logprob: number; top_logprobs: [number, number][] }
  | { id: number; finish_reason: "stop" | "length" | "cancelled" | "error"; error: string | null };

export interface NativeContinuousBatching {
  add(request: {
    id: number;
    input_ids: number[];
    config: NativeGenerateConfig;
    /** -1: no log-probabilities; n >= 0: each token's and the n likeliest alternatives'. */
    logprobs: number;
  }): void;
  cancel(request: { id: number }): void;
  counts(): { running: number; waiting: number };
  keepAlive(options: { on: boolean }): void;
  stop(): Promise<void>;
}

export interface NativeContinuousBatchingStatic {
  create(request: {
    model: NativeModel;
    max_batch_size: number;
    max_context_length: number;
    max_batch_tokens: number;
    on_events: (events: NativeBatchEvent[]) => void;
  }): Promise<NativeContinuousBatching>;
}

export interface NativeModelStatic {
  load(request: LoadRequest): Promise<NativeModel>;
  create(request: CreateRequest): Promise<NativeModel>;
}

export interface TrainStepRequest {
  model: NativeModel;
  input_ids: NativeTensor;
  attention_mask: NativeTensor | null;
  labels: NativeTensor;
  /** The loss is multiplied by this before backward (1 / gradient_accumulation_steps). */
  loss_scale: number;
  /** Given when the accumulation window closes: clip, update and zero the gradients. */
  update: { lr: number; max_grad_norm: number } | null;
  amp: Amp;
}

export interface NativeAdamW {
  step(request: { lr: number }): Promise<void>;
  zeroGrad(): void;
  clipGradNorm(request: { max_norm: number }): Promise<number>;
  state(): [string, NativeTensor][];
  /** Throws, naming the tensor, where `state` does not fit; changes nothing. */
  checkState(state: [string, NativeTensor][]): Promise<void>;
  loadState(state: [string, NativeTensor][]): Promise<void>;
  trainStep(request: TrainStepRequest): Promise<{ loss: number; grad_norm?: number }>;
  backward(request: { loss: NativeTensor; scale: number; amp: Amp }): Promise<number>;
  finishStep(request: { lr: number; max_grad_norm: number }): Promise<number>;
  setProcessGroup(pg: NativeProcessGroup | null): void;
}

export interface NativeAdamWStatic {
  new (options: {
    groups: { params: NativeTensor[]; weight_decay: number }[];
    beta1: number;
    beta2: number;
    eps: number;
  }): NativeAdamW;
}

export interface NativeProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  broadcastParameters(request: { model: NativeModel; root: number }): Promise<void>;
  allReduce(request: { values: Float64Array; op: "sum" | "max" }): Promise<Float64Array>;
  barrier(): Promise<void>;
  dispose(): void;
}

export interface NativeProcessGroupStatic {
  connect(request: {
    master_addr: string;
    master_port: number;
    rank: number;
    world_size: number;
    timeout_ms: number;
    /** The network interface Gloo binds to (GLOO_SOCKET_IFNAME), or null to bind to gloo_address. */
    gloo_interface: string | null;
    gloo_address: string;
  }): Promise<NativeProcessGroup>;
}

export interface Addon {
  cudaIsAvailable(): boolean;
  mpsIsAvailable(): boolean;
  cudaDeviceCount(): number;
  setNumThreads(request: { threads: number }): void;
  getNumThreads(): number;
  manualSeed(request: { seed: number }): void;
  info(): {
    torch_version: string;
    parallel_info: string;
    cuda: boolean;
    mps: boolean;
    num_threads: number;
    mkldnn: boolean;
  };
  NativeTensor: NativeTensorStatic;
  NativeModel: NativeModelStatic;
  NativeAdamW: NativeAdamWStatic;
  NativeProcessGroup: NativeProcessGroupStatic;
  NativeContinuousBatching: NativeContinuousBatchingStatic;
  distributedAvailable: boolean;
  readSafetensors(request: {
    path: string;
    data_start: number;
    entries: SafetensorsEntry[];
    dtype: string | null;
    device: DeviceName;
  }): Promise<[string, NativeTensor][]>;
  writeSafetensors(request: {
    path: string;
    tensors: [string, NativeTensor][];
    metadata: Record<string, string>;
  }): Promise<void>;
  crossEntropy(request: {
    input: NativeTensor;
    target: NativeTensor;
    ignore_index: number;
    reduction: Reduction;
    label_smoothing: number;
  }): NativeTensor;
  getRngState(): NativeTensor;
  setRngState(state: NativeTensor): void;
  cpuMemoryReserved(): number;
  cpuEmptyCache(): void;
}
