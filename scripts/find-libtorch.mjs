// Finds libtorch's CMake package directory, in the documented order:
//   1. LIBTORCH (an unpacked libtorch folder) or Torch_DIR (its share/cmake/Torch folder);
//   2. the `torch` of python3 (torch.utils.cmake_prefix_path: pip's CPU or CUDA builds);
//   3. the torch of the venv torchlm owns (.venv, made by scripts/install.mjs with the pinned torch==2.13.0).
// With --print: the folder; --include / --lib: what binding.gyp needs. Exits 1 with what to do when none is found.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { pathToFileURL } from "node:url";
import { ROOT, basePython, venvPython } from "./python-env.mjs";

export const OWN_VENV = join(ROOT, ".venv");

function hasConfig(dir) {
  return dir && existsSync(join(dir, "TorchConfig.cmake"));
}

function torchOf(python) {
  try {
    const prefix = execFileSync(python, ["-c", "import torch,sys;sys.stdout.write(torch.utils.cmake_prefix_path)"], {
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 120000,
    })
      .toString()
      .trim();
    const dir = join(prefix, "Torch");
    return hasConfig(dir) ? dir : null;
  } catch {
    return null; // no such python, or no torch in it
  }
}

/** @returns {{ dir: string, source: string } | null} */
export function findLibtorch(env = process.env) {
  if (env.Torch_DIR) {
    if (hasConfig(env.Torch_DIR)) return { dir: env.Torch_DIR, source: "Torch_DIR" };
    throw new Error(`Torch_DIR=${env.Torch_DIR} has no TorchConfig.cmake`);
  }
  if (env.LIBTORCH) {
    const dir = join(env.LIBTORCH, "share", "cmake", "Torch");
    if (hasConfig(dir)) return { dir, source: "LIBTORCH" };
    throw new Error(
      `LIBTORCH=${env.LIBTORCH} has no share/cmake/Torch/TorchConfig.cmake: point it at an unpacked libtorch folder`,
    );
  }
  const py = basePython(env);
  const system = torchOf(py);
  if (system) return { dir: system, source: `the torch of ${py}` };
  if (existsSync(venvPython(OWN_VENV))) {
    const own = torchOf(venvPython(OWN_VENV));
    if (own) return { dir: own, source: `torchlm's own environment (${OWN_VENV})` };
  }
  return null;
}

/** libtorch's root: the folder holding include/ and lib/ (share/cmake/Torch is three levels down). */
export function libtorchRoot(found) {
  return join(found.dir, "..", "..", "..");
}

export const HOW_TO_INSTALL =
  "libtorch not found: pip install torch==2.13.0 for python3 (or let `npm install` put it in torchlm's own " +
  "environment: that needs python3 with venv and pip), or set LIBTORCH to an unpacked libtorch folder, " +
  "or Torch_DIR to its share/cmake/Torch";

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  try {
    const found = findLibtorch();
    if (!found) {
      console.error(HOW_TO_INSTALL);
      process.exit(1);
    }
    const arg = process.argv[2];
    const root = libtorchRoot(found);
    if (arg === "--include")
      console.log([join(root, "include"), join(root, "include", "torch", "csrc", "api", "include")].join(" "));
    else if (arg === "--lib") console.log(join(root, "lib"));
    else console.log(found.dir);
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
