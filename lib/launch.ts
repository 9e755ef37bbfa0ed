// `torchlm launch`: torchrun for Node scripts. Starts one process per rank with torchrun's variables,
// forwards signals, and ends the whole job when one rank fails.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { availableParallelism, constants } from "node:os";
import { check, InvalidArgumentError } from "./errors.js";

export interface LaunchOptions {
  nproc_per_node: number;
  nnodes?: number;
  node_rank?: number;
  master_addr?: string;
  /** 0 picks a free port (one machine only). */
  master_port?: number;
  /** Seconds the other ranks get to stop after one fails, before SIGKILL. */
  grace_period?: number;
  /** Where rank messages go (stderr by default). */
  log?: (line: string) => void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs `node script ...args` once per local rank; resolves to the job's exit code. */
export async function launch(script: string, args: string[], options: LaunchOptions): Promise<number> {
  const nproc = check.integer("nproc_per_node", options.nproc_per_node, 1);
  const nnodes = check.integer("nnodes", options.nnodes ?? 1, 1);
  const nodeRank = check.integer("node_rank", options.node_rank ?? 0, 0, nnodes - 1);
  const addr = check.string("master_addr", options.master_addr ?? "127.0.0.1");
  let port = check.integer("master_port", options.master_port ?? 29500, 0, 65535);
  const grace = check.number("grace_period", options.grace_period ?? 10, 0);
  check.string("script", script);
  const log = options.log ?? ((l: string) => process.stderr.write(l + "\n"));
  if (port === 0) {
    if (nnodes > 1)
      throw new InvalidArgumentError(
        "master_port 0 (a free port) works on one machine only: give every node the same --master-port",
      );
    port = await freePort();
  }
  const world = nproc * nnodes;
  // As torchrun: share the cores between the local ranks unless the user chose a thread count.
  const threads = process.env.OMP_NUM_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / nproc)));

  const children: ChildProcess[] = [];
  let failure: { code: number; rank: number } | null = null;
  let killTimer: NodeJS.Timeout | null = null;
  const alive = () => children.filter((c) => c.exitCode === null && c.signalCode === null);
  const stopOthers = () => {
    for (const c of alive()) c.kill("SIGTERM");
    killTimer ??= setTimeout(() => {
      for (const c of alive()) c.kill("SIGKILL");
    }, grace * 1000);
  };
  const forward = (sig: NodeJS.Signals) => () => {
    for (const c of alive()) c.kill(sig);
  };
  const onInt = forward("SIGINT"),
    onTerm = forward("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  // A launcher that dies takes its ranks with it.
  const onExit = () => {
    for (const c of alive()) c.kill("SIGKILL");
  };
  process.on("exit", onExit);

  try {
    return await new Promise<number>((resolve) => {
      let running = nproc;
      for (let local = 0; local < nproc; local++) {
        const rank = nodeRank * nproc + local;
        const env = {
          ...process.env,
          RANK: String(rank),
          LOCAL_RANK: String(local),
          WORLD_SIZE: String(world),
          LOCAL_WORLD_SIZE: String(nproc),
          GROUP_RANK: String(nodeRank),
          MASTER_ADDR: addr,
          MASTER_PORT: String(port),
          OMP_NUM_THREADS: threads,
        };
        // Own process group: a terminal's Ctrl-C reaches the launcher once, which forwards it once.
        const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
          stdio: "inherit",
          env,
          detached: true,
        });
        children.push(child);
        child.on("error", (e) => log(`torchlm launch: rank ${rank} could not start: ${e.message}`));
        child.on("exit", (code, signal) => {
          const status = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
          if (status !== 0 && !failure) {
            failure = { code: status, rank };
            log(
              `torchlm launch: rank ${rank} (pid ${child.pid}) ` +
                `${signal ? `was killed by ${signal}` : `exited with code ${code}`}; stopping the other ranks`,
            );
            stopOthers();
          }
          if (--running === 0) resolve(failure ? failure.code : 0);
        });
      }
    });
  } finally {
    if (killTimer) clearTimeout(killTimer);
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
    process.off("exit", onExit);
  }
}
