// transformers.js (onnxruntime-node, fp32, CPU) on the benchmark's ONNX export: the peer for `npm run bench`.
// argv: modelDir threads which(forward,decode1). Prints one JSON object.
import { basename, dirname } from "node:path";
import { AutoModelForCausalLM, Tensor, env } from "@huggingface/transformers";

const [dir, threadsArg, whichArg = "forward,decode1"] = process.argv.slice(2);
const threads = Number(threadsArg);
const which = whichArg.split(",");
env.allowRemoteModels = false;
env.localModelPath = dirname(dir);

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
async function timed(fn, warmup, runs) {
  for (let i = 0; i < warmup; i++) await fn();
  const t = [];
  for (let i = 0; i < runs; i++) { const t0 = performance.now(); await fn(); t.push((performance.now() - t0) / 1000); }
  return median(t);
}
function rnd(seed) { let s = seed; return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31; }
const ids = (B, T, seed) => { const r = rnd(seed); return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(r() * 50257))); };
const int64 = (rows) => new Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
const ones = (B, T) => new Tensor("int64", new BigInt64Array(B * T).fill(1n), [B, T]);

const t0 = performance.now();
const model = await AutoModelForCausalLM.from_pretrained(basename(dir), {
  dtype: "fp32", device: "cpu", local_files_only: true,
  session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
});
const out = { load_s: (performance.now() - t0) / 1000, version: "transformers.js 4.3.1" };
if (which.includes("forward")) {
  const x = ids(16, 64, 1);
  const s = await timed(async () => { const o = await model({ input_ids: int64(x), attention_mask: ones(16, 64) }); o.logits.dispose?.(); }, 1, 3);
  out.forward_tokens_per_s = (16 * 64) / s;
}
if (which.includes("decode1")) {
  const p = ids(1, 8, 2);
  let tokens = null;
  const s = await timed(async () => {
    const o = await model.generate({ input_ids: int64(p), attention_mask: ones(1, 8), max_new_tokens: 128, do_sample: false });
    tokens = Array.from(o.data, Number).slice(8);
  }, 1, 3);
  out.decode_b1_tokens_per_s = tokens.length / s;
  out.decode_b1_tokens = tokens;
}
console.log(JSON.stringify(out));
