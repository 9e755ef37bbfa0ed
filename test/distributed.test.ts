// Data-parallel training on c10d/Gloo over loopback: the launcher, the sampler, parity with one process, failures.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readdirSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { pathToFileURL } from "node:url";
import { DistributedSampler, LlamaForCausalLM, load_file } from "../lib/index.js";
import { farParams, relNorm } from "./helpers/params.js";
import { shard } from "../lib/distributed.js";
import { tinyModelDir } from "./helpers/tiny.js";

const root = join(import.meta.dirname ?? process.cwd(), "..");
const cli = join(root, "dist", "lib", "cli.js");
const child = join(root, "test", "child", "ddp-train.mjs");
const distIndex = pathToFileURL(join(root, "dist", "lib", "index.js")).href;
const env = { ...process.env, TORCHLM_NO_PROGRESS: "1" };
const run = promisify(execFile);
const out = () => mkdtempSync(join(tmpdir(), "torchlm-ddp-"));

/** `node ddp-train.mjs` alone, or through `torchlm launch` on 2 ranks; resolves to rank 0's JSON line. */
async function train(ranks: 1 | 2, dir: string, bs: number, steps: number, mode = "ok", model = tinyModelDir()) {
  const args = [child, distIndex, model, dir, String(bs), String(steps), mode];
  const cmd = ranks === 1 ? args : [cli, "launch", "--nproc-per-node", "2", "--master-port", "0", ...args];
  const { stdout } = await run(process.execPath, cmd, { env, timeout: 120_000 });
  return JSON.parse(stdout.trim().split("\n").pop()!) as { world: number; log_history: Record<string, number>[] };
}

describe("the distributed sampler", () => {
  test("shards are disjoint, cover the dataset, and are padded as PyTorch's DistributedSampler pads them", () => {
    // torch.utils.data.DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False)
    const order = Array.from({ length: 10 }, (_, i) => i);
    expect([0, 1, 2].map((r) => shard(order, 3, r))).toEqual([
      [0, 3, 6, 9],
      [1, 4, 7, 0],
      [2, 5, 8, 1],
    ]);
    expect([0, 1, 2].map((r) => shard(order, 3, r, true))).toEqual([
      [0, 3, 6],
      [1, 4, 7],
      [2, 5, 8],
    ]);
    for (const [n, world] of [
      [24, 2],
      [25, 4],
      [7, 3],
      [1000, 8],
    ] as const) {
      const shards = Array.from(
        { length: world },
        (_, r) => new DistributedSampler(n, { num_replicas: world, rank: r, seed: 3 }),
      );
      shards.forEach((s) => s.set_epoch(2));
      const all = shards.map((s) => s.indices());
      expect(new Set(all.flat())).toEqual(new Set(Array.from({ length: n }, (_, i) => i)));
      const total = Math.ceil(n / world) * world;
      // exactly total - n duplicates (the padding); with no padding, every index once
      expect(all.flat().length).toBe(total);
      for (const s of all) expect(s.length).toBe(shards[0]!.length);
      if (total === n) expect(new Set(all.flat()).size).toBe(n);
    }
    const s = new DistributedSampler(100, { num_replicas: 2, rank: 0 });
    const e0 = s.indices();
    s.set_epoch(1);
    expect(s.indices()).not.toEqual(e0);
    expect(() => new DistributedSampler(10, { num_replicas: 2, rank: 2 })).toThrow(
      "Expected integer between 0 and 1 for rank but received 2",
    );
  });
});

describe("data-parallel training (2 ranks, Gloo over 127.0.0.1)", () => {
  test("2 ranks x batch 2 = 1 process x batch 4 (parameters, logs); checkpoints resume on every rank", async () => {
    const one = out(),
      two = out();
    const a = await train(1, one, 4, 3);
    const b = await train(2, two, 2, 3);
    expect([a.world, b.world]).toEqual([1, 2]);
    expect(await farParams(join(one, "final", "model.safetensors"), join(two, "final", "model.safetensors"))).toEqual(
      [],
    );
    const pb = await load_file(join(two, "final", "model.safetensors"));
    // logs: the loss averaged over the ranks, the global grad norm, the same eval loss over the (unpadded) shards
    const pick = (h: Record<string, number>[]) => h.filter((r) => "loss" in r || "eval_loss" in r);
    expect(pick(b.log_history).length).toBe(pick(a.log_history).length);
    pick(a.log_history).forEach((r, i) => {
      const q = pick(b.log_history)[i]!;
      for (const k of ["loss", "grad_norm", "eval_loss", "learning_rate", "epoch"])
        if (k in r) expect(Math.abs(r[k]! - q[k]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(r[k]!)));
    });
    // rank 0 wrote the checkpoint, with one RNG state per rank; resuming from step 2 on 2 ranks ends where the full run
    // ended
    expect(
      readdirSync(join(two, "checkpoint-2"))
        .filter((f) => f.startsWith("rng_state"))
        .sort(),
    ).toEqual(["rng_state_0.safetensors", "rng_state_1.safetensors"]);
    const r = await train(2, two, 2, 3, "resume");
    const pr = await load_file(join(two, "final", "model.safetensors"));
    for (const [name, t] of Object.entries(pb)) expect(relNorm(t, pr[name]!)).toBeLessThan(1e-6);
    expect(r.log_history.filter((x) => "loss" in x).map((x) => x.step)).toEqual([1, 2, 3]);
  }, 240_000);

  test("LoRA: 2 ranks x batch 2 give 1 process x batch 4's adapter (rank 0's init wins)", async () => {
    const one = out(),
      two = out();
    const a = await train(1, one, 4, 3, "lora");
    const b = await train(2, two, 2, 3, "lora");
    const pa = await load_file(join(one, "final", "adapter_model.safetensors"));
    const pb = await load_file(join(two, "final", "adapter_model.safetensors"));
    expect(Object.keys(pb).sort()).toEqual(Object.keys(pa).sort());
    for (const [name, t] of Object.entries(pa)) expect(relNorm(t, pb[name]!)).toBeLessThan(1e-5);
    const losses = (h: Record<string, number>[]) => h.filter((r) => "loss" in r).map((r) => r.loss!);
    losses(a.log_history).forEach((l, i) => expect(Math.abs(l - losses(b.log_history)[i]!)).toBeLessThan(1e-5 * l));
  }, 240_000);

  test("Llama: 2 ranks x batch 2 = 1 process x batch 4, the whole model and LoRA on seven layers", async () => {
    const model = out();
    const m = await LlamaForCausalLM.from_config(
      {
        vocab_size: 320,
        hidden_size: 64,
        intermediate_size: 96,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        tie_word_embeddings: false,
      },
      { seed: 3 },
    );
    await m.save_pretrained(model);
    await m.dispose();
    for (const [mode, file] of [
      ["ok", "model.safetensors"],
      ["lora", "adapter_model.safetensors"],
    ] as const) {
      const one = out(),
        two = out();
      const a = await train(1, one, 4, 3, mode, model);
      const b = await train(2, two, 2, 3, mode, model);
      const pa = await load_file(join(one, "final", file));
      const pb = await load_file(join(two, "final", file));
      expect(Object.keys(pb).sort()).toEqual(Object.keys(pa).sort());
      // a B matrix starts at zero, so it is all AdamW's first updates, about lr times the sign of each gradient: where
      // an element's gradient is near zero, the two summation orders' rounding can flip it (1.5e-5 seen, q_proj's B)
      for (const [name, t] of Object.entries(pa)) {
        const d = relNorm(t, pb[name]!);
        expect({ name, d, close: d < (name.includes("lora_B") ? 1e-4 : 1e-5) }).toEqual({ name, d, close: true });
      }
      const losses = (h: Record<string, number>[]) => h.filter((r) => "loss" in r).map((r) => r.loss!);
      expect(losses(b.log_history)).toHaveLength(3);
      losses(a.log_history).forEach((l, i) => expect(Math.abs(l - losses(b.log_history)[i]!)).toBeLessThan(1e-5 * l));
    }
  }, 300_000);

  test("a rank killed with SIGKILL ends the job: the launcher stops the others and exits non-zero", async () => {
    const t0 = Date.now();
    const err = await train(2, out(), 2, 6, "kill").then(
      () => null,
      (e) => e,
    );
    expect(err).not.toBeNull();
    expect(err.code).toBe(137);
    expect(err.stderr).toMatch(/rank 1 \(pid \d+\) was killed by SIGKILL; stopping the other ranks/);
    expect(Date.now() - t0).toBeLessThan(60_000);
  }, 120_000);

  test("an exception on one rank ends the job with its error", async () => {
    const err = await train(2, out(), 2, 6, "throw").then(
      () => null,
      (e) => e,
    );
    expect(err?.code).toBe(1);
    expect(err.stderr).toMatch(/rank 1 failed on purpose/);
  }, 120_000);

  test("without the launcher, a rank that dies makes its peer fail with a clear error instead of hanging", async () => {
    const port = 20000 + (process.pid % 20000);
    const t0 = Date.now();
    const ranks = [0, 1].map((rank) =>
      spawn(process.execPath, [child, distIndex, tinyModelDir(), out(), "2", "6", "kill"], {
        env: { ...env, RANK: String(rank), WORLD_SIZE: "2", MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port) },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    let stderr0 = "";
    ranks[0]!.stderr!.on("data", (d) => {
      stderr0 += d;
    });
    const codes = await Promise.all(
      ranks.map((p) => new Promise<number | string>((res) => p.on("exit", (c, s) => res(c ?? s!)))),
    );
    expect(codes[1]).toBe("SIGKILL");
    expect(codes[0]).not.toBe(0);
    expect(stderr0).toMatch(/Connection closed by peer|Connection reset|timed out/i);
    expect(Date.now() - t0).toBeLessThan(90_000);
  }, 120_000);

  test("the master's port taken: rank 0 says so at once, naming the port and the option", async () => {
    const held = createServer();
    await new Promise<void>((r) => held.listen(0, "127.0.0.1", r));
    const port = (held.address() as AddressInfo).port;
    const t0 = Date.now();
    const args = [child, distIndex, tinyModelDir(), out(), "1", "3", "long"];
    const err = await run(
      process.execPath,
      [cli, "launch", "--nproc-per-node", "2", "--master-port", String(port), ...args],
      {
        env,
        timeout: 60_000,
      },
    ).then(
      () => null,
      (e) => e,
    );
    held.close();
    expect(err?.code).toBe(1);
    expect(err.stderr).toMatch(new RegExp(`The master port ${port} is taken on this machine .* --master-port`));
    expect(Date.now() - t0).toBeLessThan(30_000);
  }, 60_000);

  test("launchers that disagree on the world size: every rank ends at once, naming the disagreement", async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = String((probe.address() as AddressInfo).port);
    await new Promise((r) => probe.close(r));
    const dir = out();
    const t0 = Date.now();
    // node 0 starts 2 ranks of 2 x 2 = 4; node 1 starts 1 of 2 x 1 = 2
    const launch = (node: number, nproc: number) =>
      run(
        process.execPath,
        [cli, "launch", "--nnodes", "2", "--node-rank", String(node), "--nproc-per-node", String(nproc)].concat([
          "--master-port",
          port,
          child,
          distIndex,
          tinyModelDir(),
          dir,
          "1",
          "3",
          "long",
        ]),
        { env, timeout: 60_000 },
      ).then(
        () => ({ code: 0, stderr: "" }),
        (e) => e as { code: number; stderr: string },
      );
    const [a, b] = await Promise.all([launch(0, 2), launch(1, 1)]);
    const said = new RegExp(
      "rank 1 was started with a world size of 2 and rank 0 with 4: every node's torchlm launch needs the same " +
        "--nnodes and --nproc-per-node",
    );
    for (const x of [a, b]) {
      expect(x.code).not.toBe(0);
      expect(x.stderr).toMatch(said);
    }
    // well within the default timeout (30 minutes) and ddp_timeout's 60 s in ddp-train.mjs
    expect(Date.now() - t0).toBeLessThan(30_000);
  }, 60_000);

  test("two processes started as one rank: every rank ends at once, naming it", async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = String((probe.address() as AddressInfo).port);
    await new Promise((r) => probe.close(r));
    const t0 = Date.now();
    const rank = (r: number) =>
      run(process.execPath, [child, distIndex, tinyModelDir(), out(), "1", "3", "long"], {
        env: { ...env, RANK: String(r), WORLD_SIZE: "3", MASTER_ADDR: "127.0.0.1", MASTER_PORT: port },
        timeout: 60_000,
      }).then(
        () => ({ code: 0, stderr: "" }),
        (e) => e as { code: number; stderr: string },
      );
    const first = rank(0);
    await new Promise((r) => setTimeout(r, 300));
    const ranks = [first, rank(1), rank(1)];
    for (const x of await Promise.all(ranks)) {
      expect(x.code).not.toBe(0);
      expect(x.stderr).toMatch(/two processes were started as rank 1: each node's torchlm launch needs its own/);
    }
    expect(Date.now() - t0).toBeLessThan(30_000);
  }, 60_000);
});
