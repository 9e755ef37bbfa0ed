// TensorBoard event files (lib/tensorboard.ts) read back by TensorBoard's own reader (EventAccumulator, from the test
// venv): the writer alone, then report_to: "tensorboard" in a Trainer run against its log_history.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Dataset, GPT2LMHeadModel, SummaryWriter, Trainer, TrainingArguments, tensor } from "../lib/index.js";
import type { Inputs } from "../lib/trainer.js";
import { tinyModelDir } from "./helpers/tiny.js";
import { pythonJson } from "./helpers/python.js";

const dir = () => mkdtempSync(join(tmpdir(), "torchlm-tb-"));
const read = (d: string) =>
  pythonJson("tb-read.py", [d]) as { files: string[]; scalars: Record<string, [number, number][]> };

test("SummaryWriter: scalars TensorBoard reads back, with their steps; float32 values", () => {
  const d = dir();
  const w = new SummaryWriter(d);
  w.add_scalar("train/loss", 2.5, 1);
  w.add_scalar("train/loss", 1.25, 2);
  w.add_scalar("eval/loss", 0.1, 2);
  const r = read(d);
  expect(r.files).toEqual([w.path.split("/").pop()]);
  expect(r.files[0]).toMatch(/^events\.out\.tfevents\.\d+\./);
  expect(r.scalars["train/loss"]).toEqual([
    [1, 2.5],
    [2, 1.25],
  ]);
  expect(r.scalars["eval/loss"]![0]![0]).toBe(2);
  expect(r.scalars["eval/loss"]![0]![1]).toBeCloseTo(Math.fround(0.1), 7);
});

test("a damaged record is caught by TensorBoard's CRC check, not read as data", () => {
  const d = dir();
  const w = new SummaryWriter(d);
  w.add_scalar("train/loss", 3, 1);
  w.add_scalar("train/loss", 4, 2);
  const bytes = readFileSync(w.path);
  bytes[bytes.length - 6] ^= 0xff; // inside the last event's data
  writeFileSync(w.path, bytes);
  expect(read(d).scalars["train/loss"]).toEqual([[1, 3]]);
});

test(
  "report_to tensorboard: the Trainer's logs as train/ and eval/ scalars in logging_dir, as Hugging Face writes " +
    "them",
  async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    let s = 11;
    const rnd = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const ds = Dataset.from_dict({
      input_ids: Array.from({ length: 12 }, () => Array.from({ length: 8 }, () => Math.floor(rnd() * 50000))),
    });
    const collate = (rows: any[]): Inputs => {
      const ids = tensor(rows.map((r) => r.input_ids));
      return { input_ids: ids, labels: ids.clone() };
    };
    const logging_dir = dir();
    const args = new TrainingArguments({
      output_dir: dir(),
      report_to: ["tensorboard"],
      logging_dir,
      logging_steps: 1,
      eval_strategy: "steps",
      eval_steps: 2,
      max_steps: 4,
      per_device_train_batch_size: 2,
      save_strategy: "no",
      disable_tqdm: true,
      plot_loss: false,
    });
    const trainer = new Trainer({
      model,
      args,
      train_dataset: ds,
      eval_dataset: ds.select([0, 1, 2, 3]),
      data_collator: collate,
    });
    await trainer.train();
    const r = read(logging_dir);
    expect(r.files).toHaveLength(1);
    const train = trainer.state.log_history.filter((row) => "loss" in row);
    const evals = trainer.state.log_history.filter((row) => "eval_loss" in row);
    expect(train.map((row) => row.step)).toEqual([1, 2, 3, 4]);
    expect(evals.map((row) => row.step)).toEqual([2, 4]);
    for (const [tag, rows, key] of [
      ["train/loss", train, "loss"],
      ["train/grad_norm", train, "grad_norm"],
      ["train/learning_rate", train, "learning_rate"],
      ["eval/loss", evals, "eval_loss"],
    ] as const) {
      const got = r.scalars[tag]!;
      expect(got.map(([step]) => step)).toEqual(rows.map((row) => row.step));
      got.forEach(([, v], i) => expect(v).toBeCloseTo(Math.fround(rows[i]![key]!), 5));
    }
    expect(Object.keys(r.scalars)).toEqual(
      expect.arrayContaining(["train/epoch", "eval/runtime", "eval/samples_per_second"]),
    );
    expect(Object.keys(r.scalars).some((t) => t.endsWith("/step"))).toBe(false);
    await model.dispose();
    expect(readdirSync(logging_dir)).toHaveLength(1);
  },
);
