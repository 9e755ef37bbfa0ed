// transformers.js (onnxruntime-node, fp32, CPU) on the benchmark's ONNX export: the peer for `npm run bench`.
// argv: modelDir threads. Loads the model, prints {"ready":true,...}, then answers one command per stdin line
// ("forward" | "decode1") with the seconds one run took, so the harness can interleave its runs with torchlm's.
import { createInterface } from "node:readline";
import { basename, dirname } from "node:path";
import { AutoModelForCausalLM, Tensor, env } from "@huggingface/transformers";

const [dir, threadsArg] = process.argv.slice(2);
env.allowRemoteModels = false;
env.localModelPath = dirname(dir);

// as bench/measure.ts
function rnd(seed) {
  let s = seed;
  return () => (s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff) / 2 ** 31;
}
const ids = (B, T, seed) => {
  const r = rnd(seed);
  return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(r() * 50257)));
};
const int64 = (rows) => new Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
const ones = (B, T) => new Tensor("int64", new BigInt64Array(B * T).fill(1n), [B, T]);

const t0 = performance.now();
const model = await AutoModelForCausalLM.from_pretrained(basename(dir), {
  dtype: "fp32", device: "cpu", local_files_only: true,
  session_options: { intraOpNumThreads: Number(threadsArg), interOpNumThreads: 1 },
});
console.log(JSON.stringify({ ready: true, load_s: (performance.now() - t0) / 1000, version: "transformers.js 4.3.1" }));

const commands = {
  async forward() {
    const x = ids(16, 64, 1);
    const t = performance.now();
    await model({ input_ids: int64(x), attention_mask: ones(16, 64) });
    return { seconds: (performance.now() - t) / 1000 };
  },
  async decode1() {
    const p = ids(1, 8, 2);
    const t = performance.now();
    const o = await model.generate({
      input_ids: int64(p),
      attention_mask: ones(1, 8),
      max_new_tokens: 128,
      do_sample: false,
    });
    const seconds = (performance.now() - t) / 1000;
    return { seconds, tokens: Array.from(o.data, Number).slice(8) };
  },
};
for await (const line of createInterface({ input: process.stdin })) {
  const cmd = line.trim();
  if (cmd === "quit") break;
  if (!commands[cmd]) { console.log(JSON.stringify({ error: `unknown command ${cmd}` })); continue; }
  console.log(JSON.stringify(await commands[cmd]()));
}
process.exit(0);
