// Two builds of the addon in one run, for a change that must keep the speed (npm run bench:compare -- OLD [NEW]):
// each round measures every measure once on each addon, in fresh processes (bench/compare-worker.ts), alternating which
// goes first, so that both see the machine's same minutes. Prints each addon's median over the rounds and NEW / OLD.
// NEW defaults to this checkout's build/Release/torchlm.node; OLD is, for example, a copy of it made before the change.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../lib/package_root.js";

const root = packageRoot();
const args = process.argv.slice(2);
const positional = args.filter((a) => !a.startsWith("--"));
const option = (name: string, fallback: string) =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const [oldAddon, newAddon = join(root, "build", "Release", "torchlm.node")] = positional;
if (!oldAddon) throw new Error("usage: npm run bench:compare -- OLD_ADDON [NEW_ADDON] [--rounds=5] [--only=m1,m2]");
for (const a of [oldAddon, newAddon]) if (!existsSync(a)) throw new Error(`no addon at ${a}`);
const rounds = Number(option("rounds", "5"));
const measures = option("only", "forward,decode-float32,decode-bfloat16,decode-q8,decode-q4,train").split(",");
const weights = join(root, "bench", ".weights", "gpt2-124m");
if (!existsSync(join(weights, "model.safetensors")))
  throw new Error(`run npm run bench once first: it writes ${weights}`);

const worker = join(root, "dist", "bench", "compare-worker.js");
const run = (addon: string, measure: string) =>
  (
    JSON.parse(
      execFileSync(process.execPath, [worker, weights, measure, "3"], {
        encoding: "utf8",
        env: { ...process.env, TORCHLM_BINARY: addon },
      })
        .trim()
        .split("\n")
        .pop()!,
    ) as { rate: number }
  ).rate;

const rates: Record<string, { old: number[]; new: number[] }> = {};
for (const m of measures) rates[m] = { old: [], new: [] };
for (let r = 0; r < rounds; r++) {
  for (const m of measures) {
    const order: ("old" | "new")[] = r % 2 === 0 ? ["old", "new"] : ["new", "old"];
    for (const which of order) rates[m]![which].push(run(which === "old" ? oldAddon : newAddon, m));
  }
  console.log(`round ${r + 1} of ${rounds} done`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`\nold: ${oldAddon}\nnew: ${newAddon}\n${rounds} rounds, tokens/s, medians (each a median of 3 runs)\n`);
console.log("| measure | old | new | new / old | old range | new range |");
console.log("|---|---:|---:|---:|---|---|");
for (const m of measures) {
  const { old, new: nu } = rates[m]!;
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}`;
  console.log(
    `| ${m} | ${median(old).toFixed(1)} | ${median(nu).toFixed(1)} | ${(median(nu) / median(old)).toFixed(3)} | ` +
      `${range(old)} | ${range(nu)} |`,
  );
}
