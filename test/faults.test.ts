// Faults during training: signals, kill -9 in the middle of a save, an unwritable output_dir, a full disk.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  Dataset,
  GPT2LMHeadModel,
  Trainer,
  TrainerCallback,
  TrainingArguments,
  load_file,
  tensor,
  type Inputs,
} from "../lib/index.js";
import { tinyModelDir } from "./helpers/tiny.js";

const root = join(import.meta.dirname ?? process.cwd(), "..");
const child = join(root, "test", "child", "train-faults.mjs");
const distIndex = pathToFileURL(join(root, "dist", "lib", "index.js")).href;
const out = () => mkdtempSync(join(tmpdir(), "torchlm-faults-"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  p: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<{ code: number | null; signal: string | null }>;
  waitFor(re: RegExp): Promise<void>;
}
function start(dir: string, maxSteps: number, saveSteps: number, resume = false): Run {
  const p = spawn(
    process.execPath,
    [child, distIndex, tinyModelDir(), dir, String(maxSteps), String(saveSteps), resume ? "1" : "0"],
    { env: { ...process.env, TORCHLM_NO_PROGRESS: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const run: Run = {
    p,
    stdout: "",
    stderr: "",
    exit: new Promise((res) => p.on("exit", (code, signal) => res({ code, signal }))),
    waitFor: (re) =>
      new Promise((res, rej) => {
        const check = () => {
          if (re.test(run.stdout)) {
            p.stdout!.off("data", check);
            res();
          }
        };
        p.stdout!.on("data", check);
        p.on("exit", () => (re.test(run.stdout) ? res() : rej(new Error(`exited before ${re}: ${run.stderr}`))));
        check();
      }),
  };
  p.stdout!.on("data", (d) => {
    run.stdout += d;
  });
  p.stderr!.on("data", (d) => {
    run.stderr += d;
  });
  return run;
}

const CHECKPOINT_FILES = [
  "config.json",
  "model.safetensors",
  "optimizer.safetensors",
  "rng_state.safetensors",
  "scheduler.json",
  "trainer_state.json",
];
function checkpoints(dir: string): number[] {
  return readdirSync(dir)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter(Boolean)
    .map((m) => Number(m![1]))
    .sort((a, b) => a - b);
}
async function maxDiff(a: string, b: string): Promise<number> {
  const [x, y] = await Promise.all([load_file(a), load_file(b)]);
  let d = 0;
  for (const [k, t] of Object.entries(x)) {
    const u = t.data() as Float32Array,
      v = y[k]!.data() as Float32Array;
    for (let i = 0; i < u.length; i++) d = Math.max(d, Math.abs(u[i]! - v[i]!));
  }
  return d;
}

describe("signals during train()", () => {
  test("SIGINT/SIGTERM save a whole checkpoint and stop; resuming ends where an uninterrupted run ends", async () => {
    const ref = out();
    const r0 = start(ref, 30, 1000);
    expect((await r0.exit).code).toBe(0);
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const dir = out();
      const r = start(dir, 30, 1000);
      await r.waitFor(/step 3\n/);
      r.p.kill(sig);
      const { code } = await r.exit;
      expect(code).toBe(1);
      const m = /Training was interrupted at step (\d+); a checkpoint was saved/.exec(r.stderr);
      expect(m).not.toBeNull();
      const n = Number(m![1]);
      expect(n).toBeLessThan(30);
      expect(checkpoints(dir)).toEqual([n]);
      expect(readdirSync(join(dir, `checkpoint-${n}`)).sort()).toEqual(expect.arrayContaining(CHECKPOINT_FILES));
      expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
      const resumed = start(dir, 30, 1000, true);
      expect((await resumed.exit).code).toBe(0);
      expect(resumed.stdout).toMatch(new RegExp(`^step ${n + 1}\\n`));
      expect(
        await maxDiff(join(ref, "final", "model.safetensors"), join(dir, "final", "model.safetensors")),
      ).toBeLessThan(1e-6);
    }
  }, 240_000);
});

describe("kill -9 while saving", () => {
  test("the previous checkpoint stays complete and loadable, and training resumes from it", async () => {
    const dir = out();
    let r = start(dir, 10_000, 1);
    let hits = 0;
    for (let k = 0; k < 6; k++) {
      await r.waitFor(/saved \d+\n[\s\S]*saved \d+\n/);
      if (k % 2 === 0) {
        // as soon as a save is under way (its temporary directory exists)
        const t0 = Date.now();
        while (
          !readdirSync(dir).some((f) => f.startsWith(".checkpoint-") && f.includes(".tmp-")) &&
          Date.now() - t0 < 20_000
        )
          await sleep(1);
      } else {
        await sleep(Math.floor(Math.random() * 60)); // anywhere: in a step, a save, or a rotation
      }
      r.p.kill("SIGKILL");
      expect((await r.exit).signal).toBe("SIGKILL");
      if (readdirSync(dir).some((f) => f.includes(".tmp-"))) hits++;
      // every checkpoint-N is whole: the half-written one, if any, is still under its temporary name
      const all = checkpoints(dir);
      expect(all.length).toBeGreaterThan(0);
      for (const n of all)
        expect(readdirSync(join(dir, `checkpoint-${n}`))).toEqual(expect.arrayContaining(CHECKPOINT_FILES));
      const last = all[all.length - 1]!;
      const state = JSON.parse(readFileSync(join(dir, `checkpoint-${last}`, "trainer_state.json"), "utf8"));
      expect(state.global_step).toBe(last);
      const m = await GPT2LMHeadModel.from_pretrained(join(dir, `checkpoint-${last}`));
      await m.dispose();
      r = start(dir, 10_000, 1, true);
      await r.waitFor(new RegExp(`step ${last + 1}\\n`));
      // the next run removed the temporaries of the killed save
      expect(readdirSync(dir).filter((f) => f.startsWith(".checkpoint-") && !f.endsWith(`-${r.p.pid}`))).toEqual([]);
    }
    r.p.kill("SIGKILL");
    await r.exit;
    // the kills aimed at a save landed inside one
    expect(hits).toBeGreaterThanOrEqual(2);
  }, 300_000);
});

describe("output_dir problems are reported early and clearly", () => {
  const collate = (b: Record<string, unknown>[]): Inputs => {
    const ids = tensor(b.map((r) => r.input_ids as number[]));
    return { input_ids: ids, labels: ids.clone() };
  };
  const data = Dataset.from_dict({
    input_ids: Array.from({ length: 8 }, (_, i) => Array.from({ length: 16 }, (_, j) => (i * 31 + j * 7) % 50000)),
  });
  class Count extends TrainerCallback {
    steps = 0;
    override on_step_end() {
      this.steps++;
    }
  }

  test("an output_dir that cannot be created fails before the first step", async () => {
    const file = join(out(), "a-file");
    writeFileSync(file, "x");
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const count = new Count();
    const t = new Trainer({
      model,
      args: new TrainingArguments({ output_dir: join(file, "run"), max_steps: 2, disable_tqdm: true }),
      train_dataset: data,
      data_collator: collate,
      callbacks: [count],
    });
    await expect(t.train()).rejects.toThrow(
      /output_dir .*a-file\/run is not writable \(ENOTDIR.*\): checkpoints and the loss plot are written there/,
    );
    expect(count.steps).toBe(0);
    await model.dispose();
  });

  // a 256 KB tmpfs: too small for the tiny model's 13 MB of weights. Mounting one needs root (CI has it); where it
  // cannot be mounted the test shows as skipped rather than passing without asserting.
  const mountTmpfs = (dir: string) => spawnSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", dir]).status === 0;
  const canMount = (() => {
    const d = mkdtempSync(join(tmpdir(), "torchlm-mount-"));
    const ok = mountTmpfs(d);
    if (ok) spawnSync("umount", [d]);
    return ok;
  })();
  (canMount ? test : test.skip)(
    "a full disk fails the first save with ENOSPC and leaves no partial checkpoint",
    async () => {
      const mnt = out();
      expect(mountTmpfs(mnt)).toBe(true);
      try {
        const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
        const t = new Trainer({
          model,
          args: new TrainingArguments({
            output_dir: mnt,
            max_steps: 2,
            save_steps: 1,
            disable_tqdm: true,
            plot_loss: false,
          }),
          train_dataset: data,
          data_collator: collate,
        });
        await expect(t.train()).rejects.toThrow(
          /Cannot save checkpoint .*checkpoint-1: .*(ENOSPC|no space left on device)/i,
        );
        expect(readdirSync(mnt)).toEqual([]);
        await model.dispose();
      } finally {
        spawnSync("umount", [mnt]);
      }
    },
  );
});
