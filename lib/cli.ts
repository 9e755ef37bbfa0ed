#!/usr/bin/env node
// torchlm's command line: generate, finetune, evaluate, bench, info.
import { Command, InvalidArgumentError, Option } from "commander";
import { spawn } from "node:child_process";
import { readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  DataCollatorForLanguageModeling,
  LoraConfig,
  PeftModel,
  Trainer,
  TrainingArguments,
  default_device,
  get_peft_model,
  load_dataset,
  set_num_threads,
  torch_info,
  type Dataset,
  type GenerateOptions,
} from "./index.js";
import { packageRoot } from "./native.js";
import { hubCacheDir } from "./hub.js";
import { launch } from "./launch.js";
import { loraLayout } from "./peft.js";

const num = (v: string) => {
  const n = Number(v);
  if (Number.isNaN(n)) throw new InvalidArgumentError("Expected a number.");
  return n;
};
const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError("Expected an integer.");
  return n;
};
const bool = (v: string) => {
  if (v !== "true" && v !== "false") throw new InvalidArgumentError("Expected true or false.");
  return v === "true";
};

/** CLI flags for generation options: --max-new-tokens 20 --do-sample ... */
const GEN_FLAGS: [string, (v: string) => unknown][] = [
  ["max_length", int],
  ["max_new_tokens", int],
  ["min_length", int],
  ["min_new_tokens", int],
  ["num_beams", int],
  ["temperature", num],
  ["top_k", int],
  ["top_p", num],
  ["min_p", num],
  ["typical_p", num],
  ["repetition_penalty", num],
  ["no_repeat_ngram_size", int],
  ["num_return_sequences", int],
  ["length_penalty", num],
  ["pad_token_id", int],
  ["eos_token_id", int],
];

function flag(name: string): string {
  return "--" + name.replace(/_/g, "-");
}

/** The model, dataset and tokenization options that finetune and evaluate share. */
function dataOptions(cmd: Command, split: string): Command {
  return cmd
    .option("-m, --model <id>", "model id or directory", "gpt2")
    .option("-d, --dataset <id>", "dataset id or path (a text column)", "stanfordnlp/imdb")
    .option("--split <name>", "dataset split", split)
    .option("--text-column <name>", "the column with the text", "text")
    .option("--max-length <n>", "tokens per example", int, 64)
    .option("--select <n>", "use the first n rows", int);
}

/** Loads the model and tokenizer and tokenizes the dataset, as dataOptions describe. */
async function loadForTraining(o: Record<string, any>) {
  const model = await AutoModelForCausalLM.from_pretrained(o.model);
  const tok = await AutoTokenizer.from_pretrained(o.model);
  tok.pad_token ??= tok.eos_token;
  let ds = (await load_dataset(o.dataset, { split: o.split })) as Dataset;
  if (o.select) ds = ds.select(Array.from({ length: Math.min(o.select, ds.length) }, (_, i) => i));
  const tokenized = await ds.map(
    (b: Record<string, string[]>) => tok(b[o.textColumn]!, { max_length: o.maxLength, truncation: true }),
    { batched: true, remove_columns: ds.column_names },
  );
  return { model, tok, tokenized, collator: new DataCollatorForLanguageModeling(tok, { mlm: false }) };
}

export function buildProgram(): Command {
  const program = new Command()
    .name("torchlm")
    .description("GPT-2 in Node.js on libtorch: generate, fine-tune, evaluate, benchmark")
    .version(JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")).version)
    .option("--threads <n>", "libtorch intra-op threads (default: the cores available)", int)
    .hook("preAction", (cmd) => {
      const t = cmd.opts().threads;
      if (t) set_num_threads(t);
    })
    .exitOverride((err) => {
      process.exit(err.exitCode === 0 ? 0 : 2);
    })
    .enablePositionalOptions();

  const gen = program
    .command("generate")
    .description("generate text from a prompt, streaming to the terminal")
    .argument("<prompt>", "the prompt")
    .option("-m, --model <id>", "model id or directory", "gpt2")
    .option("--device <device>", "cpu, cuda, cuda:N or mps", default_device())
    .option("--do-sample", "sample instead of greedy decoding")
    .option("--early-stopping <v>", "beam search: true, false or never")
    .option("--seed <n>", "seed for sampling", int)
    .option("--adapter <dir>", "a LoRA adapter (PEFT's files) to apply")
    .option("--dtype <dtype>", "weights: float32, bfloat16, float16, q8 or q4 (8 or 4 bits per block of 32, CPU)")
    .option("--no-stream", "print the whole text at the end");
  for (const [k, parse] of GEN_FLAGS) gen.option(`${flag(k)} <v>`, k.replace(/_/g, " "), parse);
  gen.action(async (prompt: string, o: Record<string, any>) => {
    const base = await AutoModelForCausalLM.from_pretrained(o.model, { device: o.device, dtype: o.dtype });
    const model = o.adapter ? await PeftModel.from_pretrained(base, o.adapter) : base;
    const tok = await AutoTokenizer.from_pretrained(o.model);
    const options: GenerateOptions = { seed: o.seed };
    for (const [k] of GEN_FLAGS) {
      const v = o[k.replace(/_([a-z])/g, (_, c) => c.toUpperCase())];
      if (v !== undefined) (options as Record<string, unknown>)[k] = v;
    }
    if (o.doSample) options.do_sample = true;
    if (o.earlyStopping !== undefined)
      options.early_stopping = o.earlyStopping === "never" ? "never" : o.earlyStopping === "true";
    const ids = tok.encode(prompt);
    if (o.stream && (options.num_beams ?? 1) === 1 && (options.num_return_sequences ?? 1) === 1) {
      process.stdout.write(prompt);
      const seen: number[] = [];
      let printed = "";
      for await (const step of model.generate_stream([ids], options)) {
        seen.push(step[0]!);
        const text = tok.decode(seen, { skip_special_tokens: true });
        process.stdout.write(text.slice(printed.length));
        printed = text;
      }
      process.stdout.write("\n");
    } else {
      const out = await model.generate([ids], options);
      for (const row of out.tolist() as number[][]) console.log(tok.decode(row, { skip_special_tokens: true }));
    }
    await model.dispose();
  });

  const ft = dataOptions(
    program.command("finetune").description("fine-tune a model on a text dataset with the Trainer"),
    "train",
  )
    .option("--config <file>", "TrainingArguments as JSON (flags win)")
    .option("--save-to <dir>", "save the fine-tuned model (and tokenizer) here")
    .option("--lora-r <n>", "train LoRA adapters of this rank instead of every weight (PEFT's files)", int)
    .option("--lora-alpha <n>", "LoRA's alpha (scale alpha / r)", num, 8)
    .option("--lora-dropout <p>", "dropout on the adapters' input", num, 0)
    .option(
      "--lora-target-modules <names>",
      "comma-separated module names (PEFT's default for the model: c_attn for GPT-2, q_proj,v_proj for Llama)",
    )
    .option("--merge-lora", "with --save-to: save the model with the adapters merged in, not the adapter");
  // Every TrainingArguments field is a flag, its parser taken from the type of its default.
  const NULLABLE: Record<string, (v: string) => unknown> = {
    eval_steps: num,
    save_total_limit: int,
    data_seed: int,
    logging_dir: String,
    metric_for_best_model: String,
    greater_is_better: bool,
    run_name: String,
    ddp_backend: String,
  };
  const defaults = new TrainingArguments({ output_dir: "x" }).to_dict();
  const argFlags: [string, (v: string) => unknown][] = Object.entries(defaults).map(([k, v]) => [
    k,
    NULLABLE[k] ??
      (typeof v === "number"
        ? num
        : typeof v === "boolean"
          ? bool
          : typeof v === "object"
            ? (x: string) => JSON.parse(x)
            : String),
  ]);
  argFlags.push(["evaluation_strategy", String]);
  for (const [k, parse] of argFlags)
    ft.addOption(new Option(`${flag(k)} <v>`, `TrainingArguments.${k}`).argParser(parse as never));
  ft.action(async (o: Record<string, any>) => {
    const fromFile = o.config ? JSON.parse(readFileSync(o.config, "utf8")) : {};
    const fromFlags: Record<string, unknown> = {};
    for (const [k] of argFlags) {
      const v = o[k.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase())];
      if (v !== undefined) fromFlags[k] = v;
    }
    const args = new TrainingArguments({ ...fromFile, ...fromFlags });
    if (o.mergeLora && o.loraR === undefined) throw new InvalidArgumentError("--merge-lora needs --lora-r");
    const loaded = await loadForTraining(o);
    const { tok, tokenized, collator } = loaded;
    const model =
      o.loraR === undefined
        ? loaded.model
        : get_peft_model(
            loaded.model,
            new LoraConfig({
              r: o.loraR,
              lora_alpha: o.loraAlpha,
              lora_dropout: o.loraDropout,
              target_modules:
                o.loraTargetModules === undefined
                  ? null
                  : String(o.loraTargetModules)
                      .split(",")
                      .map((x) => x.trim())
                      .filter(Boolean),
              fan_in_fan_out: loraLayout(loaded.model).fan_in_fan_out,
              task_type: "CAUSAL_LM",
            }),
          );
    if (model instanceof PeftModel) model.print_trainable_parameters();
    const split =
      args.eval_strategy !== "no"
        ? tokenized.train_test_split({ test_size: 0.1, seed: args.seed })
        : { train: tokenized, test: undefined };
    const trainer = new Trainer({
      model,
      tokenizer: tok,
      args,
      train_dataset: split.train,
      eval_dataset: split.test,
      data_collator: collator,
    });
    const r = await trainer.train();
    console.log(JSON.stringify(r.metrics));
    if (o.saveTo && o.mergeLora) {
      const merged = await (model as PeftModel).merge_and_unload();
      await merged.save_pretrained(o.saveTo);
      await tok.save_pretrained(o.saveTo);
    } else if (o.saveTo) await trainer.save_model(o.saveTo);
    await model.dispose();
  });

  dataOptions(program.command("evaluate").description("loss and perplexity of a model on a dataset"), "test")
    .option("--batch-size <n>", "batch size", int, 8)
    .action(async (o: Record<string, any>) => {
      const { model, tok, tokenized, collator } = await loadForTraining(o);
      const args = new TrainingArguments({
        output_dir: join(hubCacheDir(), "..", "torchlm-eval"),
        per_device_eval_batch_size: o.batchSize,
        disable_tqdm: true,
        report_to: "none",
      });
      const trainer = new Trainer({ model, tokenizer: tok, args, eval_dataset: tokenized, data_collator: collator });
      const m = await trainer.evaluate();
      console.log(
        JSON.stringify({
          eval_loss: m.eval_loss,
          perplexity: Math.exp(m.eval_loss!),
          eval_samples: tokenized.length,
          eval_runtime: m.eval_runtime,
        }),
      );
      await model.dispose();
    });

  program
    .command("bench")
    .description("the benchmark against transformers, PyTorch eager and transformers.js (npm run bench)")
    .allowUnknownOption()
    .argument("[args...]")
    .action(async (args: string[]) => {
      // in a process of its own: the bench loads the testing addon (its probes), which this process cannot once the
      // library has loaded the shipped one
      const bench = spawn(process.execPath, [join(packageRoot(), "dist", "bench", "bench.js"), ...args], {
        stdio: "inherit",
      });
      const code = await new Promise<number>((done) => bench.on("close", (c) => done(c ?? 1)));
      if (code !== 0) process.exitCode = code;
    });

  program
    .command("serve")
    .description(
      "an OpenAI-compatible server (/v1/completions, /v1/models, /health, /metrics) with continuous batching",
    )
    .option("-m, --model <id>", "model id or directory", "gpt2")
    .option("--device <device>", "cpu, cuda or cuda:N", default_device())
    .option("--dtype <dtype>", "weights: float32, bfloat16, q8 or q4")
    .option("--host <host>", "address to listen on (0.0.0.0: every interface)", "127.0.0.1")
    .option("--port <port>", "port (0: a free one)", int, 8000)
    .option("--max-batch <n>", "requests decoding at once", int, 16)
    .option("--max-batch-tokens <n>", "tokens a step computes: a token per running request, then prefill", int)
    .option(
      "--max-context-length <n>",
      "tokens a slot holds, prompt and output (default: the model's positions; the KV cache holds this per slot)",
      int,
    )
    .option("--max-queue <n>", "requests waiting for a slot before new ones get 429", int, 256)
    .option("--served-model-name <name>", "the model's name in the API (default: --model)")
    .option("--api-key <key>", "require Authorization: Bearer <key> (default: $TORCHLM_API_KEY)")
    .option("--grace-period <s>", "seconds in-flight requests get to finish on SIGTERM", num, 30)
    .action(async (o: Record<string, any>) => {
      // Fastify and prom-client load with this command only
      const { serve } = await import("./serve.js");
      const model = await AutoModelForCausalLM.from_pretrained(o.model, { device: o.device, dtype: o.dtype });
      const tokenizer = await AutoTokenizer.from_pretrained(o.model).catch(() => null);
      const server = await serve({
        model,
        tokenizer,
        model_name: o.servedModelName ?? o.model,
        host: o.host,
        port: o.port,
        max_batch: o.maxBatch,
        max_batch_tokens: o.maxBatchTokens,
        max_context_length: o.maxContextLength,
        max_queue: o.maxQueue,
        api_key: o.apiKey ?? (process.env.TORCHLM_API_KEY || null),
      });
      console.log(
        `torchlm serve: ${o.model} on ${server.url} (${o.maxBatch} slots${tokenizer ? "" : ", no tokenizer"})`,
      );
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        console.log(`torchlm serve: ${signal}: finishing requests in flight (up to ${o.gracePeriod} s)`);
        await server.close(o.gracePeriod * 1000);
        await model.dispose();
        process.exit(0);
      };
      process.on("SIGTERM", () => void stop("SIGTERM"));
      process.on("SIGINT", () => void stop("SIGINT"));
    });

  program
    .command("launch")
    .description("run a script on several processes for distributed training (as torchrun)")
    .argument("<script>", "the Node script every rank runs")
    .argument("[args...]", "its arguments")
    .option("--nproc-per-node <n>", "processes on this machine", int, 1)
    .option("--nnodes <n>", "machines in the job", int, 1)
    .option("--node-rank <n>", "this machine's index", int, 0)
    .option("--master-addr <addr>", "address of the machine with rank 0", "127.0.0.1")
    .option("--master-port <port>", "its port (0: a free one, one machine only)", int, 29500)
    .option("--grace-period <s>", "seconds the other ranks get to stop after one fails", num, 10)
    .passThroughOptions()
    .action(async (script: string, args: string[], o: Record<string, any>) => {
      process.exitCode = await launch(script, args, {
        nproc_per_node: o.nprocPerNode,
        nnodes: o.nnodes,
        node_rank: o.nodeRank,
        master_addr: o.masterAddr,
        master_port: o.masterPort,
        grace_period: o.gracePeriod,
      });
    });

  program
    .command("info")
    .description("libtorch version and path, devices, threads, BLAS")
    .action(() => {
      const i = torch_info();
      console.log(
        JSON.stringify(
          {
            torch_version: i.torch_version,
            devices: { cpu: true, cuda: i.cuda, mps: i.mps },
            default_device: default_device(),
            num_threads: i.num_threads,
            mkldnn: i.mkldnn,
            hub_cache: hubCacheDir(),
            parallel_info: i.parallel_info.split("\n").filter(Boolean),
          },
          null,
          2,
        ),
      );
    });
  return program;
}

/** Runs the command line; exits 1 with the error's message on failure (2 on bad usage, from commander). */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    console.error(`torchlm: ${(e as Error).message}`);
    process.exit(1);
  }
}

// `node .../dist/lib/cli.js` run directly, through a symlinked path too (bin/torchlm.js is the package's command)
const invoked = process.argv[1]
  ? (() => {
      try {
        return realpathSync(process.argv[1]!);
      } catch {
        return "";
      }
    })()
  : "";
if (invoked === realpathSync(fileURLToPath(import.meta.url))) await main(process.argv);
