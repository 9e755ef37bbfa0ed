// The embedded default for running the tutorial offline: a small GPT-2 with seeded random weights,
// pre-trained briefly by torchlm itself on a generated movie-review corpus, the real GPT-2 tokenizer,
// and an IMDB-shaped parquet file of generated reviews. Built once into a folder and reused.
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import {
  AutoTokenizer,
  Dataset,
  DataCollatorForLanguageModeling,
  GPT2LMHeadModel,
  Trainer,
  TrainingArguments,
} from "../lib/index.js";
import { movieReviews } from "./reviews.js";

export const EMBEDDED_CONFIG = {
  model_type: "gpt2",
  architectures: ["GPT2LMHeadModel"],
  vocab_size: 50257,
  n_positions: 128,
  n_embd: 96,
  n_layer: 2,
  n_head: 4,
  activation_function: "gelu_new",
  resid_pdrop: 0.0,
  embd_pdrop: 0.0,
  attn_pdrop: 0.0,
  layer_norm_epsilon: 1e-5,
  bos_token_id: 50256,
  eos_token_id: 50256,
  task_specific_params: { "text-generation": { do_sample: true, max_length: 50 } },
};

/**
 * Writes n reviews in IMDB's parquet schema; `join` reviews are concatenated into each row (IMDB's reviews are long).
 */
export async function writeReviewsParquet(file: string, n: number, seed: number, join = 1): Promise<void> {
  const base = movieReviews(n * join, seed);
  const text = Array.from({ length: n }, (_, i) => base.text.slice(i * join, (i + 1) * join).join(" "));
  const label = Array.from({ length: n }, (_, i) => base.label[i * join]!);
  const buf = parquetWriteBuffer({
    columnData: [
      { name: "text", data: text, type: "STRING" },
      { name: "label", data: BigInt64Array.from(label.map(BigInt)), type: "INT64" },
    ],
  });
  await writeFile(file, Buffer.from(buf));
}

/** Builds (or reuses) the embedded model and data under `dir`; returns the model directory and the dataset file. */
export async function prepareEmbedded(
  dir: string,
  log: (s: string) => void = console.log,
): Promise<{ model: string; dataset: string }> {
  const modelDir = join(dir, "gpt2-embedded");
  const dataDir = join(dir, "imdb-embedded");
  const dataset = join(dataDir, "train-00000-of-00001.parquet");
  await mkdir(dataDir, { recursive: true });
  if (!existsSync(dataset)) await writeReviewsParquet(dataset, 2000, 0);
  if (existsSync(join(modelDir, "model.safetensors"))) return { model: modelDir, dataset };

  log(
    `Building the embedded default model in ${modelDir} (once): a ${EMBEDDED_CONFIG.n_layer}-layer GPT-2 with ` +
      `seeded random weights, ` +
      "pre-trained for a minute on generated reviews so that it has something to fine-tune.",
  );
  const tokenizer = await AutoTokenizer.from_pretrained("gpt2");
  tokenizer.pad_token = tokenizer.eos_token;
  const model = await GPT2LMHeadModel.from_config(EMBEDDED_CONFIG, { seed: 1234 });
  const corpus = Dataset.from_dict(movieReviews(3000, 1));
  const tokenized = await corpus.map(
    (b: { text: string[] }) => tokenizer(b.text, { max_length: 64, truncation: true }),
    { batched: true, remove_columns: ["text", "label"] },
  );
  const args = new TrainingArguments({
    output_dir: join(dir, "pretraining"),
    per_device_train_batch_size: 32,
    num_train_epochs: 1,
    learning_rate: 3e-3,
    warmup_steps: 10,
    lr_scheduler_type: "cosine",
    weight_decay: 0.01,
    logging_steps: 20,
    save_strategy: "no",
    seed: 1234,
    plot_loss: false,
    use_cpu: true,
  });
  const trainer = new Trainer({
    model,
    args,
    train_dataset: tokenized,
    data_collator: new DataCollatorForLanguageModeling(tokenizer, { mlm: false }),
  });
  const r = await trainer.train();
  log(`Pre-training done: ${r.global_step} steps, final train loss ${r.training_loss.toFixed(3)}.`);
  tokenizer.pad_token = null;
  await model.save_pretrained(modelDir);
  await tokenizer.save_pretrained(modelDir);
  await model.dispose();
  return { model: modelDir, dataset };
}
