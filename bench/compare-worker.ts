// One measure of bench/compare-builds.ts in a fresh process, on the checkout at `root` (its compiled library and its
// addon): prints the median tokens/s of `reps` timed runs after a warm-up. argv: root weightsDir measure reps, the
// measure one of forward, decode-float32, decode-bfloat16, decode-q8, decode-q4, train.
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type * as Library from "../lib/index.js";
import type * as Native from "../lib/native.js";

const [root, dir, measure, repsArg] = process.argv.slice(2) as [string, string, string, string];
process.env.TORCHLM_BINARY = join(root, "build", "Release", "torchlm.node");
const lib = (path: string) => import(pathToFileURL(join(root, "dist", "lib", path)).href);
const { GPT2LMHeadModel, tensor } = (await lib("index.js")) as typeof Library;
const { binding } = (await lib("native.js")) as typeof Native;
const reps = Number(repsArg);
const ids = (B: number, T: number) =>
  Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (b * 7919 + t * 104729) % 50257));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(run: () => Promise<unknown>, tokens: number): Promise<number> {
  await run();
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await run();
    rates.push(tokens / ((performance.now() - t0) / 1000));
  }
  return median(rates);
}

let rate: number;
if (measure.startsWith("decode-")) {
  const model = await GPT2LMHeadModel.from_pretrained(dir, { dtype: measure.slice(7) as "float32" });
  const prompt = ids(1, 8);
  rate = await timed(() => model.generate(prompt, { max_new_tokens: 128, min_new_tokens: 128 }), 128);
} else if (measure === "forward") {
  const model = await GPT2LMHeadModel.from_pretrained(dir);
  const input_ids = ids(16, 64);
  rate = await timed(async () => (await model.forward({ input_ids })).logits.dispose(), 16 * 64);
} else if (measure === "train") {
  const model = await GPT2LMHeadModel.from_pretrained(dir);
  model.train();
  const opt = new binding.NativeAdamW({
    groups: [{ params: model.parameters().map((t) => t._t), weight_decay: 0.1 }],
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
  });
  const batch = tensor(ids(16, 64), { dtype: "int64" });
  const step = () =>
    opt.trainStep({
      model: model._native,
      input_ids: batch._t,
      attention_mask: null,
      labels: batch._t,
      loss_scale: 1,
      update: { lr: 1e-5, max_grad_norm: 1 },
      amp: "none",
    });
  rate = await timed(step, 16 * 64);
} else {
  throw new Error(`unknown measure ${measure}`);
}
console.log(JSON.stringify({ rate }));
