// Child process of test/faults.test.ts: trains the tiny model, saving checkpoints, and reports its progress on
// stdout ("step N", "saved N") so the parent can signal or kill it at chosen moments.
// argv: distIndex modelDir outDir maxSteps saveSteps resume(0 | 1)
const [, , distIndex, modelDir, outDir, maxSteps, saveSteps, resume] = process.argv;
const { Dataset, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments, tensor } = await import(distIndex);

let s = 5;
const rnd = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const rows = Array.from({ length: 64 }, () => Array.from({ length: 16 }, () => Math.floor(rnd() * 50000)));
const collate = (b) => {
  const ids = tensor(b.map((r) => r.input_ids));
  return { input_ids: ids, labels: ids.clone() };
};
class Report extends TrainerCallback {
  on_step_end({ state }) {
    process.stdout.write(`step ${state.global_step}\n`);
  }
  on_save({ state }) {
    process.stdout.write(`saved ${state.global_step}\n`);
  }
}
const model = await GPT2LMHeadModel.from_pretrained(modelDir);
const args = new TrainingArguments({
  output_dir: outDir,
  per_device_train_batch_size: 4,
  max_steps: Number(maxSteps),
  save_steps: Number(saveSteps),
  save_total_limit: 3,
  learning_rate: 1e-3,
  logging_steps: 5,
  disable_tqdm: true,
  plot_loss: false,
});
const trainer = new Trainer({
  model,
  args,
  train_dataset: Dataset.from_dict({ input_ids: rows }),
  data_collator: collate,
  callbacks: [new Report()],
});
await trainer.train({ resume_from_checkpoint: resume === "1" });
await trainer.save_model(`${outDir}/final`);
process.stdout.write("done\n");
