// npm run bench -- --only=llama: the Llama family beside transformers on PyTorch 2 (bench/hf_peer.py) and llama.cpp
// (bench/llama_peer.py: its own converter and quantizer, timed by its own llama-bench where that is built), on
// SmolLM2-135M- and Qwen2.5-0.5B-shaped random weights written here from a seed: greedy batch-1 decoding of 128 tokens
// in float32, bfloat16, q8 and q4 (llama.cpp's f32, bf16, q8_0, q4_0; the memory-read limit measured in the same
// rounds), and a training step of 16 x 64 (AdamW, clipping) as transformers' Trainer and torchlm's native step run it,
// whole and with LoRA (r 8 on the seven linear layers, as peft + the Trainer). Rounds interleaved; medians; ratios.
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoModelForCausalLM, LoraConfig, get_peft_model, tensor, type PreTrainedModel } from "../lib/index.js";
import { binding } from "../lib/native.js";
import { median, randIds, readGBs } from "./measure.js";
import { benchPython, Peer } from "./peers.js";

/** SmolLM2-135M's config.json (HuggingFaceTB/SmolLM2-135M), weights random. */
export const SMOLLM2_135M = {
  model_type: "llama",
  vocab_size: 49152,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  tie_word_embeddings: true,
  bos_token_id: 0,
  eos_token_id: 0,
};

/** Qwen2.5-0.5B's config.json (Qwen/Qwen2.5-0.5B), weights random. */
export const QWEN25_05B = {
  model_type: "qwen2",
  vocab_size: 151936,
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: true,
  bos_token_id: 151643,
  eos_token_id: 151643,
};

/** The scaling table's Llama-family sizes (their config.json's shapes, weights random): SmolLM2 up to 1.7B, Qwen2.5 up
 *  to 1.5B. */
export const SCALING_SHAPES = [
  { name: "SmolLM2-135M", config: SMOLLM2_135M },
  {
    name: "SmolLM2-360M",
    config: {
      ...SMOLLM2_135M,
      hidden_size: 960,
      intermediate_size: 2560,
      num_hidden_layers: 32,
      num_attention_heads: 15,
      num_key_value_heads: 5,
    },
  },
  {
    name: "SmolLM2-1.7B",
    config: {
      ...SMOLLM2_135M,
      hidden_size: 2048,
      intermediate_size: 8192,
      num_hidden_layers: 24,
      num_attention_heads: 32,
      num_key_value_heads: 32,
      rope_theta: 130000,
    },
  },
  { name: "Qwen2.5-0.5B", config: QWEN25_05B },
  {
    name: "Qwen2.5-1.5B",
    config: {
      ...QWEN25_05B,
      hidden_size: 1536,
      intermediate_size: 8960,
      num_hidden_layers: 28,
      num_attention_heads: 12,
      num_key_value_heads: 2,
    },
  },
] as const;

// training rows on the smaller shape only: at 0.5B, both sides' whole-model AdamW runs (weights, gradients and two
// moments each, with the peer's LoRA copy beside them) would not fit this machine's 24 GB together
export const SHAPES = [
  { name: "SmolLM2-135M", dir: "smollm2-135m", config: SMOLLM2_135M, train: true },
  { name: "Qwen2.5-0.5B", dir: "qwen2.5-0.5b", config: QWEN25_05B, train: false },
] as const;

export interface LlamaRow {
  shape: string;
  row: string;
  torchlm: number;
  transformers: number | null;
  llamaCpp: number | null;
  unit: string;
  note?: string;
}

/** llama.cpp's GGUF type nearest each of torchlm's dtypes. */
const GGUF = { float32: "f32", bfloat16: "bf16", q8: "q8_0", q4: "q4_0" } as const;

export async function llamaBench(root: string, threads: number, rounds = 3): Promise<LlamaRow[]> {
  const rows: LlamaRow[] = [];
  for (const shape of SHAPES) rows.push(...(await shapeBench(root, threads, rounds, shape)));
  return rows;
}

async function shapeBench(
  root: string,
  threads: number,
  rounds: number,
  shape: (typeof SHAPES)[number],
): Promise<LlamaRow[]> {
  const dir = join(root, "bench", ".weights", shape.dir);
  if (!existsSync(join(dir, "model.safetensors"))) {
    console.log(`writing seeded random ${shape.name}-shaped weights to ${dir}`);
    const m = await AutoModelForCausalLM.from_config(shape.config, { seed: 0 });
    await m.save_pretrained(dir);
    await m.dispose();
  }
  const V = shape.config.vocab_size;
  // llama.cpp converts the weights once (into DIR-gguf) and then answers one timed run per command
  let llama: Peer | null = null,
    llamaNote: string;
  try {
    llama = await Peer.start("llama.cpp", await benchPython(), [
      join(root, "bench", "llama_peer.py"),
      dir,
      String(threads),
      dir + "-gguf",
    ]);
    llamaNote = `llama.cpp timed by ${String(llama.ready.timer)}`;
  } catch (e) {
    llamaNote = `llama.cpp skipped: ${(e as Error).message.split("\n")[0]}`;
  }
  const prompt = randIds(1, 8, 2, V);
  const rows: LlamaRow[] = [];
  const E = shape.config.hidden_size;
  const greedy = async (m: PreTrainedModel) => {
    const t = performance.now();
    const o = await m.generate(prompt, { max_new_tokens: 128, min_new_tokens: 128 });
    const seconds = (performance.now() - t) / 1000;
    const tokens = (o.tolist() as number[][])[0]!.slice(8);
    o.dispose();
    return { seconds, tokens };
  };
  for (const dtype of ["float32", "bfloat16", "q8", "q4"] as const) {
    const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype });
    const quantized = dtype === "q8" || dtype === "q4";
    // what a token reads: every weight but the embeddings (one row of them); q8 / q4 as their checkpoint stores them
    let weightsBytes = model.num_parameters() * (dtype === "float32" ? 4 : 2);
    if (quantized) {
      const saved = mkdtempSync(join(tmpdir(), "torchlm-bench-llama-q-"));
      await model.save_pretrained(saved);
      weightsBytes = statSync(join(saved, "model.safetensors")).size - V * E * 4;
      rmSync(saved, { recursive: true, force: true });
    }
    // transformers has no q8 / q4 of its own on the CPU: those rows are torchlm's against the memory-read limit
    const hf = quantized
      ? null
      : await Peer.start("transformers", await benchPython(), [
          join(root, "bench", "hf_peer.py"),
          dir,
          String(threads),
          dtype,
        ]);
    await greedy(model);
    await hf?.run("decode1");
    await llama?.run(`decode1 ${GGUF[dtype]}`);
    const ours: number[] = [],
      theirs: number[] = [],
      cpp: number[] = [],
      bw: number[] = [];
    let same = true,
      firstDiff = -1;
    for (let r = 0; r < rounds; r++) {
      bw.push(await readGBs());
      const g = await greedy(model);
      ours.push(g.seconds);
      if (llama) {
        const l = await llama.run(`decode1 ${GGUF[dtype]}`);
        cpp.push(l.seconds);
        firstDiff = g.tokens.findIndex((t, i) => t !== l.tokens?.[i]);
      }
      if (!hf) continue;
      const h = await hf.run("decode1");
      theirs.push(h.seconds);
      same &&= JSON.stringify(h.tokens) === JSON.stringify(g.tokens);
    }
    const tps = 128 / median(ours);
    const limit = (median(bw) * 1e9) / weightsBytes;
    rows.push({
      shape: shape.name,
      row: `decode b1 ${dtype} (8 + 128 tokens)`,
      torchlm: tps,
      transformers: hf ? 128 / median(theirs) : null,
      llamaCpp: cpp.length ? 128 / median(cpp) : null,
      unit: "tokens/s",
      note:
        `${((100 * tps) / limit).toFixed(0)}% of the memory-read limit ` +
        `(${median(bw).toFixed(1)} GB/s over ${(weightsBytes / 1e6).toFixed(0)} MB)` +
        (hf ? `; same greedy tokens as transformers: ${same}` : "") +
        (llama ? `; first token unlike llama.cpp ${GGUF[dtype]}'s: ${firstDiff < 0 ? "none" : firstDiff}` : ""),
    });
    if (dtype === "float32" && shape.train) {
      // a training step of 16 x 64: torchlm's native step (what Trainer runs each batch) and transformers' Trainer
      // (and the same with LoRA on another copy of the weights)
      const lora = get_peft_model(
        await AutoModelForCausalLM.from_pretrained(dir),
        new LoraConfig({
          r: 8,
          lora_alpha: 16,
          target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
          task_type: "CAUSAL_LM",
        }),
      );
      const ids = tensor(randIds(16, 64, 1, V));
      const stepper = (m: PreTrainedModel) => {
        m.train();
        const params = m
          .named_parameters()
          .filter(([, t]) => t.requires_grad)
          .map(([, t]) => t._t);
        const opt = new binding.NativeAdamW({
          groups: [{ params, weight_decay: 0.1 }],
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
        });
        return async () => {
          const t0 = performance.now();
          await opt.trainStep({
            model: m._native,
            input_ids: ids._t,
            attention_mask: null,
            labels: ids._t,
            loss_scale: 1,
            update: { lr: 1e-4, max_grad_norm: 1 },
            amp: "none",
          });
          return (performance.now() - t0) / 1000;
        };
      };
      for (const [row, m, cmd] of [
        ["training step 16 x 64 float32 (AdamW, clipping)", model, "train 16 64"],
        ["LoRA step 16 x 64 float32 (r 8, q_proj ... down_proj)", lora, "lora 16 64"],
      ] as const) {
        const step = stepper(m);
        await step();
        const mine: number[] = [],
          hft: number[] = [];
        for (let r = 0; r < rounds; r++) {
          mine.push(await step());
          hft.push((await hf!.run(cmd)).seconds);
        }
        rows.push({
          shape: shape.name,
          row,
          torchlm: 1 / median(mine),
          transformers: 1 / median(hft),
          llamaCpp: null,
          unit: "steps/s",
        });
      }
      ids.dispose();
      await lora.dispose();
    }
    await hf?.stop();
    await model.dispose();
  }
  await llama?.stop();
  rows[0]!.note = `${rows[0]!.note}; ${llamaNote}`;
  return rows;
}

export function renderLlama(rows: LlamaRow[]): string[] {
  const out = [
    "| shape | row | torchlm | transformers | llama.cpp | torchlm / transformers | torchlm / llama.cpp | |",
    "|---|---|---:|---:|---:|---:|---:|---|",
  ];
  const ratio = (a: number, b: number | null) => (b ? (a / b).toFixed(2) + "x" : "-");
  for (const r of rows)
    out.push(
      `| ${r.shape} | ${r.row} | ${r.torchlm.toFixed(2)} ${r.unit} | ${r.transformers?.toFixed(2) ?? "-"} | ` +
        `${r.llamaCpp?.toFixed(2) ?? "-"} | ${ratio(r.torchlm, r.transformers)} | ${ratio(r.torchlm, r.llamaCpp)} | ` +
        `${r.note ?? ""} |`,
    );
  return out;
}
