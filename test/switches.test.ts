// Every environment switch of docs/switches.md, exercised: each run in a fresh process (most are read once, at load),
// on the tiny model, against PyTorch's logits and the default run's greedy tokens.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { golden, tinyModelDir, maxAbsDiff, flatten } from "./helpers/tiny.js";

const root = join(import.meta.dirname ?? process.cwd(), "..");

interface Run {
  logits: number[];
  tokens: number[][];
  q8: number[][];
  loss: number;
}

function run(env: Record<string, string>): Run {
  const lib = JSON.stringify(join(root, "dist", "lib", "index.js"));
  const script = `
    const { GPT2LMHeadModel, tensor } = await import(${lib});
    const dir = ${JSON.stringify(tinyModelDir())};
    const m = await GPT2LMHeadModel.from_pretrained(dir);
    const out = await m.forward({ input_ids: ${JSON.stringify(golden.input_ids)} });
    const cols = ${JSON.stringify(golden.columns)};
    const logits = [];
    const data = out.logits.data(), [B, T, V] = out.logits.shape;
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++) for (const c of cols) logits.push(data[(b * T + t) * V + c]);
    const tokens = (await m.generate([[1, 2, 3, 4]], { max_new_tokens: 8 })).tolist();
    // two fused training steps (forward, the fused LM loss, backward, AdamW): the second's loss follows the update
    const { binding } = await import(${JSON.stringify(join(root, "dist", "lib", "native.js"))});
    m.train();
    const params = m.parameters().map((t) => t._t);
    const opt = new binding.NativeAdamW({ groups: [{ params, weight_decay: 0 }], beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    const ids = tensor(${JSON.stringify(golden.input_ids)}, { dtype: "int64" });
    let loss = 0;
    for (let i = 0; i < 2; i++)
      loss = (await opt.trainStep({ model: m._native, input_ids: ids._t, attention_mask: null, labels: ids._t,
        loss_scale: 1, update: { lr: 1e-3, max_grad_norm: 1 }, amp: "none" })).loss;
    const q = await GPT2LMHeadModel.from_pretrained(dir, { dtype: "q8" });
    const q8 = (await q.generate([[1, 2, 3, 4]], { max_new_tokens: 8 })).tolist();
    console.log(JSON.stringify({ logits, tokens, q8, loss }));`;
  const stdout = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    maxBuffer: 1 << 26,
    env: { ...process.env, ...env },
  });
  return JSON.parse(stdout.trim().split("\n").pop()!) as Run;
}

const pick = (logits: number[]) => Float64Array.from(logits);

describe("environment switches (docs/switches.md): each path still computes the model", () => {
  let base: Run;
  beforeAll(() => {
    base = run({});
    expect(maxAbsDiff(pick(base.logits), flatten(golden.logits))).toBeLessThan(1e-4);
  }, 120_000);

  // Each flag's path against PyTorch's logits and the default's tokens; "0" is off, as unset.
  test.each([
    ["TORCHLM_NO_SDPA", "1"],
    ["TORCHLM_NO_SDPA", "0"],
    ["TORCHLM_NO_MATVEC", "1"],
    ["TORCHLM_NO_DNNL", "1"],
    ["TORCHLM_NO_FUSED_LOSS", "1"],
    ["TORCHLM_NO_PREFETCH", "1"],
    ["TORCHLM_MMAP", "1"],
    ["TORCHLM_NO_CPU_CACHE", "1"],
    ["TORCHLM_CPU_CACHE_MB", "16"],
    ["TORCHLM_Q8_KERNEL", "scalar"],
  ])(
    "%s=%s",
    (name, value) => {
      const r = run({ [name]: value });
      expect(maxAbsDiff(pick(r.logits), flatten(golden.logits))).toBeLessThan(1e-4);
      expect(r.tokens).toEqual(base.tokens);
      expect(r.q8).toEqual(base.q8);
      expect(Math.abs(r.loss - base.loss)).toBeLessThan(1e-5);
    },
    120_000,
  );

  test("docs/switches.md lists every TORCHLM_ variable the code reads, and no other", () => {
    const doc = readFileSync(join(root, "docs", "switches.md"), "utf8");
    const listed = new Set([...doc.matchAll(/^\| `(TORCHLM_[A-Z0-9_]+)`/gm)].map((m) => m[1]!));
    const read = new Set<string>();
    const grep = execFileSync(
      "grep",
      [
        "-rhoE",
        '(getenv|EnvFlag|envFlag)\\("TORCHLM_[A-Z0-9_]+"|process\\.env\\.TORCHLM_[A-Z0-9_]+|env\\.TORCHLM_[A-Z0-9_]+',
        "lib",
        "native",
        "scripts",
        "bench",
        "test/setup",
        "bin",
      ],
      { cwd: root, encoding: "utf8" },
    );
    for (const m of grep.matchAll(/TORCHLM_[A-Z0-9_]+/g)) read.add(m[0]);
    expect([...read].sort()).toEqual([...listed].sort());
  });
});
