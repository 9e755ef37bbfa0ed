// Peak memory and step time of training with and without gradient checkpointing, for `npm run bench`: a fresh
// process (so that its peak RSS is its own) loads the model, runs training steps of B x T (AdamW, clipping) and prints
// the last step's seconds, the RSS after loading and the peak. argv: weightsDir B T checkpointing(0 | 1) steps.
import { readFileSync } from "node:fs";
import { GPT2LMHeadModel, tensor } from "../lib/index.js";
import { binding } from "../lib/native.js";

const [dir, B, T, on, steps] = [process.argv[2]!, ...process.argv.slice(3, 7).map(Number)] as [
  string,
  number,
  number,
  number,
  number,
];
const status = (k: string) =>
  Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? NaN) * 1024;
const model = await GPT2LMHeadModel.from_pretrained(dir);
model.train();
if (on) model.gradient_checkpointing_enable();
const loaded = status("VmRSS");
const opt = new binding.NativeAdamW({
  groups: [{ params: model.parameters().map((t) => t._t), weight_decay: 0.1 }],
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
});
const ids = tensor(
  Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (b * 7919 + t * 104729) % 50257)),
);
let step_s = 0;
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  await opt.trainStep({
    model: model._native,
    input_ids: ids._t,
    attention_mask: null,
    labels: ids._t,
    loss_scale: 1,
    update: { lr: 1e-5, max_grad_norm: 1 },
    amp: "none",
  });
  step_s = (performance.now() - t0) / 1000;
}
console.log(
  JSON.stringify({
    step_s,
    loaded_rss_bytes: loaded,
    max_rss_bytes: status("VmHWM"),
    weights_bytes: model.num_parameters() * 4,
  }),
);
await model.dispose();
