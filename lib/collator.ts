// DataCollatorForLanguageModeling (mlm: false): pads a list of rows into int64 tensors with labels.
import { Callable } from "./callable.js";
import { check, invalid, InvalidArgumentError, isPlainObject } from "./errors.js";
import { Tensor, tensor } from "./tensor.js";
import type { PreTrainedTokenizerFast } from "./tokenizer.js";

export interface CollatedBatch {
  input_ids: Tensor;
  attention_mask: Tensor;
  labels: Tensor;
}

// The call signature of a callable class (Callable returns a function): merged into the class on purpose.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface DataCollatorForLanguageModeling {
  /** Same as collate(): `data_collator(features)` as in Python. */
  (features: Record<string, unknown>[]): CollatedBatch;
}

/**
 * Hugging Face's collator for causal language modelling: pads to the longest row (or a multiple of
 * pad_to_multiple_of) on the tokenizer's padding side; labels are the input ids with every position
 * whose id is the pad id set to -100 (the model shifts them itself). With pad = eos, as in the
 * tutorial, real eos tokens are masked from the loss too, exactly as in Hugging Face.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class DataCollatorForLanguageModeling extends Callable {
  readonly tokenizer: PreTrainedTokenizerFast;
  readonly mlm: boolean;
  readonly pad_to_multiple_of: number | null;

  constructor(
    tokenizer: PreTrainedTokenizerFast,
    options: { mlm?: boolean; pad_to_multiple_of?: number | null; return_tensors?: "pt" } = {},
  ) {
    super();
    if (!tokenizer || typeof (tokenizer as { encode?: unknown }).encode !== "function")
      throw invalid("tokenizer", "a tokenizer", tokenizer);
    if (!isPlainObject(options)) throw invalid("options", "an object", options);
    check.knownKeys("DataCollatorForLanguageModeling", options, [
      "mlm",
      "pad_to_multiple_of",
      "return_tensors",
      "mlm_probability",
    ]);
    this.tokenizer = tokenizer;
    this.mlm = check.boolean("mlm", options.mlm ?? true);
    if (this.mlm)
      throw new InvalidArgumentError(
        "mlm: true (masked language modelling) needs a model like BERT; GPT-2 is a causal language model: pass { " +
          "mlm: false }",
      );
    this.pad_to_multiple_of = options.pad_to_multiple_of ?? null;
    if (this.pad_to_multiple_of !== null) check.integer("pad_to_multiple_of", this.pad_to_multiple_of, 1);
    if (options.return_tensors !== undefined && options.return_tensors !== "pt")
      throw invalid("return_tensors", '"pt"', options.return_tensors);
  }

  collate(features: Record<string, unknown>[]): CollatedBatch {
    if (!Array.isArray(features) || features.length === 0)
      throw invalid("features", "a non-empty array of rows with input_ids", features);
    const rows = features.map((f, i) => {
      if (!isPlainObject(f)) throw invalid(`features[${i}]`, "an object with input_ids", f);
      return {
        ids: asIds(f.input_ids, `features[${i}].input_ids`),
        mask: f.attention_mask === undefined ? null : asIds(f.attention_mask, `features[${i}].attention_mask`),
      };
    });
    const padId = this.tokenizer.pad_token_id;
    let L = Math.max(...rows.map((r) => r.ids.length));
    if (this.pad_to_multiple_of) L = Math.ceil(L / this.pad_to_multiple_of) * this.pad_to_multiple_of;
    if (padId === null && rows.some((r) => r.ids.length !== L))
      throw new InvalidArgumentError(
        "Asking to pad but the tokenizer does not have a padding token: set tokenizer.pad_token = tokenizer.eos_token",
      );
    const B = rows.length;
    const ids = new Int32Array(B * L);
    const mask = new Int32Array(B * L);
    const labels = new Int32Array(B * L);
    const left = this.tokenizer.padding_side === "left";
    rows.forEach((r, b) => {
      const n = r.ids.length;
      const off = left ? L - n : 0;
      for (let t = 0; t < L; t++) {
        const inside = t >= off && t < off + n;
        const id = inside ? r.ids[t - off]! : padId!;
        ids[b * L + t] = id;
        mask[b * L + t] = inside ? (r.mask ? r.mask[t - off]! : 1) : 0;
        labels[b * L + t] = padId !== null && id === padId ? -100 : id;
      }
    });
    const shape = [B, L];
    return {
      input_ids: tensor(ids, { dtype: "int64", shape }),
      attention_mask: tensor(mask, { dtype: "int64", shape }),
      labels: tensor(labels, { dtype: "int64", shape }),
    };
  }

  /** @internal */
  _call(features: Record<string, unknown>[]): CollatedBatch {
    return this.collate(features);
  }
}

function asIds(v: unknown, name: string): ArrayLike<number> {
  if (v instanceof Tensor) return v.reshape(-1).tolist() as number[];
  if (Array.isArray(v) && v.every((x) => Number.isInteger(x))) return v as number[];
  if (v instanceof Int32Array || v instanceof Uint8Array) return v;
  throw invalid(name, "a list of integer ids", v);
}
