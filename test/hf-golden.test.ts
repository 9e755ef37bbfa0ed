// Parity with Hugging Face transformers itself: .cache/references/hf-golden.json was written in this run by
// scripts/hf-golden.py with the pinned transformers and PyTorch of .venv-test, on the same tiny weights.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AutoTokenizer,
  DataCollatorForLanguageModeling,
  Dataset,
  GPT2LMHeadModel,
  Trainer,
  TrainingArguments,
  get_scheduler_lambda,
  pipeline,
  SCHEDULER_TYPES,
} from "../lib/index.js";
import { flatten, golden, maxAbsDiff, tinyModelDir, pick } from "./helpers/tiny.js";
import { REFERENCES, ROOT, pythonJson } from "./helpers/python.js";

const hf = JSON.parse(readFileSync(join(REFERENCES, "hf-golden.json"), "utf8"));
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(1e-8, Math.abs(b));

let model: GPT2LMHeadModel;
beforeAll(async () => {
  model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
});
afterAll(async () => {
  await model.dispose();
});

test("the golden file was made without errors", () => {
  expect(hf.transformers_version).toMatch(/^\d+\./);
  for (const [k, v] of Object.entries(hf))
    if (v && typeof v === "object" && "error" in (v as object))
      throw new Error(`${k}: ${(v as { error: string }).error}`);
});

describe("GPT2LMHeadModel against transformers", () => {
  test("logits and loss", async () => {
    const o = await model.forward({ input_ids: golden.input_ids, labels: golden.labels });
    expect(maxAbsDiff(pick(o.logits, hf.forward.columns), flatten(hf.forward.logits))).toBeLessThan(1e-4);
    expect(Math.abs(o.loss!.item() - hf.forward.loss)).toBeLessThan(1e-5);
  });

  test("a left-padded batch: real tokens agree (with position ids from the mask, as generate makes them)", async () => {
    const p = golden.padded;
    const o = await model.forward({
      input_ids: p.input_ids,
      attention_mask: p.attention_mask,
      position_ids: p.position_ids,
    });
    const ours = pick(o.logits, hf.forward.columns),
      theirs = flatten(hf.forward.padded_logits);
    const C = hf.forward.columns.length,
      T = p.input_ids[0].length;
    let worst = 0;
    p.attention_mask.forEach((row: number[], b: number) =>
      row.forEach((m, t) => {
        if (m)
          for (let c = 0; c < C; c++)
            worst = Math.max(worst, Math.abs(ours[(b * T + t) * C + c]! - theirs[(b * T + t) * C + c]!));
      }),
    );
    expect(worst).toBeLessThan(1e-4);
  });
});

describe("generate against transformers", () => {
  test("greedy, 30 new tokens", async () => {
    expect(
      (await model.generate([golden.greedy.prompt], { max_new_tokens: 30, pad_token_id: 50256 })).tolist(),
    ).toEqual(hf.generation.greedy);
  });
  test.each(hf.generation.cases.map((c: any) => [c.name, c]))("%s", async (_n, c: any) => {
    const { max_new_tokens, do_sample, pad_token_id, eos_token_id, ...rest } = c.options;
    const out = await model.generate(c.prompts, {
      ...rest,
      max_new_tokens,
      do_sample,
      pad_token_id,
      eos_token_id: eos_token_id ?? [],
      attention_mask: c.attention_mask ?? undefined,
    });
    expect(out.tolist()).toEqual(c.ids);
  });
  test("the text-generation pipeline with sampling off", async () => {
    const tok = await AutoTokenizer.from_pretrained("gpt2");
    const gen = await pipeline("text-generation", model, { tokenizer: tok });
    const p = hf.pipeline;
    expect(await gen(p.prompt, { do_sample: false, max_new_tokens: p.max_new_tokens })).toEqual(p.full);
    expect(
      await gen(p.prompt, { do_sample: false, max_new_tokens: p.max_new_tokens, return_full_text: false }),
    ).toEqual(p.new_only);
  });
});

test("DataCollatorForLanguageModeling(mlm=False) on fixed features", async () => {
  const tok = await AutoTokenizer.from_pretrained("gpt2");
  tok.pad_token = tok.eos_token;
  for (const c of hf.collator) {
    tok.padding_side = c.padding_side;
    const out = new DataCollatorForLanguageModeling(tok, { mlm: false, pad_to_multiple_of: c.pad_to_multiple_of })(
      c.features,
    );
    expect({
      input_ids: out.input_ids.tolist(),
      attention_mask: out.attention_mask.tolist(),
      labels: out.labels.tolist(),
    }).toEqual({ input_ids: c.input_ids, attention_mask: c.attention_mask, labels: c.labels });
  }
});

describe("Trainer against transformers' Trainer", () => {
  class InOrder extends Trainer {
    override _get_train_order(_epoch: number, n: number) {
      return Int32Array.from({ length: n }, (_, i) => i);
    }
  }
  test.each(hf.trainer.runs.map((r: any) => [r.lr_scheduler_type, r]))(
    "5 steps, %s schedule, weight decay 0.1, clipping 1.0, gradient accumulation 2",
    async (sched, run: any) => {
      const m = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
      const tok = await AutoTokenizer.from_pretrained("gpt2");
      tok.pad_token = tok.eos_token;
      const args = new TrainingArguments({
        output_dir: join(ROOT, "build", "hf-trainer"),
        per_device_train_batch_size: 2,
        gradient_accumulation_steps: 2,
        max_steps: 5,
        learning_rate: 1e-3,
        weight_decay: 0.1,
        max_grad_norm: 1.0,
        lr_scheduler_type: sched as never,
        logging_steps: 1,
        save_strategy: "no",
        seed: 42,
        disable_tqdm: true,
        plot_loss: false,
      });
      const t = new InOrder({
        model: m,
        args,
        train_dataset: Dataset.from_dict({ input_ids: hf.trainer.rows }),
        data_collator: new DataCollatorForLanguageModeling(tok, { mlm: false }),
      });
      await t.train();
      const ours = t.state.log_history.filter((r) => "loss" in r);
      const theirs = run.log_history.filter((r: any) => "loss" in r);
      expect(ours).toHaveLength(theirs.length);
      // transformers 5 divides a window's summed token losses by the count of labels before the shift
      // (num_items_in_batch: T per row), while the model's own loss, torchlm's and the tutorial's, is the mean
      // over the T - 1 predicted tokens. Without padding the two differ by exactly T / (T - 1), in the loss and
      // in the gradient (so in grad_norm); clipping and AdamW make the updates the same.
      const T = hf.trainer.rows[0].length;
      const k = T / (T - 1);
      ours.forEach((r, i) => {
        const h = theirs[i];
        expect(r.step).toBe(h.step);
        expect(rel(r.loss!, h.loss * k)).toBeLessThan(1e-5);
        expect(rel(r.grad_norm!, h.grad_norm * k)).toBeLessThan(1e-4);
        expect(rel(r.learning_rate!, h.learning_rate)).toBeLessThan(1e-9);
        expect(r.epoch).toBeCloseTo(h.epoch, 9);
      });
      await m.dispose();
    },
  );

  test.each(SCHEDULER_TYPES.map((s) => [s]))("%s learning rates equal get_scheduler's", (name) => {
    const f = get_scheduler_lambda(name, { num_warmup_steps: 3, num_training_steps: 12 }, 1e-3);
    hf.trainer.scheduler_tables[name].forEach((v: number, s: number) =>
      expect(Math.abs(1e-3 * f(s) - v)).toBeLessThan(1e-12),
    );
  });
});

describe("checkpoints exchanged with transformers", () => {
  test("a checkpoint saved by torchlm loads in transformers with the same logits", async () => {
    const dir = mkdtempSync(join(tmpdir(), "torchlm-to-hf-"));
    await model.save_pretrained(dir);
    const theirs = pythonJson("hf-golden.py", ["--check-saved", dir, "--ids", JSON.stringify(golden.input_ids)]);
    expect(theirs.transformers_version).toBe(hf.transformers_version);
    expect(maxAbsDiff(flatten(theirs.logits), flatten(hf.forward.logits))).toBeLessThan(1e-5);
    rmSync(dir, { recursive: true, force: true });
  });
  test("a checkpoint saved by transformers loads in torchlm with the same logits", async () => {
    const c = hf.hf_checkpoint;
    const m = await GPT2LMHeadModel.from_pretrained(join(REFERENCES, "hf-tiny-checkpoint"));
    const o = await m.forward({ input_ids: c.input_ids, labels: c.input_ids });
    const d = o.logits.data() as Float32Array;
    expect(
      rel(
        d.reduce((a, b) => a + b, 0),
        c.logits_sum,
      ),
    ).toBeLessThan(1e-4);
    expect(maxAbsDiff(Array.from(d.subarray(0, c.logits_first_row.length)), c.logits_first_row)).toBeLessThan(1e-5);
    expect(Math.abs(o.loss!.item() - c.loss)).toBeLessThan(1e-5);
    await m.dispose();
  });
});
