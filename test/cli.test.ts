// The CLI and the tutorial, run as a user runs them (compiled to dist/ by `npm ci` / `npm run build`).
import { execFile } from "node:child_process";
import {
  existsSync,
  readdirSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { TEST_PYTHON } from "./helpers/python.js";
import { AutoTokenizer } from "../lib/index.js";
import { tinyModelDir } from "./helpers/tiny.js";

const run = promisify(execFile);
const root = join(import.meta.dirname ?? process.cwd(), "..");
const cli = join(root, "dist", "lib", "cli.js");
const env = { ...process.env, TORCHLM_NO_PROGRESS: "1", HF_HUB_OFFLINE: "1" };
const torchlm = (args: string[], timeout = 300_000) =>
  run(process.execPath, [cli, ...args], { env, timeout, maxBuffer: 1 << 24 });

let model: string;
beforeAll(async () => {
  model = tinyModelDir({ name: "cli-model" });
  await (await AutoTokenizer.from_pretrained("gpt2")).save_pretrained(model);
});

describe("torchlm CLI", () => {
  test("--help, info, and bad usage", async () => {
    expect((await torchlm(["--help"])).stdout).toMatch(/generate.*\n.*finetune/s);
    const info = JSON.parse((await torchlm(["info"])).stdout);
    expect(info.torch_version).toMatch(/^\d+\.\d+/);
    expect(info.default_device).toBe("cpu");
    await expect(torchlm(["generate"])).rejects.toMatchObject({ code: 2 });
    await expect(torchlm(["generate", "x", "--top-k", "many"])).rejects.toMatchObject({ code: 2 });
  });

  test("the command and cli.js run through a symlinked node_modules/torchlm (npm link, pnpm)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "torchlm-linked-"));
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(root, join(dir, "node_modules", "torchlm"), "dir");
    for (const entry of [join("bin", "torchlm.js"), join("dist", "lib", "cli.js")]) {
      const { stdout } = await run(process.execPath, [join(dir, "node_modules", "torchlm", entry), "info"], {
        env,
        cwd: dir,
      });
      expect(JSON.parse(stdout).torch_version).toMatch(/^2\./);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test("generate streams greedy text; beams and sampling work", async () => {
    const { stdout } = await torchlm(["generate", "The cat", "-m", model, "--max-new-tokens", "5"]);
    expect(stdout.startsWith("The cat")).toBe(true);
    const beams = await torchlm([
      "generate",
      "The cat",
      "-m",
      model,
      "--max-new-tokens",
      "5",
      "--num-beams",
      "3",
      "--num-return-sequences",
      "2",
    ]);
    expect(beams.stdout.trim().split("\n")).toHaveLength(2);
    const s1 = await torchlm([
      "generate",
      "The cat",
      "-m",
      model,
      "--max-new-tokens",
      "5",
      "--do-sample",
      "--seed",
      "3",
    ]);
    const s2 = await torchlm([
      "generate",
      "The cat",
      "-m",
      model,
      "--max-new-tokens",
      "5",
      "--do-sample",
      "--seed",
      "3",
    ]);
    expect(s1.stdout).toBe(s2.stdout);
    const q8 = await torchlm(["generate", "The cat", "-m", model, "--max-new-tokens", "5", "--dtype", "q8"]);
    expect(q8.stdout.startsWith("The cat")).toBe(true);
    const q4 = await torchlm(["generate", "The cat", "-m", model, "--max-new-tokens", "5", "--dtype", "q4"]);
    expect(q4.stdout.startsWith("The cat")).toBe(true);
    await expect(torchlm(["generate", "x", "-m", join(tmpdir(), "no-such-model-dir")])).rejects.toMatchObject({
      code: 1,
    });
  });

  test("finetune and evaluate on a local dataset", async () => {
    const dir = mkdtempSync(join(tmpdir(), "torchlm-cli-"));
    const data = join(dir, "reviews.jsonl");
    writeFileSync(
      data,
      Array.from({ length: 24 }, (_, i) =>
        JSON.stringify({ text: `Review ${i}: the film was ${i % 2 ? "great" : "bad"}.` }),
      ).join("\n"),
    );
    const ft = await torchlm([
      "finetune",
      "-m",
      model,
      "-d",
      data,
      "--max-steps",
      "2",
      "--per-device-train-batch-size",
      "4",
      "--logging-steps",
      "1",
      "--output-dir",
      join(dir, "out"),
      "--save-to",
      join(dir, "final"),
      "--learning-rate",
      "1e-3",
      "--disable-tqdm",
      "true",
    ]);
    const metrics = JSON.parse(ft.stdout.trim().split("\n").pop()!);
    expect(metrics.train_loss).toBeGreaterThan(0);
    expect(existsSync(join(dir, "final", "model.safetensors"))).toBe(true);
    expect(
      readFileSync(join(dir, "out", "loss.png"))
        .subarray(1, 4)
        .toString(),
    ).toBe("PNG");
    const ev = JSON.parse(
      (await torchlm(["evaluate", "-m", join(dir, "final"), "-d", data, "--split", "train", "--select", "8"])).stdout,
    );
    expect(ev.perplexity).toBeCloseTo(Math.exp(ev.eval_loss), 6);
    await expect(torchlm(["finetune", "-m", model, "-d", data, "--learning-rte", "1"])).rejects.toMatchObject({
      code: 2,
    });
    // LoRA: the adapter in PEFT's files, which generate --adapter applies; --merge-lora saves a whole model
    const lora = await torchlm([
      "finetune",
      "-m",
      model,
      "-d",
      data,
      "--max-steps",
      "2",
      "--per-device-train-batch-size",
      "4",
      "--output-dir",
      join(dir, "lora-out"),
      "--save-to",
      join(dir, "adapter"),
      "--lora-r",
      "4",
      "--lora-target-modules",
      "c_attn,c_proj,c_fc",
      "--learning-rate",
      "1e-2",
      "--disable-tqdm",
      "true",
      "--plot-loss",
      "false",
    ]);
    expect(lora.stdout).toMatch(/^trainable params: 8,192 \|\| all params: [\d,]+ \|\| trainable%: [\d.]+$/m);
    expect(
      readdirSync(join(dir, "adapter"))
        .filter((f) => f.startsWith("adapter_"))
        .sort(),
    ).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    expect(existsSync(join(dir, "adapter", "model.safetensors"))).toBe(false);
    const withAdapter = await torchlm([
      "generate",
      "The film",
      "-m",
      model,
      "--adapter",
      join(dir, "adapter"),
      "--max-new-tokens",
      "4",
      "--no-stream",
    ]);
    await torchlm([
      "finetune",
      "-m",
      model,
      "-d",
      data,
      "--max-steps",
      "1",
      "--per-device-train-batch-size",
      "4",
      "--output-dir",
      join(dir, "lora-out2"),
      "--save-to",
      join(dir, "merged"),
      "--lora-r",
      "4",
      "--merge-lora",
      "--disable-tqdm",
      "true",
      "--plot-loss",
      "false",
    ]);
    expect(existsSync(join(dir, "merged", "model.safetensors"))).toBe(true);
    expect(withAdapter.stdout.startsWith("The film")).toBe(true);
  });

  test("bench --quick runs against transformers and PyTorch eager", async () => {
    // the test venv has what the bench's Python peers need (the bench's own venv is made on first use otherwise)
    const { stdout } = await run(
      process.execPath,
      [cli, "bench", "--quick", "--only=forward", "--no-transformers-js"],
      { env: { ...env, TORCHLM_BENCH_PYTHON: TEST_PYTHON }, timeout: 600_000, maxBuffer: 1 << 24 },
    );
    expect(stdout).toMatch(/\| forward tokens\/s \(16 x 64\) \| [\d.]+ \| [\d.]+ \| [\d.]+x \| [\d.]+ \| [\d.]+x \|/);
    expect(stdout).toMatch(/transformers 5\.\d+\.\d+ on PyTorch 2\.\d+/);
  });
});

describe("npm start", () => {
  test("the tutorial runs offline end to end and writes the loss plot", async () => {
    const out = mkdtempSync(join(tmpdir(), "torchlm-tutorial-"));
    const { stdout } = await run(
      process.execPath,
      [join(root, "dist", "examples", "tutorial.js"), "--offline", "--max-steps", "3", "--output-dir", out],
      { env, timeout: 600_000, maxBuffer: 1 << 24 },
    );
    for (const s of [
      "Device: cpu",
      "Tokenized text (input IDs)  [ [ 35364, 3303, 7587, 318, 220 ] ]",
      "Predicted continuation:",
      "Pipeline output:",
      "Tensor labels:",
      "Loss curves written to",
      "After fine-tuning:",
    ])
      expect(stdout).toContain(s);
    expect(stdout).toMatch(/embedded default/);
    expect(readFileSync(join(out, "loss.png")).subarray(1, 4).toString()).toBe("PNG");
  }, 700_000);
});
