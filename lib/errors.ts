/**
 * torchlm's errors. Every one is a TorchlmError with a `code`; the message has one shape where an argument is at
 * fault: `Expected ${expected} for ${name} but received ${received}`. Errors from the addon keep the caller's
 * JavaScript stack and the native side's kind: the caller's mistake, a disposed object, an abort, or libtorch's own.
 */
export type ErrorCode =
  | "ERR_TORCHLM_INVALID_ARGUMENT"
  | "ERR_TORCHLM_DISPOSED"
  | "ABORT_ERR"
  | "ERR_TORCHLM_NATIVE"
  | "ERR_TORCHLM_ADDON_NOT_BUILT"
  | "ERR_TORCHLM_LIBTORCH_NOT_FOUND"
  | "ERR_TORCHLM_ADDON_LOAD"
  | "ERR_TORCHLM_IO"
  | "ERR_TORCHLM_HUB"
  | "ERR_TORCHLM_NONFINITE_LOSS"
  | "ERR_TORCHLM_INTERRUPTED";

/** The base of torchlm's errors; `code` says which kind. */
export class TorchlmError extends Error {
  override name = "TorchlmError";
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode) {
    super(message);
    this.code = code;
  }
}

/** An argument, option, input file or state of the call that cannot work (ERR_TORCHLM_INVALID_ARGUMENT). */
export class InvalidArgumentError extends TorchlmError {
  override name = "InvalidArgumentError";
  constructor(message: string) {
    super(message, "ERR_TORCHLM_INVALID_ARGUMENT");
  }
}

/** A tensor, model or process group used after dispose() (ERR_TORCHLM_DISPOSED). */
export class DisposedError extends TorchlmError {
  override name = "DisposedError";
  constructor(message: string) {
    super(message, "ERR_TORCHLM_DISPOSED");
  }
}

/** Work cancelled through its AbortSignal: name "AbortError" and code "ABORT_ERR", as Node's own. */
export class AbortError extends TorchlmError {
  override name = "AbortError";
  constructor(message = "The operation was aborted") {
    super(message, "ABORT_ERR");
  }
}

/** libtorch (or the system below it) failed where the arguments were valid (ERR_TORCHLM_NATIVE). */
export class NativeError extends TorchlmError {
  override name = "NativeError";
  constructor(message: string) {
    super(message, "ERR_TORCHLM_NATIVE");
  }
}

/** The addon cannot be loaded: not built, libtorch gone, or another load failure. */
export class AddonLoadError extends TorchlmError {
  override name = "AddonLoadError";
  constructor(
    message: string,
    code: "ERR_TORCHLM_ADDON_NOT_BUILT" | "ERR_TORCHLM_LIBTORCH_NOT_FOUND" | "ERR_TORCHLM_ADDON_LOAD",
  ) {
    super(message, code);
  }
}

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 60 ? v.slice(0, 57) + "..." : v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint" || v === null || v === undefined)
    return String(v);
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === "function") return "a function";
  const name = (v as object).constructor?.name;
  return name && name !== "Object" ? `a ${name}` : "an object";
}

/** `Expected ${expected} for ${name} but received ${received}`. */
export function invalid(name: string, expected: string, received: unknown): InvalidArgumentError {
  return new InvalidArgumentError(`Expected ${expected} for ${name} but received ${describe(received)}`);
}

export function isPlainObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

export const check = {
  integer(name: string, v: unknown, min = -Infinity, max = Infinity): number {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      const what =
        min === 1 && max === Infinity
          ? "positive integer"
          : min === 0 && max === Infinity
            ? "non-negative integer"
            : `integer between ${min} and ${max}`;
      throw invalid(name, what, v);
    }
    return v;
  },
  number(name: string, v: unknown, min = -Infinity, max = Infinity, exclusiveMin = false): number {
    if (typeof v !== "number" || Number.isNaN(v) || v < min || v > max || (exclusiveMin && v === min)) {
      const what =
        min === -Infinity && max === Infinity
          ? "number"
          : exclusiveMin
            ? `number greater than ${min}${max < Infinity ? ` and at most ${max}` : ""}`
            : `number between ${min} and ${max}`;
      throw invalid(name, what, v);
    }
    return v;
  },
  boolean(name: string, v: unknown): boolean {
    if (typeof v !== "boolean") throw invalid(name, "boolean", v);
    return v;
  },
  string(name: string, v: unknown): string {
    if (typeof v !== "string" || v.length === 0) throw invalid(name, "non-empty string", v);
    return v;
  },
  stringOrEmpty(name: string, v: unknown): string {
    if (typeof v !== "string") throw invalid(name, "a string", v);
    return v;
  },
  oneOf<T extends string>(name: string, v: unknown, values: readonly T[]): T {
    if (typeof v !== "string" || !values.includes(v as T))
      throw invalid(name, `one of ${values.map((x) => JSON.stringify(x)).join(", ")}`, v);
    return v as T;
  },
  /** Rejects keys that are not in `known`, naming the first unknown one. */
  knownKeys(what: string, options: object, known: readonly string[]): void {
    for (const key of Object.keys(options)) {
      if (!known.includes(key))
        throw new InvalidArgumentError(`Unknown option ${key} for ${what}: expected one of ${known.join(", ")}`);
    }
  },
};

/**
 * Runs a native Promise-returning call and gives its rejection the caller's JavaScript stack
 * (native errors have none of their own).
 */
export async function withStack<T>(call: () => Promise<T>): Promise<T> {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, withStack);
  try {
    return await call();
  } catch (e) {
    throw rethrow(e, holder.stack);
  }
}

/** The class of an addon error, from the `code` the C++ side set (native/core/errors.h). */
function fromNative(message: string, code: unknown): TorchlmError {
  switch (code) {
    case "ERR_TORCHLM_INVALID_ARGUMENT":
      return new InvalidArgumentError(message);
    case "ERR_TORCHLM_DISPOSED":
      return new DisposedError(message);
    case "ABORT_ERR":
      return new AbortError(message);
    default:
      return new NativeError(message);
  }
}

export function rethrow(e: unknown, stack?: string): Error {
  if (e instanceof TorchlmError) return e;
  // Errors from the addon may come from another realm (jest's vm contexts): test the shape, not the class.
  const o = typeof e === "object" && e !== null ? (e as { message?: unknown; code?: unknown }) : {};
  const err = fromNative(typeof o.message === "string" ? o.message : String(e), o.code);
  if (stack) err.stack = `${err.name}: ${err.message}\n${stack.split("\n").slice(1).join("\n")}`;
  return err;
}

/** Calls a synchronous native function, turning its error into a TorchlmError. */
export function native<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    const err = rethrow(e);
    if (!(e instanceof TorchlmError)) Error.captureStackTrace(err, native);
    throw err;
  }
}

/**
 * An InvalidArgumentError about a file's contents that does not yet say which file: the same error, its message
 * (and stack) starting with the file. Other errors pass through as they are.
 */
export function inFile(e: unknown, file: string): unknown {
  if (!(e instanceof InvalidArgumentError) || e.message.includes(file)) return e;
  const old = e.message;
  e.message = `${file}: ${old}`;
  if (e.stack?.includes(old)) e.stack = e.stack.replace(old, e.message);
  return e;
}

/** Runs `call`, naming `file` in an InvalidArgumentError it throws (inFile). */
export async function readingFile<T>(file: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw inFile(e, file);
  }
}
