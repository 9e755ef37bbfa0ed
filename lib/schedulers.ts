// Learning-rate schedules with Hugging Face's formulas (transformers.optimization), as multipliers of the
// base learning rate at an optimizer step.
import { check, invalid } from "./errors.js";

export const SCHEDULER_TYPES = [
  "linear",
  "cosine",
  "cosine_with_restarts",
  "polynomial",
  "constant",
  "constant_with_warmup",
  "inverse_sqrt",
] as const;
export type SchedulerType = (typeof SCHEDULER_TYPES)[number];

export interface SchedulerOptions {
  num_warmup_steps: number;
  num_training_steps: number;
  /** cosine: 0.5 (half a cosine); cosine_with_restarts: 1 */
  num_cycles?: number;
  /** polynomial */
  lr_end?: number;
  power?: number;
  /** inverse_sqrt */
  timescale?: number;
}

/** The multiplier of the base learning rate after `step` optimizer steps. */
export function get_scheduler_lambda(
  type: SchedulerType,
  o: SchedulerOptions,
  base_lr: number,
): (step: number) => number {
  check.oneOf("lr_scheduler_type", type, SCHEDULER_TYPES);
  const W = check.integer("num_warmup_steps", o.num_warmup_steps, 0);
  const T = check.integer("num_training_steps", o.num_training_steps, 0);
  const warm = (s: number) => s / Math.max(1, W);
  switch (type) {
    case "constant":
      return () => 1;
    case "constant_with_warmup":
      return (s) => (s < W ? warm(s) : 1);
    case "linear":
      return (s) => (s < W ? warm(s) : Math.max(0, (T - s) / Math.max(1, T - W)));
    case "cosine": {
      const cycles = o.num_cycles ?? 0.5;
      return (s) => {
        if (s < W) return warm(s);
        const progress = (s - W) / Math.max(1, T - W);
        return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
      };
    }
    case "cosine_with_restarts": {
      const cycles = o.num_cycles ?? 1;
      return (s) => {
        if (s < W) return warm(s);
        const progress = (s - W) / Math.max(1, T - W);
        if (progress >= 1) return 0;
        return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((cycles * progress) % 1))));
      };
    }
    case "polynomial": {
      const lrEnd = o.lr_end ?? 1e-7;
      const power = o.power ?? 1;
      if (!(base_lr > lrEnd))
        throw invalid("learning_rate", `a value above lr_end (${lrEnd}) for the polynomial schedule`, base_lr);
      return (s) => {
        if (s < W) return warm(s);
        if (s > T) return lrEnd / base_lr;
        const remaining = 1 - (s - W) / (T - W);
        return ((base_lr - lrEnd) * remaining ** power + lrEnd) / base_lr;
      };
    }
    case "inverse_sqrt": {
      const timescale = o.timescale ?? (W || 10_000);
      return (s) => (s < W ? warm(s) : 1 / Math.sqrt((s + timescale - W) / timescale));
    }
  }
}

/** A LambdaLR over optimizer steps: `get_last_lr()` is the rate for the next update. */
export class LRScheduler {
  last_step = 0;
  constructor(
    readonly base_lr: number,
    readonly lambda: (step: number) => number,
  ) {}
  get_last_lr(): number {
    return this.base_lr * this.lambda(this.last_step);
  }
  step(): void {
    this.last_step++;
  }
  state_dict(): { last_step: number; base_lr: number } {
    return { last_step: this.last_step, base_lr: this.base_lr };
  }
  load_state_dict(s: { last_step: number }): void {
    this.last_step = check.integer("last_step", s.last_step, 0);
  }
}

export function get_scheduler(type: SchedulerType, base_lr: number, o: SchedulerOptions): LRScheduler {
  return new LRScheduler(base_lr, get_scheduler_lambda(type, o, base_lr));
}
