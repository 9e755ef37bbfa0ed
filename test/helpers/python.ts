// The Python side of the parity suites: .venv-test (pinned PyTorch 2 and transformers) and the references that
// test/setup/global-setup.mjs computed with it at the start of this run.
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const REFERENCES = join(ROOT, ".cache", "references");
export const TEST_PYTHON = join(ROOT, ".venv-test", "bin", "python");

/** Runs a script of scripts/ with the test venv's python and parses the JSON it prints last. */
export function pythonJson(script: string, args: string[]): any {
  const out = execFileSync(TEST_PYTHON, [join(ROOT, "scripts", script), ...args], {
    encoding: "utf8",
    env: { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_VERBOSITY: "error" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  return JSON.parse(out.trim().split("\n").pop()!);
}
