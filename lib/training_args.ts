import { check, invalid, InvalidArgumentError, isPlainObject } from "./errors.js";
import { cuda_is_available, default_device, mps_is_available } from "./device.js";
import { distributed_env } from "./distributed.js";
import { SCHEDULER_TYPES, type SchedulerType } from "./schedulers.js";

export type IntervalStrategy = "no" | "steps" | "epoch";

/** Every option of TrainingArguments, with Hugging Face's names. */
export interface TrainingArgumentsOptions {
  output_dir?: string;
  overwrite_output_dir?: boolean;
  do_train?: boolean;
  do_eval?: boolean;
  eval_strategy?: IntervalStrategy;
  /** The old name of eval_strategy. */
  evaluation_strategy?: IntervalStrategy;
  per_device_train_batch_size?: number;
  per_device_eval_batch_size?: number;
  gradient_accumulation_steps?: number;
  eval_steps?: number | null;
  logging_strategy?: IntervalStrategy;
  logging_steps?: number;
  logging_first_step?: boolean;
  logging_dir?: string | null;
  num_train_epochs?: number;
  max_steps?: number;
  learning_rate?: number;
  weight_decay?: number;
  adam_beta1?: number;
  adam_beta2?: number;
  adam_epsilon?: number;
  max_grad_norm?: number;
  lr_scheduler_type?: SchedulerType;
  lr_scheduler_kwargs?: Record<string, number>;
  warmup_steps?: number;
  warmup_ratio?: number;
  save_strategy?: IntervalStrategy;
  save_steps?: number;
  save_total_limit?: number | null;
  save_safetensors?: boolean;
  save_only_model?: boolean;
  seed?: number;
  data_seed?: number | null;
  fp16?: boolean;
  bf16?: boolean;
  push_to_hub?: boolean;
  use_mps_device?: boolean;
  use_cpu?: boolean;
  no_cuda?: boolean;
  report_to?: string | string[];
  disable_tqdm?: boolean;
  dataloader_drop_last?: boolean;
  remove_unused_columns?: boolean;
  load_best_model_at_end?: boolean;
  /** Recompute each block in backward instead of keeping its activations (model.gradient_checkpointing_enable()). */
  gradient_checkpointing?: boolean;
  metric_for_best_model?: string | null;
  greater_is_better?: boolean | null;
  run_name?: string | null;
  optim?: string;
  /** Seconds a distributed rendezvous or collective waits for the other ranks (PyTorch's default 1800). */
  ddp_timeout?: number;
  /** The distributed backend: "gloo" (null: the default, Gloo). */
  ddp_backend?: "gloo" | null;
  /** torchlm: stop (false, the default) or skip the update (true) when the loss is NaN or infinite. */
  skip_nonfinite_loss?: boolean;
  /** torchlm: write output_dir/loss.png (or .svg) at the end of train(). */
  plot_loss?: boolean;
}

const DEFAULTS: Required<Omit<TrainingArgumentsOptions, "evaluation_strategy">> = {
  output_dir: "trainer_output",
  overwrite_output_dir: false,
  do_train: false,
  do_eval: false,
  eval_strategy: "no",
  per_device_train_batch_size: 8,
  per_device_eval_batch_size: 8,
  gradient_accumulation_steps: 1,
  eval_steps: null,
  logging_strategy: "steps",
  logging_steps: 500,
  logging_first_step: false,
  logging_dir: null,
  num_train_epochs: 3,
  max_steps: -1,
  learning_rate: 5e-5,
  weight_decay: 0,
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  adam_epsilon: 1e-8,
  max_grad_norm: 1.0,
  lr_scheduler_type: "linear",
  lr_scheduler_kwargs: {},
  warmup_steps: 0,
  warmup_ratio: 0,
  save_strategy: "steps",
  save_steps: 500,
  save_total_limit: null,
  save_safetensors: true,
  save_only_model: false,
  seed: 42,
  data_seed: null,
  fp16: false,
  bf16: false,
  push_to_hub: false,
  use_mps_device: false,
  use_cpu: false,
  no_cuda: false,
  report_to: "none",
  disable_tqdm: false,
  dataloader_drop_last: false,
  remove_unused_columns: true,
  load_best_model_at_end: false,
  gradient_checkpointing: false,
  metric_for_best_model: null,
  greater_is_better: null,
  run_name: null,
  optim: "adamw_torch",
  skip_nonfinite_loss: false,
  plot_loss: true,
  ddp_timeout: 1800,
  ddp_backend: null,
};
const KEYS = [...Object.keys(DEFAULTS), "evaluation_strategy"];
const STRATEGIES = ["no", "steps", "epoch"] as const;

/** Hugging Face's TrainingArguments: names and defaults; unknown keys and bad values are errors naming them. */
export class TrainingArguments {
  output_dir!: string;
  overwrite_output_dir!: boolean;
  do_train!: boolean;
  do_eval!: boolean;
  eval_strategy!: IntervalStrategy;
  per_device_train_batch_size!: number;
  per_device_eval_batch_size!: number;
  gradient_accumulation_steps!: number;
  eval_steps!: number | null;
  logging_strategy!: IntervalStrategy;
  logging_steps!: number;
  logging_first_step!: boolean;
  logging_dir!: string | null;
  num_train_epochs!: number;
  max_steps!: number;
  learning_rate!: number;
  weight_decay!: number;
  adam_beta1!: number;
  adam_beta2!: number;
  adam_epsilon!: number;
  max_grad_norm!: number;
  lr_scheduler_type!: SchedulerType;
  lr_scheduler_kwargs!: Record<string, number>;
  warmup_steps!: number;
  warmup_ratio!: number;
  save_strategy!: IntervalStrategy;
  save_steps!: number;
  save_total_limit!: number | null;
  save_safetensors!: boolean;
  save_only_model!: boolean;
  seed!: number;
  data_seed!: number | null;
  fp16!: boolean;
  bf16!: boolean;
  push_to_hub!: boolean;
  use_mps_device!: boolean;
  use_cpu!: boolean;
  no_cuda!: boolean;
  report_to!: string | string[];

  /** Whether the Trainer writes TensorBoard event files (report_to "tensorboard" or "all"). */
  reports_to_tensorboard(): boolean {
    const list = Array.isArray(this.report_to) ? this.report_to : [this.report_to];
    return list.includes("tensorboard") || list.includes("all");
  }
  disable_tqdm!: boolean;
  dataloader_drop_last!: boolean;
  remove_unused_columns!: boolean;
  load_best_model_at_end!: boolean;
  gradient_checkpointing!: boolean;
  metric_for_best_model!: string | null;
  greater_is_better!: boolean | null;
  run_name!: string | null;
  optim!: string;
  skip_nonfinite_loss!: boolean;
  plot_loss!: boolean;
  ddp_timeout!: number;
  ddp_backend!: "gloo" | null;

  constructor(options: TrainingArgumentsOptions = {}) {
    if (!isPlainObject(options)) throw invalid("TrainingArguments", "an object of options", options);
    for (const k of Object.keys(options))
      if (!KEYS.includes(k)) throw new InvalidArgumentError(`Unknown option ${k} for TrainingArguments`);
    const o = { ...options };
    if (o.evaluation_strategy !== undefined) {
      if (o.eval_strategy !== undefined && o.eval_strategy !== o.evaluation_strategy)
        throw new InvalidArgumentError(
          "Both eval_strategy and evaluation_strategy (its old name) are set, to different values",
        );
      o.eval_strategy = o.evaluation_strategy;
      delete o.evaluation_strategy;
    }
    Object.assign(this, DEFAULTS);
    for (const [k, v] of Object.entries(o)) if (v !== undefined) (this as unknown as Record<string, unknown>)[k] = v;
    this.#validate();
  }

  #validate(): void {
    check.string("output_dir", this.output_dir);
    for (const k of [
      "overwrite_output_dir",
      "do_train",
      "do_eval",
      "logging_first_step",
      "save_safetensors",
      "save_only_model",
      "fp16",
      "bf16",
      "push_to_hub",
      "use_mps_device",
      "use_cpu",
      "no_cuda",
      "disable_tqdm",
      "dataloader_drop_last",
      "remove_unused_columns",
      "load_best_model_at_end",
      "gradient_checkpointing",
      "skip_nonfinite_loss",
      "plot_loss",
    ] as const) {
      check.boolean(k, this[k]);
    }
    check.oneOf("eval_strategy", this.eval_strategy, STRATEGIES);
    check.number("ddp_timeout", this.ddp_timeout, 0, Infinity, true);
    if (this.ddp_backend !== null) check.oneOf("ddp_backend", this.ddp_backend, ["gloo"] as const);
    check.oneOf("logging_strategy", this.logging_strategy, STRATEGIES);
    check.oneOf("save_strategy", this.save_strategy, STRATEGIES);
    check.integer("per_device_train_batch_size", this.per_device_train_batch_size, 1);
    check.integer("per_device_eval_batch_size", this.per_device_eval_batch_size, 1);
    check.integer("gradient_accumulation_steps", this.gradient_accumulation_steps, 1);
    if (this.eval_steps !== null) check.number("eval_steps", this.eval_steps, 0, Infinity, true);
    check.number("logging_steps", this.logging_steps, 0, Infinity, true);
    check.number("save_steps", this.save_steps, 0, Infinity, true);
    check.number("num_train_epochs", this.num_train_epochs, 0);
    check.integer("max_steps", this.max_steps, -1);
    check.number("learning_rate", this.learning_rate, 0);
    check.number("weight_decay", this.weight_decay, 0);
    check.number("adam_beta1", this.adam_beta1, 0, 1);
    check.number("adam_beta2", this.adam_beta2, 0, 1);
    check.number("adam_epsilon", this.adam_epsilon, 0);
    check.number("max_grad_norm", this.max_grad_norm, 0);
    check.oneOf("lr_scheduler_type", this.lr_scheduler_type, SCHEDULER_TYPES);
    check.integer("warmup_steps", this.warmup_steps, 0);
    check.number("warmup_ratio", this.warmup_ratio, 0, 1);
    if (this.save_total_limit !== null) check.integer("save_total_limit", this.save_total_limit, 1);
    check.integer("seed", this.seed, 0, 2 ** 32 - 1);
    if (this.data_seed !== null) check.integer("data_seed", this.data_seed, 0, 2 ** 32 - 1);
    if (!["adamw_torch", "adamw_torch_fused", "adamw_hf"].includes(this.optim))
      throw invalid("optim", '"adamw_torch" (torchlm implements AdamW)', this.optim);
    if (this.fp16 && this.bf16) throw new InvalidArgumentError("At most one of fp16 and bf16 can be true");
    if (this.eval_strategy !== "no" && this.eval_steps === null) this.eval_steps = this.logging_steps;
    if (this.push_to_hub)
      throw new InvalidArgumentError(
        "push_to_hub is not supported by torchlm: upload output_dir with @huggingface/hub",
      );
    // accepted only where torchlm does what the option says: TensorBoard is its one integration ("all" means it)
    for (const r of Array.isArray(this.report_to) ? this.report_to : [this.report_to]) {
      if (!["none", "all", "tensorboard"].includes(r as string))
        throw invalid(
          "report_to",
          '"none", "all" or "tensorboard" (torchlm\'s one reporting integration; the logs are also in ' +
            "trainer.state.log_history and the loss plot)",
          r,
        );
    }
    if (this.load_best_model_at_end) {
      // Hugging Face's rule: the best model is a checkpoint, so a save must follow every evaluation it may pick
      if (this.save_strategy !== this.eval_strategy)
        throw new InvalidArgumentError(
          `load_best_model_at_end requires the save and eval strategy to match, but found eval_strategy ` +
            `"${this.eval_strategy}" and save_strategy "${this.save_strategy}"`,
        );
      if (this.eval_strategy === "no")
        throw new InvalidArgumentError(
          'load_best_model_at_end needs evaluations: set eval_strategy (and save_strategy) to "steps" or "epoch"',
        );
      if (this.eval_strategy === "steps" && this.save_steps % this.eval_steps! !== 0)
        throw new InvalidArgumentError(
          `load_best_model_at_end requires save_steps (${this.save_steps}) to be a multiple of eval_steps ` +
            `(${this.eval_steps})`,
        );
      this.metric_for_best_model ??= "loss";
    }
    if (this.metric_for_best_model !== null) check.string("metric_for_best_model", this.metric_for_best_model);
    if (this.greater_is_better === null && this.metric_for_best_model !== null)
      this.greater_is_better = !this.metric_for_best_model.endsWith("loss");
    if (!this.save_safetensors)
      throw new InvalidArgumentError(
        "save_safetensors: false is not supported: torchlm writes checkpoints as safetensors only",
      );
    if (this.fp16 && !this.use_cpu && !this.no_cuda && !cuda_is_available())
      throw new InvalidArgumentError(
        "fp16 mixed precision requires a GPU (not 'mps' or the CPU): use bf16, or fp16 on a CUDA machine",
      );
    if (this.fp16 && (this.use_cpu || this.no_cuda))
      throw new InvalidArgumentError("fp16 mixed precision requires a GPU: it cannot be used with use_cpu");
    if (this.use_mps_device && !mps_is_available())
      throw new InvalidArgumentError("use_mps_device is set but MPS is not available on this machine");
  }

  /** The device training runs on: CUDA, else MPS, else CPU (use_cpu forces the CPU). */
  get device(): string {
    return this.use_cpu || this.no_cuda ? "cpu" : default_device();
  }

  /** The number of training processes (WORLD_SIZE, as set by `torchlm launch` or torchrun). */
  get world_size(): number {
    return distributed_env()?.world_size ?? 1;
  }
  /** This process's rank among them (RANK). */
  get process_index(): number {
    return distributed_env()?.rank ?? 0;
  }
  /** Its rank on this machine (LOCAL_RANK). */
  get local_process_index(): number {
    return distributed_env()?.local_rank ?? 0;
  }

  /** Warmup steps for a run of `max_steps`: warmup_steps, else ceil(warmup_ratio x max_steps). */
  get_warmup_steps(max_steps: number): number {
    return this.warmup_steps > 0 ? this.warmup_steps : Math.ceil(max_steps * this.warmup_ratio);
  }

  to_dict(): Record<string, unknown> {
    return { ...(this as unknown as Record<string, unknown>) };
  }
}
