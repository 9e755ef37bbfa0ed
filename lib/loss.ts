import { check, isPlainObject, invalid, native } from "./errors.js";
import { binding } from "./native.js";
import { asTensor, Tensor } from "./tensor.js";

export interface CrossEntropyLossOptions {
  ignore_index?: number;
  reduction?: "mean" | "sum" | "none";
  label_smoothing?: number;
}

/** torch.nn.CrossEntropyLoss: input [N, C] or [N, C, d1, ...] logits, target class indices (or probabilities). */
export class CrossEntropyLoss {
  readonly ignore_index: number;
  readonly reduction: "mean" | "sum" | "none";
  readonly label_smoothing: number;

  constructor(options: CrossEntropyLossOptions = {}) {
    if (!isPlainObject(options)) throw invalid("options", "an object", options);
    check.knownKeys("CrossEntropyLoss", options, ["ignore_index", "reduction", "label_smoothing"]);
    this.ignore_index = check.integer("ignore_index", options.ignore_index ?? -100);
    this.reduction = check.oneOf("reduction", options.reduction ?? "mean", ["mean", "sum", "none"] as const);
    this.label_smoothing = check.number("label_smoothing", options.label_smoothing ?? 0, 0, 1);
  }

  forward(input: Tensor, target: Tensor): Tensor {
    const i = asTensor(input, "input");
    const t = asTensor(target, "target");
    return new Tensor(
      native(() =>
        binding.crossEntropy({
          input: i._t,
          target: t._t,
          ignore_index: this.ignore_index,
          reduction: this.reduction,
          label_smoothing: this.label_smoothing,
        }),
      ),
    );
  }

  /** Same as forward: Python's `loss_fn(input, target)`. */
  call(input: Tensor, target: Tensor): Tensor {
    return this.forward(input, target);
  }
}
