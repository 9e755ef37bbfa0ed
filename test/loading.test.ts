// Peak memory of a converting load (float32 file -> bfloat16 / float16 / q4 model), measured in fresh processes:
// converting streams 16 MB pieces, and quantizing one weight at a time, so the peak is the final weights plus one piece
// or weight, not the float32 file too.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GPT2LMHeadModel } from "../lib/index.js";
import { ROOT } from "./helpers/python.js";

let dir: string;
// 85M parameters, a 340 MB float32 file; its largest tensor (c_fc) is 9.4 MB
const CONFIG = { model_type: "gpt2", vocab_size: 1000, n_positions: 256, n_embd: 768, n_layer: 12, n_head: 12 };
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "torchlm-load-peak-"));
  const m = await GPT2LMHeadModel.from_config(CONFIG, { seed: 1 });
  await m.save_pretrained(dir);
  await m.dispose();
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const peak = (dtype: string) =>
  JSON.parse(
    execFileSync(
      process.execPath,
      [join(ROOT, "test", "child", "load-peak.mjs"), join(ROOT, "dist", "lib", "index.js"), dir, dtype],
      { encoding: "utf8" },
    ).trim(),
  );

test.each(["bfloat16", "float16"])(
  "from_pretrained(float32 file, %s) peaks at the result plus one piece, not the file",
  (dtype) => {
    const r = peak(dtype);
    const fileBytes = r.weights * 2; // the float32 source
    const largestSource = 768 * 3072 * 4;
    // the bound: final weights + the largest single tensor + the runtime (the baseline) + 10%
    expect(r.hwm).toBeLessThanOrEqual(1.1 * (r.baseline + r.weights + largestSource));
    // and well under what holding the float32 file as well would take
    expect(r.hwm - r.baseline).toBeLessThan(r.weights + fileBytes / 2);
  },
);

test("a float32 load is unchanged: the weights once", () => {
  const r = peak("float32");
  expect(r.hwm).toBeLessThanOrEqual(1.1 * (r.baseline + r.weights));
});

test("a quantizing load (q4) peaks at the q4 weights plus one float32 weight, and keeps only q4", () => {
  const f32 = peak("float32").weights,
    r = peak("q4");
  // q4 holds about a sixth of float32's bytes. Before, the float32 model was loaded whole and quantized after (the peak
  // passed f32), and the allocator's cache kept the float32 weights' freed blocks (416 MB stayed resident against 344)
  expect(r.hwm - r.baseline).toBeLessThan(0.5 * f32);
  expect(r.rss - r.baseline).toBeLessThan(0.5 * f32);
});
