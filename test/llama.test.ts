// The Llama family (Llama, Qwen2, Qwen3) against transformers on PyTorch 2 on the same random weights: models made
// by transformers from configs with odd shapes (one KV head, head_dim 80 apart from hidden_size / heads, an untied
// head, rope_theta 1e6, Llama 3's rope scaling in the older rope_scaling form), compared on logits (plain, left-padded
// under a mask, bfloat16), greedy and beam search token for token, three training steps, and checkpoints both ways.
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AutoConfig,
  AutoModelForCausalLM,
  Dataset,
  LlamaConfig,
  LlamaForCausalLM,
  PreTrainedModel,
  Qwen2Config,
  Qwen3ForCausalLM,
  Trainer,
  TrainingArguments,
  get_peft_model,
  LoraConfig,
  load_file,
  tensor,
} from "../lib/index.js";
import type { Inputs } from "../lib/trainer.js";
import { probes } from "../bench/probes.js";
import { pythonJson } from "./helpers/python.js";
import { maxAbsDiff } from "./helpers/tiny.js";

const V = 320;
const FAMILIES: [string, Record<string, unknown>][] = [
  [
    "llama: 4 heads over 2 KV heads, untied head, Llama 3 rope scaling (rope_theta + rope_scaling)",
    {
      model_type: "llama",
      vocab_size: V,
      hidden_size: 64,
      intermediate_size: 96,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 256,
      tie_word_embeddings: false,
      rope_theta: 500000,
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 64,
      },
    },
  ],
  [
    "llama: one KV head, tied embeddings, attention and MLP biases",
    {
      model_type: "llama",
      vocab_size: V,
      hidden_size: 48,
      intermediate_size: 80,
      num_hidden_layers: 2,
      num_attention_heads: 3,
      num_key_value_heads: 1,
      max_position_embeddings: 128,
      tie_word_embeddings: true,
      attention_bias: true,
      mlp_bias: true,
    },
  ],
  [
    "qwen2: q/k/v biases, rope_theta 1e6, tied",
    {
      model_type: "qwen2",
      vocab_size: V,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 128,
      tie_word_embeddings: true,
      rope_theta: 1000000,
    },
  ],
  [
    "qwen3: q/k norms, head_dim 80 (not hidden_size / heads), untied",
    {
      model_type: "qwen3",
      vocab_size: V,
      hidden_size: 64,
      intermediate_size: 96,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 80,
      max_position_embeddings: 128,
      tie_word_embeddings: false,
    },
  ],
];

const IDS = [
  [5, 17, 33, 2, 250, 7, 9, 100, 61, 3, 88, 141],
  [300, 1, 44, 44, 12, 90, 210, 8, 77, 150, 5, 6],
];
const PADDED = [
  [0, 0, 0, 0, 31, 7, 250, 9],
  [12, 13, 14, 15, 16, 17, 18, 19],
];
const MASK = [
  [0, 0, 0, 0, 1, 1, 1, 1],
  [1, 1, 1, 1, 1, 1, 1, 1],
];

/** The largest difference relative to the reference's largest magnitude. */
function relMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(b[i]!));
  return maxAbsDiff(a, b) / m;
}

/**
 * The logits of positions 9, 10 and 11 of `rows` (of IDS) decoded one token at a time after a 9-token prompt, in
 * float32 as [step, row, V], and each step's logits dtype.
 */
async function stepByStep(m: PreTrainedModel, rows: number[][]): Promise<{ logits: number[]; dtypes: string[] }> {
  const first = await m.forward({ input_ids: rows.map((r) => r.slice(0, 9)), use_cache: true });
  let past = first.past_key_values!;
  const logits: number[] = [],
    dtypes: string[] = [];
  for (let t = 9; t < 12; t++) {
    const o = await m.forward({ input_ids: rows.map((r) => [r[t]!]), past_key_values: past, use_cache: true });
    past = o.past_key_values!;
    dtypes.push(o.logits.dtype);
    logits.push(...(o.logits.to("float32").data() as Float32Array));
  }
  return { logits, dtypes };
}

/** The rows of the padded batch that the mask lets through (positions a padded row masks out are not compared). */
function unmasked(logits: Float32Array): number[] {
  const T = MASK[0]!.length;
  const out: number[] = [];
  MASK.forEach((row, b) =>
    row.forEach((m, t) => {
      if (m) out.push(...logits.subarray((b * T + t) * V, (b * T + t + 1) * V));
    }),
  );
  return out;
}

describe.each(FAMILIES)("%s", (_name, config) => {
  let dir: string;
  let ref: {
    params: number;
    greedy: number[][];
    beams: number[][];
    padded_greedy: number[][];
    steps: { loss: number; grad_norm: number }[];
  };
  let logits: Record<string, Float32Array>;
  let model: PreTrainedModel;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "torchlm-llama-"));
    ref = pythonJson("llama-check.py", [
      "reference",
      "--config",
      JSON.stringify(config),
      "--out",
      dir,
      "--ids",
      JSON.stringify(IDS),
      "--padded",
      JSON.stringify(PADDED),
      "--mask",
      JSON.stringify(MASK),
    ]);
    const t = await load_file(join(dir, "logits.safetensors"));
    logits = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.data() as Float32Array]));
    model = await AutoModelForCausalLM.from_pretrained(dir);
  });
  afterAll(async () => {
    await model?.dispose();
  });

  test("AutoModelForCausalLM picks the class; parameter names and count are transformers'", () => {
    const cls = { llama: "LlamaForCausalLM", qwen2: "Qwen2ForCausalLM", qwen3: "Qwen3ForCausalLM" }[
      config.model_type as string
    ];
    expect(model.constructor.name).toBe(cls);
    expect(model.num_parameters()).toBe(ref.params);
    const names = model.named_parameters().map(([n]) => n);
    expect(names[0]).toBe("model.embed_tokens.weight");
    expect(names).toContain("model.layers.1.mlp.down_proj.weight");
    expect(names.includes("lm_head.weight")).toBe(!config.tie_word_embeddings);
  });

  test("logits equal transformers' (float32, within 1e-4 of the largest), plain and left-padded", async () => {
    const a = (await model.forward({ input_ids: IDS })).logits.data() as Float32Array;
    expect(relMax(a, logits.logits!)).toBeLessThan(1e-4);
    const p = (await model.forward({ input_ids: PADDED, attention_mask: MASK })).logits.data() as Float32Array;
    expect(relMax(unmasked(p), unmasked(logits.padded!))).toBeLessThan(1e-4);
  });

  test("a sharded checkpoint (model.safetensors.index.json) loads to the same model", async () => {
    const sharded = join(dir, "sharded");
    const index = JSON.parse(readFileSync(join(sharded, "model.safetensors.index.json"), "utf8"));
    expect(new Set(Object.values(index.weight_map)).size).toBeGreaterThan(1);
    const m = await AutoModelForCausalLM.from_pretrained(sharded);
    const a = (await m.forward({ input_ids: IDS })).logits.data() as Float32Array;
    expect(relMax(a, logits.logits!)).toBeLessThan(1e-4);
    await m.dispose();
  });

  test("the KV cache: a prompt, then one token at a time, gives the full pass's logits", async () => {
    const { logits: last } = await stepByStep(model, IDS);
    const want: number[] = [];
    for (let t = 9; t < 12; t++)
      for (let b = 0; b < 2; b++) want.push(...logits.logits!.subarray((b * 12 + t) * V, (b * 12 + t + 1) * V));
    // the step outputs come [B, 1, V] per step: reorder to [step, B] as built above
    expect(relMax(last, want)).toBeLessThan(1e-4);
  });

  test("the fused batch-1 decoder: token by token, the full pass's logits and transformers' tokens", async () => {
    const calls = probes.matvecCalls();
    const { logits: last } = await stepByStep(model, [IDS[0]!]);
    expect(probes.matvecCalls()).toBeGreaterThan(calls); // the fused path ran
    expect(relMax(last, logits.logits!.subarray(9 * V, 12 * V))).toBeLessThan(1e-4);
    // row 0 of the padded batch alone, under its mask: the padding left out of attention as transformers does
    const opts = { max_new_tokens: 8, min_new_tokens: 8, eos_token_id: null, pad_token_id: 0, do_sample: false };
    const one = await model.generate(tensor([PADDED[0]!]), { ...opts, attention_mask: tensor([MASK[0]!]) });
    expect(await one.tolist()).toEqual([ref.padded_greedy[0]]);
    probes.setMatvec(false);
    try {
      const general = await model.generate(tensor([PADDED[0]!]), { ...opts, attention_mask: tensor([MASK[0]!]) });
      expect(await general.tolist()).toEqual([ref.padded_greedy[0]]);
    } finally {
      probes.setMatvec(true);
    }
  });

  test("generate: greedy and 3-beam search token for token, and greedy over a left-padded batch", async () => {
    const opts = { max_new_tokens: 8, min_new_tokens: 8, eos_token_id: null, pad_token_id: 0 };
    expect(await (await model.generate(IDS, { ...opts, do_sample: false })).tolist()).toEqual(ref.greedy);
    expect(await (await model.generate(IDS, { ...opts, num_beams: 3, do_sample: false })).tolist()).toEqual(ref.beams);
    const padded = await model.generate(tensor(PADDED), { ...opts, do_sample: false, attention_mask: tensor(MASK) });
    expect(await padded.tolist()).toEqual(ref.padded_greedy);
  });

  test("continuous batching gives each prompt generate()'s tokens alone", async () => {
    const prompts = [IDS[0]!.slice(0, 5), IDS[1]!, IDS[0]!.slice(3)];
    const results = await model.generate_batch(prompts, { max_new_tokens: 6, eos_token_id: null });
    for (const [i, p] of prompts.entries()) {
      const alone = (await (
        await model.generate([p], { max_new_tokens: 6, eos_token_id: null, do_sample: false })
      ).tolist()) as number[][];
      expect(results[i]!.generated_tokens).toEqual(alone[0]!.slice(p.length));
    }
  });

  test("bfloat16 weights: logits within bfloat16's rounding of transformers' bfloat16", async () => {
    const b = await AutoModelForCausalLM.from_pretrained(dir, { dtype: "bfloat16" });
    expect(b.dtype).toBe("bfloat16");
    const a = (await b.forward({ input_ids: IDS })).logits.to("float32").data() as Float32Array;
    expect(relMax(a, logits.bf16!)).toBeLessThan(3e-2);
    await b.dispose();
  });

  test("bfloat16 weights, a token at a time: the fused decoder (float32 activations) near transformers'", async () => {
    const b = await AutoModelForCausalLM.from_pretrained(dir, { dtype: "bfloat16" });
    try {
      const calls = probes.matvecCalls();
      const { logits: last, dtypes } = await stepByStep(b, [IDS[0]!]);
      expect(dtypes).toEqual(["bfloat16", "bfloat16", "bfloat16"]);
      expect(probes.matvecCalls()).toBeGreaterThan(calls); // the fused path ran
      // the same weights' bfloat16 rounding, and a bfloat16 KV cache: within that of both of transformers' passes
      expect(relMax(last, logits.bf16!.subarray(9 * V, 12 * V))).toBeLessThan(3e-2);
      expect(relMax(last, logits.logits!.subarray(9 * V, 12 * V))).toBeLessThan(3e-2);
    } finally {
      await b.dispose();
    }
  });

  test("three Trainer steps: losses and gradient norms equal torch.optim.AdamW + clip_grad_norm_", async () => {
    const m = await AutoModelForCausalLM.from_pretrained(dir);
    const args = new TrainingArguments({
      output_dir: mkdtempSync(join(tmpdir(), "torchlm-llama-train-")),
      per_device_train_batch_size: 2,
      max_steps: 3,
      learning_rate: 1e-3,
      weight_decay: 0,
      max_grad_norm: 1,
      lr_scheduler_type: "constant",
      logging_steps: 1,
      save_strategy: "no",
      disable_tqdm: true,
      plot_loss: false,
    });
    const collate = (rows: any[]): Inputs => {
      const ids = tensor(rows.map((r) => r.input_ids));
      return { input_ids: ids, labels: ids.clone() };
    };
    const t = new Trainer({
      model: m,
      args,
      train_dataset: Dataset.from_dict({ input_ids: IDS }),
      data_collator: collate,
    });
    await t.train();
    const rows = t.state.log_history.filter((r) => "loss" in r);
    expect(rows).toHaveLength(3);
    ref.steps.forEach((s, k) => {
      expect(Math.abs(rows[k]!.loss! - s.loss) / s.loss).toBeLessThan(1e-5);
      expect(Math.abs(rows[k]!.grad_norm! - s.grad_norm) / s.grad_norm).toBeLessThan(1e-4);
    });
    await m.dispose();
  });

  test("gradient checkpointing: the same loss and gradients", async () => {
    const run = async (on: boolean) => {
      const m = await AutoModelForCausalLM.from_pretrained(dir);
      m.train();
      if (on) m.gradient_checkpointing_enable();
      const o = await m.forward({ input_ids: IDS, labels: IDS });
      o.loss!.backward();
      const g = m.named_parameters().find(([n]) => n.endsWith("layers.0.self_attn.q_proj.weight"))![1].grad!;
      const out = { loss: o.loss!.item(), grad: g.data() as Float32Array };
      await m.dispose();
      return out;
    };
    const [a, b] = [await run(false), await run(true)];
    expect(b.loss).toBe(a.loss);
    expect(maxAbsDiff(a.grad, b.grad)).toBeLessThan(1e-6);
  });

  test("save_pretrained writes a checkpoint transformers loads to the same logits", async () => {
    const out = mkdtempSync(join(tmpdir(), "torchlm-llama-saved-"));
    await model.save_pretrained(out);
    const saved = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(saved.model_type).toBe(config.model_type);
    expect(saved.rope_parameters.rope_type).toBe(
      (config.rope_scaling as { rope_type?: string } | undefined)?.rope_type ?? "default",
    );
    pythonJson("llama-check.py", ["logits", "--model", out, "--ids", JSON.stringify(IDS), "--out", join(out, "l.st")]);
    const again = (await load_file(join(out, "l.st"))).logits!.data() as Float32Array;
    expect(relMax(again, logits.logits!)).toBeLessThan(1e-6);
  });
});

describe("the Llama family's configs and refusals", () => {
  test("a sharded index that disagrees with its files names the tensor and the file", async () => {
    const small = {
      vocab_size: 64,
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 2,
      num_attention_heads: 2,
    };
    const m = await LlamaForCausalLM.from_config(small, { seed: 3 });
    const dir = mkdtempSync(join(tmpdir(), "torchlm-llama-shards-"));
    await m.save_pretrained(dir);
    await m.dispose();
    renameSync(join(dir, "model.safetensors"), join(dir, "model-00001-of-00001.safetensors"));
    const write = (weight_map: Record<string, string>) =>
      writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map }));
    write({ "model.embed_tokens.weight": "model-00001-of-00001.safetensors" });
    await expect(AutoModelForCausalLM.from_pretrained(dir)).rejects.toThrow(
      /holds model\.layers\.0\.[\w.]+, which .* places nowhere/,
    );
    write({ "model.embed_tokens.weight": "../escape.safetensors" });
    await expect(AutoModelForCausalLM.from_pretrained(dir)).rejects.toThrow(/not a .safetensors file beside it/);
  });

  test("configs read rope in both forms and keep Hugging Face's defaults", () => {
    const old = new LlamaConfig({ rope_theta: 1e6, rope_scaling: { type: "linear", factor: 2 } });
    expect(old.rope_parameters).toEqual({ rope_type: "linear", rope_theta: 1e6, factor: 2 });
    expect(old.to_dict().rope_theta).toBeUndefined();
    const v5 = new LlamaConfig({ rope_parameters: { rope_type: "default", rope_theta: 5e5 } });
    expect(v5.rope_parameters!.rope_theta).toBe(5e5);
    const q = new Qwen2Config();
    expect([q.vocab_size, q.max_position_embeddings, q.num_key_value_heads, q.head_dim]).toEqual([
      151936, 32768, 32, 128,
    ]);
    expect(AutoConfig.for_model("qwen3").constructor.name).toBe("Qwen3Config");
  });

  test.each([
    [{ num_attention_heads: 4, num_key_value_heads: 3 }, /divisible by config.num_key_value_heads/],
    [{ hidden_act: "gelu" }, /hidden_act/],
    [{ rope_scaling: { rope_type: "yarn", factor: 4 } }, /rope_type/],
    [{ rope_scaling: { rope_type: "llama3", factor: 8 } }, /low_freq_factor/],
    [{ hidden_size: 60, num_attention_heads: 8 }, /divisible by config.num_attention_heads/],
  ])("a bad config is refused before anything is built: %j", (values, message) => {
    expect(() => new LlamaConfig({ hidden_size: 64, num_attention_heads: 4, ...values })).toThrow(message);
  });

  test("LoRA names what it adapts; an unknown model_type names the supported ones", async () => {
    const small = {
      vocab_size: 64,
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 1,
      num_attention_heads: 2,
    };
    const m = await LlamaForCausalLM.from_config(small, { seed: 1 });
    expect(() => get_peft_model(m, new LoraConfig({ r: 2, target_modules: ["lm_head"] }))).toThrow(
      "LoRA target lm_head is not a linear layer of a block",
    );
    const dir = mkdtempSync(join(tmpdir(), "torchlm-llama-q-"));
    await m.save_pretrained(dir);
    await expect(AutoModelForCausalLM.from_config({ model_type: "mamba" })).rejects.toThrow(/supports gpt2, llama/);
    const q3 = await Qwen3ForCausalLM.from_config({ ...small, head_dim: 16 }, { seed: 2 });
    expect(q3.config.head_dim).toBe(16);
    await expect(LlamaForCausalLM.from_pretrained(dir.replace(/$/, ""))).resolves.toBeInstanceOf(LlamaForCausalLM);
    // a class loads its own architectures only
    await expect(Qwen3ForCausalLM.from_pretrained(dir)).rejects.toThrow(/model_type "qwen3", not "llama"/);
    await m.dispose();
    await q3.dispose();
  });
});
