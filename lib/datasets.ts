// Datasets: columnar rows in memory (numeric columns in typed arrays), Hugging Face's methods, and
// load_dataset for Hub parquet repositories and local parquet / json / jsonl / csv / text files.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { extname, join, relative, resolve as resolvePath } from "node:path";
import { listFiles } from "@huggingface/hub";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { parse as parseCsv } from "csv-parse/sync";
import { check, invalid, InvalidArgumentError, isPlainObject, TorchlmError } from "./errors.js";
import { checkRepoId, hubCacheDir, hubEndpoint, isOffline, repoFolder, resolveHubFile } from "./hub.js";
import { bar } from "./progress.js";
import { Tensor } from "./tensor.js";

type Numeric = Int32Array | Float32Array | Float64Array | BigInt64Array | Uint8Array;

/** A column: plain values, one number per row in a typed array, or fixed-width numeric rows. */
type Column =
  | { kind: "values"; data: unknown[] }
  | { kind: "numbers"; data: Numeric }
  | { kind: "matrix"; data: Numeric; width: number };

export type Row = Record<string, any>;
export type Batch = Record<string, any[]>;

function colLength(c: Column): number {
  return c.kind === "matrix" ? c.data.length / c.width : c.data.length;
}

function cell(c: Column, i: number): unknown {
  if (c.kind === "values") return c.data[i];
  if (c.kind === "numbers") {
    const v = c.data[i]!;
    return typeof v === "bigint" ? Number(v) : v;
  }
  const row = c.data.subarray(i * c.width, (i + 1) * c.width);
  return Array.from(row as ArrayLike<number | bigint>, (v) => (typeof v === "bigint" ? Number(v) : v));
}

function take(c: Column, idx: ArrayLike<number>): Column {
  const n = idx.length;
  if (c.kind === "values") return { kind: "values", data: Array.from({ length: n }, (_, k) => c.data[idx[k]!]) };
  const Ctor = c.data.constructor as { new (n: number): Numeric };
  if (c.kind === "numbers") {
    const out = new Ctor(n);
    for (let k = 0; k < n; k++) (out as any)[k] = c.data[idx[k]!];
    return { kind: "numbers", data: out };
  }
  const out = new Ctor(n * c.width);
  for (let k = 0; k < n; k++)
    (out as any).set(c.data.subarray(idx[k]! * c.width, (idx[k]! + 1) * c.width), k * c.width);
  return { kind: "matrix", data: out, width: c.width };
}

/** Builds a column from what a user function returned for `n` rows: a Tensor, typed array or array. */
function toColumn(name: string, v: unknown, n?: number): Column {
  if (v instanceof Tensor) {
    const shape = v.shape;
    const data = v.data();
    const typed = data instanceof BigInt64Array ? Int32Array.from(data, (x) => Number(x)) : data;
    if (shape.length === 1) return { kind: "numbers", data: typed };
    if (shape.length === 2) return { kind: "matrix", data: typed, width: shape[1]! };
    return { kind: "values", data: v.tolist() as unknown[] };
  }
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return { kind: "numbers", data: v as Numeric };
  if (!Array.isArray(v))
    throw invalid(`column ${name}`, "an array, a typed array or a Tensor with one entry per row", v);
  if (n !== undefined && v.length !== n)
    throw new InvalidArgumentError(`Column ${name} has ${v.length} rows but ${n} were expected`);
  if (v.length > 0 && v.every((x) => typeof x === "number" && Number.isInteger(x) && Math.abs(x) < 2 ** 31))
    return { kind: "numbers", data: Int32Array.from(v as number[]) };
  if (v.length > 0 && v.every((x) => typeof x === "number"))
    return { kind: "numbers", data: Float64Array.from(v as number[]) };
  if (
    v.length > 0 &&
    v.every(
      (x) =>
        Array.isArray(x) &&
        x.length === (v[0] as unknown[]).length &&
        (x as unknown[]).every((y) => typeof y === "number" && Number.isInteger(y) && Math.abs(y) < 2 ** 31),
    )
  ) {
    const width = (v[0] as number[]).length;
    const out = new Int32Array(v.length * width);
    v.forEach((r, i) => out.set(r as number[], i * width));
    return { kind: "matrix", data: out, width };
  }
  return {
    kind: "values",
    data: v.map((x) =>
      x instanceof Tensor ? x.tolist() : ArrayBuffer.isView(x) ? Array.from(x as unknown as ArrayLike<number>) : x,
    ),
  };
}

/** Concatenates column pieces (map's batches); typed pieces of one shape stay typed. */
function concat(pieces: Column[]): Column {
  if (pieces.length === 1) return pieces[0]!;
  const first = pieces[0]!;
  const sameTyped =
    first.kind !== "values" &&
    pieces.every(
      (p) =>
        p.kind === first.kind &&
        p.data.constructor === first.data.constructor &&
        (p.kind !== "matrix" || p.width === (first as { width: number }).width),
    );
  if (sameTyped) {
    const Ctor = first.data.constructor as { new (n: number): Numeric };
    const out = new Ctor(pieces.reduce((a, p) => a + p.data.length, 0));
    let o = 0;
    for (const p of pieces) {
      (out as any).set(p.data, o);
      o += p.data.length;
    }
    return first.kind === "matrix" ? { kind: "matrix", data: out, width: first.width } : { kind: "numbers", data: out };
  }
  const all: unknown[] = [];
  for (const p of pieces) for (let i = 0; i < colLength(p); i++) all.push(cell(p, i));
  return { kind: "values", data: all };
}

/** A seeded generator (mulberry32) for shuffles: the same seed gives the same order. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function permutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rnd = seededRandom(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

export interface MapOptions {
  batched?: boolean;
  batch_size?: number;
  remove_columns?: string[] | string;
  /** Also pass the row index (or the batch's indices) as the second argument, as in Python. */
  with_indices?: boolean;
  /** Hides the progress bar. */
  disable_progress?: boolean;
}

/** Hugging Face's Dataset: rows of named columns. */
export class Dataset implements Iterable<Row> {
  /** @internal */ readonly _cols: Map<string, Column>;
  readonly #length: number;

  /** @internal */
  constructor(cols: Map<string, Column>, length?: number) {
    this._cols = cols;
    const lens = [...cols.values()].map(colLength);
    this.#length = length ?? lens[0] ?? 0;
    for (const [name, c] of cols)
      if (colLength(c) !== this.#length)
        throw new InvalidArgumentError(`Column ${name} has ${colLength(c)} rows but the dataset has ${this.#length}`);
  }

  static from_dict(columns: Record<string, unknown>): Dataset {
    if (!isPlainObject(columns)) throw invalid("mapping", "an object of columns", columns);
    const cols = new Map<string, Column>();
    for (const [k, v] of Object.entries(columns)) cols.set(k, toColumn(k, v));
    return new Dataset(cols);
  }

  static from_list(rows: Row[]): Dataset {
    if (!Array.isArray(rows)) throw invalid("mapping", "an array of row objects", rows);
    const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    return Dataset.from_dict(Object.fromEntries(names.map((n) => [n, rows.map((r) => r[n] ?? null)])));
  }

  get length(): number {
    return this.#length;
  }
  get num_rows(): number {
    return this.#length;
  }
  get column_names(): string[] {
    return [...this._cols.keys()];
  }

  /** Row i as an object (negative from the end). */
  get(i: number): Row {
    check.integer("index", i, -this.#length, this.#length - 1);
    const idx = i < 0 ? this.#length + i : i;
    const row: Row = {};
    for (const [k, c] of this._cols) row[k] = cell(c, idx);
    return row;
  }

  /** A column's values, as `dataset["text"]` in Python. */
  column(name: string): unknown[] {
    const c = this._cols.get(name);
    if (!c) throw new InvalidArgumentError(`Column ${name} not in the dataset: it has ${this.column_names.join(", ")}`);
    return Array.from({ length: this.#length }, (_, i) => cell(c, i));
  }

  *[Symbol.iterator](): Iterator<Row> {
    for (let i = 0; i < this.#length; i++) yield this.get(i);
  }

  to_list(): Row[] {
    return [...this];
  }
  to_dict(): Record<string, unknown[]> {
    return Object.fromEntries(this.column_names.map((n) => [n, this.column(n)]));
  }

  /** Rows by index, in the order given. */
  select(indices: Iterable<number>): Dataset {
    if (
      typeof indices === "string" ||
      indices === null ||
      typeof (indices as Iterable<number>)?.[Symbol.iterator] !== "function"
    )
      throw invalid("indices", "an array (or iterable) of row indices", indices);
    const raw = Array.from(indices as Iterable<unknown>);
    raw.forEach((i, k) => {
      if (typeof i !== "number" || !Number.isInteger(i) || i < 0 || i >= this.#length)
        throw invalid(`indices[${k}]`, `an index in [0, ${this.#length})`, i);
    });
    const idx = Int32Array.from(raw as number[]);
    return new Dataset(new Map([...this._cols].map(([k, c]) => [k, take(c, idx)])), idx.length);
  }

  async filter(fn: (row: Row, index: number) => boolean | Promise<boolean>): Promise<Dataset> {
    if (typeof fn !== "function") throw invalid("function", "a function", fn);
    const keep: number[] = [];
    for (let i = 0; i < this.#length; i++) if (await fn(this.get(i), i)) keep.push(i);
    return this.select(keep);
  }

  shuffle(options: { seed?: number } = {}): Dataset {
    check.knownKeys("shuffle", options, ["seed"]);
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    check.integer("seed", seed, 0, 2 ** 32 - 1);
    return this.select(permutation(this.#length, seed));
  }

  /** { train, test }: test_size as a fraction or a count, shuffled with seed (as Hugging Face does by default). */
  train_test_split(options: { test_size?: number; train_size?: number; seed?: number; shuffle?: boolean } = {}): {
    train: Dataset;
    test: Dataset;
  } {
    check.knownKeys("train_test_split", options, ["test_size", "train_size", "seed", "shuffle"]);
    const n = this.#length;
    const size = (v: number, name: string) =>
      v < 1 ? Math.ceil(check.number(name, v, 0, 1, true) * n) : check.integer(name, v, 1, n - 1);
    let nTest =
      options.test_size !== undefined
        ? size(options.test_size, "test_size")
        : options.train_size !== undefined
          ? n - size(options.train_size, "train_size")
          : Math.ceil(0.25 * n);
    if (options.test_size !== undefined && options.test_size < 1) nTest = Math.ceil(options.test_size * n);
    const order =
      options.shuffle === false ? Int32Array.from({ length: n }, (_, i) => i) : permutation(n, options.seed ?? 42);
    return { test: this.select(order.subarray(0, nTest)), train: this.select(order.subarray(nTest)) };
  }

  remove_columns(names: string[] | string): Dataset {
    const list = typeof names === "string" ? [names] : names;
    for (const n of list)
      if (!this._cols.has(n))
        throw new InvalidArgumentError(`Column ${n} not in the dataset: it has ${this.column_names.join(", ")}`);
    return new Dataset(new Map([...this._cols].filter(([k]) => !list.includes(k))), this.#length);
  }

  /**
   * Applies fn to every row (or, with batched, to batches of columns), as in Python: returned columns
   * are added or replace existing ones, `remove_columns` are dropped, and a batched fn may change the
   * number of rows when the old columns are removed.
   */
  async map(fn: (input: any, index?: any) => any, options: MapOptions = {}): Promise<Dataset> {
    if (typeof fn !== "function") throw invalid("function", "a function", fn);
    if (!isPlainObject(options)) throw invalid("options", "an object", options);
    check.knownKeys("map", options, ["batched", "batch_size", "remove_columns", "with_indices", "disable_progress"]);
    const withIndices = options.with_indices ?? false;
    const batched = options.batched ?? false;
    if (options.batch_size !== undefined) check.integer("batch_size", options.batch_size, 1);
    const batchSize = batched ? (options.batch_size ?? 1000) : 1;
    const remove =
      options.remove_columns === undefined
        ? []
        : typeof options.remove_columns === "string"
          ? [options.remove_columns]
          : options.remove_columns;
    for (const r of remove)
      if (!this._cols.has(r))
        throw new InvalidArgumentError(
          `Column ${r} in remove_columns is not in the dataset: it has ${this.column_names.join(", ")}`,
        );
    const pieces = new Map<string, Column[]>();
    const keptPieces = new Map<string, Column[]>();
    const progress = bar("Map", this.#length, undefined, options.disable_progress || this.#length < 10_000);
    let rowsOut = 0;
    for (let start = 0; start < this.#length; start += batchSize) {
      const end = Math.min(start + batchSize, this.#length);
      const idx = Int32Array.from({ length: end - start }, (_, k) => start + k);
      let out: unknown;
      if (batched) {
        const batch: Batch = {};
        for (const [k, c] of this._cols) batch[k] = Array.from(idx, (i) => cell(c, i));
        out = await (withIndices ? fn(batch, Array.from(idx)) : fn(batch));
      } else out = await (withIndices ? fn(this.get(start), start) : fn(this.get(start)));
      if (out === undefined || out === null) out = {};
      if (!isPlainObject(out)) throw invalid("the mapped function's result", "an object of columns", out);
      const entries = Object.entries(out as Record<string, unknown>);
      let n = end - start;
      if (batched) {
        const lens = entries.map(([k, v]) => colLength(toColumn(k, v)));
        if (lens.length && lens.some((l) => l !== lens[0]))
          throw new InvalidArgumentError(
            `The mapped function returned columns of different lengths: ` +
              `${entries.map(([k], i) => `${k}: ${lens[i]}`).join(", ")}`,
          );
        if (lens.length) n = lens[0]!;
      }
      const kept = this.column_names.filter((k) => !remove.includes(k) && !entries.some(([e]) => e === k));
      if (n !== end - start && kept.length)
        throw new InvalidArgumentError(
          `The mapped function returned ${n} rows for a batch of ${end - start}: remove the old columns ` +
            `(${kept.join(", ")}) with remove_columns`,
        );
      for (const [k, v] of entries) {
        const col = batched ? toColumn(k, v) : toColumn(k, [v instanceof Tensor ? v.tolist() : v]);
        if (!pieces.has(k)) pieces.set(k, []);
        pieces.get(k)!.push(col);
      }
      for (const k of kept) {
        if (!keptPieces.has(k)) keptPieces.set(k, []);
        keptPieces.get(k)!.push(take(this._cols.get(k)!, idx));
      }
      rowsOut += n;
      progress.update(end);
    }
    progress.stop();
    const cols = new Map<string, Column>();
    for (const k of this.column_names) if (keptPieces.has(k) && !pieces.has(k)) cols.set(k, concat(keptPieces.get(k)!));
    for (const [k, ps] of pieces) {
      const c = concat(ps);
      if (colLength(c) !== rowsOut) throw new InvalidArgumentError(`Column ${k} was not returned for every batch`);
      cols.set(k, c);
    }
    return new Dataset(cols, rowsOut);
  }

  /** Writes the dataset to a folder (dataset_info.json and one file per column), atomically. */
  async save_to_disk(dir: string): Promise<void> {
    check.string("dataset_path", dir);
    const tmp = `${dir}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    const info: Record<string, unknown> = {
      format: "torchlm-dataset",
      version: 1,
      num_rows: this.#length,
      columns: [],
    };
    for (const [i, [name, c]] of [...this._cols].entries()) {
      const file = `column-${i}`;
      if (c.kind === "values") await writeFile(join(tmp, file + ".json"), JSON.stringify(c.data));
      else await writeFile(join(tmp, file + ".bin"), Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength));
      (info.columns as unknown[]).push({
        name,
        kind: c.kind,
        file,
        type: c.kind === "values" ? null : c.data.constructor.name,
        width: c.kind === "matrix" ? c.width : null,
      });
    }
    await writeFile(join(tmp, "dataset_info.json"), JSON.stringify(info, null, 2));
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  }

  static async load_from_disk(dir: string): Promise<Dataset> {
    const infoPath = join(dir, "dataset_info.json");
    if (!existsSync(infoPath))
      throw new InvalidArgumentError(`${dir} is not a dataset saved by save_to_disk (no dataset_info.json)`);
    const info = JSON.parse(await readFile(infoPath, "utf8"));
    const types: Record<string, { new (b: ArrayBuffer, o: number, n: number): Numeric; BYTES_PER_ELEMENT: number }> = {
      Int32Array,
      Float32Array,
      Float64Array,
      BigInt64Array,
      Uint8Array,
    } as never;
    const cols = new Map<string, Column>();
    for (const c of info.columns) {
      if (c.kind === "values") {
        cols.set(c.name, { kind: "values", data: JSON.parse(await readFile(join(dir, c.file + ".json"), "utf8")) });
        continue;
      }
      const T = types[c.type];
      if (!T) throw new InvalidArgumentError(`${dir}: unknown column type ${c.type}`);
      const buf = await readFile(join(dir, c.file + ".bin"));
      const copy = new Uint8Array(buf).buffer;
      const data = new T(copy, 0, copy.byteLength / T.BYTES_PER_ELEMENT);
      cols.set(c.name, c.kind === "matrix" ? { kind: "matrix", data, width: c.width } : { kind: "numbers", data });
    }
    return new Dataset(cols, info.num_rows);
  }

  toString(): string {
    return `Dataset({ features: [${this.column_names.map((c) => `'${c}'`).join(", ")}], num_rows: ${this.#length} })`;
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

/** Splits by name, as Python's DatasetDict. */
export type DatasetDict = Record<string, Dataset>;

const READERS: Record<string, (path: string) => Promise<Row[] | Dataset>> = {
  async ".parquet"(path) {
    const file = await asyncBufferFromFile(path);
    const rows = (await parquetReadObjects({ file })) as Row[];
    return rows.map((r) =>
      Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === "bigint" ? Number(v) : v])),
    );
  },
  async ".json"(path) {
    const text = await readFile(path, "utf8");
    const t = text.trimStart();
    if (t.startsWith("[")) return JSON.parse(text) as Row[];
    if (t.startsWith("{") && !t.includes("\n{")) {
      const obj = JSON.parse(text) as Record<string, unknown>;
      if (Array.isArray(obj.data)) return obj.data as Row[];
      return Dataset.from_dict(obj);
    }
    return jsonLines(text, path);
  },
  async ".jsonl"(path) {
    return jsonLines(await readFile(path, "utf8"), path);
  },
  async ".csv"(path) {
    const rows = parseCsv(await readFile(path, "utf8"), { columns: true, skip_empty_lines: true, cast: true }) as Row[];
    return rows;
  },
  async ".txt"(path) {
    return (await readFile(path, "utf8"))
      .split(/\r?\n/)
      .filter((l, i, a) => i < a.length - 1 || l !== "")
      .map((text) => ({ text }));
  },
};
READERS[".tsv"] = async (path) =>
  parseCsv(await readFile(path, "utf8"), {
    columns: true,
    delimiter: "\t",
    skip_empty_lines: true,
    cast: true,
  }) as Row[];
READERS[".text"] = READERS[".txt"]!;
const BUILDERS: Record<string, string> = { parquet: ".parquet", json: ".json", csv: ".csv", text: ".txt" };

function jsonLines(text: string, path: string): Row[] {
  return text
    .split(/\r?\n/)
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as Row;
      } catch (e) {
        throw new InvalidArgumentError(`${path}:${i + 1} is not valid JSON: ${(e as Error).message}`);
      }
    });
}

async function readFiles(paths: string[], builderExt?: string): Promise<Dataset> {
  const parts: Dataset[] = [];
  for (const p of paths) {
    const ext = builderExt ?? (p.endsWith(".jsonl.gz") ? ".jsonl" : extname(p).toLowerCase());
    const reader = READERS[ext];
    if (!reader)
      throw new InvalidArgumentError(`Cannot read ${p}: torchlm reads parquet, json, jsonl, csv, tsv and text files`);
    const out = await reader(p);
    parts.push(out instanceof Dataset ? out : Dataset.from_list(out));
  }
  if (parts.length === 1) return parts[0]!;
  const names = parts[0]!.column_names;
  for (const p of parts)
    if (p.column_names.join() !== names.join())
      throw new InvalidArgumentError(
        `Data files have different columns: ${names.join(", ")} vs ${p.column_names.join(", ")}`,
      );
  return new Dataset(new Map(names.map((n) => [n, concat(parts.map((p) => p._cols.get(n)!))])));
}

/**
 * The split a data file belongs to, from its path as Hugging Face names them (train-0000-of-0001.parquet,
 * data/test/..., ...).
 */
export function splitOf(path: string): string | null {
  const SPLITS = ["train", "test", "validation", "valid", "dev", "unsupervised", "eval", "evaluation"];
  const parts = path.toLowerCase().split("/");
  for (let i = parts.length - 1; i >= 0; i--) {
    const name = i === parts.length - 1 ? parts[i]!.replace(/\.[a-z.]+$/, "") : parts[i]!;
    const m = /^([a-z]+)(?:[-_.].*)?$/.exec(name);
    if (m && SPLITS.includes(m[1]!)) return m[1] === "valid" || m[1] === "dev" ? "validation" : m[1]!;
  }
  return null;
}

function groupSplits(files: string[]): Record<string, string[]> {
  const dataFiles = files.filter(
    (f) => Object.keys(READERS).includes(extname(f).toLowerCase()) && !/(^|\/)(\.|README)/i.test(f),
  );
  // One configuration: the first folder (in order) that holds split files, as for imdb's plain_text/.
  const configs = [
    ...new Set(dataFiles.filter((f) => splitOf(f)).map((f) => (f.includes("/") ? f.split("/")[0]! : ""))),
  ].sort();
  const config = configs[0] ?? "";
  const out: Record<string, string[]> = {};
  for (const f of dataFiles) {
    if (config && !f.startsWith(config + "/")) continue;
    const s = splitOf(f) ?? (configs.length === 0 ? "train" : null);
    if (s) (out[s] ??= []).push(f);
  }
  for (const k of Object.keys(out)) out[k]!.sort();
  return out;
}

function pickSplit<T>(splits: Record<string, T>, split: string | undefined, where: string): T | Record<string, T> {
  if (split === undefined) return splits;
  const m = /^(\w+)(\[.*\])?$/.exec(split);
  if (!m || m[2])
    throw invalid(
      "split",
      'a split name such as "train" (slices like train[:10%] are not supported: use select)',
      split,
    );
  const s = splits[m[1]!];
  if (s === undefined)
    throw new InvalidArgumentError(
      `Unknown split "${split}" for ${where}: it has ${Object.keys(splits).join(", ") || "no data files"}`,
    );
  return s;
}

export interface LoadDatasetOptions {
  split?: string;
  data_files?: string | string[] | Record<string, string | string[]>;
  revision?: string;
  data_dir?: string;
}

/**
 * `await load_dataset("stanfordnlp/imdb", { split: "train" })`: a Hub dataset through its parquet (or
 * json/csv) files, downloaded into the cache shared with Python; or local files / folders; or a builder
 * ("csv", "json", "parquet", "text") with data_files. Without `split`, returns every split by name.
 */
export async function load_dataset(path: string, options: LoadDatasetOptions & { split: string }): Promise<Dataset>;
export async function load_dataset(path: string, options?: LoadDatasetOptions): Promise<Dataset | DatasetDict>;
export async function load_dataset(path: string, options: LoadDatasetOptions = {}): Promise<Dataset | DatasetDict> {
  check.string("path", path);
  if (!isPlainObject(options)) throw invalid("options", "an object", options);
  check.knownKeys("load_dataset", options, ["split", "data_files", "revision", "data_dir"]);
  const { split, data_files } = options;
  const load = async (splits: Record<string, string[]>, where: string, ext?: string) => {
    const chosen = pickSplit(splits, split, where);
    if (Array.isArray(chosen)) return readFiles(chosen, ext);
    const out: DatasetDict = {};
    for (const [k, files] of Object.entries(chosen as Record<string, string[]>)) out[k] = await readFiles(files, ext);
    return out;
  };
  const normalise = (df: NonNullable<LoadDatasetOptions["data_files"]>, base: string): Record<string, string[]> => {
    const abs = (p: string) => resolvePath(base, p);
    if (typeof df === "string") return { train: [abs(df)] };
    if (Array.isArray(df)) return { train: df.map(abs) };
    return Object.fromEntries(Object.entries(df).map(([k, v]) => [k, (Array.isArray(v) ? v : [v]).map(abs)]));
  };
  // A builder name with data_files: load_dataset("csv", { data_files: "reviews.csv" })
  if (BUILDERS[path]) {
    if (!data_files) throw new InvalidArgumentError(`load_dataset("${path}") needs data_files`);
    return load(normalise(data_files, process.cwd()), path, BUILDERS[path]);
  }
  const local = resolvePath(path);
  if (existsSync(local)) {
    if (statSync(local).isFile()) return load({ train: [local] }, path);
    if (
      existsSync(join(local, "dataset_info.json")) &&
      JSON.parse(await readFile(join(local, "dataset_info.json"), "utf8")).format === "torchlm-dataset"
    )
      return Dataset.load_from_disk(local);
    if (data_files) return load(normalise(data_files, local), path);
    const files = walk(local).map((f) => relative(local, f).split("\\").join("/"));
    return load(
      Object.fromEntries(Object.entries(groupSplits(files)).map(([k, v]) => [k, v.map((f) => join(local, f))])),
      path,
    );
  }
  // A Hub dataset
  checkRepoId(path);
  const revision = options.revision ?? "main";
  if (data_files) {
    const splits =
      typeof data_files === "string" || Array.isArray(data_files)
        ? { train: [data_files].flat() }
        : Object.fromEntries(Object.entries(data_files).map(([k, v]) => [k, [v].flat()]));
    const chosen = pickSplit(splits, split, path);
    const want = Array.isArray(chosen) ? chosen : Object.values(chosen).flat();
    const local = await Promise.all(
      want.map(async (f) => (await resolveHubFile(path, f, { type: "dataset", revision, progress: true }))!),
    );
    if (Array.isArray(chosen)) return readFiles(local);
    return load(
      Object.fromEntries(
        Object.entries(chosen as Record<string, string[]>).map(([k, v]) => [k, v.map((f) => local[want.indexOf(f)]!)]),
      ),
      path,
    );
  }
  const files = await listHubFiles(path, revision);
  const splits = groupSplits(files);
  if (Object.keys(splits).length === 0)
    throw new InvalidArgumentError(
      `Dataset ${path} has no parquet, json, csv or text data files that torchlm can read`,
    );
  const chosen = pickSplit(splits, split, path);
  const fetchAll = async (fs: string[]) =>
    Promise.all(fs.map(async (f) => (await resolveHubFile(path, f, { type: "dataset", revision, progress: true }))!));
  if (Array.isArray(chosen)) return readFiles(await fetchAll(chosen));
  const out: DatasetDict = {};
  for (const [k, fs] of Object.entries(chosen as Record<string, string[]>))
    out[k] = await readFiles(await fetchAll(fs));
  return out;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith(".")) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

/** The repository's files: from the Hub, or (offline, or when the Hub cannot be reached) from the cache. */
async function listHubFiles(repoId: string, revision: string): Promise<string[]> {
  const folder = repoFolder(repoId, "dataset");
  const fromCache = (): string[] | null => {
    const ref = join(folder, "refs", revision);
    const commit = /^[0-9a-f]{40}$/.test(revision)
      ? revision
      : existsSync(ref)
        ? readFileSync(ref, "utf8").trim()
        : null;
    const snap = commit ? join(folder, "snapshots", commit) : null;
    return snap && existsSync(snap) ? walk(snap).map((f) => relative(snap, f).split("\\").join("/")) : null;
  };
  if (!isOffline()) {
    try {
      const files: string[] = [];
      for await (const f of listFiles({
        repo: { type: "dataset", name: repoId },
        revision,
        recursive: true,
        hubUrl: hubEndpoint(),
        accessToken: process.env.HF_TOKEN || undefined,
      })) {
        if (f.type === "file") files.push(f.path);
      }
      return files;
    } catch (e) {
      const cached = fromCache();
      if (cached) return cached;
      throw new TorchlmError(
        `Cannot list the files of dataset ${repoId} on ${hubEndpoint()} (${(e as Error).message}), and it is not in ` +
          `the cache at ${folder}. ` +
          "Check the network, or set HF_HUB_OFFLINE=1 and use a cached copy or local files.",
        "ERR_TORCHLM_HUB",
      );
    }
  }
  const cached = fromCache();
  if (cached) return cached;
  throw new TorchlmError(
    `Dataset ${repoId} (revision ${revision}) is not in the Hugging Face cache at ${folder} ` +
      `(HF_HUB_CACHE=${hubCacheDir()}), ` +
      "and HF_HUB_OFFLINE is set so nothing is downloaded. " +
      "Download it once with network access, or pass local files: " +
      `load_dataset("parquet", { data_files: { train: "train.parquet" } }).`,
    "ERR_TORCHLM_HUB",
  );
}
