/** The one error shape of torchlm: what was expected, for which argument, and what was received. */
export class TorchlmError extends Error {
  override name = "TorchlmError";
}

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 60 ? v.slice(0, 57) + "..." : v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint" || v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === "function") return "a function";
  const name = (v as object).constructor?.name;
  return name && name !== "Object" ? `a ${name}` : "an object";
}

/** `Expected ${expected} for ${name} but received ${received}`. */
export function invalid(name: string, expected: string, received: unknown): TorchlmError {
  return new TorchlmError(`Expected ${expected} for ${name} but received ${describe(received)}`);
}

export function isPlainObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

export const check = {
  integer(name: string, v: unknown, min = -Infinity, max = Infinity): number {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      const what = min === 1 && max === Infinity ? "positive integer" : min === 0 && max === Infinity ? "non-negative integer"
        : `integer between ${min} and ${max}`;
      throw invalid(name, what, v);
    }
    return v;
  },
  number(name: string, v: unknown, min = -Infinity, max = Infinity, exclusiveMin = false): number {
    if (typeof v !== "number" || Number.isNaN(v) || v < min || v > max || (exclusiveMin && v === min)) {
      const what = min === -Infinity && max === Infinity ? "number" : exclusiveMin ? `number greater than ${min}${max < Infinity ? ` and at most ${max}` : ""}`
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
    if (typeof v !== "string" || !values.includes(v as T)) throw invalid(name, `one of ${values.map((x) => JSON.stringify(x)).join(", ")}`, v);
    return v as T;
  },
  /** Rejects keys that are not in `known`, naming the first unknown one. */
  knownKeys(what: string, options: object, known: readonly string[]): void {
    for (const key of Object.keys(options)) {
      if (!known.includes(key)) throw new TorchlmError(`Unknown option ${key} for ${what}: expected one of ${known.join(", ")}`);
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

export function rethrow(e: unknown, stack?: string): Error {
  // Errors from the addon may come from another realm (jest's vm contexts): test the shape, not the class.
  const message = typeof e === "object" && e !== null && typeof (e as { message?: unknown }).message === "string" ? (e as Error).message : String(e);
  const err = e instanceof TorchlmError ? e : new TorchlmError(message);
  if (stack && !(e instanceof TorchlmError)) err.stack = `${err.name}: ${err.message}\n${stack.split("\n").slice(1).join("\n")}`;
  return err;
}

/** Calls a synchronous native function, turning its error into a TorchlmError. */
export function native<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    const err = rethrow(e);
    Error.captureStackTrace(err, native);
    throw err;
  }
}
