// Loading time and peak memory of inference alone, for `npm run bench`: a fresh process (as a user's script
// starts) loads the model and decodes 32 tokens at batch 1; prints the load's seconds, the RSS before it (Node
// and libtorch's code) and the peak. argv: weightsDir
import { readFileSync } from "node:fs";
import { GPT2LMHeadModel } from "../lib/index.js";

const status = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? NaN) * 1024;
const baseline = status("VmRSS");
const t0 = performance.now();
const model = await GPT2LMHeadModel.from_pretrained(process.argv[2]!);
const load_s = (performance.now() - t0) / 1000;
await (await model.generate([[464, 3290, 318, 257, 922, 1110, 11, 290]], { max_new_tokens: 32 })).dispose();
// VmHWM, not getrusage's maxrss: Linux carries maxrss over exec, so a child spawned by a big harness would
// report the harness's size.
const hwm = status("VmHWM");
console.log(JSON.stringify({ max_rss_bytes: Number.isNaN(hwm) ? process.resourceUsage().maxRSS * 1024 : hwm, baseline_rss_bytes: baseline, load_s, weights_bytes: model.num_parameters() * 4 }));
await model.dispose();
