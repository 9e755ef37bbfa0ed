// Trainer: Hugging Face's training loop over the native model. The default step is one native call
// (forward, loss, backward and, when the accumulation window closes, clip + AdamW + zero-grad);
// a compute_loss override runs its own forward and loss, then backward and the update natively.
import { existsSync, readdirSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { check, invalid, InvalidArgumentError, isPlainObject, readingFile, TorchlmError, withStack } from "./errors.js";
import { readConfigJson } from "./config.js";
import { binding, type Amp, type NativeAdamW } from "./native.js";
import { PreTrainedModel, type CausalLMOutput } from "./model.js";
import { TrainingArguments } from "./training_args.js";
import { get_scheduler, type LRScheduler } from "./schedulers.js";
import { Dataset, permutation, type Row } from "./datasets.js";
import { DataCollatorForLanguageModeling } from "./collator.js";
import { PreTrainedTokenizerFast } from "./tokenizer.js";
import { cat, Tensor } from "./tensor.js";
import { readNamedTensors } from "./safetensors.js";
import { bar } from "./progress.js";
import { TrainerCallback, type LogRow } from "./callbacks.js";
import { TensorBoardCallback } from "./tensorboard.js";

export { EarlyStoppingCallback, TrainerCallback, type CallbackArgs, type LogRow } from "./callbacks.js";
import { plot_log_history } from "./plotting.js";
import {
  _default_group,
  name_lost_peer,
  all_reduce,
  barrier,
  broadcast_parameters,
  distributed_env,
  init_process_group,
  shard,
} from "./distributed.js";

export type Inputs = { input_ids: Tensor; attention_mask?: Tensor; labels?: Tensor; [k: string]: unknown };

/** The running loss sums of a train() call. */
interface RunTotals {
  loss: number;
  lossAll: number;
  lastLogged: number;
  stepsSinceLog: number;
}

// The inputs of GPT2LMHeadModel.forward, and the label names Hugging Face's Trainer keeps beside them.
const FORWARD_COLUMNS = new Set([
  "input_ids",
  "attention_mask",
  "position_ids",
  "labels",
  "past_key_values",
  "use_cache",
  "label",
  "label_ids",
]);
/** Hugging Face's TrainerState (the part torchlm keeps): saved as trainer_state.json in checkpoints. */
export class TrainerState {
  epoch = 0;
  global_step = 0;
  max_steps = 0;
  num_train_epochs = 0;
  logging_steps = 500;
  eval_steps: number | null = null;
  save_steps = 500;
  train_batch_size = 8;
  log_history: LogRow[] = [];
  best_metric: number | null = null;
  best_global_step: number | null = null;
  best_model_checkpoint: string | null = null;
  total_flos = 0;
  is_local_process_zero = true;
  is_world_process_zero = true;
}

/** What a callback may ask of the loop. */
export class TrainerControl {
  should_training_stop = false;
  should_evaluate = false;
  should_save = false;
  should_log = false;
}

export interface TrainerOptions {
  model: PreTrainedModel;
  args?: TrainingArguments;
  data_collator?: DataCollatorForLanguageModeling | ((features: Row[]) => Inputs);
  train_dataset?: Dataset;
  eval_dataset?: Dataset;
  tokenizer?: PreTrainedTokenizerFast;
  processing_class?: PreTrainedTokenizerFast;
  callbacks?: TrainerCallback[];
  /** Metrics of an evaluation from its predictions and labels; each key is logged with an eval_ prefix. */
  compute_metrics?: (eval_pred: EvalPrediction) => Record<string, number> | Promise<Record<string, number>>;
  /**
   * What of each batch's logits compute_metrics gets (e.g. their argmax): only this is kept across the batches,
   * never the logits themselves unless it returns them.
   */
  preprocess_logits_for_metrics?: (logits: Tensor, labels: Tensor) => Tensor | Promise<Tensor>;
}

/**
 * Hugging Face's EvalPrediction: an evaluation's predictions (or what preprocess_logits_for_metrics made of the logits)
 * and labels.
 */
export interface EvalPrediction {
  predictions: Tensor;
  label_ids: Tensor;
}

export interface TrainOutput {
  global_step: number;
  training_loss: number;
  metrics: LogRow;
}

// Hugging Face's get_decay_parameter_names: no decay on biases and norms (GPT-2's ln_*; Llama's *layernorm, norm,
// q_norm and k_norm)
const NO_DECAY = (name: string) =>
  name.endsWith(".bias") ||
  /\.ln_(1|2|f)\.weight$|(^|\.)ln_f\.weight$/.test(name) ||
  /layernorm|rmsnorm|(^|\.)norm($|\.)|_norm($|\.)/.test(name);

/** Hugging Face's Trainer for causal language modelling with torchlm's native model. */
export class Trainer {
  model: PreTrainedModel;
  args: TrainingArguments;
  data_collator: (features: Row[]) => Inputs;
  train_dataset?: Dataset;
  eval_dataset?: Dataset;
  tokenizer?: PreTrainedTokenizerFast;
  callbacks: TrainerCallback[];
  compute_metrics?: TrainerOptions["compute_metrics"];
  preprocess_logits_for_metrics?: TrainerOptions["preprocess_logits_for_metrics"];
  state = new TrainerState();
  control = new TrainerControl();
  optimizer: NativeAdamW | null = null;
  lr_scheduler: LRScheduler | null = null;
  #interrupted = false;
  #rank = 0;
  #world = 1;

  constructor(options: TrainerOptions) {
    if (!isPlainObject(options)) throw invalid("Trainer options", "an object with model, args, datasets", options);
    check.knownKeys("Trainer", options, [
      "model",
      "args",
      "data_collator",
      "train_dataset",
      "eval_dataset",
      "tokenizer",
      "processing_class",
      "callbacks",
      "compute_metrics",
      "preprocess_logits_for_metrics",
    ]);
    for (const k of ["compute_metrics", "preprocess_logits_for_metrics"] as const)
      if (options[k] !== undefined && typeof options[k] !== "function") throw invalid(k, "a function", options[k]);
    this.compute_metrics = options.compute_metrics;
    this.preprocess_logits_for_metrics = options.preprocess_logits_for_metrics;
    if (!(options.model instanceof PreTrainedModel)) throw invalid("model", "a model (PreTrainedModel)", options.model);
    this.model = options.model;
    this.args = options.args ?? new TrainingArguments();
    if (!(this.args instanceof TrainingArguments)) throw invalid("args", "a TrainingArguments", options.args);
    this.tokenizer = options.processing_class ?? options.tokenizer;
    for (const k of ["train_dataset", "eval_dataset"] as const)
      if (options[k] !== undefined && !(options[k] instanceof Dataset)) throw invalid(k, "a Dataset", options[k]);
    this.train_dataset = options.train_dataset;
    this.eval_dataset = options.eval_dataset;
    const collator =
      options.data_collator ??
      (this.tokenizer ? new DataCollatorForLanguageModeling(this.tokenizer, { mlm: false }) : null);
    if (!collator)
      throw new InvalidArgumentError(
        "Trainer needs a data_collator (or a tokenizer to build DataCollatorForLanguageModeling)",
      );
    if (typeof collator !== "function")
      throw invalid("data_collator", "a collator or a function from rows to a batch", collator);
    this.data_collator = collator as (f: Row[]) => Inputs;
    // reporting integrations come before the caller's callbacks, as in Hugging Face
    this.callbacks = [
      ...(this.args.reports_to_tensorboard() ? [new TensorBoardCallback()] : []),
      ...(options.callbacks ?? []),
    ];
    if (this.args.eval_strategy !== "no" && !this.eval_dataset)
      throw new InvalidArgumentError(`eval_strategy is "${this.args.eval_strategy}" but no eval_dataset was given`);
  }

  /**
   * The loss of one batch; override it as in Python. The default is the model's own loss (labels
   * shifted inside the model). Return a Tensor, or [loss, outputs] when return_outputs is true.
   */
  async compute_loss(
    model: PreTrainedModel,
    inputs: Inputs,
    return_outputs = false,
  ): Promise<Tensor | [Tensor, CausalLMOutput]> {
    const outputs = await model.forward(inputs as never);
    if (!outputs.loss) throw new InvalidArgumentError("The model returned no loss: the batch has no labels");
    return return_outputs ? [outputs.loss, outputs] : outputs.loss;
  }

  /**
   * The order of the training rows in an epoch: a seeded shuffle (the same seed gives the same order).
   * Override it as Python's `_get_train_sampler`, e.g. to train in dataset order.
   */
  _get_train_order(epoch: number, n: number): ArrayLike<number> {
    return permutation(n, (this.args.data_seed ?? this.args.seed) + epoch);
  }

  #overridden(): boolean {
    return this.compute_loss !== Trainer.prototype.compute_loss;
  }

  async #callback<K extends keyof TrainerCallback>(event: K, extra: Record<string, unknown> = {}): Promise<void> {
    for (const cb of this.callbacks) {
      const fn = cb[event] as ((a: unknown) => void | Promise<void>) | undefined;
      if (fn)
        await fn.call(cb, { args: this.args, state: this.state, control: this.control, model: this.model, ...extra });
    }
  }

  #createOptimizer(): NativeAdamW {
    // as Hugging Face's: only what requires grad (a PeftModel's adapters), so frozen weights get no optimizer state
    const named = this.model.named_parameters().filter(([, t]) => t.requires_grad);
    if (named.length === 0) {
      throw new InvalidArgumentError(
        ["q8", "q4"].includes(this.model.dtype)
          ? `Training a ${this.model.dtype} model is not supported: its weights are quantized for decoding; load ` +
              `the model in float32 to train it`
          : "The model has no parameter that requires grad: there is nothing to train",
      );
    }
    const decay = named.filter(([n]) => !NO_DECAY(n)).map(([, t]) => t._t);
    const rest = named.filter(([n]) => NO_DECAY(n)).map(([, t]) => t._t);
    return new binding.NativeAdamW({
      groups: [
        { params: decay, weight_decay: this.args.weight_decay },
        { params: rest, weight_decay: 0 },
      ],
      beta1: this.args.adam_beta1,
      beta2: this.args.adam_beta2,
      eps: this.args.adam_epsilon,
    });
  }

  #batches(n: number, size: number, order: ArrayLike<number>): number[][] {
    const out: number[][] = [];
    for (let i = 0; i < n; i += size) {
      if (this.args.dataloader_drop_last && i + size > n) break;
      out.push(Array.from({ length: Math.min(size, n - i) }, (_, k) => order[i + k]!));
    }
    return out;
  }

  #inputsOnly = new WeakMap<Dataset, Dataset>();
  /**
   * The dataset as the collator sees it: with remove_unused_columns (as Hugging Face's Trainer), only the columns
   * GPT2LMHeadModel.forward takes and the label names. Worked out once per dataset.
   */
  #modelInputs(ds: Dataset): Dataset {
    if (!this.args.remove_unused_columns) return ds;
    let out = this.#inputsOnly.get(ds);
    if (!out) {
      const cols = ds.column_names;
      const unused = cols.filter((c) => !FORWARD_COLUMNS.has(c));
      if (unused.length === cols.length)
        throw new InvalidArgumentError(
          `No column of the dataset (${cols.join(", ")}) is an input of the model's forward ` +
            `(${[...FORWARD_COLUMNS].join(", ")}): ` +
            "tokenize with map(..., { remove_columns }) or set remove_unused_columns: false",
        );
      out = unused.length ? ds.remove_columns(unused) : ds;
      this.#inputsOnly.set(ds, out);
    }
    return out;
  }

  #collate(ds: Dataset, idx: number[]): Inputs {
    const batch = this.data_collator(idx.map((i) => ds.get(i)));
    if (!batch || !(batch.input_ids instanceof Tensor))
      throw new InvalidArgumentError("data_collator must return { input_ids, attention_mask?, labels } as Tensors");
    return batch;
  }

  /** Runs training; resumes from output_dir's last checkpoint (true) or a given one (a path). */
  async train(options: { resume_from_checkpoint?: boolean | string } = {}): Promise<TrainOutput> {
    try {
      return await this.#train(options);
    } catch (e) {
      throw name_lost_peer(e);
    }
  }

  async #train(options: { resume_from_checkpoint?: boolean | string }): Promise<TrainOutput> {
    check.knownKeys("train", options, ["resume_from_checkpoint"]);
    const args = this.args;
    if (!this.train_dataset || this.train_dataset.length === 0)
      throw new InvalidArgumentError("Trainer.train() needs a non-empty train_dataset");
    const ds = this.#modelInputs(this.train_dataset);
    const device = args.device;
    if (this.model.device !== device && !(device === "cuda" && this.model.device.startsWith("cuda")))
      await this.model.to(device);
    const amp: Amp = args.bf16 ? "bfloat16" : args.fp16 ? "float16" : "none";
    if (args.fp16 && !this.model.device.startsWith("cuda"))
      throw new InvalidArgumentError("fp16 mixed precision requires a CUDA device");
    if (args.gradient_checkpointing) this.model.gradient_checkpointing_enable();
    const pg = await this.#joinProcessGroup();
    const flopsParams = this.model.num_parameters({ exclude_embeddings: true });

    const bs = args.per_device_train_batch_size;
    const ga = args.gradient_accumulation_steps;
    const epochRows = this.#shard(new Int32Array(ds.length));
    const batchesPerEpoch = this.#batches(epochRows.length, bs, epochRows).length;
    const updatesPerEpoch = Math.max(Math.ceil(batchesPerEpoch / ga), 1);
    const maxSteps = args.max_steps > 0 ? args.max_steps : Math.ceil(args.num_train_epochs * updatesPerEpoch);
    const epochs = args.max_steps > 0 ? Math.ceil(maxSteps / updatesPerEpoch) : Math.ceil(args.num_train_epochs);
    this.state = Object.assign(new TrainerState(), {
      max_steps: maxSteps,
      num_train_epochs: epochs,
      logging_steps: args.logging_steps,
      eval_steps: args.eval_steps,
      save_steps: args.save_steps,
      train_batch_size: bs,
      is_world_process_zero: this.#rank === 0,
      is_local_process_zero: (distributed_env()?.local_rank ?? 0) === 0,
    });
    this.control = new TrainerControl();
    this.optimizer = this.#createOptimizer();
    this.lr_scheduler = get_scheduler(args.lr_scheduler_type, args.learning_rate, {
      num_warmup_steps: args.get_warmup_steps(maxSteps),
      num_training_steps: maxSteps,
      ...args.lr_scheduler_kwargs,
    });
    binding.manualSeed({ seed: args.seed });
    if (pg) {
      // DDP: every rank starts from rank 0's weights and averages gradients before each update
      await broadcast_parameters(this.model._native, 0);
      this.optimizer.setProcessGroup(pg);
    }

    let skipUpdates = 0;
    if (options.resume_from_checkpoint) {
      const ckpt =
        options.resume_from_checkpoint === true
          ? this.#lastCheckpoint()
          : check.string("resume_from_checkpoint", options.resume_from_checkpoint);
      if (!ckpt) throw new InvalidArgumentError(`No checkpoint-N folder in ${args.output_dir} to resume from`);
      await this.#loadCheckpoint(ckpt);
      skipUpdates = this.state.global_step;
    }

    await this.#prepareOutputDir();
    this.model.train();
    const startStep = this.state.global_step;
    const start = Date.now();
    const run: RunTotals = { loss: 0, lossAll: 0, lastLogged: this.state.global_step, stepsSinceLog: 0 };
    const bar_ =
      !args.disable_tqdm && this.#rank === 0
        ? bar("Train", maxSteps, "Train [{bar}] {value}/{total} steps | loss {loss} | {eta_formatted}", false)
        : null;
    bar_?.update(this.state.global_step, { loss: "-" });
    const onSignal = () => {
      this.#interrupted = true;
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    await this.#callback("on_train_begin");
    const step = { amp, fused: !this.#overridden(), flopsParams };
    try {
      outer: for (let epoch = 0; epoch < epochs; epoch++) {
        const order = this.#shard(this._get_train_order(epoch, ds.length));
        const batches = this.#batches(order.length, bs, order);
        const updates = Math.ceil(batches.length / ga);
        if (skipUpdates >= updates) {
          skipUpdates -= updates;
          continue;
        }
        await this.#callback("on_epoch_begin");
        for (let u = skipUpdates; u < updates; u++) {
          const window = batches.slice(u * ga, Math.min((u + 1) * ga, batches.length));
          if (window.length === 0) continue;
          const lr = this.lr_scheduler.get_last_lr();
          const { loss, grad_norm } = await this.#trainingStep(ds, window, lr, step);
          this.lr_scheduler.step();
          this.state.global_step++;
          this.state.epoch = epoch + (u + 1) / updates;
          run.loss += loss;
          run.lossAll += loss;
          run.stepsSinceLog++;
          bar_?.update(this.state.global_step, { loss: loss.toFixed(4) });
          await this.#callback("on_step_end");
          await this.#afterUpdate(run, lr, grad_norm, pg !== null);
          if (this.state.global_step >= maxSteps || this.control.should_training_stop) break outer;
        }
        skipUpdates = 0;
        await this.#afterEpoch(run);
        if (this.control.should_training_stop) break;
      }
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      bar_?.stop();
      this.model.eval();
    }
    return this.#finish(run, startStep, start, bs * ga);
  }

  /**
   * One optimizer update over an accumulation window of batches: by default one native call per batch (forward, loss,
   * backward, and at the window's end clip + AdamW + zero-grad); with a compute_loss override, its loss, then backward
   * and the update natively. Returns the window's mean loss and the gradient norm before clipping.
   */
  async #trainingStep(
    ds: Dataset,
    window: number[][],
    lr: number,
    step: { amp: Amp; fused: boolean; flopsParams: number },
  ): Promise<{ loss: number; grad_norm: number }> {
    const max_grad_norm = this.args.max_grad_norm;
    let loss = 0,
      grad_norm = 0;
    for (const [k, idx] of window.entries()) {
      const inputs = this.#collate(ds, idx);
      // Hugging Face's estimate: 6 FLOPs per token and non-embedding parameter (forward and backward)
      this.state.total_flos += 6 * inputs.input_ids.numel() * step.flopsParams;
      const last = k === window.length - 1;
      const scale = 1 / window.length;
      if (step.fused) {
        if (!inputs.labels)
          throw new InvalidArgumentError("The batch has no labels: use DataCollatorForLanguageModeling or add labels");
        const r = await withStack(() =>
          this.optimizer!.trainStep({
            model: this.model._native,
            input_ids: inputs.input_ids._t,
            attention_mask: inputs.attention_mask?._t ?? null,
            labels: inputs.labels!._t,
            loss_scale: scale,
            update: last ? { lr, max_grad_norm } : null,
            amp: step.amp,
          }),
        );
        this.#checkFinite(r.loss);
        loss += r.loss * scale;
        if (last) grad_norm = r.grad_norm ?? 0;
      } else {
        const result = await this.compute_loss(this.model, inputs, false);
        const l = Array.isArray(result) ? result[0] : result;
        if (!(l instanceof Tensor)) throw invalid("compute_loss's result", "a loss Tensor (or [loss, outputs])", l);
        const value = await withStack(() => this.optimizer!.backward({ loss: l._t, scale, amp: step.amp }));
        this.#checkFinite(value);
        loss += value * scale;
        l.dispose();
        if (last) grad_norm = await withStack(() => this.optimizer!.finishStep({ lr, max_grad_norm }));
      }
      for (const v of Object.values(inputs)) if (v instanceof Tensor) v.dispose();
    }
    return { loss, grad_norm };
  }

  /** What follows an update: log, evaluate, save as the strategies and callbacks ask. */
  async #afterUpdate(run: RunTotals, lr: number, grad_norm: number, distributed: boolean): Promise<void> {
    const args = this.args;
    // a signal may reach the ranks at different steps: stop together
    if (distributed) this.#interrupted = (await all_reduce([this.#interrupted ? 1 : 0], "max"))[0]! > 0;
    const gs = this.state.global_step;
    if (
      (args.logging_strategy === "steps" && (gs % args.logging_steps === 0 || (args.logging_first_step && gs === 1))) ||
      this.control.should_log
    ) {
      // learning_rate is the rate this update used, as transformers 5 logs it
      await this.#logLoss(run, { grad_norm, learning_rate: lr });
      this.control.should_log = false;
    }
    if ((args.eval_strategy === "steps" && gs % args.eval_steps! === 0) || this.control.should_evaluate) {
      this.#determineBestMetric(await this.evaluate());
      this.control.should_evaluate = false;
      this.model.train();
    }
    if ((args.save_strategy === "steps" && gs % args.save_steps === 0) || this.control.should_save) {
      await this.#saveCheckpoint();
      this.control.should_save = false;
    }
    if (this.#interrupted) {
      await this.#saveCheckpoint();
      throw new TorchlmError(
        `Training was interrupted at step ${gs}; a checkpoint was saved: resume with train({ ` +
          `resume_from_checkpoint: true })`,
        "ERR_TORCHLM_INTERRUPTED",
      );
    }
  }

  /** The end of an epoch: log, evaluate, save as the "epoch" strategies ask. */
  async #afterEpoch(run: RunTotals): Promise<void> {
    const args = this.args;
    if (args.logging_strategy === "epoch" && run.stepsSinceLog > 0)
      await this.#logLoss(run, { learning_rate: this.lr_scheduler!.get_last_lr() });
    if (args.eval_strategy === "epoch") {
      this.#determineBestMetric(await this.evaluate());
      this.model.train();
    }
    if (args.save_strategy === "epoch") await this.#saveCheckpoint();
    await this.#callback("on_epoch_end");
  }

  /** Logs the mean loss over the ranks and the updates since the last log row. */
  async #logLoss(run: RunTotals, extra: LogRow): Promise<void> {
    const gs = this.state.global_step;
    const loss = (await this.#mean(run.loss)) / (gs - run.lastLogged);
    await this.log({ loss, ...extra, epoch: this.state.epoch });
    run.loss = 0;
    run.lastLogged = gs;
    run.stepsSinceLog = 0;
  }

  /** Hugging Face's _determine_best_metric: state.best_metric and best_global_step from an evaluation's metrics. */
  #determineBestMetric(metrics: LogRow): void {
    const name = this.args.metric_for_best_model;
    if (name === null) return;
    const key = name.startsWith("eval_") ? name : `eval_${name}`;
    const value = metrics[key];
    if (value === undefined)
      throw new InvalidArgumentError(
        `metric_for_best_model is ${key}, which is not among the evaluation metrics ` +
          `(${Object.keys(metrics).join(", ")})`,
      );
    const best = this.state.best_metric;
    if (best === null || (this.args.greater_is_better ? value > best : value < best)) {
      this.state.best_metric = value;
      if (this.args.save_strategy !== "no") this.state.best_global_step = this.state.global_step;
    }
  }

  /** train()'s summary row, the best checkpoint's weights when asked, on_train_end and the loss plot. */
  async #finish(run: RunTotals, startStep: number, start: number, rowsPerUpdate: number): Promise<TrainOutput> {
    const args = this.args;
    if (
      args.load_best_model_at_end &&
      this.state.best_model_checkpoint &&
      existsSync(this.state.best_model_checkpoint)
    ) {
      if (this.#world > 1) await barrier();
      await this.model._load_checkpoint_weights(this.state.best_model_checkpoint);
    }
    const runtime = (Date.now() - start) / 1000;
    const stepsRun = this.state.global_step - startStep;
    const trainLoss = stepsRun > 0 ? (await this.#mean(run.lossAll)) / stepsRun : 0;
    const metrics: LogRow = {
      train_runtime: round4(runtime),
      train_samples_per_second: round3((stepsRun * rowsPerUpdate * this.#world) / Math.max(runtime, 1e-9)),
      train_steps_per_second: round3(stepsRun / Math.max(runtime, 1e-9)),
      total_flos: this.state.total_flos,
      train_loss: trainLoss,
      epoch: this.state.epoch,
    };
    this.state.log_history.push({ ...metrics, step: this.state.global_step });
    await this.#callback("on_train_end");
    if (args.plot_loss && this.#rank === 0 && this.state.log_history.some((r) => "loss" in r)) {
      await mkdir(args.output_dir, { recursive: true });
      await plot_log_history(this.state.log_history, join(args.output_dir, "loss.png"));
    }
    return { global_step: this.state.global_step, training_loss: trainLoss, metrics };
  }

  /** Joins the process group when launched with WORLD_SIZE > 1 (as TrainingArguments does in Python). */
  async #joinProcessGroup() {
    const env = distributed_env();
    if (env && !_default_group()) await init_process_group({ timeout: this.args.ddp_timeout });
    const pg = _default_group();
    this.#rank = pg?.rank ?? 0;
    this.#world = pg?.worldSize ?? 1;
    return pg;
  }

  /**
   * An output_dir that cannot be written is reported before the first step, not at the first save; temporaries
   * left by a run killed while saving are removed.
   */
  async #prepareOutputDir(): Promise<void> {
    const args = this.args;
    if (this.#rank !== 0 || (args.save_strategy === "no" && !args.plot_loss)) return;
    const dir = args.output_dir;
    try {
      await mkdir(dir, { recursive: true });
      const probe = join(dir, `.torchlm-write-test-${process.pid}`);
      await writeFile(probe, "");
      await rm(probe);
    } catch (e) {
      throw new TorchlmError(
        `output_dir ${dir} is not writable (${(e as Error).message}): checkpoints and the loss plot are written ` +
          `there; choose another output_dir`,
        "ERR_TORCHLM_IO",
      );
    }
    for (const name of readdirSync(dir))
      if (/^\.checkpoint-\d+\.tmp-/.test(name)) await rm(join(dir, name), { recursive: true, force: true });
  }

  /** This rank's share of an epoch's order (DistributedSampler's), or all of it in one process. */
  #shard(order: ArrayLike<number>): ArrayLike<number> {
    return this.#world > 1 ? shard(order, this.#world, this.#rank, this.args.dataloader_drop_last) : order;
  }

  /** The mean of a value over the ranks. */
  async #mean(x: number): Promise<number> {
    return this.#world > 1 ? (await all_reduce([x]))[0]! / this.#world : x;
  }

  #checkFinite(loss: number): void {
    if (Number.isFinite(loss)) return;
    if (this.args.skip_nonfinite_loss) return;
    throw new TorchlmError(
      `The loss is ${loss} at step ${this.state.global_step + 1}: training stopped (the last checkpoint is intact). ` +
        "Lower learning_rate, check the data, or set skip_nonfinite_loss: true to skip such steps.",
      "ERR_TORCHLM_NONFINITE_LOSS",
    );
  }

  /** Adds a row to log_history (with epoch and step) and calls on_log. */
  async log(logs: LogRow): Promise<void> {
    const row: LogRow = { ...logs, step: this.state.global_step };
    if (this.state.epoch !== undefined && row.epoch === undefined) row.epoch = this.state.epoch;
    this.state.log_history.push(row);
    await this.#callback("on_log", { logs: row });
  }

  /** Loss on eval_dataset, in order, in batches of per_device_eval_batch_size; logs and returns the metrics. */
  async evaluate(options: { eval_dataset?: Dataset } = {}): Promise<LogRow> {
    const given = options.eval_dataset ?? this.eval_dataset;
    if (!given || given.length === 0) throw new InvalidArgumentError("evaluate() needs an eval_dataset");
    const ds = this.#modelInputs(given);
    const wasTraining = this.model.training;
    this.model.eval();
    const start = Date.now();
    let total = 0,
      count = 0,
      steps = 0;
    // each rank a strided slice, not padded, so the summed loss covers every row once
    const mine = Int32Array.from(
      { length: Math.max(0, Math.ceil((ds.length - this.#rank) / this.#world)) },
      (_, i) => this.#rank + i * this.#world,
    );
    const batches = this.#batches(mine.length, this.args.per_device_eval_batch_size, mine);
    if (this.compute_metrics && this.#world > 1)
      throw new InvalidArgumentError(
        "compute_metrics is not supported in distributed evaluation yet: evaluate in one process",
      );
    const preds: Tensor[] = [],
      labels: Tensor[] = [];
    try {
      for (const idx of batches) {
        const inputs = this.#collate(ds, idx);
        const result = await this.compute_loss(this.model, inputs, true);
        const loss = Array.isArray(result) ? result[0] : result;
        total += loss.item() * idx.length;
        count += idx.length;
        steps++;
        let keep: Tensor | null = null;
        if (this.compute_metrics) {
          if (!Array.isArray(result) || !inputs.labels)
            throw new InvalidArgumentError("compute_metrics needs the model's outputs and the batch's labels");
          const logits = result[1].logits;
          keep = this.preprocess_logits_for_metrics
            ? await this.preprocess_logits_for_metrics(logits, inputs.labels)
            : logits;
          preds.push(keep);
          labels.push(inputs.labels.clone());
        }
        if (Array.isArray(result) && result[1].logits !== keep) result[1].logits.dispose();
        loss.dispose();
        for (const v of Object.values(inputs)) if (v instanceof Tensor) v.dispose();
      }
    } finally {
      if (wasTraining) this.model.train();
    }
    const computed: LogRow = {};
    if (this.compute_metrics) {
      const predictions = catBatches(preds, "predictions"),
        label_ids = catBatches(labels, "label_ids");
      try {
        for (const [k, v] of Object.entries(await this.compute_metrics({ predictions, label_ids }))) {
          if (typeof v !== "number") throw invalid(`compute_metrics's ${k}`, "a number", v);
          computed[k.startsWith("eval_") ? k : `eval_${k}`] = v;
        }
      } finally {
        predictions.dispose();
        label_ids.dispose();
      }
    }
    if (this.#world > 1) [total, count, steps] = (await all_reduce([total, count, steps])) as [number, number, number];
    const runtime = (Date.now() - start) / 1000;
    // Hugging Face's order: compute_metrics' metrics, the loss, then the speed; perplexity beside the loss, as the
    // causal LM example scripts report it (exp of the mean token loss)
    const metrics: LogRow = {
      ...computed,
      eval_loss: total / count,
      eval_perplexity: Math.exp(total / count),
      eval_runtime: round4(runtime),
      eval_samples_per_second: round3(count / Math.max(runtime, 1e-9)),
      eval_steps_per_second: round3(steps / Math.max(runtime, 1e-9)),
      epoch: this.state.epoch,
    };
    await this.log(metrics);
    await this.#callback("on_evaluate", { metrics });
    return metrics;
  }

  /** Saves the model (and tokenizer) with save_pretrained, to output_dir by default. */
  async save_model(dir?: string): Promise<void> {
    const out = dir ?? this.args.output_dir;
    if (this.#rank === 0) {
      await this.model.save_pretrained(out);
      if (this.tokenizer) await this.tokenizer.save_pretrained(out);
    }
    if (this.#world > 1) await barrier();
  }

  #lastCheckpoint(): string | null {
    const dir = this.args.output_dir;
    if (!existsSync(dir)) return null;
    const steps = checkpointSteps(dir);
    return steps.length ? join(dir, `checkpoint-${steps[steps.length - 1]}`) : null;
  }

  /**
   * checkpoint-N/ written under a temporary name and renamed: a crash never leaves half a checkpoint.
   * In a process group rank 0 writes it; every rank adds its own RNG state before the rename.
   */
  async #saveCheckpoint(): Promise<void> {
    const args = this.args;
    const dist = this.#world > 1,
      main = this.#rank === 0;
    const name = `checkpoint-${this.state.global_step}`;
    const final = join(args.output_dir, name);
    const tmp = join(args.output_dir, `.${name}.tmp-${dist ? "ddp" : process.pid}`);
    const saveRng = () =>
      withStack(() =>
        binding.writeSafetensors({
          path: join(tmp, dist ? `rng_state_${this.#rank}.safetensors` : "rng_state.safetensors"),
          tensors: [["cpu", binding.getRngState()]],
          metadata: { format: "torchlm-rng" },
        }),
      );
    try {
      if (main) {
        await mkdir(args.output_dir, { recursive: true });
        await rm(tmp, { recursive: true, force: true });
        await this.model.save_pretrained(tmp);
        if (this.tokenizer) await this.tokenizer.save_pretrained(tmp);
        if (!args.save_only_model) {
          await withStack(() =>
            binding.writeSafetensors({
              path: join(tmp, "optimizer.safetensors"),
              tensors: this.optimizer!.state(),
              metadata: { format: "torchlm-adamw" },
            }),
          );
          await writeFile(join(tmp, "scheduler.json"), JSON.stringify(this.lr_scheduler!.state_dict()));
          await saveRng();
        }
        // as Hugging Face: the best checkpoint is this one or an earlier one still on disk
        const best = this.state.best_global_step;
        if (
          best !== null &&
          (best === this.state.global_step || existsSync(join(args.output_dir, `checkpoint-${best}`)))
        )
          this.state.best_model_checkpoint = join(args.output_dir, `checkpoint-${best}`);
        await writeFile(join(tmp, "trainer_state.json"), JSON.stringify(this.state, null, 2));
        await writeFile(join(tmp, "training_args.json"), JSON.stringify(args.to_dict(), null, 2));
      }
      if (dist) {
        await barrier();
        if (!main && !args.save_only_model) await saveRng();
        await barrier();
      }
      if (main) {
        if (existsSync(final)) await discard(final);
        await rename(tmp, final);
      }
    } catch (e) {
      if (main) await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw new TorchlmError(`Cannot save checkpoint ${final}: ${(e as Error).message}`, "ERR_TORCHLM_IO");
    }
    await this.#callback("on_save", { checkpoint: final });
    if (main && args.save_total_limit !== null) {
      // the best checkpoint counts as the newest, so rotation keeps it; with a limit of 1, the last one stays too
      const best = this.state.best_model_checkpoint
        ? Number(/checkpoint-(\d+)$/.exec(this.state.best_model_checkpoint)?.[1])
        : NaN;
      const all = checkpointSteps(args.output_dir).filter((s) => s !== best);
      if (!Number.isNaN(best) && existsSync(join(args.output_dir, `checkpoint-${best}`))) all.push(best);
      const limit =
        args.save_total_limit === 1 &&
        !Number.isNaN(best) &&
        all.at(-1) === best &&
        all.length > 1 &&
        best !== this.state.global_step
          ? 2
          : args.save_total_limit;
      for (const s of all.slice(0, Math.max(0, all.length - limit)))
        await discard(join(args.output_dir, `checkpoint-${s}`));
    }
  }

  // Every file is read and checked before anything changes: a checkpoint that cannot be resumed leaves the model,
  // the optimizer, the scheduler and the random state as they were.
  async #loadCheckpoint(dir: string): Promise<void> {
    const file = (f: string) => join(dir, f);
    if (!existsSync(file("trainer_state.json")))
      throw new InvalidArgumentError(`${dir} is not a checkpoint (no trainer_state.json)`);
    const saved = await readingFile(file("trainer_state.json"), async () =>
      checkTrainerState(await readConfigJson(file("trainer_state.json")), this.state.max_steps, dir),
    );
    const scheduler = await readingFile(file("scheduler.json"), async () => {
      const s = await readConfigJson(file("scheduler.json"));
      check.integer("last_step", s.last_step, 0, saved.max_steps);
      return s as { last_step: number };
    });
    // a DDP checkpoint has one RNG state per rank; a single process resumes from rank 0's
    const rngFile = [`rng_state_${this.#rank}.safetensors`, "rng_state.safetensors", "rng_state_0.safetensors"]
      .map(file)
      .find((f) => existsSync(f));
    if (!rngFile) throw new InvalidArgumentError(`${dir} has no rng_state file`);
    const rng = await readingFile(rngFile, async () => {
      const t = await readNamedTensors(rngFile, "cpu");
      const now = binding.getRngState();
      const [name, state] = t[0] ?? [];
      if (t.length !== 1 || state!.dtype !== "uint8" || state!.shape.join() !== now.shape.join())
        throw new InvalidArgumentError(
          `expected one tensor, cpu: the CPU generator's state as ${now.shape.join(" x ")} uint8 bytes; found ` +
            (t.length ? t.map(([n, x]) => `${n} ${x.dtype} [${x.shape.join(", ")}]`).join(", ") : "none"),
        );
      // libtorch checks a state only by setting it: set, then put the current one back
      try {
        binding.setRngState(state!);
      } catch (e) {
        throw new InvalidArgumentError(`tensor ${name} is not a CPU generator's state (${(e as Error).message})`);
      } finally {
        binding.setRngState(now);
      }
      return state!;
    });
    const optimizerFile = file("optimizer.safetensors");
    const opt = await readingFile(optimizerFile, async () => {
      const t = await readNamedTensors(optimizerFile, this.model.device);
      await withStack(() => this.optimizer!.checkState(t));
      return t;
    });
    // in place, after checking every tensor: the optimizer keeps holding the same tensors
    await this.model._load_checkpoint_weights(dir);
    await withStack(() => this.optimizer!.loadState(opt));
    this.lr_scheduler!.load_state_dict(scheduler);
    binding.setRngState(rng);
    Object.assign(this.state, saved);
  }
}

/** trainer_state.json's fields torchlm reads back, each checked (the rest of the file is Hugging Face's). */
function checkTrainerState(o: Record<string, unknown>, max_steps: number, dir: string): TrainerState {
  const got = check.integer("max_steps", o.max_steps, 0);
  if (got !== max_steps)
    throw new InvalidArgumentError(`${dir} was saved by a run of ${got} steps, this one has ${max_steps}`);
  check.integer("global_step", o.global_step, 0, max_steps);
  check.number("epoch", o.epoch, 0, Number.MAX_VALUE);
  if (!Array.isArray(o.log_history) || !o.log_history.every((r) => isPlainObject(r)))
    throw invalid("log_history", "an array of objects", o.log_history);
  for (const k of ["best_metric", "best_global_step"] as const)
    if (o[k] !== undefined && o[k] !== null) check.number(k, o[k], -Number.MAX_VALUE, Number.MAX_VALUE);
  if (o.best_model_checkpoint !== undefined && o.best_model_checkpoint !== null)
    check.string("best_model_checkpoint", o.best_model_checkpoint);
  for (const k of ["num_train_epochs", "total_flos", "logging_steps", "save_steps", "train_batch_size"] as const)
    if (o[k] !== undefined && o[k] !== null) check.number(k, o[k], 0, Number.MAX_VALUE);
  if (o.eval_steps !== undefined && o.eval_steps !== null)
    check.number("eval_steps", o.eval_steps, 0, Number.MAX_VALUE);
  const state = new TrainerState();
  for (const k of Object.keys(state) as (keyof TrainerState)[])
    if (o[k] !== undefined) (state as unknown as Record<string, unknown>)[k] = o[k];
  return state;
}

/** The N of every checkpoint-N folder in dir, ascending. */
function checkpointSteps(dir: string): number[] {
  return readdirSync(dir)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter(Boolean)
    .map((m) => Number(m![1]))
    .sort((a, b) => a - b);
}

/**
 * Removes a checkpoint without ever leaving it half-deleted under its own name: it is renamed to a temporary
 * name first (which the next run cleans up if this one is killed meanwhile).
 */
async function discard(dir: string): Promise<void> {
  const trash = join(dirname(dir), `.${basename(dir)}.tmp-deleting-${process.pid}`);
  await rename(dir, trash);
  await rm(trash, { recursive: true, force: true });
}

/** The batches of an evaluation as one tensor along the rows (they must agree in every other dimension). */
function catBatches(ts: Tensor[], what: string): Tensor {
  const rest = (t: Tensor) => t.shape.slice(1).join(",");
  if (ts.some((t) => rest(t) !== rest(ts[0]!)))
    throw new InvalidArgumentError(
      `compute_metrics: the ${what} of the evaluation batches differ in shape ` +
        `(${ts.map((t) => `[${t.shape.join(", ")}]`).join(", ")}): ` +
        'pad the evaluation set to one length (padding: "max_length")',
    );
  const out = ts.length === 1 ? ts[0]!.clone() : cat(ts, 0);
  for (const t of ts) t.dispose();
  return out;
}

function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
function round3(x: number): number {
  return Math.round(x * 1e3) / 1e3;
}
