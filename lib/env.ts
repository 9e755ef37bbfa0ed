// The environment switches' one convention in TypeScript, as native/core/runtime/env.h's in C++ (docs/switches.md):
// a flag is on when set to anything but "" or "0".
export function envFlag(name: string): boolean {
  const v = process.env[name];
  return v !== undefined && v !== "" && v !== "0";
}
