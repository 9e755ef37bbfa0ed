// Two machines, simulated with real networking: two Linux network namespaces joined by a veth pair (10.77.0.1 and
// 10.77.0.2), one `torchlm launch --nnodes 2 --node-rank N --nproc-per-node 2` in each. Nothing tells a rank which
// interface to use: it binds to the address its route to the master leaves from (GLOO_SOCKET_IFNAME still overrides).
// Needs root (ip netns); elsewhere the suite says why it was skipped.
import { execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { farParams } from "./helpers/params.js";
import { tinyModelDir } from "./helpers/tiny.js";

const root = join(import.meta.dirname ?? process.cwd(), "..");
const cli = join(root, "dist", "lib", "cli.js");
const child = join(root, "test", "child", "ddp-train.mjs");
const distIndex = pathToFileURL(join(root, "dist", "lib", "index.js")).href;
const run = promisify(execFile);
const out = () => mkdtempSync(join(tmpdir(), "torchlm-2node-"));

const id = process.pid % 10000;
const nodes = [
  { ns: `tlm${id}a`, dev: `tlm${id}va`, addr: "10.77.0.1" },
  { ns: `tlm${id}b`, dev: `tlm${id}vb`, addr: "10.77.0.2" },
] as const;
const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] });

/** Why the namespaces cannot be made here, or null once they are. */
function makeNamespaces(): string | null {
  if (process.platform !== "linux") return "network namespaces are Linux's";
  if (process.getuid?.() !== 0) return "making network namespaces needs root";
  try {
    for (const n of nodes) ip("netns", "add", n.ns);
    ip("link", "add", nodes[0].dev, "type", "veth", "peer", "name", nodes[1].dev);
    for (const n of nodes) {
      ip("link", "set", n.dev, "netns", n.ns);
      ip("-n", n.ns, "addr", "add", `${n.addr}/24`, "dev", n.dev);
      ip("-n", n.ns, "link", "set", n.dev, "up");
      ip("-n", n.ns, "link", "set", "lo", "up");
    }
    return null;
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    return `ip netns failed: ${(err.stderr?.toString() || err.message).trim()}`;
  }
}
const skipped = makeNamespaces();
if (skipped) console.log(`test/multinode.test.ts skipped: ${skipped}`);
afterAll(() => {
  for (const n of nodes)
    try {
      ip("netns", "del", n.ns); // and with it the veth end inside
    } catch {
      // not made
    }
});

const env: NodeJS.ProcessEnv = { ...process.env, TORCHLM_NO_PROGRESS: "1" };
delete env.GLOO_SOCKET_IFNAME;

/** `node ddp-train.mjs` in one namespace as a single process, its JSON line. */
async function single(dir: string, bs: number, steps: number, mode: string) {
  const { stdout } = await run(
    "ip",
    [
      "netns",
      "exec",
      nodes[0].ns,
      process.execPath,
      child,
      distIndex,
      tinyModelDir(),
      dir,
      String(bs),
      String(steps),
      mode,
    ],
    { env, timeout: 120_000 },
  );
  return JSON.parse(stdout.trim().split("\n").pop()!) as { world: number; log_history: Record<string, number>[] };
}

/** One `torchlm launch` per namespace, 2 ranks each; every launcher's exit code, output and seconds. */
function twoNodes(dir: string, bs: number, steps: number, mode: string, extra: (node: number) => object = () => ({})) {
  const port = String(21000 + (process.pid % 20000));
  return Promise.all(
    nodes.map(
      (n, i) =>
        new Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }>((resolve) => {
          const t0 = Date.now();
          const p = spawn(
            "ip",
            [
              "netns",
              "exec",
              n.ns,
              process.execPath,
              cli,
              "launch",
              "--nnodes",
              "2",
              "--node-rank",
              String(i),
              "--nproc-per-node",
              "2",
              "--master-addr",
              nodes[0].addr,
              "--master-port",
              port,
              "--grace-period",
              "5",
              child,
              distIndex,
              tinyModelDir(),
              dir,
              String(bs),
              String(steps),
              mode,
            ],
            { env: { ...env, ...extra(i) }, stdio: ["ignore", "pipe", "pipe"] },
          );
          let stdout = "",
            stderr = "";
          p.stdout.on("data", (d) => (stdout += d));
          p.stderr.on("data", (d) => (stderr += d));
          p.on("exit", (code) => resolve({ code, stdout, stderr, seconds: (Date.now() - t0) / 1000 }));
        }),
    ),
  );
}

(skipped ? describe.skip : describe)("two nodes over a veth pair (network namespaces)", () => {
  test("4 ranks on 2 nodes x batch 1 = 1 process x batch 4, whole and with LoRA (GLOO_SOCKET_IFNAME too)", async () => {
    for (const mode of ["ok", "lora"]) {
      const one = out(),
        two = out();
      const a = await single(one, 4, 3, mode);
      // LoRA's run names the interfaces, as a user who sets GLOO_SOCKET_IFNAME does; the other finds them itself
      const r = await twoNodes(two, 1, 3, mode, (i) => (mode === "lora" ? { GLOO_SOCKET_IFNAME: nodes[i]!.dev } : {}));
      for (const x of r)
        expect({ code: x.code, stderr: x.code === 0 ? "" : x.stderr }).toEqual({ code: 0, stderr: "" });
      const b = JSON.parse(r[0]!.stdout.trim().split("\n").pop()!) as typeof a;
      expect(b.world).toBe(4);
      const file = mode === "lora" ? "adapter_model.safetensors" : "model.safetensors";
      expect(await farParams(join(one, "final", file), join(two, "final", file))).toEqual([]);
      const losses = (h: Record<string, number>[]) => h.filter((x) => "loss" in x).map((x) => x.loss!);
      losses(a.log_history).forEach((l, i) => expect(Math.abs(l - losses(b.log_history)[i]!)).toBeLessThan(1e-5 * l));
    }
  }, 300_000);

  test(
    "a node lost mid-training (its ranks SIGKILLed): the other launcher ends soon, non-zero, naming the lost ranks; " +
      "only whole checkpoints are left, and resuming gives the weights of an uninterrupted run",
    async () => {
      const steps = 12;
      const reference = out();
      const whole = single(reference, 4, steps, "paced");
      const dir = out();
      const jobs = twoNodes(dir, 1, steps, "paced");
      // once the 4 ranks are past checkpoint-4 (rank 0 marks step 5), kill node 1's processes
      for (let i = 0; i < 600 && !existsSync(join(dir, "training")); i++) await new Promise((r) => setTimeout(r, 100));
      expect(existsSync(join(dir, "training"))).toBe(true);
      const t0 = Date.now();
      const pids = execFileSync("ip", ["netns", "pids", nodes[1].ns], { encoding: "utf8" }).split("\n").filter(Boolean);
      expect(pids.length).toBeGreaterThan(0);
      for (const pid of pids) process.kill(Number(pid), "SIGKILL");
      const [a] = await jobs;
      expect(a!.code).not.toBe(0);
      expect(a!.stderr).toMatch(/rank \d \(pid \d+\) exited with code \d+; stopping the other ranks/);
      expect(a!.stderr).toMatch(/Lost contact with a rank at 10\.77\.0\.2 \(one of ranks 2, 3\): its process ended/);
      // within ddp_timeout (60 s in ddp-train.mjs) or sooner: a killed process's connections close at once
      expect((Date.now() - t0) / 1000).toBeLessThan(60);

      // every checkpoint-N on disk is whole: a save cut short stays under its temporary name
      const whole_ = ["model.safetensors", "optimizer.safetensors", "scheduler.json", "trainer_state.json"].concat(
        [0, 1, 2, 3].map((r) => `rng_state_${r}.safetensors`),
      );
      const ckpts = readdirSync(dir).filter((n) => /^checkpoint-\d+$/.test(n));
      expect(ckpts).toEqual(expect.arrayContaining(["checkpoint-2", "checkpoint-4"]));
      for (const c of ckpts) expect(whole_.filter((f) => !existsSync(join(dir, c, f)))).toEqual([]);

      // both nodes again, from the last checkpoint: the weights of the run that was never stopped
      const r = await twoNodes(dir, 1, steps, "paced-resume");
      for (const x of r)
        expect({ code: x.code, stderr: x.code === 0 ? "" : x.stderr }).toEqual({ code: 0, stderr: "" });
      await whole;
      expect(
        await farParams(join(reference, "final", "model.safetensors"), join(dir, "final", "model.safetensors")),
      ).toEqual([]);
    },
    240_000,
  );

  test("a rank that cannot reach the master fails at once, naming it; so does a wrong GLOO_SOCKET_IFNAME", async () => {
    const init = (addr: string) =>
      `const { init_process_group } = await import(${JSON.stringify(distIndex)});
       await init_process_group({ master_addr: ${JSON.stringify(addr)}, master_port: 29999, rank: 1, world_size: 2,
         timeout: 5 });`;
    const fails = (script: string, extra: object = {}) =>
      run("ip", ["netns", "exec", nodes[1].ns, process.execPath, "--input-type=module", "-e", script], {
        env: { ...env, ...extra },
        timeout: 60_000,
      }).then(
        () => "",
        (e: { stderr: string }) => e.stderr,
      );
    expect(await fails(init("10.99.0.1"))).toMatch(/No route from this machine to the master at 10\.99\.0\.1/);
    expect(await fails(init(nodes[0].addr), { GLOO_SOCKET_IFNAME: "eth9" })).toMatch(
      /GLOO_SOCKET_IFNAME=eth9 names no network interface of this machine \(it has lo, tlm\d+vb\)/,
    );
  }, 120_000);
});
