// npm install hook: find libtorch (or put the pinned torch==2.13.0 into torchlm's own venv), then build the addon
// with cmake-js. One line per step; a step's full log only when it fails.
import { existsSync, mkdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { findLibtorch, HOW_TO_INSTALL, OWN_VENV } from "./find-libtorch.mjs";
import { glooInclude } from "./native-build.mjs";
import { ROOT, ensureVenv, envFlag, step } from "./python-env.mjs";

const force = process.argv.includes("--force");
const binary = join(ROOT, "build", "Release", "torchlm.node");
const logDir = join(ROOT, "build-logs");

if (envFlag("TORCHLM_SKIP_BUILD")) process.exit(0);
if (!force && existsSync(binary)) {
  console.log(`torchlm: using the existing ${binary} (npm run build:native rebuilds it)`);
  process.exit(0);
}

function fail(message) {
  console.error(`torchlm: ${message}`);
  process.exit(1);
}

function isDebianRoot() {
  return process.platform === "linux" && existsSync("/etc/debian_version") && process.getuid?.() === 0;
}

let found;
try {
  found = findLibtorch();
  if (!found) {
    console.log(
      `torchlm: no libtorch found (LIBTORCH, Torch_DIR, python3's torch): installing the pinned torch into ${OWN_VENV}`,
    );
    ensureVenv(OWN_VENV, "torch", { why: "libtorch for the addon" });
    found = findLibtorch();
  }
} catch (e) {
  fail(`${e.message}\n${HOW_TO_INSTALL}`);
}
if (!found) fail(HOW_TO_INSTALL);
console.log(`torchlm: building against libtorch from ${found.source}: ${found.dir}`);

// pip's libtorch ships no Gloo headers; c10d's ProcessGroupGloo.hpp needs them (Debian: libgloo-dev, headers only).
if (!glooInclude(found) && !envFlag("TORCHLM_NO_GLOO")) {
  if (isDebianRoot()) {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const apt = ["install", "-y", "-q", "--no-install-recommends", "libgloo-dev"];
    try {
      step(
        "apt-get install libgloo-dev (Gloo's headers, for distributed training)",
        join(logDir, "apt.log"),
        "apt-get",
        apt,
        { env },
      );
    } catch {
      try {
        step(
          "apt-get update, then install libgloo-dev",
          join(logDir, "apt.log"),
          "sh",
          ["-c", `apt-get update -q && apt-get ${apt.join(" ")}`],
          { env },
        );
      } catch (e) {
        console.warn(`torchlm: could not install libgloo-dev: building without distributed training\n${e.message}`);
      }
    }
  } else {
    console.warn(
      "torchlm: Gloo's headers are missing: building without distributed training (apt-get install libgloo-dev, " +
        "then npm run build:native)",
    );
  }
}

mkdirSync(logDir, { recursive: true });
const cmakeJs = join(ROOT, "node_modules", "cmake-js", "bin", "cmake-js");
const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? "2" };
try {
  step(
    "compiling the native addon with cmake-js (about 2 minutes)",
    join(logDir, "cmake-js.log"),
    process.execPath,
    [cmakeJs, "rebuild", "--CDTorch_DIR=" + found.dir],
    { cwd: ROOT, env },
  );
} catch (e) {
  fail(`${e.message}\nBuilding the native addon needs cmake, a C++20 compiler and libtorch's headers.`);
}
const load = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(binary)})`], { encoding: "utf8" });
if (load.status !== 0) fail(`the addon built but does not load: ${binary}\n${load.stderr}`);
console.log(`torchlm: ${binary} loads`);
