// The Trainer's callbacks, as Hugging Face names them.
import { check, InvalidArgumentError } from "./errors.js";
import type { PreTrainedModel } from "./model.js";
import type { TrainingArguments } from "./training_args.js";
import type { TrainerControl, TrainerState } from "./trainer.js";

export type LogRow = Record<string, number>;

export interface CallbackArgs {
  args: TrainingArguments;
  state: TrainerState;
  control: TrainerControl;
  model: PreTrainedModel;
}

/** Hooks into the loop, as in Hugging Face; every method is optional. */
export class TrainerCallback {
  on_train_begin?(a: CallbackArgs): void | Promise<void>;
  on_epoch_begin?(a: CallbackArgs): void | Promise<void>;
  on_step_end?(a: CallbackArgs): void | Promise<void>;
  on_log?(a: CallbackArgs & { logs: LogRow }): void | Promise<void>;
  on_evaluate?(a: CallbackArgs & { metrics: LogRow }): void | Promise<void>;
  on_save?(a: CallbackArgs & { checkpoint: string }): void | Promise<void>;
  on_epoch_end?(a: CallbackArgs): void | Promise<void>;
  on_train_end?(a: CallbackArgs): void | Promise<void>;
}

/** Stops training when the eval metric (metric_for_best_model, default eval_loss) stops improving. */
export class EarlyStoppingCallback extends TrainerCallback {
  #best: number | null = null;
  #bad = 0;
  constructor(
    readonly early_stopping_patience = 1,
    readonly early_stopping_threshold = 0,
  ) {
    super();
    check.integer("early_stopping_patience", early_stopping_patience, 1);
    check.number("early_stopping_threshold", early_stopping_threshold, 0);
  }
  override on_evaluate({ args, control, metrics }: CallbackArgs & { metrics: LogRow }): void {
    const name = args.metric_for_best_model ?? "eval_loss";
    const key = name.startsWith("eval_") ? name : `eval_${name}`;
    const v = metrics[key];
    if (v === undefined)
      throw new InvalidArgumentError(`EarlyStoppingCallback: metric ${key} is not among the evaluation metrics`);
    const greater = args.greater_is_better ?? !key.endsWith("loss");
    const better =
      this.#best === null ||
      (greater ? v > this.#best + this.early_stopping_threshold : v < this.#best - this.early_stopping_threshold);
    if (better) {
      this.#best = v;
      this.#bad = 0;
    } else if (++this.#bad >= this.early_stopping_patience) control.should_training_stop = true;
  }
}
