import { execFile, execFileSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { torch_info } from "../lib/index.js";

const root = join(import.meta.dirname ?? process.cwd(), "..");

/** Our own headers a native file includes ("core/...", "binding/..."), and napi.h where it includes it. */
function includes(file: string): string[] {
  const text = readFileSync(join(root, "native", file), "utf8");
  return [...text.matchAll(/^#include [<"]([^>"]+)[>"]/gm)]
    .map((m) => m[1]!)
    .filter((h) => h === "napi.h" || existsSync(join(root, "native", h)));
}

/** Every .cc and .h under native/, relative to it. */
function nativeFiles(dir = ""): string[] {
  return readdirSync(join(root, "native", dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? nativeFiles(join(dir, e.name)) : /\.(cc|h)$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

test("only native/binding and native/testing reach napi.h, directly or through our own headers", () => {
  const reaches = new Map<string, boolean>();
  const reach = (f: string, seen = new Set<string>()): boolean => {
    if (reaches.has(f)) return reaches.get(f)!;
    if (seen.has(f)) return false;
    seen.add(f);
    const r = includes(f).some((h) => h === "napi.h" || reach(h, seen));
    reaches.set(f, r);
    return r;
  };
  const files = nativeFiles();
  expect(files.filter((f) => f.startsWith("core/")).length).toBeGreaterThan(30);
  const outside = files.filter((f) => !/^(binding|testing)\//.test(f) && reach(f));
  expect(outside).toEqual([]);
  // and the core includes nothing of the binding's
  const coreIncludes = files
    .filter((f) => f.startsWith("core/"))
    .flatMap((f) => includes(f).map((h) => `${f} -> ${h}`));
  expect(coreIncludes.filter((i) => !/ -> core\//.test(i))).toEqual([]);
});

test(
  "CMakeLists.txt and binding.gyp take sources, warnings and defines from scripts/native-build.mjs, every source " +
    "once",
  () => {
    const cmake = readFileSync(join(root, "CMakeLists.txt"), "utf8");
    const gyp = readFileSync(join(root, "binding.gyp"), "utf8");
    for (const call of [
      "sources core",
      "sources binding",
      "sources module",
      "sources testing",
      "warnings",
      "defines",
      "gloo-include",
    ]) {
      expect(cmake).toMatch(new RegExp(`native_build\\(\\w+ ${call}\\)`));
      expect(gyp).toContain(`node scripts/native-build.mjs ${call}`);
    }
    const list = (t: string) =>
      execFileSync(process.execPath, [join(root, "scripts", "native-build.mjs"), "sources", t], {
        encoding: "utf8",
      }).split(" ");
    const all = ["core", "binding", "module", "testing"].flatMap(list).sort();
    expect(all).toEqual(
      nativeFiles()
        .filter((f) => f.endsWith(".cc"))
        .map((f) => `native/${f}`)
        .sort(),
    );
    expect(
      execFileSync(process.execPath, [join(root, "scripts", "native-build.mjs"), "warnings"], { encoding: "utf8" }),
    ).toMatch(/-Wall -Wextra/);
  },
);

test("the shipped torchlm.node exports the library and no probe, switch or core symbol, and runs a generate", () => {
  const shipped = join(root, "build", "Release", "torchlm.node");
  const dynamic = execFileSync("nm", ["-DC", "--defined-only", shipped], { encoding: "utf8" });
  // our functions are hidden; what remains are libtorch's and the standard library's inline templates
  expect(dynamic.split("\n").filter((l) => /\btorchlm::\w+\(/.test(l) && !/std::thread::_State_impl/.test(l))).toEqual(
    [],
  );
  expect(dynamic).toMatch(/ T napi_register_module_v1$/m);
  const script = `
    const { GPT2LMHeadModel } = await import(${JSON.stringify(join(root, "dist", "lib", "index.js"))});
    const native = await import(${JSON.stringify(join(root, "dist", "lib", "native.js"))});
    const config = { vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 2 };
    const m = await GPT2LMHeadModel.from_config(config, { seed: 1 });
    const out = await m.generate([[1, 2, 3]], { max_new_tokens: 4 });
    console.log(JSON.stringify({ keys: Object.keys(native.binding), shape: out.shape }));`;
  const env = { ...process.env, TORCHLM_BINARY: shipped };
  const r = JSON.parse(
    execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", env })
      .trim()
      .split("\n")
      .pop()!,
  );
  expect(r.shape).toEqual([1, 7]);
  expect(r.keys).toContain("NativeModel");
  expect(r.keys).not.toContain("probes");
  const testing = Object.keys(createRequire(import.meta.url)(join(root, "build", "Release", "torchlm_testing.node")));
  expect(testing).toEqual([...r.keys, "probes"]);
});

test("node-gyp (npm run build:gyp) builds the same targets into addons that load on the same libtorch", async () => {
  // in a copy of the package, so that the cmake-js build in build/ stays as it is
  const dir = mkdtempSync(join(tmpdir(), "torchlm-gyp-"));
  for (const f of ["binding.gyp", "package.json"]) copyFileSync(join(root, f), join(dir, f));
  for (const d of ["native", "scripts"]) cpSync(join(root, d), join(dir, d), { recursive: true });
  symlinkSync(join(root, "node_modules"), join(dir, "node_modules"), "dir");
  const Torch_DIR = execFileSync(process.execPath, [join(root, "scripts", "find-libtorch.mjs")], {
    encoding: "utf8",
  }).trim();
  await promisify(execFile)("npm", ["run", "build:gyp"], {
    cwd: dir,
    env: { ...process.env, Torch_DIR },
    timeout: 1_500_000,
    maxBuffer: 1 << 26,
  });
  const keys = (addon: string) =>
    execFileSync(
      process.execPath,
      [
        "-e",
        `const a = require(${JSON.stringify(addon)});
    process.stdout.write(JSON.stringify({ keys: Object.keys(a), torch: a.info().torch_version }))`,
      ],
      { encoding: "utf8" },
    );
  const shipped = JSON.parse(keys(join(dir, "build", "Release", "torchlm.node")));
  expect(shipped.torch).toBe(torch_info().torch_version);
  expect(shipped.keys).not.toContain("probes");
  expect(JSON.parse(keys(join(dir, "build", "Release", "torchlm_testing.node"))).keys).toEqual([
    ...shipped.keys,
    "probes",
  ]);
  rmSync(dir, { recursive: true, force: true });
}, 1_600_000);

test("npm install prints one line per step, and a failing step the end of its log (python-env.mjs)", () => {
  const dir = mkdtempSync(join(tmpdir(), "torchlm-steps-"));
  const script = (cmd: string) => `
    import { step } from ${JSON.stringify(join(root, "scripts", "python-env.mjs"))};
    try { step("a step", ${JSON.stringify(join(dir, "step.log"))}, "sh", ["-c", ${JSON.stringify(cmd)}]); }
    catch (e) { console.log("FAILED: " + e.message); }`;
  const run = (cmd: string) =>
    execFileSync(process.execPath, ["--input-type=module", "-e", script(cmd)], { encoding: "utf8" });
  // 200 lines of a package manager's output go to the log, not the terminal
  const ok = run("for i in $(seq 200); do echo output line $i; done");
  expect(ok.trim().split("\n")).toEqual([expect.stringMatching(/^torchlm: a step \(\d+\.\d s\)$/)]);
  expect(readFileSync(join(dir, "step.log"), "utf8")).toContain("output line 200");
  const failed = run("echo the reason it failed; exit 3");
  expect(failed).toMatch(/^FAILED: a step failed after \d+\.\d s \(exit 3\); the end of .*step\.log:/);
  expect(failed).toContain("the reason it failed");
  rmSync(dir, { recursive: true, force: true });
});
