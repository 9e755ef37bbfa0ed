// Tensor: a libtorch tensor owned by JavaScript. Small, synchronous operations; heavy work lives on models.
import { check, invalid, InvalidArgumentError, native } from "./errors.js";
import { binding, type NativeTensor } from "./native.js";

export type Dtype = "float32" | "float16" | "bfloat16" | "float64" | "int64" | "int32" | "uint8" | "bool";
export const DTYPES: readonly Dtype[] = [
  "float32",
  "float16",
  "bfloat16",
  "float64",
  "int64",
  "int32",
  "uint8",
  "bool",
];
export type DeviceName = string;

/** Nested arrays of numbers (or booleans), as `tolist()` returns them. */
export type NestedList = number | boolean | NestedList[];

function isDtype(v: unknown): v is Dtype {
  return typeof v === "string" && (DTYPES as readonly string[]).includes(v);
}

/** A libtorch tensor. Dispose it (or `using` it) to free its memory at once; otherwise the GC does. */
export class Tensor {
  /** @internal */
  readonly _t: NativeTensor;

  /** @internal */
  constructor(t: NativeTensor) {
    this._t = t;
  }

  get shape(): number[] {
    return native(() => this._t.shape);
  }
  get dtype(): Dtype {
    return native(() => this._t.dtype) as Dtype;
  }
  get device(): string {
    return native(() => this._t.device);
  }
  get ndim(): number {
    return this.shape.length;
  }
  get disposed(): boolean {
    return this._t.disposed;
  }
  get requires_grad(): boolean {
    return native(() => this._t.requires_grad);
  }
  set requires_grad(v: boolean) {
    check.boolean("requires_grad", v);
    native(() => {
      this._t.requires_grad = v;
    });
  }
  /** The gradient accumulated by backward(), or null. */
  get grad(): Tensor | null {
    const g = native(() => this._t.grad);
    return g ? new Tensor(g) : null;
  }
  numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  /** Elements between neighbours along each dimension (torch's stride()), or along `dim`. */
  stride(dim?: number): number | number[] {
    const strides = native(() => this._t.strides);
    return dim === undefined ? strides : strides[this.#dim(dim)]!;
  }
  /** Whether the elements lie in memory in row-major order with no gaps (torch's is_contiguous()). */
  is_contiguous(): boolean {
    const shape = this.shape,
      strides = native(() => this._t.strides);
    if (shape.includes(0)) return true;
    let expected = 1;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (shape[d] !== 1 && strides[d] !== expected) return false;
      expected *= shape[d]!;
    }
    return true;
  }
  size(dim?: number): number | number[] {
    if (dim === undefined) return this.shape;
    return this.shape[this.#dim(dim)]!;
  }

  /** A copy of the values as a typed array (int64 as BigInt64Array, float16/bfloat16 as Float32Array). */
  data(): Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array {
    return native(() => this._t.data());
  }

  /** The values as nested arrays of numbers, like torch's tolist(). */
  tolist(): NestedList {
    const shape = this.shape;
    const raw = this.data();
    const isBool = this.dtype === "bool";
    const flat: (number | boolean)[] = new Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      const v = raw[i]!;
      flat[i] = isBool ? v !== 0 && v !== 0n : typeof v === "bigint" ? Number(v) : v;
    }
    if (shape.length === 0) return flat[0]!;
    let pos = 0;
    const build = (d: number): NestedList[] => {
      const out: NestedList[] = [];
      for (let i = 0; i < shape[d]!; i++) out.push(d === shape.length - 1 ? flat[pos++]! : build(d + 1));
      return out;
    };
    return build(0);
  }

  item(): number {
    return native(() => this._t.item()) as number;
  }

  /** to("cuda"), to("float16"), or to({ device, dtype }). */
  to(target: string | { device?: string; dtype?: Dtype }): Tensor {
    let device: string | null = null;
    let dtype: string | null = null;
    if (typeof target === "string") {
      if (isDtype(target)) dtype = target;
      else device = target;
    } else if (target && typeof target === "object") {
      device = target.device ?? null;
      dtype = target.dtype ?? null;
    } else throw invalid("target", "a device, a dtype or { device, dtype }", target);
    return new Tensor(native(() => this._t.to({ device, dtype })));
  }
  float(): Tensor {
    return this.to("float32");
  }
  long(): Tensor {
    return this.to("int64");
  }
  cpu(): Tensor {
    return this.to("cpu");
  }

  permute(...dims: number[] | [number[]]): Tensor {
    const d = flatArgs(dims).map((x) => (x < 0 ? x + this.ndim : x));
    const n = this.ndim;
    if (d.length !== n || new Set(d).size !== n || d.some((x) => x < 0 || x >= n))
      throw invalid("dims", `a permutation of the ${n} dimensions (0..${n - 1})`, `[${flatArgs(dims).join(", ")}]`);
    return new Tensor(native(() => this._t.permute({ dims: d })));
  }
  reshape(...shape: number[] | [number[]]): Tensor {
    return new Tensor(native(() => this._t.reshape({ shape: this.#shapeArg(shape) })));
  }
  view(...shape: number[] | [number[]]): Tensor {
    return new Tensor(native(() => this._t.view({ shape: this.#shapeArg(shape) })));
  }

  /** A target shape with as many elements as this tensor (one -1 is inferred). */
  #shapeArg(args: number[] | [number[]]): number[] {
    const s = flatArgs(args);
    const known = s.filter((x) => x !== -1).reduce((a, b) => a * b, 1);
    const numel = this.shape.reduce((a, b) => a * b, 1);
    const ok =
      s.every((x) => x >= -1) &&
      s.filter((x) => x === -1).length <= 1 &&
      (s.includes(-1) ? known > 0 && numel % known === 0 : known === numel);
    if (!ok)
      throw invalid(
        "shape",
        `a shape of ${numel} elements (like [${this.shape.join(", ")}], at most one -1)`,
        `[${s.join(", ")}]`,
      );
    return s;
  }
  /** Elements start..end (exclusive) along dim; negative indices count from the end, as in Python. */
  slice(dim: number, start: number, end?: number, step = 1): Tensor {
    const d = this.#dim(dim);
    check.integer("start", start);
    if (end !== undefined) check.integer("end", end);
    check.integer("step", step, 1);
    return new Tensor(native(() => this._t.slice({ dim: d, start, end: end ?? null, step })));
  }
  /** Row i along dimension 0 (negative from the end). */
  get(i: number): Tensor {
    const n = this.shape[0];
    if (n === undefined) throw new InvalidArgumentError("get() needs a tensor with at least one dimension");
    check.integer("index", i, -n, n - 1);
    const idx = i < 0 ? n + i : i;
    const row = new Tensor(native(() => this._t.slice({ dim: 0, start: idx, end: idx + 1, step: 1 })));
    return row.reshape(this.shape.slice(1));
  }
  contiguous(): Tensor {
    return new Tensor(native(() => this._t.contiguous()));
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return new Tensor(native(() => this._t.argmax({ dim: dim === undefined ? null : this.#dim(dim), keepdim })));
  }
  softmax(dim: number): Tensor {
    return new Tensor(native(() => this._t.softmax({ dim: this.#dim(dim) })));
  }
  log_softmax(dim: number): Tensor {
    return new Tensor(native(() => this._t.log_softmax({ dim: this.#dim(dim) })));
  }
  eq(other: Tensor | number): Tensor {
    return this.#cmp("eq", other);
  }
  ne(other: Tensor | number): Tensor {
    return this.#cmp("ne", other);
  }
  lt(other: Tensor | number): Tensor {
    return this.#cmp("lt", other);
  }
  le(other: Tensor | number): Tensor {
    return this.#cmp("le", other);
  }
  gt(other: Tensor | number): Tensor {
    return this.#cmp("gt", other);
  }
  ge(other: Tensor | number): Tensor {
    return this.#cmp("ge", other);
  }
  add(other: Tensor | number): Tensor {
    return this.#arith("add", other);
  }
  sub(other: Tensor | number): Tensor {
    return this.#arith("sub", other);
  }
  mul(other: Tensor | number): Tensor {
    return this.#arith("mul", other);
  }
  div(other: Tensor | number): Tensor {
    return this.#arith("div", other);
  }
  sum(dim?: number, keepdim = false): Tensor {
    return this.#reduce("sum", dim, keepdim);
  }
  mean(dim?: number, keepdim = false): Tensor {
    return this.#reduce("mean", dim, keepdim);
  }
  max(dim?: number, keepdim = false): Tensor {
    return this.#reduce("max", dim, keepdim);
  }
  min(dim?: number, keepdim = false): Tensor {
    return this.#reduce("min", dim, keepdim);
  }
  matmul(other: Tensor): Tensor {
    return new Tensor(native(() => this._t.matmul({ other: asTensor(other, "other")._t })));
  }
  /** Runs autograd from this (scalar) tensor, filling `.grad` of the leaves; synchronous. */
  backward(gradient?: Tensor): void {
    native(() => this._t.backward({ gradient: gradient?._t ?? null }));
  }
  detach(): Tensor {
    return new Tensor(native(() => this._t.detach()));
  }
  clone(): Tensor {
    return new Tensor(native(() => this._t.clone()));
  }

  /** Frees the tensor's memory now; any later use throws. */
  dispose(): void {
    this._t.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    if (this.disposed) return "Tensor(disposed)";
    return `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype}, device=${this.device})`;
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }

  #dim(dim: number): number {
    const n = this.shape.length;
    check.integer("dim", dim, -Math.max(n, 1), Math.max(n - 1, 0));
    return dim < 0 ? dim + n : dim;
  }
  #cmp(op: "eq" | "ne" | "lt" | "le" | "gt" | "ge", other: Tensor | number): Tensor {
    const o = typeof other === "number" ? other : asTensor(other, "other")._t;
    return new Tensor(native(() => this._t.compare({ op, other: o })));
  }
  #arith(op: "add" | "sub" | "mul" | "div", other: Tensor | number): Tensor {
    const o = typeof other === "number" ? other : asTensor(other, "other")._t;
    return new Tensor(native(() => this._t.arith({ op, other: o })));
  }
  #reduce(op: "sum" | "mean" | "max" | "min", dim: number | undefined, keepdim: boolean): Tensor {
    return new Tensor(native(() => this._t.reduce({ op, dim: dim === undefined ? null : this.#dim(dim), keepdim })));
  }
}

function flatArgs(args: number[] | [number[]]): number[] {
  const a = (args.length === 1 && Array.isArray(args[0]) ? args[0] : args) as number[];
  a.forEach((v, i) => check.integer(`dims[${i}]`, v));
  return a;
}

export function asTensor(v: unknown, name: string): Tensor {
  if (v instanceof Tensor) return v;
  throw invalid(name, "a Tensor", v);
}

/** Concatenates tensors along dim. */
export function cat(tensors: Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0)
    throw invalid("tensors", "a non-empty array of Tensors", tensors);
  const ts = tensors.map((t, i) => asTensor(t, `tensors[${i}]`));
  const n = ts[0]!.ndim;
  check.integer("dim", dim, -n, n - 1);
  return new Tensor(native(() => binding.NativeTensor.cat({ tensors: ts.map((t) => t._t), dim })));
}

type TensorData = NestedList | ArrayBufferView;

function inferShapeAndFlatten(data: NestedList): {
  shape: number[];
  flat: number[];
  allInt: boolean;
  anyBool: boolean;
} {
  const shape: number[] = [];
  let probe: NestedList = data;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    if (probe.length === 0) break;
    probe = probe[0]!;
  }
  const flat: number[] = [];
  let allInt = true;
  let anyBool = false;
  const walk = (v: NestedList, d: number, path: string): void => {
    if (d === shape.length) {
      if (typeof v === "boolean") {
        anyBool = true;
        flat.push(v ? 1 : 0);
        return;
      }
      if (typeof v !== "number") throw invalid(`data${path}`, "a number", v);
      if (!Number.isInteger(v)) allInt = false;
      flat.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[d])
      throw invalid(`data${path}`, `an array of length ${shape[d]} (rows must be the same length)`, v);
    v.forEach((x, i) => walk(x, d + 1, `${path}[${i}]`));
  };
  walk(data, 0, "");
  return { shape, flat, allInt, anyBool };
}

/**
 * Builds a tensor from nested arrays or a typed array, like torch.tensor: integers give int64,
 * other numbers float32, booleans bool, unless `dtype` says otherwise.
 */
export function tensor(
  data: TensorData,
  options: { dtype?: Dtype; device?: string; shape?: number[]; requires_grad?: boolean } = {},
): Tensor {
  if (typeof options !== "object" || options === null) throw invalid("options", "an object", options);
  check.knownKeys("tensor()", options, ["dtype", "device", "shape", "requires_grad"]);
  if (options.dtype !== undefined && !isDtype(options.dtype))
    throw invalid("dtype", `one of ${DTYPES.join(", ")}`, options.dtype);
  const device = options.device ?? "cpu";
  let buffer: ArrayBufferView;
  let shape: number[];
  let dtype: Dtype;
  if (ArrayBuffer.isView(data)) {
    buffer = data;
    const n = (data as unknown as { length: number }).length;
    shape = options.shape ?? [n];
    dtype =
      options.dtype ??
      (data instanceof BigInt64Array || data instanceof Int32Array
        ? "int64"
        : data instanceof Float64Array
          ? "float64"
          : data instanceof Uint8Array
            ? "uint8"
            : "float32");
    if (data instanceof Uint16Array)
      throw invalid("data", "a Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array", data);
  } else {
    const info = inferShapeAndFlatten(data);
    shape = options.shape ?? info.shape;
    dtype = options.dtype ?? (info.anyBool ? "bool" : info.allInt ? "int64" : "float32");
    const integral = dtype === "int64" || dtype === "int32" || dtype === "bool" || dtype === "uint8";
    if (integral && !info.allInt) throw invalid("data", `integers for dtype ${dtype}`, data);
    // Int32 carries ids compactly; wider integers travel as BigInt64, everything else as float64.
    if (!integral) buffer = Float64Array.from(info.flat);
    else if (info.flat.every((v) => Math.abs(v) <= 2 ** 31 - 1)) buffer = Int32Array.from(info.flat);
    else buffer = BigInt64Array.from(info.flat.map((v) => BigInt(v)));
  }
  const t = new Tensor(native(() => binding.NativeTensor.fromBuffer({ data: buffer, shape, dtype, device })));
  if (options.requires_grad) t.requires_grad = true;
  return t;
}
