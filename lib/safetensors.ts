// safetensors headers: read and validated here (JSON), the bytes are memory-mapped natively.
import { open } from "node:fs/promises";
import { check, invalid, InvalidArgumentError, isPlainObject, withStack } from "./errors.js";
import { checkDevice } from "./device.js";
import { binding, type NativeTensor, type SafetensorsEntry } from "./native.js";
import { asTensor, Tensor, type Dtype } from "./tensor.js";

const DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "I8", "BOOL"];
const ITEM: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, U8: 1, I8: 1, BOOL: 1 };
/** safetensors' own bound on the header. */
const MAX_HEADER = 100_000_000;

export interface SafetensorsIndex {
  path: string;
  dataStart: number;
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
}

/** Finds duplicate keys at the top level of a JSON object (JSON.parse keeps the last silently). */
function duplicateTopLevelKey(text: string): string | null {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (k < text.length && /\s/.test(text[k]!)) k++;
        if (text[k] === ":") {
          const key = JSON.parse(text.slice(i, j + 1)) as string;
          if (seen.has(key)) return key;
          seen.add(key);
        }
      }
      i = j;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
  }
  return null;
}

/** Reads and checks the header of a safetensors file (nothing else is read). */
export async function readSafetensorsIndex(path: string): Promise<SafetensorsIndex> {
  const fail = (why: string) => new InvalidArgumentError(`${path} is not a valid safetensors file: ${why}`);
  const fh = await open(path, "r").catch((e: NodeJS.ErrnoException) => {
    throw new InvalidArgumentError(`Cannot open ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  });
  try {
    const { size } = await fh.stat();
    if (size < 8) throw fail(`it has ${size} bytes, fewer than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(size - 8)) throw fail(`the header length ${n} points past the end of the file (${size} bytes)`);
    if (n > BigInt(MAX_HEADER)) throw fail(`the header length ${n} is larger than safetensors allows`);
    const len = Number(n);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, 8);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(buf);
    } catch {
      throw fail("the header is not valid UTF-8");
    }
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (e) {
      throw fail(`the header is not valid JSON (${(e as Error).message})`);
    }
    if (typeof header !== "object" || header === null || Array.isArray(header))
      throw fail("the header is not a JSON object");
    const dup = duplicateTopLevelKey(text);
    if (dup !== null) throw fail(`tensor ${dup} appears twice in the header`);
    const dataLen = size - 8 - len;
    const entries: SafetensorsEntry[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (typeof v !== "object" || v === null || Array.isArray(v)) throw fail("__metadata__ is not an object");
        metadata = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)]));
        continue;
      }
      const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof e !== "object" || e === null) throw fail(`entry ${name} is not an object`);
      if (typeof e.dtype !== "string" || !DTYPES.includes(e.dtype))
        throw fail(`tensor ${name} has unknown dtype ${JSON.stringify(e.dtype)}`);
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
        throw fail(`tensor ${name} has an invalid shape ${JSON.stringify(e.shape)}`);
      const offs = e.data_offsets;
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0))
        throw fail(`tensor ${name} has invalid data_offsets ${JSON.stringify(offs)}`);
      const [begin, end] = offs as [number, number];
      if (begin > end) throw fail(`tensor ${name} has data_offsets with begin after end`);
      if (end > dataLen) throw fail(`tensor ${name} has data_offsets past the end of the data (truncated file?)`);
      let numel = 1;
      for (const d of e.shape as number[]) numel *= d;
      if (numel * ITEM[e.dtype]! !== end - begin)
        throw fail(
          `tensor ${name} has ${end - begin} bytes but dtype ${e.dtype} and shape ` +
            `[${(e.shape as number[]).join(", ")}] need ${numel * ITEM[e.dtype]!}`,
        );
      entries.push({ name, dtype: e.dtype, shape: e.shape as number[], begin, end });
    }
    const sorted = [...entries].filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.begin < sorted[i - 1]!.end)
        throw fail(`tensors ${sorted[i - 1]!.name} and ${sorted[i]!.name} overlap`);
    }
    return { path, dataStart: 8 + len, entries, metadata };
  } finally {
    await fh.close();
  }
}

/** Loads every tensor of a safetensors file (memory-mapped), optionally converting floating dtypes. */
export async function load_file(
  path: string,
  options: { dtype?: Dtype; device?: string } = {},
): Promise<Record<string, Tensor>> {
  check.string("path", path);
  if (!isPlainObject(options)) throw invalid("options", "an object", options);
  check.knownKeys("load_file", options, ["dtype", "device"]);
  if (options.dtype !== undefined)
    check.oneOf("dtype", options.dtype, ["float32", "float16", "bfloat16", "float64"] as const);
  const device = checkDevice("device", options.device ?? "cpu");
  const pairs = await readNamedTensors(path, device, options.dtype ?? null);
  return Object.fromEntries(pairs.map(([k, t]) => [k, new Tensor(t)]));
}

/** @internal Every tensor of a file as the addon reads it, in the file's order (load_file, the Trainer's resume). */
export async function readNamedTensors(
  path: string,
  device: string,
  dtype: Dtype | null = null,
): Promise<[string, NativeTensor][]> {
  const index = await readSafetensorsIndex(path);
  return withStack(() =>
    binding.readSafetensors({ path, data_start: index.dataStart, entries: index.entries, dtype, device }),
  );
}

/** Writes tensors to a safetensors file atomically (a temporary name, then a rename). */
export async function save_file(
  tensors: Record<string, Tensor>,
  path: string,
  metadata: Record<string, string> = {},
): Promise<void> {
  if (!isPlainObject(tensors)) throw invalid("tensors", "an object of name -> Tensor", tensors);
  check.string("path", path);
  if (!isPlainObject(metadata) || Object.values(metadata).some((v) => typeof v !== "string"))
    throw invalid("metadata", "an object of strings", metadata);
  const pairs = Object.entries(tensors).map(([k, t]) => [k, asTensor(t, `tensors.${k}`)._t] as [string, NativeTensor]);
  await withStack(() => binding.writeSafetensors({ path, tensors: pairs, metadata }));
}
