// Finds libtorch's CMake package directory, in the documented order:
//   1. LIBTORCH (a libtorch folder) or Torch_DIR (its share/cmake/Torch folder);
//   2. a Python `torch` on the PATH (torch.utils.cmake_prefix_path: how a CUDA build is found);
//   3. Debian's libtorch-dev.
// Prints the folder with --print; exits 1 with what to do when none is found.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { pathToFileURL } from "node:url";

const DEBIAN_DIRS = [
  "/usr/lib/x86_64-linux-gnu/cmake/Torch",
  "/usr/lib/aarch64-linux-gnu/cmake/Torch",
];

function hasConfig(dir) {
  return dir && existsSync(join(dir, "TorchConfig.cmake"));
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
    throw new Error(`LIBTORCH=${env.LIBTORCH} has no share/cmake/Torch/TorchConfig.cmake: point it at an unpacked libtorch folder`);
  }
  for (const py of ["python3", "python"]) {
    try {
      const prefix = execFileSync(py, ["-c", "import torch,sys;sys.stdout.write(torch.utils.cmake_prefix_path)"], {
        stdio: ["ignore", "pipe", "ignore"],
        timeout: 60000,
      }).toString().trim();
      const dir = join(prefix, "Torch");
      if (hasConfig(dir)) return { dir, source: `${py} (torch ${prefix})` };
    } catch {
      // no python or no torch module: try the next source
    }
  }
  for (const dir of DEBIAN_DIRS) if (hasConfig(dir)) return { dir, source: "Debian libtorch-dev" };
  return null;
}

export const HOW_TO_INSTALL =
  "libtorch not found: install libtorch-dev (Debian/Ubuntu: apt-get install libtorch-dev libopenblas0-pthread), " +
  "or set LIBTORCH to an unpacked libtorch folder, or Torch_DIR to its share/cmake/Torch, " +
  "or put a Python with torch on the PATH (pip install torch)";

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  try {
    const found = findLibtorch();
    if (!found) {
      console.error(HOW_TO_INSTALL);
      process.exit(1);
    }
    const arg = process.argv[2];
    if (arg === "--include" || arg === "--lib") {
      // For binding.gyp: the prefix is four levels above share/cmake/Torch (or lib/cmake/Torch).
      const prefix = join(found.dir, "..", "..", "..");
      const debian = found.source.startsWith("Debian");
      const root = debian ? "/usr" : prefix;
      if (arg === "--include") console.log([join(root, "include"), join(root, "include", "torch", "csrc", "api", "include")].join(" "));
      else console.log(debian ? join(found.dir, "..", "..") : join(prefix, "lib"));
    } else console.log(found.dir);
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
