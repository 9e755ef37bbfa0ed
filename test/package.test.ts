// The package as a user gets it: `npm pack` (prepack puts the prebuilt addon in), then `npm install <tarball>` in a
// fresh project outside the checkout with cmake and the compilers hidden behind shims that fail and say so; then a
// generate, a training step, CommonJS, the CLI and the types from that project. Nothing may be compiled.
import { execFile, execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const root = join(import.meta.dirname ?? process.cwd(), "..");
const run = promisify(execFile);
const COMPILERS = ["cmake", "make", "ninja", "cc", "c++", "gcc", "g++", "clang", "clang++", "nvcc", "node-gyp"];

const work = mkdtempSync(join(tmpdir(), "torchlm-package-"));
const shims = join(work, "shims");
const compiled = join(work, "compiled.txt");
const app = join(work, "app");
let tarball = "";
let installLog = "";
let installSeconds = 0;

/** The environment of a user's shell: no test addon, no compiler on PATH, pip's torch in python3 (TORCHLM_PYTHON). */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${shims}:${process.env.PATH}` };
  for (const k of Object.keys(env))
    if (/^(TORCHLM_BINARY|TORCHLM_TEST|npm_|NODE_OPTIONS|INIT_CWD)/.test(k)) delete env[k];
  const venv = join(root, ".venv", "bin", "python");
  if (existsSync(venv)) env.TORCHLM_PYTHON = venv;
  return { ...env, ...extra };
}

/** Node, in the app's folder, as the user runs it; stdout. */
async function inApp(cmd: string, args: string[], env = userEnv()): Promise<string> {
  const r = await run(cmd, args, { cwd: app, env, encoding: "utf8", maxBuffer: 64 << 20 });
  return r.stdout;
}

beforeAll(async () => {
  mkdirSync(shims);
  for (const c of COMPILERS) {
    writeFileSync(
      join(shims, c),
      `#!/bin/sh\necho "$0 $*" >> ${JSON.stringify(compiled)}\n` +
        `echo "${c} is hidden by the package test" >&2\nexit 127\n`,
    );
    chmodSync(join(shims, c), 0o755);
  }
  // npm pack in a copy of the package, so that prepack's TypeScript build and prebuilt addon leave the checkout's
  // dist/ and prebuilds/ as the other suites see them
  const pkg = join(work, "pkg");
  mkdirSync(pkg);
  for (const f of ["package.json", "README.md", "CMakeLists.txt", "binding.gyp", "tsconfig.json"])
    cpSync(join(root, f), join(pkg, f));
  for (const d of ["bin", "lib", "examples", "bench", "native", "scripts"])
    cpSync(join(root, d), join(pkg, d), { recursive: true, filter: (s) => !s.includes(".peers") });
  if (existsSync(join(root, "prebuilds"))) cpSync(join(root, "prebuilds"), join(pkg, "prebuilds"), { recursive: true });
  mkdirSync(join(pkg, "build", "Release"), { recursive: true });
  cpSync(join(root, "build", "Release", "torchlm.node"), join(pkg, "build", "Release", "torchlm.node"));
  symlinkSync(join(root, "node_modules"), join(pkg, "node_modules"), "dir");
  await run("npm", ["pack", "--pack-destination", work], { cwd: pkg, env: { ...process.env, PATH: process.env.PATH } });
  tarball = join(
    work,
    readdirSync(work).find((f) => f.endsWith(".tgz"))!,
  );

  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
  const t0 = Date.now();
  installLog = await inApp("npm", ["install", "--no-audit", "--no-fund", "--foreground-scripts", tarball]);
  installSeconds = (Date.now() - t0) / 1000;
  console.log(`npm install <tarball>: ${installSeconds.toFixed(1)} s\n${installLog}`);
}, 600000);

test("the tarball holds the prebuilt addons made here, and is small", () => {
  const files = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n");
  const prebuilt = files.filter((f) => /^package\/prebuilds\/[^/]+\/torchlm\.node$/.test(f));
  expect(prebuilt).toContain("package/prebuilds/linux-x64-torch2.13.0-cpu/torchlm.node");
  // the CUDA build (scripts/cuda-build.sh, where nvcc is) makes the CUDA one
  const cuda = existsSync(join(root, "prebuilds"))
    ? readdirSync(join(root, "prebuilds")).filter((d) => /^linux-x64-torch2\.14\.1-cu\d+$/.test(d))
    : [];
  for (const d of cuda) expect(prebuilt).toContain(`package/prebuilds/${d}/torchlm.node`);
  expect(files.filter((f) => /\.(node|so)$/.test(f) && !f.startsWith("package/prebuilds/"))).toEqual([]);
  expect(statSync(tarball).size).toBeLessThan(40 << 20);
});

test("npm install <tarball> uses the prebuilt addon: nothing compiled, nothing asked of root", () => {
  expect(existsSync(compiled) ? readFileSync(compiled, "utf8") : "").toBe("");
  expect(installLog).toMatch(/torchlm: using the prebuilt addon linux-x64-torch2\.13\.0-cpu .*nothing compiled/);
  expect(installLog).not.toMatch(/apt-get|cmake-js/);
  const pkg = join(app, "node_modules", "torchlm");
  expect(existsSync(join(pkg, "build-logs"))).toBe(false);
  expect(JSON.parse(readFileSync(join(pkg, "build", "Release", "torchlm.json"), "utf8"))).toMatchObject({
    from: "prebuilt",
    version: "2.13.0",
    variant: "cpu",
  });
  // the addon finds libtorch through its RPATH and build/libtorch, with no LD_LIBRARY_PATH
  expect(execFileSync("readelf", ["-d", join(pkg, "build", "Release", "torchlm.node")], { encoding: "utf8" })).toMatch(
    /RUNPATH.*\[\$ORIGIN\/\.\.\/libtorch\]/,
  );
  expect(existsSync(realpathSync(join(pkg, "build", "libtorch", "libtorch.so")))).toBe(true);
});

test("from the app: a generate and a training step (ESM), CommonJS, and npx torchlm", async () => {
  writeFileSync(
    join(app, "train.mjs"),
    `import { GPT2LMHeadModel, AutoModelForCausalLM, Dataset, Trainer, TrainingArguments, tensor } from "torchlm";
const config = { vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 2 };
const m = await GPT2LMHeadModel.from_config(config, { seed: 1 });
await m.save_pretrained("tiny");
const model = await AutoModelForCausalLM.from_pretrained("tiny");
const out = await model.generate([[1, 2, 3]], { max_new_tokens: 4 });
const rows = Array.from({ length: 4 }, (_, i) => Array.from({ length: 8 }, (_, j) => (i * 7 + j * 3) % 64));
const args = new TrainingArguments({ output_dir: "out", per_device_train_batch_size: 2, max_steps: 1,
  logging_steps: 1, save_strategy: "no", disable_tqdm: true, plot_loss: false, report_to: "none" });
const collate = (r) => {
  const ids = tensor(r.map((x) => x.input_ids));
  return { input_ids: ids, labels: ids.clone() };
};
const train_dataset = Dataset.from_dict({ input_ids: rows });
const trainer = new Trainer({ model, args, train_dataset, data_collator: collate });
await trainer.train();
const loss = trainer.state.log_history.find((r) => "loss" in r).loss;
console.log(JSON.stringify({ shape: out.shape, loss }));
`,
  );
  const esm = JSON.parse((await inApp(process.execPath, ["train.mjs"])).trim().split("\n").pop()!);
  expect(esm.shape).toEqual([1, 7]);
  expect(esm.loss).toBeGreaterThan(Math.log(64) - 1);
  expect(esm.loss).toBeLessThan(Math.log(64) + 1);

  writeFileSync(
    join(app, "generate.cjs"),
    `const { AutoModelForCausalLM } = require("torchlm");
AutoModelForCausalLM.from_pretrained("tiny").then(async (m) => {
  const out = await m.generate([[1, 2, 3]], { max_new_tokens: 2 });
  console.log(JSON.stringify(out.shape));
});
`,
  );
  const cjs = await inApp(process.execPath, ["--no-warnings", "generate.cjs"]);
  expect(JSON.parse(cjs.trim().split("\n").pop()!)).toEqual([1, 5]);

  const info = JSON.parse(await inApp("npx", ["--no-install", "torchlm", "info"]));
  expect(info.torch_version).toMatch(/^2\.13\.0/);
  expect(existsSync(compiled) ? readFileSync(compiled, "utf8") : "").toBe("");
}, 300000);

test("its types check in a strict NodeNext project without skipLibCheck", async () => {
  writeFileSync(
    join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: "NodeNext",
        moduleResolution: "NodeNext",
        target: "ES2022",
        noEmit: true,
        skipLibCheck: false,
        types: ["node"],
        typeRoots: [join(root, "node_modules", "@types")],
      },
      files: ["check.mts"],
    }),
  );
  writeFileSync(
    join(app, "check.mts"),
    `import { AutoModelForCausalLM, AutoTokenizer, pipeline, type GenerateOptions } from "torchlm";
import { serve } from "torchlm/serve";
const options: GenerateOptions = { max_new_tokens: 4, do_sample: false };
const model = await AutoModelForCausalLM.from_pretrained("tiny");
const ids: number[][] = (await model.generate([[1, 2]], options)).tolist() as number[][];
const tok: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>> | null = null;
void [ids, tok, pipeline, serve];
`,
  );
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  const r = await run(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: app, encoding: "utf8" }).catch(
    (e: { stdout: string }) => ({ stdout: e.stdout, failed: true }),
  );
  expect(r.stdout).toBe("");
  expect("failed" in r).toBe(false);
}, 120000);

// A fresh machine without torch, as a user without root: torchlm puts the pinned torch into its own .venv with pip
// and uses the prebuilt addon. Needs root here (to become `nobody`) and a python3 with venv outside root's home.
const system = "/usr/bin/python3";
const canDrop =
  process.getuid?.() === 0 &&
  existsSync("/usr/bin/setpriv") &&
  spawnSync(system, ["-c", "import venv, ensurepip"]).status === 0;
(canDrop ? test : test.skip)(
  "as a user without root on a machine without torch: pip's torch into torchlm's .venv, nothing compiled",
  async () => {
    const dir = mkdtempSync("/tmp/torchlm-nobody-");
    try {
      for (const d of ["home", "app"]) mkdirSync(join(dir, d));
      cpSync(tarball, join(dir, "torchlm.tgz"));
      writeFileSync(join(dir, "app", "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
      writeFileSync(
        join(dir, "app", "generate.mjs"),
        `import { GPT2LMHeadModel } from "torchlm";
const m = await GPT2LMHeadModel.from_config({ vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 2 });
console.log(JSON.stringify((await m.generate([[1, 2, 3]], { max_new_tokens: 4 })).shape));
`,
      );
      chmodSync(dir, 0o755);
      execFileSync("chown", ["-R", "nobody", join(dir, "home"), join(dir, "app")]);
      const env = userEnv({
        HOME: join(dir, "home"),
        npm_config_cache: join(dir, "home", ".npm"),
        npm_config_update_notifier: "false",
        TMPDIR: join(dir, "home"),
        TORCHLM_PYTHON: system,
        PATH: `${shims}:${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
      });
      const asNobody = (cmd: string) =>
        run("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c", cmd], {
          cwd: join(dir, "app"),
          env,
          encoding: "utf8",
          maxBuffer: 64 << 20,
        });
      const t0 = Date.now();
      const install = await asNobody(`npm install --no-audit --no-fund --foreground-scripts ${dir}/torchlm.tgz`).catch(
        (e: { stdout: string; stderr: string }) => {
          throw new Error(`npm install as nobody failed:\n${e.stdout}\n${e.stderr}`);
        },
      );
      console.log(
        `as nobody, without torch: npm install <tarball> ${((Date.now() - t0) / 1000).toFixed(1)} s\n${install.stdout}`,
      );
      expect(install.stdout).toMatch(/pip install torch==2\.13\.0/);
      expect(install.stdout).toMatch(
        /using the prebuilt addon linux-x64-torch2\.13\.0-cpu .*own environment.*nothing compiled/,
      );
      expect(JSON.parse((await asNobody(`node generate.mjs`)).stdout.trim().split("\n").pop()!)).toEqual([1, 7]);
      expect(existsSync(compiled) ? readFileSync(compiled, "utf8") : "").toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  600000,
);

test("a libtorch no prebuilt matches falls back to compiling, and says what to install", async () => {
  // an unpacked libtorch of another version (its CMake package and an empty lib/)
  const fake = join(work, "libtorch-2.5.1");
  mkdirSync(join(fake, "share", "cmake", "Torch"), { recursive: true });
  mkdirSync(join(fake, "lib"));
  writeFileSync(join(fake, "share", "cmake", "Torch", "TorchConfig.cmake"), "");
  writeFileSync(join(fake, "share", "cmake", "Torch", "TorchConfigVersion.cmake"), 'set(PACKAGE_VERSION "2.5.1")\n');
  writeFileSync(join(fake, "build-version"), "2.5.1+cpu\n");
  const r = await run("npm", ["rebuild", "torchlm", "--foreground-scripts"], {
    cwd: app,
    env: userEnv({ LIBTORCH: fake }),
    encoding: "utf8",
  }).then(
    (x) => ({ out: x.stdout + x.stderr, failed: false }),
    (e: { stdout: string; stderr: string }) => ({ out: e.stdout + e.stderr, failed: true }),
  );
  expect(r.failed).toBe(true);
  expect(r.out).toMatch(/set up for libtorch 2\.13\.0 \(cpu\).*found 2\.5\.1 \(cpu\)/);
  expect(r.out).toMatch(/no prebuilt addon for linux-x64-torch2\.5\.1-cpu in this package .*: compiling it/);
  expect(r.out).toMatch(/needs cmake, a C\+\+20 compiler.*pip install torch==2\.13\.0 \(cpu, linux-x64\)/s);
  // the shims saw the attempt: compiling is what it fell back to
  expect(readFileSync(compiled, "utf8")).toMatch(/cmake/);
}, 300000);
