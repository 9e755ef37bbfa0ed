// Loads the native addon, explaining its own failures; its contract is lib/addon_types.ts.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { Addon } from "./addon_types.js";
import { AddonLoadError } from "./errors.js";
import { packageRoot } from "./package_root.js";

export type * from "./addon_types.js";
export { packageRoot };

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
  try {
    return require(path) as Addon;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/lib(torch|c10)[^ ]*\.so|libtorch|c10\.dll|libc10/.test(msg)) {
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
