// Prebuilt addons: one per platform x libtorch build, in prebuilds/<platform>-<arch>-torch<version>-<variant>/.
// The tag has the libtorch version and variant in it because libtorch has no stable ABI across versions and a CPU
// build lacks the CUDA libraries a CUDA build links; node-gyp-build's tags (napi, abi, libc) cannot say either.
//   node scripts/prebuilds.mjs make [--from <torchlm.node>]   (npm pack's prepack: the build's addon into prebuilds/)
//   node scripts/prebuilds.mjs list                           (what the package holds)
// scripts/install.mjs uses the one matching the libtorch it finds, into build/Release, with build/libtorch pointing at
// that libtorch's libraries: the prebuilt addon's RPATH ($ORIGIN/../libtorch; @loader_path on macOS) finds them there.
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "./python-env.mjs";

export const PREBUILDS = join(ROOT, "prebuilds");
/** What the prebuilt addon's RPATH names, relative to the addon in build/Release. */
export const LIBTORCH_LINK = join(ROOT, "build", "libtorch");
/** Where the installed addon's origin is recorded: "prebuilt" or "compiled", the libtorch and its libraries. */
export const INSTALLED = join(ROOT, "build", "Release", "torchlm.json");
const RPATH = { linux: "$ORIGIN/../libtorch", darwin: "@loader_path/../libtorch" };

/**
 * The version and variant of the libtorch whose CMake package is torchDir (share/cmake/Torch, three levels below its
 * root, its libraries in lib/): the version from TorchConfigVersion.cmake; the variant "cpu", or "cu<major><minor>"
 * where libtorch_cuda is there, from pip's torch/version.py or an unpacked libtorch's build-version.
 * @returns {{ version: string, variant: string, libDir: string }}
 */
export function libtorchInfo(torchDir) {
  const root = join(torchDir, "..", "..", "..");
  const libDir = join(root, "lib");
  const cfg = join(torchDir, "TorchConfigVersion.cmake");
  const version = (existsSync(cfg) && /PACKAGE_VERSION "([^"]+)"/.exec(readFileSync(cfg, "utf8"))?.[1]) || "unknown";
  const names = existsSync(libDir) ? readdirSync(libDir) : [];
  let variant = "cpu";
  if (names.some((n) => /^(lib)?torch_cuda\.(so|dll|dylib)/.test(n))) {
    const pyVersion = join(root, "version.py");
    const buildVersion = join(root, "build-version");
    const cuda = existsSync(pyVersion)
      ? /cuda[^=\n]*=\s*'([\d.]+)'/.exec(readFileSync(pyVersion, "utf8"))?.[1]
      : existsSync(buildVersion)
        ? /\+cu(\d+)/.exec(readFileSync(buildVersion, "utf8"))?.[1]
        : undefined;
    variant = cuda ? `cu${cuda.replace(".", "")}` : "cuda";
  }
  return { version, variant, libDir };
}

export function tagOf(info, platform = process.platform, arch = process.arch) {
  return `${platform}-${arch}-torch${info.version}-${info.variant}`;
}

/** The prebuilt addons the package holds: their tags and metadata. */
export function listPrebuilds() {
  if (!existsSync(PREBUILDS)) return [];
  return readdirSync(PREBUILDS)
    .filter((d) => existsSync(join(PREBUILDS, d, "torchlm.node")) && existsSync(join(PREBUILDS, d, "torchlm.json")))
    .map((d) => ({ tag: d, dir: join(PREBUILDS, d), ...JSON.parse(readFileSync(join(PREBUILDS, d, "torchlm.json"))) }));
}

/** The prebuilt addon for this platform and this libtorch, or why there is none (one line). */
export function matchPrebuild(info) {
  const all = listPrebuilds();
  const tag = tagOf(info);
  const hit = all.find((p) => p.tag === tag);
  if (hit) return { prebuild: hit };
  const have = all.map((p) => p.tag).join(", ") || "none";
  return { why: `no prebuilt addon for ${tag} in this package (it holds: ${have})` };
}

/** Puts a prebuilt addon in build/Release and points build/libtorch at the libraries of the libtorch it matches. */
export function installPrebuild(prebuild, info) {
  const release = join(ROOT, "build", "Release");
  mkdirSync(release, { recursive: true });
  copyFileSync(join(prebuild.dir, "torchlm.node"), join(release, "torchlm.node"));
  rmSync(join(release, "torchlm_testing.node"), { force: true });
  try {
    if (lstatSync(LIBTORCH_LINK)) rmSync(LIBTORCH_LINK, { recursive: true, force: true });
  } catch {
    // no link yet
  }
  // Windows has no RPATH: lib/native.ts puts the recorded libDir on PATH before loading the addon instead.
  if (process.platform !== "win32") symlinkSync(info.libDir, LIBTORCH_LINK, "dir");
  recordInstalled({ from: "prebuilt", tag: prebuild.tag, ...info });
}

export function recordInstalled(what) {
  mkdirSync(dirname(INSTALLED), { recursive: true });
  writeFileSync(INSTALLED, JSON.stringify(what, null, 2) + "\n");
}

function run(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const why = e.code === "ENOENT" ? `${cmd} is not installed` : (e.stderr || e.message).trim();
    throw new Error(`${cmd} ${args.join(" ")}: ${why}`, { cause: e });
  }
}

/** A compiled addon's RUNPATH (Linux) or LC_RPATH entries (macOS). */
function rpathsOf(addon) {
  if (process.platform === "linux") {
    const dyn = run("readelf", ["-d", addon]);
    return /\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[([^\]]*)\]/.exec(dyn)?.[1].split(":") ?? [];
  }
  if (process.platform === "darwin")
    return [...run("otool", ["-l", addon]).matchAll(/path (\S+) \(offset/g)].map((m) => m[1]);
  throw new Error("prebuilt addons are made on Linux and macOS only (Windows: compile with npm run build:native)");
}

/**
 * The prebuilt's RPATH: libtorch's libraries through build/libtorch, and the other folders of the same Python
 * environment the compiled addon named (a CUDA build's nvidia/* libraries beside torch/), reached through it too.
 */
function relativeRpath(paths, libDir) {
  const origin = RPATH[process.platform];
  const site = dirname(dirname(libDir)); // site-packages, or an unpacked libtorch's parent
  const out = [origin];
  for (const p of paths) {
    if (p === libDir || !p.startsWith(site + "/")) continue;
    out.push(`${origin}/${relative(libDir, p)}`);
  }
  return [...new Set(out)];
}

/** Loads a prebuilt addon as an install lays it out (build/Release beside build/libtorch), in a child process. */
function checkLoads(file, libDir) {
  const dir = mkdtempSync(join(tmpdir(), "torchlm-prebuild-"));
  try {
    mkdirSync(join(dir, "Release"));
    copyFileSync(file, join(dir, "Release", "torchlm.node"));
    symlinkSync(libDir, join(dir, "libtorch"), "dir");
    const env = { ...process.env };
    delete env.LD_LIBRARY_PATH;
    const probe =
      `const a=require(${JSON.stringify(join(dir, "Release", "torchlm.node"))});` +
      `process.stdout.write(JSON.stringify({ torch: a.info().torch_version, gloo: !!a.distributedAvailable }))`;
    return JSON.parse(execFileSync(process.execPath, ["-e", probe], { encoding: "utf8", env }));
  } catch (e) {
    throw new Error(
      `the prebuilt ${file} does not load through its relative RPATH: ${(e.stderr || e.message).trim()}`,
      {
        cause: e,
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A compiled addon (cmake-js's, Release, Gloo in) as the prebuilt for the libtorch it was linked against: copied,
 * its RPATH made relative, stripped of symbols, with its metadata beside it.
 */
export function makePrebuild(addon) {
  if (!existsSync(addon)) throw new Error(`${addon} is missing: build the addon first (npm run build:native)`);
  const paths = rpathsOf(addon);
  const linked = paths.find((p) => ["libtorch.so", "libtorch.dylib"].some((f) => existsSync(join(p, f))));
  if (!linked) throw new Error(`${addon} names no libtorch in its RPATH (${paths.join(":") || "none"})`);
  const info = libtorchInfo(join(linked, "..", "share", "cmake", "Torch"));
  if (info.version === "unknown") throw new Error(`the libtorch of ${addon} (${info.libDir}) names no version`);
  const tag = tagOf(info);
  const dir = join(PREBUILDS, tag);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const out = join(dir, "torchlm.node");
  copyFileSync(addon, out);
  const rpath = relativeRpath(paths, linked);
  if (process.platform === "linux") {
    run("patchelf", ["--set-rpath", rpath.join(":"), out]);
    run("strip", ["--strip-unneeded", out]);
  } else {
    for (const p of paths) run("install_name_tool", ["-delete_rpath", p, out]);
    for (const p of rpath) run("install_name_tool", ["-add_rpath", p, out]);
    run("strip", ["-x", out]);
  }
  const loaded = checkLoads(out, linked);
  // distributed training needs Gloo compiled in: a build without it is not one to ship
  if (!loaded.gloo) throw new Error(`${addon} was built without Gloo (install libgloo-dev, then npm run build:native)`);
  const { version, variant } = info;
  const meta = { platform: process.platform, arch: process.arch, torch: version, variant, napi: 8, gloo: true };
  writeFileSync(join(dir, "torchlm.json"), JSON.stringify(meta, null, 2) + "\n");
  return { tag, dir, file: out };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const [cmd, ...rest] = process.argv.slice(2);
  try {
    if (cmd === "make") {
      const i = rest.indexOf("--from");
      const addon = i >= 0 ? rest[i + 1] : join(ROOT, "build", "Release", "torchlm.node");
      const made = makePrebuild(addon);
      console.log(`torchlm: prebuilt addon ${made.tag} from ${addon}`);
    } else if (cmd === "list") {
      for (const p of listPrebuilds()) console.log(p.tag);
    } else {
      console.error("usage: node scripts/prebuilds.mjs make [--from <torchlm.node>] | list");
      process.exit(2);
    }
  } catch (e) {
    console.error(`torchlm: ${e.message}`);
    process.exit(1);
  }
}
