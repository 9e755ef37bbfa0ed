// Progress bars on a terminal (cli-progress), quiet when not a TTY or when disabled.
import cliProgress from "cli-progress";
import { envFlag } from "./env.js";

export function progressEnabled(disabled = false): boolean {
  return !disabled && Boolean(process.stderr.isTTY) && !envFlag("TORCHLM_NO_PROGRESS") && !envFlag("CI");
}

export interface Bar {
  update(value: number, payload?: Record<string, unknown>): void;
  stop(): void;
}

const quiet: Bar = { update() {}, stop() {} };

/** A bar for `total` units, or a silent one when progress is off. */
export function bar(label: string, total: number, format?: string, disabled = false): Bar {
  if (!progressEnabled(disabled)) return quiet;
  const b = new cliProgress.SingleBar(
    {
      format: format ?? `${label} [{bar}] {percentage}% | {value}/{total}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  b.start(total, 0);
  return { update: (v, p) => b.update(v, p), stop: () => b.stop() };
}

/** A fetch that shows a download bar for bodies over 10 MB. */
export function progressFetch(label: string): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    const len = Number(res.headers.get("content-length") ?? 0);
    if (!res.ok || !res.body || len < 10_000_000 || !progressEnabled()) return res;
    const b = bar(label, len, `${label} [{bar}] {percentage}% | {value}/{total} bytes`);
    let seen = 0;
    const counted = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, ctl) {
          seen += chunk.byteLength;
          b.update(seen);
          ctl.enqueue(chunk);
        },
        flush() {
          b.stop();
        },
      }),
    );
    return new Response(counted, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}
