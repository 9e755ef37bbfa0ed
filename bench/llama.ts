// npm run bench -- --only=llama: the Llama family beside transformers on PyTorch 2 (bench/hf_peer.py), on
// SmolLM2-135M-shaped random weights written here from a seed: greedy batch-1 decoding of 128 tokens in float32 and
// bfloat16 (with the memory-read limit measured in the same rounds), and a training step of 16 x 64 (AdamW, clipping)
// as transformers' Trainer and torchlm's native step run it, whole and with LoRA (r 8 on the seven linear layers, as
// peft + the Trainer). Rounds interleaved; medians; ratios.
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LlamaForCausalLM, LoraConfig, get_peft_model, tensor, type PreTrainedModel } from "../lib/index.js";
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

export interface LlamaRow {
  row: string;
  torchlm: number;
  transformers: number | null;
  unit: string;
  note?: string;
}

export async function llamaBench(root: string, threads: number, rounds = 3): Promise<LlamaRow[]> {
  const dir = join(root, "bench", ".weights", "smollm2-135m");
  if (!existsSync(join(dir, "model.safetensors"))) {
    console.log(`writing seeded random SmolLM2-135M-shaped weights to ${dir}`);
    const m = await LlamaForCausalLM.from_config(SMOLLM2_135M, { seed: 0 });
    await m.save_pretrained(dir);
    await m.dispose();
  }
  const V = SMOLLM2_135M.vocab_size;
  const prompt = randIds(1, 8, 2, V);
  const rows: LlamaRow[] = [];
  const greedy = async (m: PreTrainedModel) => {
    const t = performance.now();
    const o = await m.generate(prompt, { max_new_tokens: 128, min_new_tokens: 128 });
    const seconds = (performance.now() - t) / 1000;
    const tokens = (o.tolist() as number[][])[0]!.slice(8);
    o.dispose();
    return { seconds, tokens };
  };
  for (const dtype of ["float32", "bfloat16", "q8", "q4"] as const) {
    const model = await LlamaForCausalLM.from_pretrained(dir, { dtype });
    const quantized = dtype === "q8" || dtype === "q4";
    // what a token reads: every weight but the embeddings (one row of them); q8 / q4 as their checkpoint stores them
    let weightsBytes = model.num_parameters() * (dtype === "float32" ? 4 : 2);
    if (quantized) {
      const saved = mkdtempSync(join(tmpdir(), "torchlm-bench-llama-q-"));
      await model.save_pretrained(saved);
      const E = SMOLLM2_135M.hidden_size;
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
    const ours: number[] = [],
      theirs: number[] = [],
      bw: number[] = [];
    let same = true;
    for (let r = 0; r < rounds; r++) {
      bw.push(await readGBs());
      const g = await greedy(model);
      ours.push(g.seconds);
      if (!hf) continue;
      const h = await hf.run("decode1");
      theirs.push(h.seconds);
      same &&= JSON.stringify(h.tokens) === JSON.stringify(g.tokens);
    }
    const tps = 128 / median(ours);
    const limit = (median(bw) * 1e9) / weightsBytes;
    rows.push({
      row: `decode b1 ${dtype} (8 + 128 tokens)`,
      torchlm: tps,
      transformers: hf ? 128 / median(theirs) : null,
      unit: "tokens/s",
      note:
        `${((100 * tps) / limit).toFixed(0)}% of the memory-read limit ` +
        `(${median(bw).toFixed(1)} GB/s over ${(weightsBytes / 1e6).toFixed(0)} MB)` +
        (hf ? `; same greedy tokens: ${same}` : ""),
    });
    if (dtype === "float32") {
      // a training step of 16 x 64: torchlm's native step (what Trainer runs each batch) and transformers' Trainer
      // (and the same with LoRA on another copy of the weights)
      const lora = get_peft_model(
        await LlamaForCausalLM.from_pretrained(dir),
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
        rows.push({ row, torchlm: 1 / median(mine), transformers: 1 / median(hft), unit: "steps/s" });
      }
      ids.dispose();
      await lora.dispose();
    }
    await hf?.stop();
    await model.dispose();
  }
  return rows;
}

export function renderLlama(rows: LlamaRow[]): string[] {
  const out = [
    "| SmolLM2-135M shape | torchlm | transformers | torchlm / transformers | |",
    "|---|---:|---:|---:|---|",
  ];
  for (const r of rows)
    out.push(
      `| ${r.row} | ${r.torchlm.toFixed(2)} ${r.unit} | ${r.transformers?.toFixed(2) ?? "-"} ${r.unit} | ` +
        `${r.transformers ? (r.torchlm / r.transformers).toFixed(2) + "x" : "-"} | ${r.note ?? ""} |`,
    );
  return out;
}
