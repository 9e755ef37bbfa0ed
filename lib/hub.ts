// The Hugging Face Hub: the cache layout shared with Python, offline mode, and downloads with @huggingface/hub.
import { existsSync, mkdirSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve, sep } from "node:path";
import { downloadFileToCacheDir } from "@huggingface/hub";
import { InvalidArgumentError, TorchlmError } from "./errors.js";
import { progressFetch } from "./progress.js";

export type RepoType = "model" | "dataset";

/** `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
export function hubCacheDir(): string {
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  if (process.env.HF_HOME) return join(process.env.HF_HOME, "hub");
  return join(homedir(), ".cache", "huggingface", "hub");
}

export function isOffline(): boolean {
  const v = (process.env.HF_HUB_OFFLINE ?? "").toLowerCase();
  return v === "1" || v === "true" || v === "yes" || v === "on";
}

export function hubEndpoint(): string {
  return (process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
}

function token(): string | undefined {
  return process.env.HF_TOKEN || process.env.HUGGING_FACE_HUB_TOKEN || undefined;
}

/** `models--org--name` / `datasets--org--name`. */
export function repoFolder(repoId: string, type: RepoType): string {
  return join(hubCacheDir(), `${type}s--${repoId.split("/").join("--")}`);
}

export function checkRepoId(repoId: string): void {
  if (!/^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/.test(repoId) || repoId.includes(".."))
    throw new InvalidArgumentError(
      `Invalid repository id ${JSON.stringify(repoId)}: expected "name" or "organisation/name"`,
    );
}

function checkFilename(filename: string): void {
  if (isAbsolute(filename) || filename.split(/[\\/]/).some((p) => p === ".." || p === "") || filename.includes("\0"))
    throw new InvalidArgumentError(
      `Refusing file name ${JSON.stringify(filename)}: it must stay inside the repository`,
    );
}

/** A cached file must resolve (through the snapshot's symlink) to a blob inside the cache. */
function insideCache(path: string, repoDir: string): string {
  const real = realpathSync(path);
  const root = realpathSync(repoDir);
  if (real !== root && !real.startsWith(root + sep))
    throw new InvalidArgumentError(`Refusing cached file ${path}: it links outside the cache (${real})`);
  return path;
}

/** The commit a revision points to in the cache, or null. */
function cachedCommit(repoDir: string, revision: string): string | null {
  if (/^[0-9a-f]{40}$/.test(revision)) return revision;
  const ref = join(repoDir, "refs", revision);
  if (!existsSync(ref)) return null;
  const commit = readFileSync(ref, "utf8").trim();
  return /^[0-9a-f]{40}$/.test(commit) ? commit : null;
}

export interface ResolveOptions {
  revision?: string;
  type?: RepoType;
  /** A missing file is an error (true) or null (false). */
  required?: boolean;
  /** Show a progress bar for large downloads (a TTY only). */
  progress?: boolean;
  /** Never download (as HF_HUB_OFFLINE=1 or local_files_only). */
  offline?: boolean;
}

/** A file from the cache: its path, `"missing"` when the cache knows it does not exist, or null. */
export function cachedFile(
  repoId: string,
  filename: string,
  type: RepoType = "model",
  revision = "main",
): string | "missing" | null {
  checkFilename(filename);
  const repoDir = repoFolder(repoId, type);
  const commit = cachedCommit(repoDir, revision);
  if (!commit) return null;
  const p = join(repoDir, "snapshots", commit, filename);
  if (existsSync(p)) return insideCache(p, repoDir);
  if (existsSync(join(repoDir, ".no_exist", commit, filename))) return "missing";
  return null;
}

/**
 * Resolves one file of a Hub repository to a local path: the cache first, then a download into the
 * cache (unless HF_HUB_OFFLINE is set). Returns null for a missing optional file.
 */
export async function resolveHubFile(
  repoId: string,
  filename: string,
  opts: ResolveOptions = {},
): Promise<string | null> {
  const type = opts.type ?? "model";
  const revision = opts.revision ?? "main";
  const required = opts.required ?? true;
  checkRepoId(repoId);
  checkFilename(filename);
  const cached = cachedFile(repoId, filename, type, revision);
  if (cached === "missing") {
    if (required)
      throw new InvalidArgumentError(`${filename} does not exist in ${type} ${repoId} (revision ${revision})`);
    return null;
  }
  if (cached) return cached;
  if (isOffline() || opts.offline) {
    if (!required) return null;
    throw new TorchlmError(
      `Cannot find ${filename} of ${type} ${repoId} (revision ${revision}) in the Hugging Face cache at ` +
        `${repoFolder(repoId, type)}, ` +
        "and HF_HUB_OFFLINE (or local_files_only) is set so nothing is downloaded. Download it once with network " +
        "access " +
        "(or set HF_HUB_CACHE / HF_HOME to a cache that has it), or pass a local directory.",
      "ERR_TORCHLM_HUB",
    );
  }
  try {
    // @huggingface/hub announces each download on console.debug; torchlm shows a progress bar instead.
    const debug = console.debug;
    console.debug = () => {};
    const path = await downloadFileToCacheDir({
      repo: { type, name: repoId },
      path: filename,
      revision,
      hubUrl: hubEndpoint(),
      cacheDir: hubCacheDir(),
      accessToken: token(),
      fetch: opts.progress === false ? undefined : progressFetch(`${repoId}/${filename}`),
    }).finally(() => {
      console.debug = debug;
    });
    // Python's cache also records which commit a branch pointed to, so that offline loads by
    // revision work: @huggingface/hub does not write refs/, so it is written here.
    const commit = /snapshots[\\/]([0-9a-f]{40})[\\/]/.exec(path)?.[1];
    if (commit && !/^[0-9a-f]{40}$/.test(revision)) {
      const ref = join(repoFolder(repoId, type), "refs", revision);
      mkdirSync(join(ref, ".."), { recursive: true });
      writeFileSync(ref, commit);
    }
    return insideCache(path, repoFolder(repoId, type));
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (e instanceof TorchlmError) throw e;
    if (/RepoNotFound|401|403|Unauthorized|gated/i.test(msg)) {
      throw new InvalidArgumentError(
        `Repository ${repoId} (${type}) was not found on ${hubEndpoint()}: check the id, or set HF_TOKEN if it is ` +
          `private or gated`,
      );
    }
    if (/404|not found|Entry Not Found|cannot get path info/i.test(msg)) {
      if (!required) return null;
      throw new InvalidArgumentError(
        `${filename} does not exist in ${type} ${repoId} (revision ${revision}) on ${hubEndpoint()}`,
      );
    }
    throw new TorchlmError(
      `Cannot download ${filename} of ${type} ${repoId} from ${hubEndpoint()} ` +
        `(${msg.replace(token() ?? "\0", "***")}), ` +
        `and it is not in the cache at ${repoFolder(repoId, type)}. Check the network or set HF_HUB_OFFLINE=1 and ` +
        `use a cached or local copy.`,
      "ERR_TORCHLM_HUB",
    );
  }
}

/** A local directory given as a model or dataset id. */
export function localDir(idOrDir: string): string | null {
  const p = resolve(idOrDir);
  try {
    if (statSync(p).isDirectory()) return p;
  } catch {
    // not a local path: treat it as a Hub id
  }
  return null;
}
