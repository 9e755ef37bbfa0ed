import { check, invalid, native } from "./errors.js";
import { binding } from "./native.js";

/** True when libtorch was built with CUDA and a GPU is visible. */
export function cuda_is_available(): boolean {
  return binding.cudaIsAvailable();
}
/** True on Apple GPUs with a libtorch that has MPS. */
export function mps_is_available(): boolean {
  return binding.mpsIsAvailable();
}
/** "cuda" when present, else "mps", else "cpu". */
export function default_device(): "cuda" | "mps" | "cpu" {
  if (cuda_is_available()) return "cuda";
  if (mps_is_available()) return "mps";
  return "cpu";
}
/** libtorch's intra-op threads (default: the cores available, not libtorch's 1). */
export function set_num_threads(n: number): void {
  check.integer("num_threads", n, 1, 1024);
  binding.setNumThreads({ threads: n });
}
export function get_num_threads(): number {
  return binding.getNumThreads();
}

/** Seeds libtorch's generators (CPU and CUDA); torchlm's JavaScript-side shuffles take seeds explicitly. */
export function set_seed(seed: number): void {
  check.integer("seed", seed, 0, Number.MAX_SAFE_INTEGER);
  native(() => binding.manualSeed({ seed }));
}

/**
 * Bytes the CPU allocator holds for reuse, in no tensor (as torch.cuda.memory_reserved less what is allocated): they
 * count in the process's RSS, and the next tensors of those sizes take them instead of faulting in fresh pages.
 */
export function memory_reserved(): number {
  return binding.cpuMemoryReserved();
}

/** Gives the CPU allocator's cached blocks back to the system (as torch.cuda.empty_cache). */
export function empty_cache(): void {
  binding.cpuEmptyCache();
}

/** libtorch version, devices, threads and BLAS as the addon sees them. */
export function torch_info(): ReturnType<typeof binding.info> {
  return binding.info();
}

/** Validates a device name ("cpu", "cuda", "cuda:N", "mps"); availability is checked natively. */
export function checkDevice(name: string, v: unknown): string {
  if (typeof v !== "string" || !/^(cpu|mps|cuda(:\d+)?)$/.test(v)) throw invalid(name, "cpu, cuda, cuda:N or mps", v);
  return v;
}
