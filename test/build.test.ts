import { execFile, execFileSync } from "node:child_process";
import { copyFileSync, cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { torch_info } from "../lib/index.js";

const root = join(import.meta.dirname ?? process.cwd(), "..");

test("binding.gyp and CMakeLists.txt build the same native sources, and all of them", () => {
  const cmake = readFileSync(join(root, "CMakeLists.txt"), "utf8");
  const block = /set\(TORCHLM_SOURCES([^)]*)\)/.exec(cmake)![1]!;
  const fromCmake = block.split(/\s+/).filter(Boolean).sort();
  const gyp = JSON.parse(readFileSync(join(root, "binding.gyp"), "utf8"));
  const fromGyp = [...gyp.targets[0].sources].sort();
  expect(fromGyp).toEqual(fromCmake);
  const onDisk = readdirSync(join(root, "native")).filter((f) => f.endsWith(".cc")).map((f) => `native/${f}`).sort();
  expect(fromCmake).toEqual(onDisk);
});

test("node-gyp (npm run build:gyp) builds the same sources into an addon that loads on the same libtorch", async () => {
  // in a copy of the package, so that the cmake-js build in build/ stays as it is
  const dir = mkdtempSync(join(tmpdir(), "torchlm-gyp-"));
  for (const f of ["binding.gyp", "package.json"]) copyFileSync(join(root, f), join(dir, f));
  for (const d of ["native", "scripts"]) cpSync(join(root, d), join(dir, d), { recursive: true });
  symlinkSync(join(root, "node_modules"), join(dir, "node_modules"), "dir");
  const Torch_DIR = execFileSync(process.execPath, [join(root, "scripts", "find-libtorch.mjs")], { encoding: "utf8" }).trim();
  await promisify(execFile)("npm", ["run", "build:gyp"], { cwd: dir, env: { ...process.env, Torch_DIR }, timeout: 1_500_000, maxBuffer: 1 << 26 });
  const info = execFileSync(process.execPath, ["-e", `process.stdout.write(JSON.stringify(require(${JSON.stringify(join(dir, "build", "Release", "torchlm.node"))}).info()))`], { encoding: "utf8" });
  expect(JSON.parse(info).torch_version).toBe(torch_info().torch_version);
  rmSync(dir, { recursive: true, force: true });
}, 1_600_000);

test("npm install prints one line per step, and a failing step the end of its log (scripts/python-env.mjs step)", () => {
  const dir = mkdtempSync(join(tmpdir(), "torchlm-steps-"));
  const script = (cmd: string) => `
    import { step } from ${JSON.stringify(join(root, "scripts", "python-env.mjs"))};
    try { step("a step", ${JSON.stringify(join(dir, "step.log"))}, "sh", ["-c", ${JSON.stringify(cmd)}]); }
    catch (e) { console.log("FAILED: " + e.message); }`;
  const run = (cmd: string) => execFileSync(process.execPath, ["--input-type=module", "-e", script(cmd)], { encoding: "utf8" });
  // 200 lines of a package manager's output go to the log, not the terminal
  const ok = run("for i in $(seq 200); do echo output line $i; done");
  expect(ok.trim().split("\n")).toEqual([expect.stringMatching(/^torchlm: a step \(\d+\.\d s\)$/)]);
  expect(readFileSync(join(dir, "step.log"), "utf8")).toContain("output line 200");
  const failed = run("echo the reason it failed; exit 3");
  expect(failed).toMatch(/^FAILED: a step failed after \d+\.\d s \(exit 3\); the end of .*step\.log:/);
  expect(failed).toContain("the reason it failed");
  rmSync(dir, { recursive: true, force: true });
});
