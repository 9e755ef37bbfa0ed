// The bench's peers in child processes (transformers and transformers.js), answering one JSON line per command, so
// their runs interleave with torchlm's; and the bench's own Python, made on first use.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { packageRoot } from "../lib/native.js";

const root = packageRoot();

/** A peer in a child process that answers one JSON line per command line, so its runs interleave with torchlm's. */
export class Peer {
  #lines: string[] = [];
  #waiters: { res: (l: string) => void; rej: (e: Error) => void }[] = [];
  #exited: Error | null = null;
  ready: Record<string, unknown> = {};
  private constructor(
    private name: string,
    private child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on("line", (l) => {
      const w = this.#waiters.shift();
      if (w) w.res(l);
      else this.#lines.push(l);
    });
    child.on("exit", (c) => {
      this.#exited = new Error(`${name} exited (${c})`);
      for (const w of this.#waiters.splice(0)) w.rej(this.#exited);
    });
  }
  #next(): Promise<string> {
    const l = this.#lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.#exited) return Promise.reject(this.#exited);
    return new Promise((res, rej) => this.#waiters.push({ res, rej }));
  }
  static async start(name: string, cmd: string, args: string[]): Promise<Peer> {
    const p = new Peer(name, spawn(cmd, args, { stdio: ["pipe", "pipe", "inherit"] }));
    p.ready = JSON.parse(await p.#next());
    if (!p.ready.ready) throw new Error(JSON.stringify(p.ready));
    return p;
  }
  async run(cmd: string): Promise<{ seconds: number; tokens?: number[] }> {
    this.child.stdin!.write(cmd + "\n");
    const r = JSON.parse(await this.#next());
    if (r.error) throw new Error(`${this.name}: ${r.error}`);
    return r;
  }
  /** Ends the child and waits for it to exit (its thread pool must not share the cores with what is measured next). */
  stop(): Promise<void> {
    if (this.#exited) return Promise.resolve();
    return new Promise((res) => {
      this.child.once("exit", () => res());
      this.child.stdin!.end("quit\n");
    });
  }
}

/**
 * The bench's own Python (bench/.peers/venv: the pinned torch, transformers and onnx), made on first use;
 * TORCHLM_BENCH_PYTHON names another one that has them.
 */
let benchPy: string | undefined = process.env.TORCHLM_BENCH_PYTHON || undefined;
export async function benchPython(): Promise<string> {
  if (benchPy) return benchPy;
  // the build scripts' plain ES module, from the package root (tsc does not copy it into dist/)
  const { ensureVenv } = await import(pathToFileURL(join(root, "scripts", "python-env.mjs")).href);
  return (benchPy ??= ensureVenv(join(root, "bench", ".peers", "venv"), "bench", {
    why: "the bench's Python peers",
  }) as string);
}

/** transformers.js (bench/peer/run.mjs) on an ONNX export of the weights, both installed on first use. */
export async function startTransformersJs(weightsDir: string, threads: number): Promise<Peer> {
  const dir = join(root, "bench", "peer");
  if (!existsSync(join(dir, "node_modules", "@huggingface", "transformers"))) {
    console.log("installing transformers.js into bench/peer (npm install --ignore-scripts)");
    execFileSync("npm", ["install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", dir], {
      stdio: ["ignore", "inherit", "inherit"],
    });
  }
  const onnxDir = weightsDir + "-onnx";
  if (!existsSync(join(onnxDir, "onnx", "model.onnx"))) {
    console.log(`exporting the weights to ONNX (${onnxDir}) with torch.onnx.export`);
    execFileSync(await benchPython(), [join(root, "bench", "export_onnx.py"), weightsDir, onnxDir], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  return Peer.start("transformers.js", process.execPath, [join(dir, "run.mjs"), onnxDir, String(threads)]);
}
