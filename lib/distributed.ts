// torch.distributed, the part data-parallel training needs: env:// rendezvous with torchrun's variables
// (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) on PyTorch's c10d engine (Gloo).
import { createSocket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { networkInterfaces } from "node:os";
import { check, invalid, InvalidArgumentError, isPlainObject, withStack } from "./errors.js";
import { binding, type NativeModel, type NativeProcessGroup } from "./native.js";
import { permutation } from "./datasets.js";

export interface InitProcessGroupOptions {
  /** "gloo" (the CPU backend; CUDA tensors are staged through host memory). */
  backend?: "gloo";
  /** Seconds a rendezvous or collective may wait for the other ranks before failing (PyTorch: 1800). */
  timeout?: number;
  rank?: number;
  world_size?: number;
  master_addr?: string;
  master_port?: number;
}

export interface DistributedEnv {
  rank: number;
  local_rank: number;
  world_size: number;
  master_addr: string;
  master_port: number;
}

let group: NativeProcessGroup | null = null;

function envInt(name: string, fallback: number | null, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") {
    if (fallback === null)
      throw new InvalidArgumentError(
        `${name} is not set: start the job with \`torchlm launch\` (or torchrun's variables RANK, WORLD_SIZE, ` +
          `MASTER_ADDR, MASTER_PORT)`,
      );
    return fallback;
  }
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min)
    throw new InvalidArgumentError(
      `Expected an integer of at least ${min} for the environment variable ${name} but received ${JSON.stringify(raw)}`,
    );
  return v;
}

/** The launch environment (torchrun's variables), or null when WORLD_SIZE is unset or 1. */
export function distributed_env(): DistributedEnv | null {
  const world = envInt("WORLD_SIZE", 1, 1);
  if (world === 1) return null;
  const rank = envInt("RANK", null, 0);
  if (rank >= world) throw new InvalidArgumentError(`RANK ${rank} is not below WORLD_SIZE ${world}`);
  return {
    rank,
    world_size: world,
    local_rank: envInt("LOCAL_RANK", rank, 0),
    master_addr: process.env.MASTER_ADDR || "127.0.0.1",
    master_port: envInt("MASTER_PORT", 29500, 1),
  };
}

/**
 * Where Gloo binds this rank: the interface GLOO_SOCKET_IFNAME names, as in PyTorch; else 127.0.0.1 for a master on
 * this machine's loopback; else the local address the route to the master leaves from. (PyTorch takes the address the
 * host name resolves to, which is 127.0.0.1 on many machines: the other nodes then cannot connect to this rank.)
 */
export async function gloo_device(
  master_addr: string,
  master_port: number,
): Promise<{ gloo_interface: string | null; gloo_address: string }> {
  const ifname = process.env.GLOO_SOCKET_IFNAME;
  if (ifname) {
    const names = Object.keys(networkInterfaces());
    if (!names.includes(ifname))
      throw new InvalidArgumentError(
        `GLOO_SOCKET_IFNAME=${ifname} names no network interface of this machine (it has ${names.join(", ")})`,
      );
    return { gloo_interface: ifname, gloo_address: "" };
  }
  let master: { address: string; family: number };
  try {
    master = await lookup(master_addr);
  } catch (e) {
    throw new InvalidArgumentError(`master_addr ${master_addr} does not resolve: ${(e as Error).message}`);
  }
  if (/^127\./.test(master.address) || master.address === "::1")
    return { gloo_interface: null, gloo_address: "127.0.0.1" };
  // A "connected" UDP socket sends nothing: connect() only asks the kernel for the route, and so the source address.
  const socket = createSocket(master.family === 6 ? "udp6" : "udp4");
  try {
    const local = await new Promise<string>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(master_port, master.address, (err?: Error) =>
        err ? reject(err) : resolve(socket.address().address),
      );
    });
    return { gloo_interface: null, gloo_address: local };
  } catch (e) {
    throw new InvalidArgumentError(
      `No route from this machine to the master at ${master_addr} (${master.address}): ${(e as Error).message}`,
    );
  } finally {
    socket.close();
  }
}

/** Joins the process group (torch.distributed.init_process_group with init_method "env://"). */
export async function init_process_group(options: InitProcessGroupOptions = {}): Promise<void> {
  if (!isPlainObject(options)) throw invalid("init_process_group options", "an object", options);
  check.knownKeys("init_process_group", options, [
    "backend",
    "timeout",
    "rank",
    "world_size",
    "master_addr",
    "master_port",
  ]);
  if (group)
    throw new InvalidArgumentError(
      "The default process group is already initialized: call destroy_process_group() first",
    );
  if (options.backend !== undefined) check.oneOf("backend", options.backend, ["gloo"] as const);
  if (!binding.distributedAvailable) {
    throw new InvalidArgumentError(
      "This torchlm build has no distributed support: libtorch's Gloo headers were missing when it was built " +
        "(install libgloo-dev, then run `npm run build:native`)",
    );
  }
  const env = distributed_env();
  const world = check.integer("world_size", options.world_size ?? env?.world_size ?? 1, 1);
  const rank = check.integer("rank", options.rank ?? env?.rank ?? 0, 0, world - 1);
  const addr = check.string("master_addr", options.master_addr ?? env?.master_addr ?? "127.0.0.1");
  const port = check.integer("master_port", options.master_port ?? env?.master_port ?? 29500, 1, 65535);
  const timeout = check.number("timeout", options.timeout ?? 1800, 0, Infinity, true);
  const device = await gloo_device(addr, port);
  const g = await withStack(() =>
    binding.NativeProcessGroup.connect({
      master_addr: addr,
      master_port: port,
      rank,
      world_size: world,
      timeout_ms: Math.round(timeout * 1000),
      ...device,
    }),
  ).catch((e: unknown) => {
    // rank 0 listens on the master port for the others
    if (e instanceof Error && /EADDRINUSE/.test(e.message))
      throw new InvalidArgumentError(
        `The master port ${port} is taken on this machine (another job, or a process still holding it): rank 0 ` +
          `listens there for the other ranks. Choose another with --master-port (MASTER_PORT). ${e.message}`,
      );
    throw e;
  });
  // Every rank's address, so that a lost connection's peer address can be told as ranks (name_lost_peer).
  const own = device.gloo_interface ? interfaceAddress(device.gloo_interface) : device.gloo_address;
  const octets = new Float64Array(world * 4);
  own.split(".").forEach((o, i) => i < 4 && (octets[rank * 4 + i] = Number(o) || 0));
  const all = await withStack(() => g.allReduce({ values: octets, op: "sum" }));
  peers = Array.from({ length: world }, (_, r) => Array.from(all.slice(r * 4, r * 4 + 4)).join("."));
  group = g;
}

let peers: string[] = [];

function interfaceAddress(name: string): string {
  return networkInterfaces()[name]?.find((a) => a.family === "IPv4")?.address ?? "";
}

/**
 * A collective that failed because a peer's connection closed (its process died, or its node or the network) says
 * which ranks were at that address; other errors pass through.
 */
export function name_lost_peer(e: unknown): unknown {
  if (!(e instanceof Error) || peers.length < 2) return e;
  // Gloo: "Connection closed by peer [10.77.0.2]:64160", "Read error [10.77.0.2]:23722: Connection reset by peer"
  const m = /peer/i.test(e.message) ? /\[(\d+\.\d+\.\d+\.\d+)\]:\d+/.exec(e.message) : null;
  if (!m) return e;
  const ranks = peers.flatMap((a, r) => (a === m[1] && r !== get_rank() ? [r] : []));
  if (ranks.length === 0) return e;
  const who =
    ranks.length > 1 ? `a rank at ${m[1]} (one of ranks ${ranks.join(", ")})` : `rank ${ranks[0]} (at ${m[1]})`;
  const original = e.message;
  e.message = `Lost contact with ${who}: its process ended, or its machine or the network failed. ${original}`;
  // Node prints an uncaught error's stack, which holds the message it was made with
  if (e.stack) e.stack = e.stack.replace(original, e.message);
  return e;
}

export function is_initialized(): boolean {
  return group !== null;
}
export function get_rank(): number {
  return group?.rank ?? 0;
}
export function get_world_size(): number {
  return group?.worldSize ?? 1;
}

/** Leaves the process group. */
export function destroy_process_group(): void {
  group?.dispose();
  group = null;
  peers = [];
}

/** Waits until every rank gets here. */
export async function barrier(): Promise<void> {
  if (group) await withStack(() => group!.barrier());
}

/** Sums (or takes the max of) numbers over the ranks; every rank gets the result. */
export async function all_reduce(values: number[], op: "sum" | "max" = "sum"): Promise<number[]> {
  if (!Array.isArray(values) || values.some((v) => typeof v !== "number"))
    throw invalid("values", "an array of numbers", values);
  check.oneOf("op", op, ["sum", "max"] as const);
  if (!group) return values.slice();
  return Array.from(await withStack(() => group!.allReduce({ values: Float64Array.from(values), op })));
}

/** Copies rank `src`'s parameters into every rank's model. */
export async function broadcast_parameters(model: NativeModel, src = 0): Promise<void> {
  if (group) await withStack(() => group!.broadcastParameters({ model, root: src }));
}

/** @internal the native group, for the Trainer's optimizer. */
export function _default_group(): NativeProcessGroup | null {
  return group;
}

/**
 * Rank `rank`'s share of `order`, as PyTorch's DistributedSampler: padded with the first indices to a
 * multiple of num_replicas (or cut down when drop_last), then every num_replicas-th index from `rank`.
 */
export function shard(order: ArrayLike<number>, num_replicas: number, rank: number, drop_last = false): number[] {
  const n = order.length;
  if (n === 0) return [];
  const numSamples =
    drop_last && n % num_replicas !== 0 ? Math.ceil((n - num_replicas) / num_replicas) : Math.ceil(n / num_replicas);
  const total = numSamples * num_replicas;
  const out: number[] = [];
  for (let i = rank; i < total; i += num_replicas) out.push(order[i % n]!);
  return out;
}

/** PyTorch's DistributedSampler: each rank a disjoint, seeded slice of the dataset, reshuffled by set_epoch. */
export class DistributedSampler implements Iterable<number> {
  readonly num_replicas: number;
  readonly rank: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly drop_last: boolean;
  epoch = 0;
  readonly #n: number;

  constructor(
    dataset: { length: number } | number,
    options: { num_replicas?: number; rank?: number; shuffle?: boolean; seed?: number; drop_last?: boolean } = {},
  ) {
    if (!isPlainObject(options)) throw invalid("DistributedSampler options", "an object", options);
    check.knownKeys("DistributedSampler", options, ["num_replicas", "rank", "shuffle", "seed", "drop_last"]);
    this.#n = check.integer("dataset length", typeof dataset === "number" ? dataset : dataset?.length, 0);
    this.num_replicas = check.integer("num_replicas", options.num_replicas ?? get_world_size(), 1);
    this.rank = check.integer("rank", options.rank ?? get_rank(), 0, this.num_replicas - 1);
    this.shuffle = check.boolean("shuffle", options.shuffle ?? true);
    this.seed = check.integer("seed", options.seed ?? 0, 0);
    this.drop_last = check.boolean("drop_last", options.drop_last ?? false);
  }

  /** Reshuffles for the given epoch (the same epoch gives the same order on every rank). */
  set_epoch(epoch: number): void {
    this.epoch = check.integer("epoch", epoch, 0);
  }

  indices(): number[] {
    const order = this.shuffle
      ? permutation(this.#n, this.seed + this.epoch)
      : Int32Array.from({ length: this.#n }, (_, i) => i);
    return shard(order, this.num_replicas, this.rank, this.drop_last);
  }

  get length(): number {
    return shard(new Int32Array(this.#n), this.num_replicas, this.rank, this.drop_last).length;
  }

  [Symbol.iterator](): Iterator<number> {
    return this.indices()[Symbol.iterator]();
  }
}
