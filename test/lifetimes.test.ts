import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { pathToFileURL } from "node:url";
import { empty_cache, GPT2LMHeadModel, memory_reserved, tensor } from "../lib/index.js";
import { tinyModelDir } from "./helpers/tiny.js";

const root = join(import.meta.dirname ?? process.cwd(), "..");

test("tensors left to the garbage collector are freed: 2,000 forward calls keep RSS flat", async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      join(root, "test", "child", "gc-forward.mjs"),
      pathToFileURL(join(root, "dist", "lib", "index.js")).href,
      tinyModelDir(),
      "2000",
    ],
    { timeout: 300_000 },
  );
  const rss: number[] = JSON.parse(stdout);
  // after warm-up (the second sample), memory stays within 10%
  const base = rss[1]!;
  for (const r of rss.slice(2)) expect(r).toBeLessThan(base * 1.1);
}, 320_000);

test("two models in one process are independent; disposing one leaves the other working", async () => {
  const a = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
  const b = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
  const x = tensor([[1, 2, 3]]);
  const before = (await b.forward({ input_ids: x })).logits.data() as Float32Array;
  await Promise.all([a.forward({ input_ids: x }), b.forward({ input_ids: x }), a.generate(x, { max_new_tokens: 3 })]);
  await a.dispose();
  await expect(a.generate(x)).rejects.toThrow(/disposed/);
  const after = (await b.forward({ input_ids: x })).logits.data() as Float32Array;
  expect(Array.from(after)).toEqual(Array.from(before));
  await b.dispose();
});

test("memory_reserved() counts the allocator's free blocks for reuse; empty_cache() gives them back", () => {
  empty_cache();
  expect(memory_reserved()).toBe(0);
  // 4 MB of float32: blocks of 1 MB and more are cached when freed
  const t = tensor([Array.from({ length: 1 << 20 }, (_, i) => i % 7)], { dtype: "float32" });
  const a = t.add(1);
  a.dispose();
  const cached = memory_reserved();
  expect(cached).toBeGreaterThanOrEqual(4 << 20);
  // the next tensor of that size takes the cached block
  const b = t.add(2);
  expect(memory_reserved()).toBe(cached - (4 << 20));
  b.dispose();
  t.dispose();
  empty_cache();
  expect(memory_reserved()).toBe(0);
});
