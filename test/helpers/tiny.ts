// The tiny GPT-2 of the tests, regenerated from its seed with the same counter-hash generator as
// scripts/reference.py, and written as real safetensors by a small writer here (independent of the addon).
// `golden` is what PyTorch computed on it in this run (.cache/references/golden-tiny.json).
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { REFERENCES } from "./python.js";

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
export const golden = JSON.parse(readFileSync(join(REFERENCES, "golden-tiny.json"), "utf8"));
export const TINY: Record<string, unknown> = golden.config;
export const SEED: number = golden.seed;

export function hashUniform(n: number, seed: number): Float64Array {
  const out = new Float64Array(n);
  const base = Number((BigInt(seed) * 0x9e3779b9n) & 0xffffffffn);
  for (let i = 0; i < n; i++) {
    let x = (i + base) >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x85ebca6b) >>> 0;
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35) >>> 0;
    x ^= x >>> 16;
    out[i] = ((x >>> 8) / 16777216) * 2 - 1;
  }
  return out;
}

export function expected(cfg: Record<string, any>): [string, number[]][] {
  const E = cfg.n_embd,
    I = cfg.n_inner ?? 4 * E;
  const out: [string, number[]][] = [
    ["wte.weight", [cfg.vocab_size, E]],
    ["wpe.weight", [cfg.n_positions, E]],
  ];
  for (let i = 0; i < cfg.n_layer; i++) {
    const p = `h.${i}.`;
    out.push(
      [p + "ln_1.weight", [E]],
      [p + "ln_1.bias", [E]],
      [p + "attn.c_attn.weight", [E, 3 * E]],
      [p + "attn.c_attn.bias", [3 * E]],
      [p + "attn.c_proj.weight", [E, E]],
      [p + "attn.c_proj.bias", [E]],
      [p + "ln_2.weight", [E]],
      [p + "ln_2.bias", [E]],
      [p + "mlp.c_fc.weight", [E, I]],
      [p + "mlp.c_fc.bias", [I]],
      [p + "mlp.c_proj.weight", [I, E]],
      [p + "mlp.c_proj.bias", [E]],
    );
  }
  out.push(["ln_f.weight", [E]], ["ln_f.bias", [E]]);
  return out;
}

export function tinyWeights(
  cfg: Record<string, any> = TINY,
  seed = SEED,
): Map<string, { shape: number[]; data: Float32Array }> {
  const w = new Map<string, { shape: number[]; data: Float32Array }>();
  expected(cfg).forEach(([name, shape], idx) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const u = hashUniform(n, seed + idx);
    const data = new Float32Array(n);
    const ln = name.includes(".ln_") || name.startsWith("ln_");
    for (let i = 0; i < n; i++) data[i] = name.endsWith(".bias") ? u[i]! * 0.02 : ln ? 1 + u[i]! * 0.1 : u[i]! * 0.0346;
    w.set(name, { shape, data });
  });
  return w;
}

function f32ToBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = u[i]!;
    out[i] = ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) & 0xffff; // round to nearest even
  }
  return out;
}

function f32ToF16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < x.length; i++) {
    f[0] = x[i]!;
    const b = u[0]!;
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    let mant = b & 0x7fffff;
    const e = exp - 127 + 15;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1),
        half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    out[i] = sign | h;
  }
  return out;
}

export type StDtype = "F32" | "F16" | "BF16";

/** Writes a safetensors file (8-byte aligned data) from name -> {shape, float32 data}. */
export function writeSafetensors(
  path: string,
  tensors: [string, { shape: number[]; data: Float32Array }][],
  dtype: StDtype = "F32",
  metadata: Record<string, string> | null = { format: "pt" },
): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let off = 0;
  for (const [name, t] of tensors) {
    const raw = dtype === "F32" ? t.data : dtype === "BF16" ? f32ToBf16(t.data) : f32ToF16(t.data);
    const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    header[name] = { dtype, shape: t.shape, data_offsets: [off, off + bytes.length] };
    blobs.push(bytes);
    off += bytes.length;
  }
  let h = JSON.stringify(header);
  while ((h.length + 8) % 8) h += " ";
  const hb = Buffer.from(h, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  writeFileSync(path, Buffer.concat([len, hb, ...blobs.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))]));
}

/** A directory with config.json + model.safetensors of the tiny model (cached per process). */
export function tinyModelDir(
  opts: { layout?: "hub" | "saved"; dtype?: StDtype; config?: Record<string, unknown>; name?: string } = {},
): string {
  const layout = opts.layout ?? "hub";
  const dtype = opts.dtype ?? "F32";
  const cfg = { ...TINY, ...(opts.config ?? {}) };
  const dir = join(tmpdir(), `torchlm-test-${process.pid}`, opts.name ?? `${layout}-${dtype.toLowerCase()}`);
  if (existsSync(join(dir, "model.safetensors"))) return dir;
  mkdirSync(dir, { recursive: true });
  const w = tinyWeights(cfg);
  const prefix = layout === "hub" ? "" : "transformer.";
  writeSafetensors(
    join(dir, "model.safetensors"),
    [...w.entries()].map(([k, v]) => [prefix + k, v]),
    dtype,
  );
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg, null, 2));
  return dir;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  // no Math.* in the loop: a global's lookup in Jest's sandbox costs more than the arithmetic
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!,
      ad = d < 0 ? -d : d;
    if (!(ad <= m)) {
      if (ad !== ad) return NaN;
      m = ad;
    }
  }
  return m;
}

export function flatten(x: unknown): number[] {
  return Array.isArray(x) ? x.flatMap(flatten) : [x as number];
}

/** logits[b, t, c] for every row and position and the given columns (the goldens keep only those). */
export function pick(logits: { shape: number[]; data(): unknown }, cols: number[]): number[] {
  const [B, T, V] = logits.shape as [number, number, number];
  const d = logits.data() as Float32Array;
  const out: number[] = [];
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (const c of cols) out.push(d[(b * T + t) * V + c]!);
  return out;
}
