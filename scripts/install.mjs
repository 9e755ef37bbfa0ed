// npm install hook: find libtorch (or put the pinned torch==2.13.0 into torchlm's own venv), then use the prebuilt
// addon made for that libtorch (scripts/prebuilds.mjs) and compile nothing, or else build the addon with cmake-js,
// saying why in one line. One line per step; a step's full log only when it fails.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { findLibtorch, HOW_TO_INSTALL, OWN_VENV } from "./find-libtorch.mjs";
import { glooInclude } from "./native-build.mjs";
import {
  INSTALLED,
  installPrebuild,
  libtorchInfo,
  listPrebuilds,
  matchPrebuild,
  recordInstalled,
} from "./prebuilds.mjs";
import { ROOT, ensureVenv, envFlag, step } from "./python-env.mjs";

const force = process.argv.includes("--force");
const binary = join(ROOT, "build", "Release", "torchlm.node");
const logDir = join(ROOT, "build-logs");

if (envFlag("TORCHLM_SKIP_BUILD")) process.exit(0);
const record = existsSync(INSTALLED) ? JSON.parse(readFileSync(INSTALLED, "utf8")) : null;
// An addon built by hand (no record) stays; one this script set up stays while the libtorch it was set up for is
// still the one found.
if (!force && existsSync(binary) && !record) {
  console.log(`torchlm: using the existing ${binary} (npm run build:native rebuilds it)`);
  process.exit(0);
}

function fail(message) {
  console.error(`torchlm: ${message}`);
  process.exit(1);
}

// in a child: a load failure must not take the install's own process with it
function tryLoad() {
  return spawnSync(process.execPath, ["-e", `require(${JSON.stringify(binary)})`], { encoding: "utf8" });
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

const info = libtorchInfo(found.dir);
const same = record && ["version", "variant", "libDir"].every((k) => record[k] === info[k]);
if (!force && existsSync(binary) && same) {
  console.log(`torchlm: using the existing ${binary} (${record.from}, libtorch ${info.version} ${info.variant})`);
  process.exit(0);
}
if (record && !same)
  console.log(
    `torchlm: the addon in build/Release was set up for libtorch ${record.version} (${record.variant}) in ` +
      `${record.libDir}; found ${info.version} (${info.variant}) in ${info.libDir}: setting it up again`,
  );
if (!force && !envFlag("TORCHLM_BUILD_FROM_SOURCE")) {
  const { prebuild, why } = matchPrebuild(info);
  if (prebuild) {
    const t0 = Date.now();
    installPrebuild(prebuild, info);
    const load = tryLoad();
    if (load.status === 0) {
      const s = ((Date.now() - t0) / 1000).toFixed(1);
      console.log(
        `torchlm: using the prebuilt addon ${prebuild.tag} on libtorch ${info.version} (${info.variant}) from ` +
          `${found.source}: nothing compiled (${s} s)`,
      );
      process.exit(0);
    }
    console.log(`torchlm: the prebuilt addon ${prebuild.tag} does not load here (${load.stderr.trim()}): compiling it`);
  } else {
    console.log(`torchlm: ${why}: compiling it (about 2 minutes; needs cmake and a C++20 compiler)`);
  }
}
console.log(`torchlm: building against libtorch ${info.version} (${info.variant}) from ${found.source}: ${found.dir}`);

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
// npm may hoist cmake-js beside torchlm in a user's project: resolve it as Node does
const cmakeJs = join(dirname(createRequire(import.meta.url).resolve("cmake-js/package.json")), "bin", "cmake-js");
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
  const prebuilt = listPrebuilds().map((p) => `torch==${p.torch} (${p.variant}, ${p.platform}-${p.arch})`);
  fail(
    `${e.message}\nBuilding the native addon needs cmake, a C++20 compiler and libtorch's headers.` +
      (prebuilt.length
        ? ` To install with no compiler, use a libtorch this package has a prebuilt addon for: pip install ` +
          `${prebuilt.join(" or ")} for python3 (or TORCHLM_PYTHON), then npm rebuild torchlm.`
        : ""),
  );
}
const load = tryLoad();
if (load.status !== 0) fail(`the addon built but does not load: ${binary}\n${load.stderr}`);
recordInstalled({ from: "compiled", ...info });
console.log(`torchlm: ${binary} loads`);
