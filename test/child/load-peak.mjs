// Child process of test/loading.test.ts: peak RSS (VmHWM) of one from_pretrained in a fresh process.
// argv: dist index, model dir, dtype ("float32" | "bfloat16" | "float16" | "q4"). Prints one JSON line: the peak, and
// what stays resident after the load.
import { readFileSync } from "node:fs";
const [, , distIndex, dir, dtype] = process.argv;
const status = (key) =>
  Number(
    /(\d+) kB/.exec(
      readFileSync("/proc/self/status", "utf8")
        .split("\n")
        .find((l) => l.startsWith(key + ":")),
    )[1],
  ) * 1024;
const { GPT2LMHeadModel, tensor } = await import(distIndex);
tensor([1, 2, 3]).add(1).dispose(); // libtorch loaded and initialised: the runtime is in the baseline
import { writeFileSync } from "node:fs";
writeFileSync("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS: the peak below is the load's
const baseline = status("VmRSS");
const t0 = performance.now();
const m = await GPT2LMHeadModel.from_pretrained(dir, { dtype });
const load_s = (performance.now() - t0) / 1000;
const weights = m.named_parameters().reduce((a, [, t]) => a + t.numel() * (t.dtype === "float32" ? 4 : 2), 0);
console.log(JSON.stringify({ baseline, hwm: status("VmHWM"), rss: status("VmRSS"), weights, load_s }));
