// torchlm: GPT-2 in Node.js on libtorch, with Hugging Face's names.
import { invalid } from "./errors.js";
export {
  AbortError,
  AddonLoadError,
  DisposedError,
  InvalidArgumentError,
  NativeError,
  TorchlmError,
  type ErrorCode,
} from "./errors.js";
export { Tensor, tensor, cat, type Dtype, type NestedList } from "./tensor.js";
export {
  default_device,
  cuda_is_available,
  mps_is_available,
  set_num_threads,
  get_num_threads,
  set_seed,
  torch_info,
  memory_reserved,
  empty_cache,
} from "./device.js";
export { GPT2Config, PretrainedConfig } from "./config.js";
export { LoraConfig, get_peft_model, PeftModel, type LoraConfigOptions } from "./peft.js";
export { AutoConfig, AutoModelForCausalLM } from "./auto.js";
export {
  LlamaConfig,
  LlamaForCausalLM,
  Qwen2Config,
  Qwen2ForCausalLM,
  Qwen3Config,
  Qwen3ForCausalLM,
  type RopeParameters,
} from "./models/llama.js";
export {
  GPT2LMHeadModel,
  PreTrainedModel,
  type ForwardInputs,
  type CausalLMOutput,
  type FromPretrainedOptions,
} from "./model.js";
export { GenerationConfig, type GenerationOptions } from "./generation_config.js";
export { type GenerateOptions, type Streamer } from "./generation.js";
export {
  ContinuousBatchingManager,
  RequestHandle,
  type ContinuousBatchingOptions,
  type GenerationOutput,
  type RequestOptions,
  type TokenOutput,
} from "./continuous_batching.js";
export { CrossEntropyLoss, type CrossEntropyLossOptions } from "./loss.js";
export { load_file, save_file } from "./safetensors.js";
export { hubCacheDir } from "./hub.js";

/** Python's range(): range(n) or range(start, stop, step?) as an array of indices. */
export function range(a: number, b?: number, step = 1): number[] {
  const [start, stop] = b === undefined ? [0, a] : [a, b];
  if (!Number.isInteger(start) || !Number.isInteger(stop) || !Number.isInteger(step) || step === 0)
    throw invalid("range", "integers (and a non-zero step)", `${start}, ${stop}, ${step}`);
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}
export {
  AutoTokenizer,
  GPT2TokenizerFast,
  PreTrainedTokenizerFast,
  type ApplyChatTemplateOptions,
  type BatchEncoding,
  type ChatMessage,
  type TokenizerCallOptions,
} from "./tokenizer.js";
export { pipeline, type TextGenerationPipeline, type TextGenerationOptions } from "./pipeline.js";
export { Dataset, load_dataset, type DatasetDict, type LoadDatasetOptions, type MapOptions } from "./datasets.js";
export { DataCollatorForLanguageModeling, type CollatedBatch } from "./collator.js";
export { TrainingArguments, type TrainingArgumentsOptions } from "./training_args.js";
export {
  Trainer,
  TrainerCallback,
  TrainerState,
  TrainerControl,
  EarlyStoppingCallback,
  type TrainOutput,
  type TrainerOptions,
  type Inputs,
  type EvalPrediction,
} from "./trainer.js";
export { SummaryWriter, TensorBoardCallback, rewrite_logs } from "./tensorboard.js";
export { get_scheduler, get_scheduler_lambda, LRScheduler, SCHEDULER_TYPES, type SchedulerType } from "./schedulers.js";
export {
  init_process_group,
  destroy_process_group,
  is_initialized,
  get_rank,
  get_world_size,
  barrier,
  all_reduce,
  DistributedSampler,
  type InitProcessGroupOptions,
} from "./distributed.js";
export { launch, type LaunchOptions } from "./launch.js";
export { plot_log_history, loss_chart_svg } from "./plotting.js";
