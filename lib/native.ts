// The typed layer over the raw binding, and a loader that explains its own failures.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: string;
  readonly device: string;
  readonly disposed: boolean;
  requires_grad: boolean;
  readonly grad: NativeTensor | null;
  data(): Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;
  item(): number | boolean;
  to(device: string | null, dtype: string | null): NativeTensor;
  permute(dims: number[]): NativeTensor;
  reshape(shape: number[]): NativeTensor;
  view(shape: number[]): NativeTensor;
  slice(dim: number, start: number, end: number | null, step?: number): NativeTensor;
  contiguous(): NativeTensor;
  argmax(dim?: number, keepdim?: boolean): NativeTensor;
  softmax(dim: number): NativeTensor;
  log_softmax(dim: number): NativeTensor;
  backward(gradient?: NativeTensor): void;
  detach(): NativeTensor;
  clone(): NativeTensor;
  compare(op: "eq" | "ne" | "lt" | "le" | "gt" | "ge", other: NativeTensor | number): NativeTensor;
  arith(op: "add" | "sub" | "mul" | "div", other: NativeTensor | number): NativeTensor;
  reduce(op: "sum" | "mean" | "max" | "min", dim: number | null, keepdim: boolean): NativeTensor;
  matmul(other: NativeTensor): NativeTensor;
  dispose(): void;
}

export interface NativeTensorStatic {
  fromBuffer(data: ArrayBufferView, shape: number[], dtype: string, device: string): NativeTensor;
  cat(tensors: NativeTensor[], dim: number): NativeTensor;
}

export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export interface NativeForwardResult {
  logits: NativeTensor;
  loss?: NativeTensor;
  past_key_values?: NativeTensor[];
}

export interface NativeGenerateOptions {
  [key: string]: unknown;
}

export interface NativeModel {
  readonly device: string;
  readonly dtype: string;
  forward(
    input_ids: NativeTensor, attention_mask: NativeTensor | null, position_ids: NativeTensor | null,
    labels: NativeTensor | null, past: NativeTensor[] | null, use_cache: boolean, grad: boolean,
  ): Promise<NativeForwardResult>;
  generate(input_ids: NativeTensor, attention_mask: NativeTensor | null, options: NativeGenerateOptions,
    onTokens: ((tokens: number[]) => void) | null, cancel: Int32Array | null): Promise<NativeTensor>;
  setTraining(on: boolean): void;
  to(device: string | null, dtype: string | null): Promise<void>;
  parameters(): [string, NativeTensor][];
  numParameters(): number;
  zeroGrad(): void;
  save(path: string): Promise<void>;
  loadWeights(path: string, dataStart: number, entries: SafetensorsEntry[]): Promise<void>;
  dispose(): void;
}

export interface NativeModelStatic {
  load(config: object, path: string, dataStart: number, entries: SafetensorsEntry[], device: string, dtype: string | null): Promise<NativeModel>;
  create(config: object, device: string, dtype: string, seed: number | null): Promise<NativeModel>;
}

export interface NativeAdamW {
  step(lr: number): Promise<void>;
  zeroGrad(): void;
  clipGradNorm(max: number): Promise<number>;
  state(): [string, NativeTensor][];
  loadState(state: [string, NativeTensor][]): void;
  trainStep(model: NativeModel, input_ids: NativeTensor, attention_mask: NativeTensor | null, labels: NativeTensor,
    loss_scale: number, step: { lr: number; max_grad_norm: number } | null, amp: number): Promise<{ loss: number; grad_norm?: number }>;
  backward(loss: NativeTensor, scale: number, fp16: boolean): Promise<number>;
  finishStep(lr: number, max_grad_norm: number): Promise<number>;
  lossScale(): number;
  setProcessGroup(pg: NativeProcessGroup | null): void;
}

export interface NativeProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  broadcastParameters(model: NativeModel, root: number): Promise<void>;
  allReduce(values: Float64Array, op: "sum" | "max"): Promise<Float64Array>;
  barrier(): Promise<void>;
  dispose(): void;
}

export interface NativeProcessGroupStatic {
  connect(master_addr: string, master_port: number, rank: number, world_size: number, timeout_ms: number): Promise<NativeProcessGroup>;
}

export interface NativeAdamWStatic {
  new (groups: { params: NativeTensor[]; weight_decay: number }[], beta1: number, beta2: number, eps: number): NativeAdamW;
}

export interface NativeBinding {
  cudaIsAvailable(): boolean;
  mpsIsAvailable(): boolean;
  cudaDeviceCount(): number;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  manualSeed(seed: number): void;
  info(): { torch_version: string; parallel_info: string; cuda: boolean; mps: boolean; num_threads: number; mkldnn: boolean };
  NativeTensor: NativeTensorStatic;
  NativeModel: NativeModelStatic;
  NativeAdamW: NativeAdamWStatic;
  NativeProcessGroup: NativeProcessGroupStatic;
  distributedAvailable: boolean;
  readSafetensors(path: string, dataStart: number, entries: SafetensorsEntry[], dtype: string | null, device: string): Promise<[string, NativeTensor][]>;
  writeSafetensors(path: string, tensors: [string, NativeTensor][], metadata: Record<string, string>): Promise<void>;
  crossEntropy(input: NativeTensor, target: NativeTensor, ignore_index: number, reduction: string, label_smoothing: number): NativeTensor;
  getRngState(): NativeTensor;
  /** The batch-1 matrix-vector kernels (on by default); off to measure the lever. */
  setMatvec(on: boolean): void;
  /** How many calls took a fast path so far. */
  matvecCalls(): number;
  /** Benchmark probe: memory-read bytes/s streaming `bytes` on every compute thread (or one), the best of `reps` passes. */
  readBandwidth(bytes: number, reps: number, allThreads?: boolean): Promise<number>;
  matmulLimit(M: number, K: number, N: number, reps: number): Promise<number>;
  /** Benchmark probe: seconds to allocate and first write `bytes` of fresh memory as the loader does (no file read). */
  firstTouch(bytes: number): Promise<number>;
  setRngState(state: NativeTensor): void;
  /** oneDNN's sgemm for inference linears over many rows (on where libtorch brought oneDNN); off to measure the lever. */
  setGemm(on: boolean): void;
  /** How many linears took oneDNN's sgemm so far. */
  gemmCalls(): number;
  gemmAvailable: boolean;
}

/** The package root: the nearest folder above this module whose package.json is torchlm's. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, "utf8")).name === "torchlm") return dir;
      } catch {
        // unreadable package.json: keep looking upwards
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error("torchlm: cannot find the package root above " + fileURLToPath(import.meta.url));
    dir = up;
  }
}

function load(): NativeBinding {
  const root = packageRoot();
  const candidates = [process.env.TORCHLM_BINARY, join(root, "build", "Release", "torchlm.node")].filter(Boolean) as string[];
  const path = candidates.find((p) => existsSync(p));
  if (!path) {
    throw new Error(
      `torchlm's native addon is not built (${candidates[candidates.length - 1]} is missing): run \`npm run build:native\` ` +
      "in the torchlm folder. It needs libtorch: python3's torch, LIBTORCH, or torchlm's own .venv (made by the build).",
    );
  }
  const require = createRequire(import.meta.url);
  try {
    return require(path) as NativeBinding;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/lib(torch|c10)[^ ]*\.so|libtorch|c10\.dll|libc10/.test(msg)) {
      throw new Error(`libtorch not found: the libtorch the addon was built against is gone (a removed venv or pip uninstall?); ` +
        `pip install torch==2.13.0 or set LIBTORCH, then run \`npm run build:native\` (${msg})`);
    }
    throw new Error(`torchlm's native addon at ${path} failed to load: ${msg}. Rebuild it with \`npm run build:native\`.`);
  }
}

export const binding: NativeBinding = load();
