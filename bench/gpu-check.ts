// The CUDA check run on the GPU machine by scripts/gpu-check.sh: parity of the CUDA build with the CPU golden
// files, then the benchmark on "cuda". Prints one JSON object.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { binding, packageRoot } from "../lib/native.js";
import {
  Dataset,
  GPT2LMHeadModel,
  Trainer,
  TrainingArguments,
  cuda_is_available,
  tensor,
  torch_info,
  type Inputs,
} from "../lib/index.js";

const root = packageRoot();
const golden = JSON.parse(readFileSync(join(root, "test", "fixtures", "golden-tiny.json"), "utf8"));
const tinyDir = process.argv[2]!;
const out: Record<string, unknown> = { info: torch_info(), cuda: cuda_is_available() };
const flat = (x: unknown): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x as number]);
const maxDiff = (a: number[], b: number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
function pick(l: { shape: number[]; float(): { data(): unknown } }, cols: number[]): number[] {
  const [B, T, V] = l.shape as [number, number, number];
  const d = l.float().data() as Float32Array;
  const r: number[] = [];
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (const c of cols) r.push(d[(b * T + t) * V + c]!);
  return r;
}
async function section(name: string, fn: () => Promise<unknown>) {
  const t0 = performance.now();
  try {
    out[name] = await fn();
  } catch (e) {
    out[name] = { error: (e as Error).message };
  }
  console.error(`${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

await section("parity", async () => {
  const r: Record<string, number | boolean> = {};
  for (const dtype of ["float32", "bfloat16", "float16"] as const) {
    const m = await GPT2LMHeadModel.from_pretrained(tinyDir, { device: "cuda", dtype });
    const o = await m.forward({ input_ids: golden.input_ids, labels: golden.labels });
    r[`${dtype}_logits_max_abs_diff`] = maxDiff(pick(o.logits, golden.columns), flat(golden.logits));
    r[`${dtype}_loss_abs_diff`] = Math.abs(o.loss!.item() - golden.loss);
    if (dtype === "float32") {
      const g = await m.generate([golden.greedy.prompt], { max_new_tokens: 30 });
      r.greedy_equal = JSON.stringify((g.tolist() as number[][])[0]) === JSON.stringify(golden.greedy.ids);
      const b = await m.generate([golden.greedy.prompt], { max_new_tokens: 12, num_beams: 3 });
      const ref = golden.generation.cases.find((c: { name: string }) => c.name === "beam3");
      r.beam3_equal = JSON.stringify(b.tolist()) === JSON.stringify(ref.ids);
    }
    await m.dispose();
  }
  // 3 AdamW steps with clipping on CUDA against torch.optim.AdamW on the CPU
  const m = await GPT2LMHeadModel.from_pretrained(tinyDir, { device: "cuda" });
  const ds = Dataset.from_dict({ input_ids: golden.input_ids, labels: golden.labels });
  const ref = golden.adamw;
  const args = new TrainingArguments({
    output_dir: "/tmp/gpu-check",
    per_device_train_batch_size: 2,
    max_steps: 3,
    learning_rate: ref.lr,
    weight_decay: ref.weight_decay,
    max_grad_norm: ref.max_grad_norm,
    lr_scheduler_type: "constant",
    logging_steps: 1,
    save_strategy: "no",
    disable_tqdm: true,
    plot_loss: false,
  });
  const t = new Trainer({
    model: m,
    args,
    train_dataset: ds,
    data_collator: (rows: any[]): Inputs => ({
      input_ids: tensor(rows.map((x: any) => x.input_ids)),
      labels: tensor(rows.map((x: any) => x.labels)),
    }),
  });
  await t.train();
  const sums = Object.fromEntries(
    m
      .named_parameters()
      .map(([n, p]) => [
        n.replace(/^transformer\./, ""),
        (p.to("cpu").data() as Float32Array).reduce((a, b) => a + b, 0),
      ]),
  );
  const last = ref.steps[2].param_sums;
  r.adamw_param_sum_max_rel_diff = Math.max(
    ...Object.keys(last).map((k) => Math.abs(sums[k]! - last[k]) / Math.max(1, Math.abs(last[k]))),
  );
  r.adamw_losses_max_abs_diff = Math.max(
    ...t.state.log_history.filter((x) => "loss" in x).map((x, i) => Math.abs(x.loss! - ref.steps[i].loss)),
  );
  await m.dispose();
  return r;
});

await section("bench", async () => {
  const r: Record<string, number> = {};
  const cfg = {
    model_type: "gpt2",
    vocab_size: 50257,
    n_positions: 1024,
    n_embd: 768,
    n_layer: 12,
    n_head: 12,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
  };
  const m = await GPT2LMHeadModel.from_config(cfg, { device: "cuda", seed: 0 });
  const N = m.num_parameters();
  const time = async (fn: () => Promise<unknown>, warm: number, runs: number) => {
    for (let i = 0; i < warm; i++) await fn();
    const ts: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await fn();
      ts.push((performance.now() - t0) / 1000);
    }
    return ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)]!;
  };
  const rnd = (B: number, T: number) =>
    Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (b * 7919 + t * 104729) % 50257));
  r.forward_16x64_tokens_per_s =
    1024 / (await time(async () => (await m.forward({ input_ids: rnd(16, 64) })).logits.dispose(), 2, 5));
  r.decode_b1_greedy_tokens_per_s =
    128 / (await time(async () => (await m.generate(rnd(1, 8), { max_new_tokens: 128 })).dispose(), 1, 3));
  m.train();
  const named = m.named_parameters();
  const opt = new binding.NativeAdamW({
    groups: [{ params: named.map(([, t]) => t._t), weight_decay: 0.1 }],
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
  });
  const step = (x: typeof x16, amp: "float16" | "bfloat16") =>
    opt.trainStep({
      model: m._native,
      input_ids: x._t,
      attention_mask: null,
      labels: x._t,
      loss_scale: 1,
      update: { lr: 1e-5, max_grad_norm: 1 },
      amp,
    });
  const x16 = tensor(rnd(16, 64)).to("cuda");
  r.train_16x64_fp16_tokens_per_s = 1024 / (await time(() => step(x16, "float16"), 2, 5));
  const x8 = tensor(rnd(8, 1024)).to("cuda");
  r.train_8x1024_bf16_tokens_per_s = 8192 / (await time(() => step(x8, "bfloat16"), 2, 5));
  // 6 N FLOP per token for the weights, plus attention's 12 L T d per token; against 989 TFLOP/s dense bf16 (H100/H200
  // SXM)
  const flopsPerToken = 6 * N + 12 * 12 * 1024 * 768;
  r.mfu_8x1024_bf16 = (r.train_8x1024_bf16_tokens_per_s * flopsPerToken) / 989e12;
  await m.dispose();
  return r;
});

console.log(JSON.stringify(out, null, 2));
