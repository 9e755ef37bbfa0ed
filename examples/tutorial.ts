// The Hugging Face tutorial (load GPT-2, generate, pipeline, fine-tune on IMDB, explicit loss, loss curves),
// ported line by line to TypeScript. `npm start` runs it; `npm start -- --help` lists the flags.
// With the network (or a warm Hugging Face cache) it uses the real GPT-2 and IMDB; without either it
// says so and runs the same flow on torchlm's embedded default model and generated reviews.
import { Command, InvalidArgumentError } from "commander";
import { join } from "node:path";
import {
  AutoTokenizer,
  CrossEntropyLoss,
  DataCollatorForLanguageModeling,
  GPT2LMHeadModel,
  Tensor,
  Trainer,
  TrainingArguments,
  default_device,
  load_dataset,
  pipeline,
  plot_log_history,
  range,
  type Inputs,
} from "../lib/index.js";
import { cachedFile, hubEndpoint, isOffline } from "../lib/hub.js";
import { prepareEmbedded } from "./embedded.js";

const positiveInt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("Expected a positive integer.");
  return n;
};
const program = new Command()
  .name("npm start --")
  .description("The Hugging Face GPT-2 tutorial, end to end, in TypeScript on torchlm")
  .option("--model <id>", "model id or directory", "gpt2")
  .option("--dataset <id>", "dataset id or path", "stanfordnlp/imdb")
  .option("--device <device>", "cpu, cuda, cuda:N or mps (default: the best available)")
  .option("--max-steps <n>", "stop each training run after n steps", positiveInt)
  .option("--output-dir <dir>", "where checkpoints and loss.png go", "imdb_gpt2")
  .option("--offline", "do not use the network: the Hugging Face cache, or the embedded default")
  .parse();
const opts = program.opts<{
  model: string;
  dataset: string;
  device?: string;
  maxSteps?: number;
  outputDir: string;
  offline?: boolean;
}>();

async function hubReachable(): Promise<boolean> {
  if (opts.offline || isOffline()) return false;
  try {
    const res = await fetch(`${hubEndpoint()}/api/models/gpt2`, { method: "HEAD", signal: AbortSignal.timeout(5000) });
    return res.status < 500;
  } catch {
    return false;
  }
}

async function chooseSources(): Promise<{ model: string; dataset: string }> {
  const online = await hubReachable();
  if (opts.offline) process.env.HF_HUB_OFFLINE = "1";
  const modelCached = cachedFile(opts.model, "model.safetensors") !== null;
  const dataCached = cachedFile(opts.dataset, "plain_text/train-00000-of-00001.parquet", "dataset") !== null;
  const local = (p: string) => p.startsWith(".") || p.startsWith("/");
  if (online || (modelCached && dataCached) || (local(opts.model) && local(opts.dataset)))
    return { model: opts.model, dataset: opts.dataset };
  console.log(
    `\nThe Hugging Face Hub is not reachable${opts.offline ? " (--offline)" : ""} and ${opts.model} / ` +
      `${opts.dataset} are not in the cache.`,
  );
  console.log(
    "Running the same flow on torchlm's embedded default instead: a small GPT-2 (seeded random weights, pre-trained",
  );
  console.log("briefly here), the real GPT-2 tokenizer, and movie reviews that torchlm generates, in IMDB's format.\n");
  return prepareEmbedded(join(opts.outputDir, "embedded"));
}

const sources = await chooseSources();
process.env.HF_HUB_OFFLINE ??= opts.offline ? "1" : "";

// define computational device
const device = opts.device ?? default_device();
console.log(`Device: ${device}`);

// define input text
const input_text = "Natural language processing is ";

// load pretrained model and respective tokenizer
const model = await (await GPT2LMHeadModel.from_pretrained(sources.model)).to(device);
const tokenizer = await AutoTokenizer.from_pretrained(sources.model);

// tokenize our input text
const input_ids = tokenizer.encode(input_text, { return_tensors: "pt" }).to(device);
console.log("Tokenized text (input IDs) ", input_ids.tolist());

// generate predictions (greedy by default)
const prediction = await model.generate(input_ids);
// decode the prediction (i.e., convert tokens back to text)
const answer = tokenizer.decode(prediction.get(0));
console.log("Predicted continuation: ", answer);

// initialize the pipeline with the model of our choice
const generator = await pipeline("text-generation", model, { tokenizer });
// run the pipeline with default configs (note that the default is NOT greedy decoding)
const pipe_output = await generator(input_text);
console.log("Pipeline output: ", pipe_output);

// pure sampling
const sampled = await model.generate(input_ids, { do_sample: true, top_k: 0 });
console.log("Pure sampling: ", tokenizer.decode(sampled.get(0)));

// load IMDB dataset
const dataset = await load_dataset(sources.dataset, { split: "train" });
console.log(String(dataset));
// set the pad token of the tokenizer which we loaded above
tokenizer.pad_token = tokenizer.eos_token;
// set the side on which pad tokens should be added to the input (if required)
tokenizer.padding_side = "left";
// the collator pads batches and makes the labels (the model shifts them itself)
const data_collator = new DataCollatorForLanguageModeling(tokenizer, { mlm: false });

/** Tokenizes a batch of reviews to max_length ids, masking the padding. */
function tokenize(input_text: { text: string[] }, max_length = 64) {
  const tokenized_input = tokenizer(input_text.text, {
    max_length,
    padding: "max_length",
    truncation: true,
    return_tensors: "pt",
  });
  // mask padding tokens so that the model doesn't attend to them
  tokenized_input.attention_mask = (tokenized_input.input_ids as Tensor).ne(tokenizer.pad_token_id!).long();
  return { input_ids: tokenized_input.input_ids, attention_mask: tokenized_input.attention_mask };
}

const tokenized_datasets = await dataset.map(tokenize, { batched: true, remove_columns: dataset.column_names });
// print a sample of the tokenized dataset
console.log(tokenized_datasets.get(0));
// only a small subset of the data, to learn the set-up
const subsampled_dataset = tokenized_datasets.select(range(500));
// we inspect what the data_collator does
const out = data_collator(range(5).map((i) => subsampled_dataset.get(i)));
for (const [key, value] of Object.entries(out))
  console.log(`Tensor ${key}: ${JSON.stringify((value as Tensor).get(0).tolist())}`);

// define training arguments
const args = new TrainingArguments({
  output_dir: opts.outputDir, // output directory for predictions and checkpoints
  per_device_train_batch_size: 16, // batch size per GPU/CPU in training
  per_device_eval_batch_size: 16, // batch size per GPU/CPU in evaluation
  evaluation_strategy: "steps", // evaluation every 5 steps
  eval_steps: 5,
  logging_steps: 1,
  gradient_accumulation_steps: 1, // number of steps before an optimizer step
  num_train_epochs: 1, // number of training epochs (runs through training set)
  weight_decay: 0.1, // weight decay is used to prevent overfitting
  lr_scheduler_type: "cosine", // learning rate scheduler
  learning_rate: 5e-4, // learning rate
  save_steps: 5_000, // number of steps before checkpoint
  fp16: device.startsWith("cuda"),
  push_to_hub: false,
  use_mps_device: device === "mps",
  use_cpu: device === "cpu",
  max_steps: opts.maxSteps ?? -1,
});

const trainer = new Trainer({
  model,
  tokenizer,
  args,
  data_collator,
  train_dataset: subsampled_dataset,
  eval_dataset: subsampled_dataset,
});
// run the training of the model
await trainer.train();

// the same with an explicit loss: CrossEntropyLoss on shifted labels
class IMDBTrainer extends Trainer {
  override async compute_loss(model: GPT2LMHeadModel, inputs: Inputs, return_outputs = false) {
    const outputs = await model.call({ input_ids: inputs.input_ids, attention_mask: inputs.attention_mask });
    const celoss = new CrossEntropyLoss();
    // CrossEntropyLoss expects (batch_size, num_classes, additional_dims): swap the last two dimensions,
    // and predict the token at t + 1 from position t
    const modelout = outputs.logits.slice(1, 0, -1).permute(0, 2, 1);
    const target_out = inputs.labels!.slice(1, 1);
    const loss = celoss.forward(modelout, target_out);
    return (return_outputs ? [loss, outputs] : loss) as Tensor;
  }
}

// use explicit trainer
const explicit_trainer = new IMDBTrainer({
  model,
  tokenizer,
  args,
  data_collator,
  train_dataset: subsampled_dataset,
  eval_dataset: subsampled_dataset,
});
await explicit_trainer.train();

// plot the train and evaluation losses
const log_history = trainer.state.log_history;
const train_losses: number[] = [];
const test_losses: number[] = [];
for (const d of log_history) {
  if ("loss" in d) train_losses.push(d.loss!);
  else if ("eval_loss" in d) test_losses.push(d.eval_loss!);
}
console.log("train losses:", train_losses.map((x) => x.toFixed(3)).join(" "));
console.log("eval losses: ", test_losses.map((x) => x.toFixed(3)).join(" "));
const plot = await plot_log_history(log_history, join(opts.outputDir, "loss.png"), {
  title: "GPT-2 fine-tuning on IMDB: train and eval loss",
});
console.log(`Loss curves written to ${plot}`);

// a generation after fine-tuning
const review = await model.generate(tokenizer.encode("I watched", { return_tensors: "pt" }).to(device), {
  max_new_tokens: 40,
  do_sample: true,
  top_k: 50,
  seed: 0,
});
console.log("After fine-tuning: ", tokenizer.decode(review.get(0), { skip_special_tokens: true }));
await model.dispose();
