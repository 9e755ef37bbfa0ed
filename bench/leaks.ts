// `npm run bench -- --only=leaks`: the four leak workloads of test/child/leak.mjs at full length, each in its own
// process (CI runs them short in test/leaks.test.ts). A workload passes when RSS at the end is at most 3% above RSS
// after its first 10%, and the memory native objects report to V8 is back to its start once they are disposed.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

export const LEAK_RUNS = { generate: 20_000, train: 2_000, load: 500, lora: 100 } as const;
export type LeakWorkload = keyof typeof LEAK_RUNS;

export interface LeakResult {
  workload: LeakWorkload;
  runs: number;
  aborted: number;
  rss_tenth: number;
  rss_end: number;
  cached_tenth: number;
  cached_end: number;
  growth: number;
  growth_uncached: number;
  external_start: number;
  external_after_dispose: number;
  seconds: number;
}

/** Runs one workload in a fresh process (node --expose-gc) and returns what it measured. */
export async function runLeakWorkload(root: string, workload: LeakWorkload, runs: number): Promise<LeakResult> {
  const dir = mkdtempSync(join(tmpdir(), `torchlm-leak-${workload}-`));
  const t0 = performance.now();
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--expose-gc",
        join(root, "test", "child", "leak.mjs"),
        pathToFileURL(join(root, "dist", "lib", "index.js")).href,
        dir,
        workload,
        String(runs),
      ],
      { timeout: 3_600_000, maxBuffer: 1 << 24 },
    );
    return { ...JSON.parse(stdout.trim().split("\n").pop()!), seconds: (performance.now() - t0) / 1000 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether a workload stayed flat: RSS at most 3% up and V8's external memory back to its start (within 1 MB). */
export function leakPassed(r: LeakResult): boolean {
  return r.growth <= 0.03 && r.external_after_dispose - r.external_start <= 1 << 20;
}

export async function leaksBench(root: string): Promise<LeakResult[]> {
  const out: LeakResult[] = [];
  for (const [w, n] of Object.entries(LEAK_RUNS) as [LeakWorkload, number][]) {
    console.log(`leaks: ${w} x ${n}`);
    out.push(await runLeakWorkload(root, w, n));
  }
  return out;
}

export function renderLeaks(rows: LeakResult[]): string[] {
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(2)}%`;
  return [
    "| workload | runs | RSS at 10% (MB) | RSS at end (MB) | growth | allocator cache 10% / end (MB) | " +
      "growth less cache | V8 external start / after dispose (MB) | s | flat |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ...rows.map(
      (r) =>
        `| ${r.workload}${r.aborted ? ` (${r.aborted} aborted)` : ""} | ${r.runs} | ${mb(r.rss_tenth)} | ` +
        `${mb(r.rss_end)} | ${pct(r.growth)} | ${mb(r.cached_tenth)} / ${mb(r.cached_end)} | ` +
        `${pct(r.growth_uncached)} | ${mb(r.external_start)} / ${mb(r.external_after_dispose)} | ` +
        `${r.seconds.toFixed(0)} | ${leakPassed(r) ? "yes" : "NO"} |`,
    ),
  ];
}
