// Virtual environments that torchlm owns: the libtorch it builds on when none is found (.venv, torch only), the
// references of `npm test` (.venv-test) and the bench's Python peers (bench/.peers/venv). Never the user's
// site-packages. Each is described by a pinned requirements file; a stamp inside the venv records which one it holds,
// so a second call costs nothing and a changed pin reinstalls.
import { existsSync, mkdirSync, readFileSync, writeFileSync, openSync, closeSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const REQUIREMENTS = join(ROOT, "scripts", "requirements");

/** The interpreter a venv is made from: TORCHLM_PYTHON, else python3 on the PATH. */
/** The environment switches' convention (docs/switches.md), as lib/env.ts's: on when set to anything but "" or "0". */
export function envFlag(name, env = process.env) {
  const v = env[name];
  return v !== undefined && v !== "" && v !== "0";
}

export function basePython(env = process.env) {
  return env.TORCHLM_PYTHON || "python3";
}

export function venvPython(dir) {
  return join(dir, "bin", "python");
}

/** One line per step with its time; the full log only when the step fails. */
export function step(what, log, cmd, args, options = {}) {
  const t0 = Date.now();
  mkdirSync(dirname(log), { recursive: true });
  const fd = openSync(log, "a");
  const r = spawnSync(cmd, args, { stdio: ["ignore", fd, fd], ...options });
  closeSync(fd);
  const s = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.status === 0) {
    console.log(`torchlm: ${what} (${s} s)`);
    return;
  }
  const tail = existsSync(log) ? readFileSync(log, "utf8").split("\n").slice(-40).join("\n") : "";
  throw new Error(
    `${what} failed after ${s} s (${r.error ? r.error.message : `exit ${r.status}`}); the end of ${log}:\n${tail}`,
  );
}

/**
 * Makes (or reuses) the venv at dir holding the pinned packages of requirements/<name>.txt and returns its python.
 * Throws with the end of the pip log when something fails.
 */
/** The text of requirements/<name>.txt with the files it includes (`-r other.txt`) in place: one pin, one place. */
function requirementsText(name) {
  return readFileSync(join(REQUIREMENTS, `${name}.txt`), "utf8")
    .split("\n")
    .map((l) =>
      l.startsWith("-r ")
        ? requirementsText(
            l
              .slice(3)
              .trim()
              .replace(/\.txt$/, ""),
          )
        : l,
    )
    .join("\n");
}

export function ensureVenv(dir, name, { why = "" } = {}) {
  const reqFile = join(REQUIREMENTS, `${name}.txt`);
  const wanted = requirementsText(name);
  const stamp = join(dir, ".torchlm-requirements");
  const py = venvPython(dir);
  if (existsSync(py) && existsSync(stamp) && readFileSync(stamp, "utf8") === wanted) return py;
  const log = dir + ".log";
  mkdirSync(dirname(dir), { recursive: true });
  writeFileSync(log, "");
  if (!existsSync(py)) {
    const base = basePython();
    step(`creating a Python environment in ${dir}${why ? ` (${why})` : ""} with ${base}`, log, base, [
      "-m",
      "venv",
      dir,
    ]);
  }
  const pins = wanted
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .join(" ");
  step(`pip install ${pins}`, log, py, ["-m", "pip", "install", "--disable-pip-version-check", "-r", reqFile], {
    env: { ...process.env, PIP_NO_INPUT: "1" },
  });
  writeFileSync(stamp, wanted);
  return py;
}
