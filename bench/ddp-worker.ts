// A training run for the benchmark's data-parallel figure: started alone or by `torchlm launch`; rank 0 prints
// the training tokens/s of the steps after the first. argv: weightsDir perDeviceBatch steps
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Dataset,
  GPT2LMHeadModel,
  Trainer,
  TrainerCallback,
  TrainingArguments,
  get_num_threads,
  tensor,
  type Inputs,
} from "../lib/index.js";

const [dir, bsArg, stepsArg] = process.argv.slice(2);
const bs = Number(bsArg),
  steps = Number(stepsArg),
  T = 64;
let s = 11;
const rnd = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const rows = Array.from({ length: 256 }, () => Array.from({ length: T }, () => Math.floor(rnd() * 50257)));
const collate = (b: Record<string, unknown>[]): Inputs => {
  const ids = tensor(b.map((r) => r.input_ids as number[]));
  return { input_ids: ids, labels: ids.clone() };
};
const times: number[] = [];
class Clock extends TrainerCallback {
  override on_step_end() {
    times.push(performance.now());
  }
}

const model = await GPT2LMHeadModel.from_pretrained(dir!);
const args = new TrainingArguments({
  output_dir: mkdtempSync(join(tmpdir(), "torchlm-bench-ddp-")),
  per_device_train_batch_size: bs,
  max_steps: steps,
  learning_rate: 1e-4,
  weight_decay: 0.1,
  save_strategy: "no",
  logging_steps: 1000,
  disable_tqdm: true,
  plot_loss: false,
});
const trainer = new Trainer({
  model,
  args,
  train_dataset: Dataset.from_dict({ input_ids: rows }),
  data_collator: collate,
  callbacks: [new Clock()],
});
await trainer.train();
const world = args.world_size;
if (args.process_index === 0) {
  const secs = (times[times.length - 1]! - times[0]!) / 1000;
  console.log(
    JSON.stringify({ world, threads: get_num_threads(), tokens_per_s: ((steps - 1) * bs * T * world) / secs }),
  );
}
await model.dispose();
rmSync(args.output_dir, { recursive: true, force: true });
