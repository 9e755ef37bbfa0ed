// npm install hook: find (or, on Debian as root, install) libtorch, then build the addon with cmake-js.
import { existsSync } from "node:fs";
import { execFileSync, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { findLibtorch, HOW_TO_INSTALL } from "./find-libtorch.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const force = process.argv.includes("--force");
const binary = join(root, "build", "Release", "torchlm.node");

if (process.env.TORCHLM_SKIP_BUILD) process.exit(0);
if (!force && existsSync(binary)) {
  console.log(`torchlm: using the existing ${binary} (npm run build:native rebuilds it)`);
  process.exit(0);
}

function isDebianRoot() {
  return process.platform === "linux" && existsSync("/etc/debian_version") && process.getuid?.() === 0;
}

/** apt-get install, with one `apt-get update` and a retry when the package lists are missing or stale. */
function aptInstall(packages) {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () => spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...packages], { stdio: "inherit", env }).status === 0;
  if (install()) return true;
  spawnSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  return install();
}

let found = findLibtorch();
if (!found && isDebianRoot()) {
  console.log("torchlm: libtorch not found; installing Debian's libtorch-dev and libopenblas0-pthread with apt-get");
  if (!aptInstall(["libtorch-dev", "libopenblas0-pthread", "libgloo-dev"])) {
    console.error("torchlm: apt-get could not install libtorch-dev. " + HOW_TO_INSTALL);
    process.exit(1);
  }
  found = findLibtorch();
}
if (!found) {
  console.error("torchlm: " + HOW_TO_INSTALL);
  process.exit(1);
}
// Distributed training needs the Gloo headers that Debian's libtorch headers include (libgloo-dev).
if (found.source.startsWith("Debian") && !existsSync("/usr/include/gloo/algorithm.h")) {
  if (isDebianRoot()) {
    console.log("torchlm: installing libgloo-dev (Gloo's headers, for distributed training) with apt-get");
    if (!aptInstall(["libgloo-dev"])) console.warn("torchlm: could not install libgloo-dev: building without distributed training");
  } else {
    console.warn("torchlm: libgloo-dev is not installed: building without distributed training (apt-get install libgloo-dev, then npm run build:native)");
  }
}
console.log(`torchlm: building against libtorch from ${found.source}: ${found.dir}`);

const cmakeJs = join(root, "node_modules", "cmake-js", "bin", "cmake-js");
const args = [cmakeJs, "rebuild", "--CDTorch_DIR=" + found.dir];
if (process.env.CMAKE_BUILD_PARALLEL_LEVEL === undefined) process.env.CMAKE_BUILD_PARALLEL_LEVEL = "2";
const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
if (r.status !== 0) {
  console.error("torchlm: building the native addon failed (see above). " +
    "It needs cmake, a C++17 compiler and libtorch's headers.");
  process.exit(r.status ?? 1);
}
try {
  execFileSync(process.execPath, ["-e", `require(${JSON.stringify(binary)})`], { stdio: "inherit" });
} catch {
  console.error(`torchlm: the addon built but does not load: ${binary}`);
  process.exit(1);
}
