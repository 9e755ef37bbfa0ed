import { existsSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CrossEntropyLoss,
  Dataset,
  GPT2LMHeadModel,
  Trainer,
  TrainingArguments,
  TrainerCallback,
  EarlyStoppingCallback,
  get_scheduler_lambda,
  SCHEDULER_TYPES,
  plot_log_history,
  tensor,
  Tensor,
  AutoTokenizer,
  DataCollatorForLanguageModeling,
} from "../lib/index.js";
import type { Inputs } from "../lib/trainer.js";
import { golden, tinyModelDir } from "./helpers/tiny.js";

const out = () => mkdtempSync(join(tmpdir(), "torchlm-train-"));
const sums = (m: GPT2LMHeadModel, keys: string[]) =>
  Object.fromEntries(
    m
      .named_parameters()
      .filter(([n]) => keys.includes(n.replace(/^transformer\./, "")))
      .map(([n, t]) => [n.replace(/^transformer\./, ""), (t.data() as Float32Array).reduce((a, b) => a + b, 0)]),
  );
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(1e-6, Math.abs(b));

/** The golden batch as a dataset whose collator returns it as is (rows in any order give the same mean loss). */
function goldenData(): { ds: Dataset; collate: (rows: any[]) => Inputs } {
  const ds = Dataset.from_dict({ input_ids: golden.input_ids, labels: golden.labels });
  return {
    ds,
    collate: (rows) => ({ input_ids: tensor(rows.map((r) => r.input_ids)), labels: tensor(rows.map((r) => r.labels)) }),
  };
}

/** Rows of random ids with no padding, for tests that compare two runs. */
function randomData(n: number, T = 16): Dataset {
  let s = 7;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const rows = Array.from({ length: n }, () => Array.from({ length: T }, () => Math.floor(rnd() * 50000)));
  return Dataset.from_dict({ input_ids: rows });
}
const lmCollate = (rows: any[]): Inputs => {
  const ids = tensor(rows.map((r) => r.input_ids));
  return { input_ids: ids, labels: ids.clone() };
};

async function fresh(): Promise<GPT2LMHeadModel> {
  return GPT2LMHeadModel.from_pretrained(tinyModelDir());
}

class ExplicitLossTrainer extends Trainer {
  override async compute_loss(
    model: GPT2LMHeadModel,
    inputs: Inputs,
    return_outputs = false,
  ): Promise<Tensor | [Tensor, any]> {
    const outputs = await model.forward({ input_ids: inputs.input_ids, attention_mask: inputs.attention_mask });
    const celoss = new CrossEntropyLoss();
    // CrossEntropyLoss wants [batch, classes, positions]; the label of position t is the token at t + 1.
    const logits = outputs.logits.slice(1, 0, -1).permute(0, 2, 1);
    const labels = inputs.labels!.slice(1, 1);
    const loss = celoss.forward(logits, labels);
    return return_outputs ? [loss, outputs] : loss;
  }
}

describe("AdamW, clipping and the training step", () => {
  test("3 optimizer steps equal torch.optim.AdamW + clip_grad_norm_ (losses, grad norms, parameter sums)", async () => {
    const model = await fresh();
    const { ds, collate } = goldenData();
    const ref = golden.adamw;
    const keys = Object.keys(ref.steps[0].param_sums);
    const losses: number[] = [];
    const after: Record<string, number>[] = [];
    class Probe extends TrainerCallback {
      override async on_step_end({ model: m }: any) {
        after.push(sums(m, keys));
        const o = await m.forward({ input_ids: golden.input_ids, labels: golden.labels, requires_grad: false });
        losses.push(o.loss.item());
      }
    }
    const args = new TrainingArguments({
      output_dir: out(),
      per_device_train_batch_size: 2,
      max_steps: 3,
      learning_rate: ref.lr,
      weight_decay: ref.weight_decay,
      max_grad_norm: ref.max_grad_norm,
      lr_scheduler_type: "constant",
      logging_steps: 1,
      save_strategy: "no",
      disable_tqdm: true,
      plot_loss: false,
    });
    const trainer = new Trainer({ model, args, train_dataset: ds, data_collator: collate, callbacks: [new Probe()] });
    const result = await trainer.train();
    expect(result.global_step).toBe(3);
    const rows = trainer.state.log_history.filter((r) => "loss" in r);
    expect(rows).toHaveLength(3);
    ref.steps.forEach((s: any, k: number) => {
      expect(rel(rows[k]!.loss!, s.loss)).toBeLessThan(1e-5);
      expect(rel(rows[k]!.grad_norm!, s.grad_norm)).toBeLessThan(1e-5);
      // wte.weight holds 3.2M entries, most with near-zero gradients whose Adam steps (about lr each) follow roundoff:
      // PyTorch alone moves this sum by 3.4e-5 between 1 and 2 threads (and by 3e-3 in float64), hence its wider bound.
      for (const key of keys)
        expect(Math.abs(after[k]![key]! - s.param_sums[key])).toBeLessThan(
          (key === "wte.weight" ? 1e-4 : 1e-5) * Math.max(1, Math.abs(s.param_sums[key])),
        );
      if (k + 1 < ref.steps.length) expect(rel(losses[k]!, ref.steps[k + 1].loss)).toBeLessThan(1e-5);
    });
    expect(rows[0]!.learning_rate).toBe(ref.lr);
    await model.dispose();
  });

  test("gradient accumulation 2 x (B/2) equals 1 x B", async () => {
    const ds = randomData(8);
    const run = async (bs: number, ga: number) => {
      const model = await fresh();
      const args = new TrainingArguments({
        output_dir: out(),
        per_device_train_batch_size: bs,
        gradient_accumulation_steps: ga,
        max_steps: 2,
        learning_rate: 1e-3,
        weight_decay: 0.1,
        logging_steps: 1,
        save_strategy: "no",
        disable_tqdm: true,
        plot_loss: false,
      });
      const t = new Trainer({ model, args, train_dataset: ds, data_collator: lmCollate });
      await t.train();
      const s = sums(model, ["wte.weight", "h.0.attn.c_attn.weight", "ln_f.bias"]);
      await model.dispose();
      return { s, log: t.state.log_history.filter((r) => "loss" in r) };
    };
    const a = await run(4, 1),
      b = await run(2, 2);
    for (const k of Object.keys(a.s))
      expect(Math.abs(a.s[k]! - b.s[k]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(a.s[k]!)));
    a.log.forEach((r, i) => {
      expect(Math.abs(r.loss! - b.log[i]!.loss!)).toBeLessThan(2e-4);
      expect(rel(r.grad_norm!, b.log[i]!.grad_norm!)).toBeLessThan(1e-4);
    });
  });

  test("a compute_loss override with a hand-shifted CrossEntropyLoss trains like the default path", async () => {
    const ds = randomData(8);
    const run = async (T: typeof Trainer) => {
      const model = await fresh();
      const args = new TrainingArguments({
        output_dir: out(),
        per_device_train_batch_size: 4,
        max_steps: 3,
        learning_rate: 1e-3,
        logging_steps: 1,
        eval_strategy: "steps",
        eval_steps: 3,
        save_strategy: "no",
        disable_tqdm: true,
        plot_loss: false,
      });
      const t = new T({ model, args, train_dataset: ds, eval_dataset: ds.select([0, 1, 2]), data_collator: lmCollate });
      await t.train();
      const s = sums(model, ["wte.weight", "h.1.mlp.c_fc.weight"]);
      await model.dispose();
      return { s, log: t.state.log_history };
    };
    const a = await run(Trainer),
      b = await run(ExplicitLossTrainer);
    for (const k of Object.keys(a.s))
      expect(Math.abs(a.s[k]! - b.s[k]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(a.s[k]!)));
    const la = a.log.filter((r) => "loss" in r),
      lb = b.log.filter((r) => "loss" in r);
    la.forEach((r, i) => expect(Math.abs(r.loss! - lb[i]!.loss!)).toBeLessThan(2e-4));
    const ea = a.log.find((r) => "eval_loss" in r)!,
      eb = b.log.find((r) => "eval_loss" in r)!;
    expect(Math.abs(ea.eval_loss! - eb.eval_loss!)).toBeLessThan(1e-5);
  });
});

describe("schedulers", () => {
  test.each(SCHEDULER_TYPES.map((t) => [t]))("%s equals Hugging Face's formula", (type) => {
    const ref = golden.schedulers;
    const f = get_scheduler_lambda(type, { num_warmup_steps: ref.warmup, num_training_steps: ref.total }, ref.lr);
    ref.tables[type].forEach((v: number, s: number) => expect(Math.abs(ref.lr * f(s) - v)).toBeLessThan(1e-12));
  });
});

describe("Trainer", () => {
  test("log_history rows, evaluation, checkpoints and their rotation, the loss plot", async () => {
    const model = await fresh();
    const dir = out();
    const ds = randomData(20);
    const args = new TrainingArguments({
      output_dir: dir,
      per_device_train_batch_size: 4,
      per_device_eval_batch_size: 4,
      evaluation_strategy: "steps",
      eval_steps: 2,
      logging_steps: 1,
      num_train_epochs: 1,
      weight_decay: 0.1,
      lr_scheduler_type: "cosine",
      learning_rate: 5e-4,
      save_steps: 2,
      save_total_limit: 2,
      disable_tqdm: true,
    });
    expect(args.eval_strategy).toBe("steps");
    const trainer = new Trainer({
      model,
      args,
      train_dataset: ds,
      eval_dataset: ds.select([0, 1, 2, 3, 4]),
      data_collator: lmCollate,
    });
    const r = await trainer.train();
    expect(r.global_step).toBe(5);
    const h = trainer.state.log_history;
    const train = h.filter((x) => "loss" in x),
      evals = h.filter((x) => "eval_loss" in x),
      last = h[h.length - 1]!;
    expect(train).toHaveLength(5);
    expect(Object.keys(train[0]!).sort()).toEqual(["epoch", "grad_norm", "learning_rate", "loss", "step"]);
    expect(evals).toHaveLength(2);
    expect(Object.keys(evals[0]!).sort()).toEqual([
      "epoch",
      "eval_loss",
      "eval_perplexity",
      "eval_runtime",
      "eval_samples_per_second",
      "eval_steps_per_second",
      "step",
    ]);
    evals.forEach((e) => expect(e.eval_perplexity).toBeCloseTo(Math.exp(e.eval_loss!), 10));
    expect(Object.keys(last).sort()).toEqual([
      "epoch",
      "step",
      "total_flos",
      "train_loss",
      "train_runtime",
      "train_samples_per_second",
      "train_steps_per_second",
    ]);
    expect(train.map((x) => x.step)).toEqual([1, 2, 3, 4, 5]);
    expect(train[4]!.epoch).toBeCloseTo(1);
    expect(train[0]!.learning_rate).toBe(5e-4); // the rate each update used: cosine starts at the full rate
    expect(train[4]!.learning_rate).toBeCloseTo(5e-4 * 0.5 * (1 + Math.cos((Math.PI * 4) / 5)), 12);
    expect(evals[1]!.eval_loss!).toBeLessThan(evals[0]!.eval_loss! + 1e-3);
    expect(
      readdirSync(dir)
        .filter((n) => n.startsWith("checkpoint-"))
        .sort(),
    ).toEqual(["checkpoint-2", "checkpoint-4"]);
    expect(readdirSync(join(dir, "checkpoint-4")).sort()).toEqual([
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "optimizer.safetensors",
      "rng_state.safetensors",
      "scheduler.json",
      "trainer_state.json",
      "training_args.json",
    ]);
    expect(JSON.parse(readFileSync(join(dir, "checkpoint-4", "trainer_state.json"), "utf8")).global_step).toBe(4);
    const png = readFileSync(join(dir, "loss.png"));
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    await plot_log_history(h, join(dir, "loss.svg"));
    const svg = readFileSync(join(dir, "loss.svg"), "utf8");
    expect(svg).toContain("<svg");
    expect(svg).toContain("train loss");
    expect(svg).toContain("eval loss");
    const metrics = await trainer.evaluate();
    expect(metrics.eval_loss).toBeGreaterThan(0);
    await trainer.save_model(join(dir, "final"));
    expect(existsSync(join(dir, "final", "model.safetensors"))).toBe(true);
    await model.dispose();
  });

  test("resuming from a checkpoint equals an uninterrupted run step for step", async () => {
    const ds = randomData(24);
    const argsFor = (dir: string) =>
      new TrainingArguments({
        output_dir: dir,
        per_device_train_batch_size: 4,
        max_steps: 6,
        learning_rate: 1e-3,
        lr_scheduler_type: "linear",
        warmup_steps: 1,
        weight_decay: 0.1,
        logging_steps: 1,
        save_steps: 3,
        disable_tqdm: true,
        plot_loss: false,
      });
    const a = await fresh();
    const dirA = out();
    const ta = new Trainer({ model: a, args: argsFor(dirA), train_dataset: ds, data_collator: lmCollate });
    await ta.train();
    const b = await fresh();
    const tb = new Trainer({ model: b, args: argsFor(dirA), train_dataset: ds, data_collator: lmCollate });
    await tb.train({ resume_from_checkpoint: join(dirA, "checkpoint-3") });
    const keys = ["wte.weight", "h.0.attn.c_attn.weight", "h.1.mlp.c_proj.bias", "ln_f.weight"];
    const sa = sums(a, keys),
      sb = sums(b, keys);
    for (const k of keys) expect(sb[k]).toBe(sa[k]);
    const rowsA = ta.state.log_history.filter((r) => "loss" in r),
      rowsB = tb.state.log_history.filter((r) => "loss" in r);
    expect(rowsB).toEqual(rowsA);
    await a.dispose();
    await b.dispose();
  });

  test("early stopping, callbacks and bad arguments", async () => {
    const model = await fresh();
    const ds = randomData(16);
    const seen: string[] = [];
    class Recorder extends TrainerCallback {
      override on_train_begin() {
        seen.push("begin");
      }
      override on_log() {
        seen.push("log");
      }
      override on_train_end() {
        seen.push("end");
      }
    }
    const args = new TrainingArguments({
      output_dir: out(),
      per_device_train_batch_size: 2,
      max_steps: 8,
      learning_rate: 0.5,
      eval_strategy: "steps",
      eval_steps: 1,
      logging_steps: 4,
      save_strategy: "no",
      disable_tqdm: true,
      plot_loss: false,
    });
    const t = new Trainer({
      model,
      args,
      train_dataset: ds,
      eval_dataset: ds.select([0, 1]),
      data_collator: lmCollate,
      callbacks: [new EarlyStoppingCallback(1), new Recorder()],
    });
    const r = await t.train();
    expect(r.global_step).toBeLessThan(8);
    expect(seen[0]).toBe("begin");
    expect(seen[seen.length - 1]).toBe("end");
    expect(() => new TrainingArguments({ learning_rte: 1 } as never)).toThrow(
      "Unknown option learning_rte for TrainingArguments",
    );
    expect(() => new TrainingArguments({ per_device_train_batch_size: 0 })).toThrow(
      "Expected positive integer for per_device_train_batch_size but received 0",
    );
    expect(() => new TrainingArguments({ lr_scheduler_type: "cosine_annealing" as never })).toThrow(
      /for lr_scheduler_type/,
    );
    expect(() => new TrainingArguments({ fp16: true })).toThrow(/fp16 mixed precision requires a GPU/);
    expect(new TrainingArguments({}).logging_steps).toBe(500);
    expect(new TrainingArguments({ eval_strategy: "steps" }).eval_steps).toBe(500);
    expect(
      () =>
        new Trainer({
          model,
          args: new TrainingArguments({ eval_strategy: "steps" }),
          train_dataset: ds,
          data_collator: lmCollate,
        }),
    ).toThrow(/no eval_dataset/);
    await model.dispose();
  });

  test(
    "total_flos counts 6 x tokens x non-embedding parameters; remove_unused_columns hides other columns from the " +
      "collator",
    async () => {
      const model = await fresh();
      const ids = randomData(8).column("input_ids") as number[][];
      const ds = Dataset.from_dict({ input_ids: ids, text: ids.map((r) => r.join(" ")) });
      const seen: string[][] = [];
      const collate = (rows: any[]) => {
        seen.push(Object.keys(rows[0]).sort());
        return lmCollate(rows);
      };
      const args = (remove_unused_columns: boolean) =>
        new TrainingArguments({
          output_dir: out(),
          per_device_train_batch_size: 2,
          max_steps: 3,
          save_strategy: "no",
          disable_tqdm: true,
          plot_loss: false,
          remove_unused_columns,
        });
      const t = new Trainer({ model, args: args(true), train_dataset: ds, data_collator: collate });
      const r = await t.train();
      const c = model.config;
      const nonEmbedding = model.num_parameters() - (c.vocab_size + c.n_positions) * c.n_embd;
      expect(model.num_parameters({ exclude_embeddings: true })).toBe(nonEmbedding);
      expect(t.state.total_flos).toBe(6 * 3 * 2 * 16 * nonEmbedding);
      expect(r.metrics.total_flos).toBe(t.state.total_flos);
      expect(seen.every((k) => JSON.stringify(k) === '["input_ids"]')).toBe(true);
      seen.length = 0;
      await new Trainer({ model, args: args(false), train_dataset: ds, data_collator: collate }).train();
      expect(seen[0]).toEqual(["input_ids", "text"]);
      const textOnly = Dataset.from_dict({ text: ["a", "b"] });
      await expect(
        new Trainer({ model, args: args(true), train_dataset: textOnly, data_collator: collate }).train(),
      ).rejects.toThrow(/No column of the dataset \(text\) is an input of the model's forward/);
      await model.dispose();
    },
  );

  test("bf16 autocast trains on the CPU; a NaN loss stops with a clear error", async () => {
    const model = await fresh();
    const tok = await AutoTokenizer.from_pretrained("gpt2");
    tok.pad_token = tok.eos_token;
    const ds = randomData(8);
    const args = new TrainingArguments({
      output_dir: out(),
      per_device_train_batch_size: 4,
      max_steps: 2,
      bf16: true,
      logging_steps: 1,
      save_strategy: "no",
      disable_tqdm: true,
      plot_loss: false,
    });
    const t = new Trainer({
      model,
      args,
      train_dataset: ds,
      data_collator: new DataCollatorForLanguageModeling(tok, { mlm: false }),
    });
    await t.train();
    const l = t.state.log_history.filter((r) => "loss" in r);
    expect(l).toHaveLength(2);
    expect(Math.abs(l[0]!.loss! - 10.82)).toBeLessThan(0.2);
    const bad = new TrainingArguments({
      output_dir: out(),
      per_device_train_batch_size: 4,
      max_steps: 3,
      learning_rate: 1e30,
      max_grad_norm: 0,
      logging_steps: 1,
      save_strategy: "no",
      disable_tqdm: true,
      plot_loss: false,
    });
    await expect(
      new Trainer({ model, args: bad, train_dataset: ds, data_collator: lmCollate }).train(),
    ).rejects.toThrow(/The loss is (NaN|Infinity) at step \d+: training stopped/);
    await model.dispose();
  });
});

test(
  "load_best_model_at_end: best_metric, best_global_step and best_model_checkpoint as Hugging Face sets them; " +
    "rotation keeps the best; its weights at the end",
  async () => {
    const model = await fresh();
    const dir = out();
    const ds = randomData(8);
    // greater_is_better on the loss: the first evaluation is the best, so the best is not the newest checkpoint
    const args = new TrainingArguments({
      output_dir: dir,
      per_device_train_batch_size: 2,
      max_steps: 6,
      eval_strategy: "steps",
      eval_steps: 2,
      save_steps: 2,
      save_total_limit: 1,
      load_best_model_at_end: true,
      metric_for_best_model: "loss",
      greater_is_better: true,
      learning_rate: 1e-3,
      disable_tqdm: true,
      plot_loss: false,
      logging_steps: 2,
    });
    const trainer = new Trainer({ model, args, train_dataset: ds, eval_dataset: ds, data_collator: lmCollate });
    await trainer.train();
    const evals = trainer.state.log_history.filter((r) => "eval_loss" in r);
    expect(evals.map((r) => r.step)).toEqual([2, 4, 6]);
    const top = evals.reduce((a, b) => (b.eval_loss! > a.eval_loss! ? b : a));
    expect(trainer.state.best_metric).toBe(top.eval_loss);
    expect(trainer.state.best_global_step).toBe(top.step);
    expect(trainer.state.best_model_checkpoint).toBe(join(dir, `checkpoint-${top.step}`));
    // limit 1, best not the newest: the best and the newest stay
    const kept = readdirSync(dir)
      .filter((n) => n.startsWith("checkpoint-"))
      .sort();
    expect(kept).toEqual([...new Set([`checkpoint-${top.step}`, "checkpoint-6"])].sort());
    const saved = await GPT2LMHeadModel.from_pretrained(trainer.state.best_model_checkpoint!);
    const keys = ["h.0.attn.c_attn.weight", "wte.weight"];
    expect(sums(model, keys)).toEqual(sums(saved, keys));
    await saved.dispose();
    await model.dispose();
  },
);

test(
  "compute_metrics with preprocess_logits_for_metrics: eval_ metrics from argmax predictions, in Hugging Face's " +
    "key order",
  async () => {
    const model = await fresh();
    const ds = randomData(6);
    let seen: { predictions: number[]; labels: number[]; dtype: string } | null = null;
    const args = new TrainingArguments({
      output_dir: out(),
      per_device_eval_batch_size: 4,
      save_strategy: "no",
      disable_tqdm: true,
      plot_loss: false,
    });
    const trainer = new Trainer({
      model,
      args,
      eval_dataset: ds,
      data_collator: lmCollate,
      preprocess_logits_for_metrics: (logits) => logits.argmax(-1),
      compute_metrics: ({ predictions, label_ids }) => {
        seen = { predictions: predictions.shape, labels: label_ids.shape, dtype: predictions.dtype };
        // next-token accuracy: the prediction at t against the label at t + 1
        const p = predictions.tolist() as number[][],
          l = label_ids.tolist() as number[][];
        let right = 0,
          all = 0;
        p.forEach((row, i) =>
          row.slice(0, -1).forEach((v, t) => {
            all++;
            if (v === l[i]![t + 1]) right++;
          }),
        );
        return { accuracy: right / all };
      },
    });
    const metrics = await trainer.evaluate();
    expect(seen).toEqual({ predictions: [6, 16], labels: [6, 16], dtype: "int64" });
    // the same accuracy from the model's own forward pass
    const ids = ds.column("input_ids") as number[][];
    const o = await model.forward({ input_ids: ids });
    const arg = o.logits.argmax(-1).tolist() as number[][];
    o.logits.dispose();
    let right = 0;
    arg.forEach((row, i) =>
      row.slice(0, -1).forEach((v, t) => {
        if (v === ids[i]![t + 1]) right++;
      }),
    );
    expect(metrics.eval_accuracy).toBeCloseTo(right / (6 * 15), 10);
    expect(Object.keys(metrics)).toEqual([
      "eval_accuracy",
      "eval_loss",
      "eval_perplexity",
      "eval_runtime",
      "eval_samples_per_second",
      "eval_steps_per_second",
      "epoch",
    ]);
    await model.dispose();
  },
);
