// The bench's and the tests' probes: exported by the testing addon (torchlm_testing.node) alone, never by the shipped
// torchlm.node. testing-addon.ts, imported first, points the library at the testing addon.
import "./testing-addon.js";
import { binding } from "../lib/native.js";

/** Probes for the bench and the tests (native/testing/probes.cc): machine limits, fast-path switches and counters. */
export interface AddonProbes {
  /** Memory-read bytes/s streaming `bytes` on every compute thread (or one), the best of `reps` passes. */
  readBandwidth(bytes: number, reps: number, allThreads?: boolean): Promise<number>;
  /** FLOP/s of the best [M, K] x [K, N] product the addon reaches, the best of `reps`. */
  matmulLimit(M: number, K: number, N: number, reps: number): Promise<number>;
  /** Seconds to allocate and first write `bytes` of fresh memory as the loader does (no file read). */
  firstTouch(bytes: number): Promise<number>;
  /** The batch-1 matrix-vector kernels (on by default); off to measure the lever. */
  setMatvec(on: boolean): void;
  /** How many calls took a matrix-vector fast path so far. */
  matvecCalls(): number;
  /** oneDNN's sgemm for inference linears over many rows (on where libtorch brought oneDNN). */
  setGemm(on: boolean): void;
  /** How many linears took oneDNN's sgemm so far. */
  gemmCalls(): number;
  readonly gemmAvailable: boolean;
  /**
   * The q8 / q4 decoding kernels this CPU runs: "avx512-vnni", "avx2" or "scalar" (TORCHLM_Q8_KERNEL picks a slower
   * one).
   */
  q8Kernel(): string;
  /** The decoding kernels' row split over `rows` rows of `rowBytes` bytes (blocks of whole rows, about 8 KB), rows
   * from `slowFrom` on each taking `slowMicroseconds`: how many times each row was visited, and how many blocks a
   * thread took from another's share. With `thenMicroseconds`, serial work of that length follows the rows with a 2 MB
   * matrix to read ahead meanwhile: how often it ran, how many rows were done when it started, and the bytes read
   * ahead. */
  streamRows(
    rows: number,
    rowBytes: number,
    slowFrom: number,
    slowMicroseconds: number,
    thenMicroseconds?: number,
  ): Promise<{ visits: number[]; helped: number; then?: { calls: number; rowsDone: number; prefetched: number } }>;
}

function load(): AddonProbes {
  const p = (binding as unknown as { probes?: AddonProbes }).probes;
  if (!p) {
    throw new Error(
      `the probes are in the testing addon (build/Release/torchlm_testing.node), but ` +
        `${process.env.TORCHLM_BINARY ?? "torchlm.node"} ` +
        "was loaded: import bench/testing-addon.js before the library, or set TORCHLM_BINARY to the testing addon",
    );
  }
  return p;
}

export const probes: AddonProbes = load();
