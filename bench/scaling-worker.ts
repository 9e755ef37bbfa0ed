// One cell group of the bench's scaling table, in a fresh process (for its peak RSS): loads a causal LM's weights in a
// dtype and decodes at batch 1 from prompts that bring the context to each length. argv: weightsDir dtype ctx...
// Prints {parameters, load_s, tokens_per_s: {ctx: n}, max_rss_bytes}. Decoding speed is timed between the first and the
// last streamed token (the prompt's prefill excluded), 32 new tokens ending at the context length.
import { readFileSync } from "node:fs";
import { AutoModelForCausalLM } from "../lib/index.js";

const [dir, dtype, ...ctxs] = process.argv.slice(2) as [string, "float32" | "bfloat16" | "q8" | "q4", ...string[]];
const status = (k: string) =>
  Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? NaN) * 1024;
const t0 = performance.now();
const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype });
const load_s = (performance.now() - t0) / 1000;
const NEW = 32;
const tokens_per_s: Record<string, number> = {};
let seed = 7;
// ids below 50000 (GPT-2's prompts as before) and below the vocabulary
const below = Math.min(50000, model.config.vocab_size as number);
const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) % below;
for (const c of ctxs.map(Number)) {
  const prompt = [Array.from({ length: c - NEW }, next)];
  let first = 0,
    last = 0,
    n = 0;
  for await (const _ of model.generate_stream(prompt, { max_new_tokens: NEW, min_new_tokens: NEW })) {
    last = performance.now();
    if (n++ === 0) first = last;
  }
  tokens_per_s[c] = (n - 1) / ((last - first) / 1000);
}
console.log(
  JSON.stringify({ parameters: model.num_parameters(), load_s, tokens_per_s, max_rss_bytes: status("VmHWM") }),
);
await model.dispose();
