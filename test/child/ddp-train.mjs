// Child process of test/distributed.test.ts: trains the tiny model with the Trainer, in one process or as one
// rank of a job started by `torchlm launch`; rank 0 saves the model and prints the log history.
// argv: distIndex modelDir outDir batchSize maxSteps mode (ok | kill | throw | resume | lora | long | paced |
// paced-resume)
// long: no evaluation and no checkpoints, for a run that is stopped from outside.
// paced: no evaluation, a checkpoint every 2 steps and 200 ms a step, for a run stopped from outside after rank 0
// marks step 5; paced-resume goes on from the last checkpoint the stopped run left.
// lora: LoRA adapters, drawn from a different seed on each rank (the Trainer's broadcast must make them rank 0's), on
// GPT-2's Conv1D layers or a Llama-family block's linear layers. The model is whatever modelDir holds.
import { writeFileSync } from "node:fs";

const [, , distIndex, modelDir, outDir, bsArg, stepsArg, mode = "ok"] = process.argv;
const {
  AutoModelForCausalLM,
  Dataset,
  LoraConfig,
  Trainer,
  TrainerCallback,
  TrainingArguments,
  get_peft_model,
  set_seed,
  tensor,
} = await import(distIndex);

let model = await AutoModelForCausalLM.from_pretrained(modelDir);
const vocab = Math.min(50000, model.config.vocab_size);
let s = 7;
const rnd = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const rows = (n, T = 16) => Array.from({ length: n }, () => Array.from({ length: T }, () => Math.floor(rnd() * vocab)));
const train = Dataset.from_dict({ input_ids: rows(24) });
const evalDs = Dataset.from_dict({ input_ids: rows(5) });
const collate = (b) => {
  const ids = tensor(b.map((r) => r.input_ids));
  return { input_ids: ids, labels: ids.clone() };
};

const rank = Number(process.env.RANK ?? 0);
class Fault extends TrainerCallback {
  async on_step_end({ state }) {
    // long: rank 0 says when the ranks are training, for a test that stops them from outside
    if (mode === "long" && rank === 0 && state.global_step === 2) writeFileSync(`${outDir}/training`, "");
    if (mode.startsWith("paced")) {
      if (rank === 0 && state.global_step === 5) writeFileSync(`${outDir}/training`, "");
      await new Promise((r) => setTimeout(r, 200));
    }
    if (rank !== 1 || state.global_step !== 1) return;
    if (mode === "kill") process.kill(process.pid, "SIGKILL");
    if (mode === "throw") throw new Error("rank 1 failed on purpose");
  }
}

if (mode === "lora") {
  set_seed(rank);
  const gpt2 = model.config.model_type === "gpt2";
  const target_modules = gpt2
    ? ["c_attn", "c_proj", "c_fc"]
    : ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
  model = get_peft_model(model, new LoraConfig({ r: 4, lora_alpha: 8, target_modules, fan_in_fan_out: gpt2 }));
}
const args = new TrainingArguments({
  output_dir: outDir,
  per_device_train_batch_size: Number(bsArg),
  max_steps: Number(stepsArg),
  learning_rate: 1e-3,
  weight_decay: 0.1,
  lr_scheduler_type: "cosine",
  logging_steps: 1,
  eval_strategy: mode === "long" || mode.startsWith("paced") ? "no" : "steps",
  eval_steps: 3,
  per_device_eval_batch_size: 2,
  save_strategy: mode === "long" ? "no" : "steps",
  save_steps: 2,
  disable_tqdm: true,
  plot_loss: false,
  ddp_timeout: 60,
});
const trainer = new Trainer({
  model,
  args,
  train_dataset: train,
  eval_dataset: evalDs,
  data_collator: collate,
  callbacks: [new Fault()],
});
await trainer.train({
  resume_from_checkpoint: mode === "resume" ? `${outDir}/checkpoint-2` : mode === "paced-resume" ? true : undefined,
});
await trainer.save_model(`${outDir}/final`);
if (rank === 0) console.log(JSON.stringify({ world: args.world_size, log_history: trainer.state.log_history }));
