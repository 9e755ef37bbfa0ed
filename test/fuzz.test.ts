// Hostile files: thousands of mutated checkpoints, loaded in a child process so that a crash is caught.
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { pathToFileURL } from "node:url";
import { tinyWeights, writeSafetensors } from "./helpers/tiny.js";

const root = join(import.meta.dirname ?? process.cwd(), "..");

test("10,000 mutated safetensors files and configs: each loads or rejects; no crash, no hang", async () => {
  const dir = mkdtempSync(join(tmpdir(), "torchlm-fuzz-"));
  const cfg = {
    model_type: "gpt2",
    vocab_size: 64,
    n_positions: 16,
    n_embd: 8,
    n_layer: 1,
    n_head: 2,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
  };
  writeSafetensors(join(dir, "model.safetensors"), [...tinyWeights(cfg).entries()]);
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      join(root, "test", "child", "fuzz-load.mjs"),
      pathToFileURL(join(root, "dist", "lib", "index.js")).href,
      dir,
      "10000",
    ],
    { timeout: 540_000, maxBuffer: 1 << 24 },
  );
  const stats = JSON.parse(stdout.trim().split("\n").pop()!);
  expect(stats.loaded + stats.rejected).toBe(10_000);
  expect(stats.other).toBe(0);
  expect(stats.rejected).toBeGreaterThan(5000);
  expect(stats.loaded).toBeGreaterThan(0);
}, 600_000);

// The formats added since: each mode makes a valid file with the library, then 2,000 mutations of it
test.each(["quant", "peft", "checkpoint"])(
  "2,000 hostile %s files: each loads, or is refused naming the file and the tensor, and leaves the model as it was",
  async (mode) => {
    const dir = mkdtempSync(join(tmpdir(), `torchlm-fuzz-${mode}-`));
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        join(root, "test", "child", "fuzz-formats.mjs"),
        pathToFileURL(join(root, "dist", "lib", "index.js")).href,
        dir,
        mode,
        "2000",
      ],
      { timeout: 300_000, maxBuffer: 1 << 24 },
    );
    const stats = JSON.parse(stdout.trim().split("\n").pop()!);
    expect(stats.failures).toEqual([]);
    expect(stats.runs).toBe(2000);
    expect(stats.loaded + stats.rejected).toBe(2000);
    // both outcomes are exercised: most mutations are refused, some load as they are
    expect(stats.rejected).toBeGreaterThan(1000);
    expect(stats.loaded).toBeGreaterThan(100);
    console.log(`fuzz ${mode}: ${stats.runs} mutations, ${stats.loaded} loaded, ${stats.rejected} refused`);
  },
  320_000,
);
