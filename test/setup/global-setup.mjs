// jest globalSetup: one temporary folder for the whole run, then the parity suites' references, computed in this run
// from the pinned PyTorch and transformers.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { computeReferences } from "../../scripts/references.mjs";

export default async function setup() {
  // Every suite, worker and child process (Node's tmpdir(), Python's tempfile) writes under this folder, which
  // globalTeardown removes: a full run writes about a gigabyte of models, checkpoints and logs.
  const run = mkdtempSync(join(tmpdir(), "torchlm-jest-run-"));
  process.env.TORCHLM_TEST_TMP = run;
  process.env.TMPDIR = run;
  // Every suite, and the child processes they start, run the testing addon (the shipped addon's code plus the
  // probes), unless a build of its own is named (the CUDA and sanitizer builds); test/build.test.ts runs the
  // shipped one.
  await import("../../dist/bench/testing-addon.js");
  computeReferences();
}
