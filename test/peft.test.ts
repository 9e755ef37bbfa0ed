// LoRA with PEFT's names and files, against Python's peft (scripts/peft-check.py, the test venv): adapters made by
// either side load in the other with the same logits, 3 training steps give peft + transformers' Trainer's losses, and
// a merged model loads in transformers. Then what the native side must keep: frozen base weights, gradients through
// gradient checkpointing, decoding with adapters, checkpoints that hold the adapter, and errors.
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AutoModelForCausalLM,
  Dataset,
  GPT2LMHeadModel,
  LoraConfig,
  PeftModel,
  PreTrainedModel,
  Trainer,
  TrainingArguments,
  get_peft_model,
  load_file,
  pipeline,
  tensor,
  type Tensor,
} from "../lib/index.js";
import type { Inputs } from "../lib/trainer.js";
import { maxAbsDiff, tinyModelDir } from "./helpers/tiny.js";
import { pythonJson } from "./helpers/python.js";

const tmp = () => mkdtempSync(join(tmpdir(), "torchlm-peft-"));
const IDS_ALL = [
  [464, 2068, 7586, 21831, 18045, 625, 262, 16931],
  [40, 588, 257, 3290, 13, 632, 318, 845],
];
const IDS = IDS_ALL;
const lmCollate = (rows: any[]): Inputs => {
  const ids = tensor(rows.map((r) => r.input_ids));
  return { input_ids: ids, labels: ids.clone() };
};
const ROWS = (() => {
  let s = 3;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  return Array.from({ length: 6 }, () => Array.from({ length: 12 }, () => Math.floor(rnd() * 50000)));
})();
const rows = ROWS;
const LORA = { r: 4, lora_alpha: 8, lora_dropout: 0, task_type: "CAUSAL_LM" as const };
const ALL = { ...LORA, target_modules: ["c_attn", "c_proj", "c_fc"], fan_in_fan_out: true };
const LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
const LLAMA_SHAPE = {
  vocab_size: 320,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 128,
};
interface FamilyCase {
  /** A Llama-family config to make random weights from, or null for the tiny GPT-2. */
  config: Record<string, unknown> | null;
  targets: string[];
  vocab: number;
}
/** The base model's directory: the tiny GPT-2, or a seeded random model of the config saved as transformers does. */
async function baseDir(config: Record<string, unknown> | null): Promise<string> {
  if (config === null) return tinyModelDir();
  const dir = tmp();
  const m = await AutoModelForCausalLM.from_config(config, { seed: 5 });
  await m.save_pretrained(dir);
  await m.dispose();
  return dir;
}

async function logitsOf(model: PreTrainedModel, ids: number[][] = IDS): Promise<Float32Array> {
  const was = model.training;
  model.eval();
  const out = (await model.forward({ input_ids: ids })).logits.data() as Float32Array;
  if (was) model.train();
  return out;
}
/** The largest difference over the largest magnitude: logits of a few units, so 1e-5 is about 1e-5 absolute. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  return maxAbsDiff(a, b) / Math.max(1, scale);
}
class InOrder extends Trainer {
  override _get_train_order(_epoch: number, n: number) {
    return Int32Array.from({ length: n }, (_, i) => i);
  }
}

/** GPT-2 (Conv1D) and two of the Llama family (nn.Linear, with and without biases; q/k norms), as PEFT adapts them. */
const FAMILIES: [string, FamilyCase][] = [
  ["gpt2: c_attn, c_proj, c_fc", { config: null, targets: ["c_attn", "c_proj", "c_fc"], vocab: 50257 }],
  [
    "qwen2: the seven linear layers, q/k/v with biases",
    { config: { model_type: "qwen2", ...LLAMA_SHAPE }, targets: LLAMA_TARGETS, vocab: 320 },
  ],
  [
    "llama: q_proj, v_proj and down_proj, untied head",
    {
      config: { model_type: "llama", ...LLAMA_SHAPE, tie_word_embeddings: false },
      targets: ["q_proj", "v_proj", "down_proj"],
      vocab: 320,
    },
  ],
];

describe.each(FAMILIES)("against Python's peft, %s", (_name, family) => {
  const adapterDir = tmp();
  const IDS = IDS_ALL.map((r) => r.map((x) => x % family.vocab));
  const rows = ROWS.map((r) => r.map((x) => x % family.vocab));
  const ALL = { ...LORA, target_modules: family.targets, fan_in_fan_out: family.config === null };
  let base = "";
  const load = () => AutoModelForCausalLM.from_pretrained(base);
  const pyOut = join(tmp(), "peft-logits.safetensors");
  let made: { log_history: any[]; names: string[]; trainable: number; total: number };
  beforeAll(async () => {
    base = await baseDir(family.config);
    made = pythonJson("peft-check.py", [
      "make",
      "--targets",
      JSON.stringify(family.targets),
      "--base",
      base,
      "--adapter-out",
      adapterDir,
      "--ids",
      JSON.stringify(IDS),
      "--out",
      pyOut,
      "--rows",
      JSON.stringify(rows),
      "--steps",
      "3",
    ]);
  });

  test("get_peft_model gives PEFT's parameter names, counts and adapter_config.json", async () => {
    const model = await load();
    const peft = get_peft_model(model, new LoraConfig(ALL));
    expect(peft.named_parameters().map(([n]) => n)).toEqual(made.names);
    expect(peft.get_nb_trainable_parameters()).toEqual([made.trainable, made.total]);
    expect(
      peft
        .named_parameters()
        .filter(([, t]) => t.requires_grad)
        .every(([n]) => /\.lora_[AB]\.default\.weight$/.test(n)),
    ).toBe(true);
    const printed: unknown[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => {
      printed.push(...a);
    };
    try {
      peft.print_trainable_parameters();
    } finally {
      console.log = log;
    }
    expect(printed).toEqual([
      `trainable params: ${made.trainable.toLocaleString("en-US")} || all params: ` +
        `${made.total.toLocaleString("en-US")} || trainable%: ${((100 * made.trainable) / made.total).toFixed(4)}`,
    ]);
    const d = tmp();
    await peft.save_pretrained(d);
    const ours = JSON.parse(readFileSync(join(d, "adapter_config.json"), "utf8"));
    const theirs = JSON.parse(readFileSync(join(adapterDir, "adapter_config.json"), "utf8"));
    expect(Object.keys(ours).sort()).toEqual(Object.keys(theirs).sort());
    for (const k of [
      "r",
      "lora_alpha",
      "fan_in_fan_out",
      "bias",
      "peft_type",
      "task_type",
      "use_rslora",
      "inference_mode",
    ])
      expect([k, ours[k]]).toEqual([k, theirs[k]]);
    // PEFT writes a set, in any order
    expect([...ours.target_modules].sort()).toEqual([...theirs.target_modules].sort());
    const a = await load_file(join(d, "adapter_model.safetensors"));
    const b = await load_file(join(adapterDir, "adapter_model.safetensors"));
    expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
    for (const k of Object.keys(a)) expect([k, a[k]!.shape]).toEqual([k, b[k]!.shape]);
    await peft.dispose();
  });

  test("an adapter peft made loads in torchlm with peft's logits (1e-5)", async () => {
    const peft = await PeftModel.from_pretrained(await load(), adapterDir);
    const theirs = (await load_file(pyOut)).logits!.data() as Float32Array;
    const base = await logitsOf(await load(), IDS);
    expect(relDiff(base, theirs)).toBeGreaterThan(1e-3); // the adapter changes the outputs
    expect(relDiff(await logitsOf(peft, IDS), theirs)).toBeLessThan(1e-5);
    // for inference, as PEFT loads by default
    expect(peft.named_parameters().some(([, t]) => t.requires_grad)).toBe(false);
    await peft.dispose();
  });

  test("3 steps of the loaded adapter give peft + transformers' Trainer's losses and grad norms", async () => {
    const peft = await PeftModel.from_pretrained(await load(), adapterDir, {
      is_trainable: true,
    });
    const args = new TrainingArguments({
      output_dir: tmp(),
      per_device_train_batch_size: 2,
      max_steps: 3,
      learning_rate: 1e-3,
      weight_decay: 0.1,
      max_grad_norm: 1.0,
      lr_scheduler_type: "constant",
      logging_steps: 1,
      save_strategy: "no",
      seed: 42,
      disable_tqdm: true,
      plot_loss: false,
    });
    const t = new InOrder({
      model: peft,
      args,
      train_dataset: Dataset.from_dict({ input_ids: rows }),
      data_collator: lmCollate,
    });
    await t.train();
    const ours = t.state.log_history.filter((r) => "loss" in r);
    const theirs = made.log_history.filter((r) => "loss" in r);
    expect(ours).toHaveLength(3);
    expect(theirs).toHaveLength(3);
    // for GPT2LMHeadModel, whose loss_type it does not recognise, transformers 5's Trainer divides by the labels
    // before the shift (T a row), the model's loss by the T - 1 it predicts (see hf-golden.test.ts): the same updates
    // after clipping and AdamW. A *ForCausalLM class's labels it counts after the shift, as torchlm does.
    const k = family.config === null ? rows[0]!.length / (rows[0]!.length - 1) : 1;
    ours.forEach((r, i) => {
      expect(Math.abs(r.loss! - theirs[i].loss * k) / r.loss!).toBeLessThan(1e-5);
      expect(Math.abs(r.grad_norm! - theirs[i].grad_norm * k) / r.grad_norm!).toBeLessThan(1e-4);
    });
    await peft.dispose();
  });

  test(
    "an adapter torchlm trained loads in peft with the same logits; the merged model loads in transformers with " +
      "them too",
    async () => {
      const model = await load();
      const peft = get_peft_model(model, new LoraConfig(ALL));
      const args = new TrainingArguments({
        output_dir: tmp(),
        per_device_train_batch_size: 2,
        max_steps: 3,
        learning_rate: 1e-2,
        logging_steps: 1,
        save_strategy: "no",
        disable_tqdm: true,
        plot_loss: false,
      });
      await new Trainer({
        model: peft,
        args,
        train_dataset: Dataset.from_dict({ input_ids: rows }),
        data_collator: lmCollate,
      }).train();
      const adapter = tmp();
      await peft.save_pretrained(adapter);
      const ours = await logitsOf(peft, IDS);
      const merged = await peft.merge_and_unload();
      expect(merged.constructor).toBe((await load()).constructor);
      expect(merged).not.toBeInstanceOf(PeftModel);
      const mergedDir = tmp();
      await merged.save_pretrained(mergedDir);
      const mergedOurs = await logitsOf(merged, IDS);
      const out = join(tmp(), "logits.safetensors");
      pythonJson("peft-check.py", [
        "load",
        "--base",
        base,
        "--adapter",
        adapter,
        "--ids",
        JSON.stringify(IDS),
        "--out",
        out,
        "--merged",
        mergedDir,
      ]);
      const py = await load_file(out);
      expect(relDiff(ours, py.logits!.data() as Float32Array)).toBeLessThan(1e-5);
      expect(relDiff(mergedOurs, py.merged!.data() as Float32Array)).toBeLessThan(1e-5);
      expect(relDiff(mergedOurs, ours)).toBeLessThan(1e-5);
      await merged.dispose();
    },
  );

  test("generate with adapters equals the merged model's; gradient checkpointing, the same gradients", async () => {
    const peft = await PeftModel.from_pretrained(await load(), adapterDir, { is_trainable: true });
    peft.train();
    const grads = async () => {
      const out = await peft.forward({ input_ids: IDS, labels: IDS });
      out.loss!.backward();
      const g = peft
        .named_parameters()
        .filter(([, t]) => t.requires_grad)
        .map(([, t]) => Array.from(t.grad!.data() as Float32Array));
      peft.zero_grad();
      return g;
    };
    const plain = await grads();
    peft.gradient_checkpointing_enable();
    const ckpt = await grads();
    peft.gradient_checkpointing_disable();
    expect(plain).toHaveLength(made.names.filter((n) => /\.lora_[AB]\./.test(n)).length);
    plain.forEach((g, k) => expect(maxAbsDiff(ckpt[k]!, g)).toBeLessThan(1e-6));
    peft.eval();
    const prompt = [IDS[0]!.slice(0, 4)];
    const adapted = (await peft.generate(prompt, { max_new_tokens: 10 })).tolist();
    const plainBase = (await (await load()).generate(prompt, { max_new_tokens: 10 })).tolist();
    const merged = await peft.merge_and_unload();
    expect((await merged.generate(prompt, { max_new_tokens: 10 })).tolist()).toEqual(adapted);
    expect(adapted).not.toEqual(plainBase); // the adapter changes what is decoded
    await merged.dispose();
  });
});

describe("LoRA in torchlm", () => {
  /** A PeftModel on the tiny model whose B matrices are trained a little, so the adapters change the outputs. */
  async function trainedPeft(config: Partial<typeof ALL> = {}): Promise<PeftModel> {
    const peft = get_peft_model(
      await GPT2LMHeadModel.from_pretrained(tinyModelDir()),
      new LoraConfig({ ...ALL, ...config }),
    );
    const args = new TrainingArguments({
      output_dir: tmp(),
      per_device_train_batch_size: 2,
      max_steps: 2,
      learning_rate: 2e-2,
      save_strategy: "no",
      disable_tqdm: true,
      plot_loss: false,
      logging_steps: 1,
    });
    await new Trainer({
      model: peft,
      args,
      train_dataset: Dataset.from_dict({ input_ids: rows }),
      data_collator: lmCollate,
    }).train();
    return peft;
  }
  const sum = (t: Tensor) => (t.data() as Float32Array).reduce((a, b) => a + b, 0);

  test("training moves only the adapters; AdamW keeps state for them alone", async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const before = new Map(model.named_parameters().map(([n, t]) => [n, sum(t)]));
    const peft = get_peft_model(model, new LoraConfig(ALL));
    const args = new TrainingArguments({
      output_dir: tmp(),
      per_device_train_batch_size: 2,
      max_steps: 2,
      learning_rate: 2e-2,
      save_strategy: "no",
      disable_tqdm: true,
      plot_loss: false,
    });
    const t = new Trainer({
      model: peft,
      args,
      train_dataset: Dataset.from_dict({ input_ids: rows }),
      data_collator: lmCollate,
    });
    await t.train();
    for (const [n, t2] of model.named_parameters()) expect([n, sum(t2)]).toEqual([n, before.get(n)]);
    const b = peft.named_parameters().find(([n]) => n.endsWith("h.0.attn.c_attn.lora_B.default.weight"))![1];
    expect(Math.abs(sum(b))).toBeGreaterThan(0);
    const lora = peft.named_parameters().filter(([, x]) => x.requires_grad);
    expect(t.optimizer!.state().filter(([k]) => k.endsWith(".exp_avg")).length).toBe(lora.length);
    expect(model.named_parameters().every(([, x]) => x.grad === null)).toBe(true);
    await peft.dispose();
  });

  test("gradient checkpointing gives the adapters the same gradients", async () => {
    const peft = await trainedPeft();
    peft.train();
    const grads = async () => {
      const out = await peft.forward({ input_ids: IDS, labels: IDS });
      out.loss!.backward();
      const g = peft
        .named_parameters()
        .filter(([, t]) => t.requires_grad)
        .map(([, t]) => Array.from(t.grad!.data() as Float32Array));
      peft.zero_grad();
      return g;
    };
    const plain = await grads();
    peft.gradient_checkpointing_enable();
    const ckpt = await grads();
    peft.gradient_checkpointing_disable();
    expect(plain.length).toBeGreaterThan(0);
    plain.forEach((g, i) => expect(maxAbsDiff(ckpt[i]!, g)).toBeLessThan(1e-6));
    await peft.dispose();
  });

  test(
    "decoding with adapters on equals decoding the merged model (the fast batch-1 path); pipeline and " +
      "generate_stream take a PeftModel",
    async () => {
      const peft = await trainedPeft();
      peft.eval();
      const prompt = [IDS[0]!.slice(0, 4)];
      const withAdapters = (await peft.generate(prompt, { max_new_tokens: 12 })).tolist();
      const streamed: number[] = [];
      for await (const step of peft.generate_stream(prompt, { max_new_tokens: 12 })) streamed.push(step[0]!);
      expect(streamed).toEqual((withAdapters as number[][])[0]!.slice(4));
      const gen = await pipeline("text-generation", peft, { tokenizer: "gpt2" });
      const text = await gen("Hello", { max_new_tokens: 3 });
      expect(typeof text[0]!.generated_text).toBe("string");
      const merged = await peft.merge_and_unload();
      expect((await merged.generate(prompt, { max_new_tokens: 12 })).tolist()).toEqual(withAdapters);
      await merged.dispose();
    },
  );

  test("Trainer checkpoints hold the adapter, and resuming equals an uninterrupted run", async () => {
    const dir = tmp();
    const argsFor = () =>
      new TrainingArguments({
        output_dir: dir,
        per_device_train_batch_size: 2,
        max_steps: 4,
        learning_rate: 1e-2,
        weight_decay: 0.1,
        logging_steps: 1,
        save_steps: 2,
        disable_tqdm: true,
        plot_loss: false,
      });
    const fresh = async () => {
      const p = get_peft_model(await GPT2LMHeadModel.from_pretrained(tinyModelDir()), new LoraConfig(ALL));
      return p;
    };
    const ds = Dataset.from_dict({ input_ids: rows });
    const a = await fresh();
    const ta = new Trainer({ model: a, args: argsFor(), train_dataset: ds, data_collator: lmCollate });
    await ta.train();
    expect(readdirSync(join(dir, "checkpoint-2")).sort()).toEqual([
      "adapter_config.json",
      "adapter_model.safetensors",
      "optimizer.safetensors",
      "rng_state.safetensors",
      "scheduler.json",
      "trainer_state.json",
      "training_args.json",
    ]);
    // the adapter of checkpoint-2 loads in a fresh model and reproduces a's logits at step 2 only through resume
    const b = await fresh();
    const tb = new Trainer({ model: b, args: argsFor(), train_dataset: ds, data_collator: lmCollate });
    await tb.train({ resume_from_checkpoint: join(dir, "checkpoint-2") });
    expect(tb.state.log_history.filter((r) => "loss" in r)).toEqual(ta.state.log_history.filter((r) => "loss" in r));
    expect(Array.from(await logitsOf(b))).toEqual(Array.from(await logitsOf(a)));
    await a.dispose();
    await b.dispose();
  });

  test(
    "LoraConfig and get_peft_model refuse what they cannot do, naming it; a bad adapter file leaves the model as " +
      "it was",
    async () => {
      const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
      expect(() => new LoraConfig({ r: 0 })).toThrow("Expected positive integer for r but received 0");
      expect(() => new LoraConfig({ bias: "all" as never })).toThrow(/bias "all" is not supported/);
      expect(() => new LoraConfig({ lora_dropout: 1 })).toThrow(/lora_dropout/);
      expect(() => new LoraConfig({ rank: 8 } as never)).toThrow("Unknown option rank for LoraConfig");
      expect(() => get_peft_model(model, new LoraConfig({ target_modules: ["q_proj"] }))).toThrow(
        'Target modules ["q_proj"] not found in the base model',
      );
      expect(() => get_peft_model(model, new LoraConfig({ target_modules: ["lm_head"] }))).toThrow(
        "LoRA target lm_head is not a Conv1D layer",
      );
      expect(() =>
        get_peft_model(model, new LoraConfig({ target_modules: ["c_attn"], layers_to_transform: [5] })),
      ).toThrow("layers_to_transform has layer 5 but the model has 2 layers");
      // PEFT's default for GPT-2 is c_attn; layers_to_transform and a regular expression pick modules as PEFT does
      const p = get_peft_model(model, new LoraConfig({ layers_to_transform: 1 }));
      expect(
        p
          .named_parameters()
          .filter(([, t]) => t.requires_grad)
          .map(([n]) => n),
      ).toEqual([
        "base_model.model.transformer.h.1.attn.c_attn.lora_A.default.weight",
        "base_model.model.transformer.h.1.attn.c_attn.lora_B.default.weight",
      ]);
      expect(() => get_peft_model(model, new LoraConfig())).toThrow("The model already has LoRA adapters");
      await p.unload();
      expect(model.named_parameters().every(([, t]) => t.requires_grad)).toBe(true);
      const q = get_peft_model(model, new LoraConfig({ target_modules: "transformer\\.h\\.0\\.mlp\\.c_.*" }));
      expect(
        q
          .named_parameters()
          .filter(([, t]) => t.requires_grad)
          .map(([n]) => n.replace("base_model.model.transformer.", "")),
      ).toEqual([
        "h.0.mlp.c_fc.lora_A.default.weight",
        "h.0.mlp.c_fc.lora_B.default.weight",
        "h.0.mlp.c_proj.lora_A.default.weight",
        "h.0.mlp.c_proj.lora_B.default.weight",
      ]);
      const d = tmp();
      await q.save_pretrained(d);
      await q.unload();
      // a file whose B has the wrong rank: a clear error, and the model keeps no half-loaded adapter
      const cfg = JSON.parse(readFileSync(join(d, "adapter_config.json"), "utf8"));
      writeFileSync(join(d, "adapter_config.json"), JSON.stringify({ ...cfg, r: 2 }));
      await expect(PeftModel.from_pretrained(model, d)).rejects.toThrow(
        /LoRA tensor h\.0\.mlp\.c_fc\.lora_A\.weight has shape \[8, 64\] but the adapter's is \[2, 64\]/,
      );
      expect(model._native.loraParameters()).toHaveLength(0);
      writeFileSync(join(d, "adapter_config.json"), JSON.stringify({ ...cfg, use_dora: true }));
      await expect(PeftModel.from_pretrained(model, d)).rejects.toThrow(
        "sets use_dora to true, which torchlm does not support",
      );
      await expect(PeftModel.from_pretrained(model, tmp())).rejects.toThrow(/has no adapter_config.json/);
      expect(existsSync(join(d, "adapter_model.safetensors"))).toBe(true);
      await model.dispose();
    },
  );
});
