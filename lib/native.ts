// Loads the native addon, explaining its own failures; its contract is lib/addon_types.ts.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, join } from "node:path";
import type { Addon } from "./addon_types.js";
import { AddonLoadError } from "./errors.js";
import { packageRoot } from "./package_root.js";

export type * from "./addon_types.js";
export { packageRoot };

/** What scripts/install.mjs recorded about the addon in build/Release: prebuilt or compiled, and on which libtorch. */
interface Installed {
  from: "prebuilt" | "compiled";
  tag?: string;
  version: string;
  variant: string;
  libDir: string;
}

function installed(root: string): Installed | null {
  try {
    return JSON.parse(readFileSync(join(root, "build", "Release", "torchlm.json"), "utf8")) as Installed;
  } catch {
    return null; // built by hand (cmake-js, node-gyp), or before install recorded it
  }
}

function load(): Addon {
  const root = packageRoot();
  const candidates = [process.env.TORCHLM_BINARY, join(root, "build", "Release", "torchlm.node")].filter(
    Boolean,
  ) as string[];
  const path = candidates.find((p) => existsSync(p));
  if (!path) {
    throw new AddonLoadError(
      `torchlm's native addon is not built (${candidates[candidates.length - 1]} is missing): run \`npm run ` +
        `build:native\` ` +
        "in the torchlm folder. It needs libtorch: python3's torch, LIBTORCH, or torchlm's own .venv (made by the " +
        "build).",
      "ERR_TORCHLM_ADDON_NOT_BUILT",
    );
  }
  const require = createRequire(import.meta.url);
  const record = path === candidates[candidates.length - 1] ? installed(root) : null;
  // Windows has no RPATH: a DLL's dependencies are searched for on PATH.
  if (process.platform === "win32" && record)
    process.env.PATH = `${record.libDir}${delimiter}${process.env.PATH ?? ""}`;
  try {
    return require(path) as Addon;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/lib(torch|c10)[^ ]*\.so|libtorch|c10\.dll|libc10/.test(msg)) {
      if (record?.from === "prebuilt") {
        throw new AddonLoadError(
          `libtorch not found: the prebuilt addon ${record.tag} was installed for the libtorch ${record.version} ` +
            `(${record.variant}) in ${record.libDir}, which is gone (a removed venv or pip uninstall?); pip install ` +
            `torch==${record.version} again, or run \`npm rebuild torchlm\` to set torchlm up for the libtorch there ` +
            `is now (${msg})`,
          "ERR_TORCHLM_LIBTORCH_NOT_FOUND",
        );
      }
      throw new AddonLoadError(
        `libtorch not found: the libtorch the addon was built against is gone (a removed venv or pip uninstall?); ` +
          `pip install torch==2.13.0 or set LIBTORCH, then run \`npm run build:native\` (${msg})`,
        "ERR_TORCHLM_LIBTORCH_NOT_FOUND",
      );
    }
    throw new AddonLoadError(
      `torchlm's native addon at ${path} failed to load: ${msg}. Rebuild it with \`npm run build:native\`.`,
      "ERR_TORCHLM_ADDON_LOAD",
    );
  }
}

export const binding: Addon = load();
