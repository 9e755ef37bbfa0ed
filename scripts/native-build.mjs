// What both build files (CMakeLists.txt and binding.gyp) take from one place: the native sources of each target,
// the warning flags, and Gloo's detection with the defines that follow from it.
//   node scripts/native-build.mjs sources core|binding|module|testing [--cmake]   a target's .cc files
//   node scripts/native-build.mjs warnings [--cmake]                         warning flags for our own code
//   node scripts/native-build.mjs defines [--cmake]                          the core's feature defines
//   node scripts/native-build.mjs gloo-include                               Gloo's header folder, or nothing
// --cmake joins with ";" (a CMake list); otherwise one space between items (gyp's <!@(...)).
import { existsSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { findLibtorch, libtorchRoot } from "./find-libtorch.mjs";
import { ROOT } from "./python-env.mjs";

/** The sources of each target. core: a static library that knows nothing of Node; binding: a static library, the only
 * code that includes napi.h; module: what makes torchlm.node of the two; testing: what makes torchlm_testing.node of
 * them (the shipped addon's exports plus the tests' and the bench's probes). */
const MODULE = "native/binding/module.cc";
export const TARGETS = {
  core: () => walk("native/core"),
  binding: () => walk("native/binding").filter((p) => p !== MODULE),
  module: () => [MODULE],
  testing: () => walk("native/testing"),
};

export const WARNINGS = ["-Wall", "-Wextra", "-Wno-unused-parameter"];

function walk(dir) {
  const out = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.name.endsWith(".cc")) out.push(p);
  }
  return out;
}

/** A target's sources, relative to the package root, sorted. */
export function sources(target) {
  const list = Object.hasOwn(TARGETS, target) ? TARGETS[target] : null;
  if (!list) throw new Error(`unknown target ${target}: one of ${Object.keys(TARGETS).join(", ")}`);
  return list()
    .map((p) => relative(ROOT, join(ROOT, p)).split("\\").join("/"))
    .sort();
}

/** The folder holding gloo/algorithm.h (libtorch's own include folder, then the system's), or null. pip's libtorch
 * has Gloo compiled in but ships no Gloo headers, which c10d's headers include; Debian's libgloo-dev has them. */
export function glooInclude(found = findLibtorch()) {
  const dirs = [found ? join(libtorchRoot(found), "include") : null, "/usr/include", "/usr/local/include"];
  return dirs.find((d) => d && existsSync(join(d, "gloo", "algorithm.h"))) ?? null;
}

export function defines() {
  return glooInclude() ? ["USE_C10D_GLOO", "TORCHLM_HAVE_GLOO=1"] : ["TORCHLM_HAVE_GLOO=0"];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const [what, arg] = process.argv.slice(2);
  const sep = process.argv.includes("--cmake") ? ";" : " ";
  try {
    let items;
    if (what === "sources") items = sources(arg);
    else if (what === "warnings") items = WARNINGS;
    else if (what === "defines") items = defines();
    else if (what === "gloo-include") items = [glooInclude()].filter(Boolean);
    else
      throw new Error(
        "usage: native-build.mjs sources core|binding|testing | warnings | defines | gloo-include [--cmake]",
      );
    process.stdout.write(items.join(sep));
  } catch (e) {
    console.error(`native-build.mjs: ${e.message}`);
    process.exit(1);
  }
}
