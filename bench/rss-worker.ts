// Loading time and peak memory of inference alone, for `npm run bench`: a fresh process (as a user's script
// starts) loads the model and decodes 32 tokens at batch 1; prints the load's seconds, the RSS before it (Node
// and libtorch's code) and the peak. argv: weightsDir [touch | dtype]. A dtype (bfloat16) loads the float32 file
// converted, to show a converting load's peak. With `touch` it only times the first write of as
// many bytes of fresh memory as the weights take, the way the loader allocates them: the floor under the load on
// this machine (a VM whose host takes freed memory back, so fresh memory is slow to touch at some moments).
import "./testing-addon.js";
import { readFileSync, statSync } from "node:fs";
import { GPT2LMHeadModel } from "../lib/index.js";
import { probes } from "./probes.js";

const status = (k: string) =>
  Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? NaN) * 1024;
if (process.argv[3] === "touch") {
  console.log(
    JSON.stringify({ touch_s: await probes.firstTouch(statSync(`${process.argv[2]}/model.safetensors`).size) }),
  );
} else {
  const dtype = process.argv[3] as "bfloat16" | "float16" | undefined;
  const baseline = status("VmRSS");
  const t0 = performance.now();
  const model = await GPT2LMHeadModel.from_pretrained(process.argv[2]!, dtype ? { dtype } : {});
  const load_s = (performance.now() - t0) / 1000;
  await (await model.generate([[464, 3290, 318, 257, 922, 1110, 11, 290]], { max_new_tokens: 32 })).dispose();
  // VmHWM, not getrusage's maxrss: Linux carries maxrss over exec, so a child spawned by a big harness would
  // report the harness's size.
  const hwm = status("VmHWM");
  console.log(
    JSON.stringify({
      max_rss_bytes: Number.isNaN(hwm) ? process.resourceUsage().maxRSS * 1024 : hwm,
      baseline_rss_bytes: baseline,
      load_s,
      weights_bytes: model.num_parameters() * (dtype ? 2 : 4),
    }),
  );
  await model.dispose();
}
