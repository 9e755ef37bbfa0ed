// Two builds of torchlm in one run, for a change that must keep the speed (npm run bench:compare -- OLD [NEW]): OLD and
// NEW are checkouts with their TypeScript compiled (dist/) and their addon built (build/Release/torchlm.node), NEW by
// default this one. Each round measures every measure once on each, in fresh processes (bench/compare-worker.ts, which
// loads the checkout's own library and addon), alternating which goes first, so that both see the machine's same
// minutes. Prints each build's median over the rounds and NEW / OLD.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../lib/package_root.js";

const root = packageRoot();
const args = process.argv.slice(2);
const positional = args.filter((a) => !a.startsWith("--"));
const option = (name: string, fallback: string) =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const [oldRoot, newRoot = root] = positional;
if (!oldRoot)
  throw new Error("usage: npm run bench:compare -- OLD_CHECKOUT [NEW_CHECKOUT] [--rounds=6] [--only=m1,m2]");
for (const r of [oldRoot, newRoot])
  for (const f of [join("dist", "lib", "index.js"), join("build", "Release", "torchlm.node")])
    if (!existsSync(join(r, f))) throw new Error(`${r} has no ${f}: compile it (npm run build) and build its addon`);
// an even count, so that each build goes first as often as the other (going first was worth up to 10% here: the same
// build against itself gave 0.89 with one more round first)
const rounds = Number(option("rounds", "6"));
if (!(rounds >= 2 && rounds % 2 === 0)) throw new Error(`--rounds must be an even number of at least 2, not ${rounds}`);
const measures = option("only", "forward,decode-float32,decode-bfloat16,decode-q8,decode-q4,train").split(",");
const weights = join(root, "bench", ".weights", "gpt2-124m");
if (!existsSync(join(weights, "model.safetensors")))
  throw new Error(`run npm run bench once first: it writes ${weights}`);

const worker = join(root, "dist", "bench", "compare-worker.js");
const run = (checkout: string, measure: string) =>
  (
    JSON.parse(
      execFileSync(process.execPath, [worker, checkout, weights, measure, "3"], { encoding: "utf8" })
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
    for (const which of order) rates[m]![which].push(run(which === "old" ? oldRoot : newRoot, m));
  }
  console.log(`round ${r + 1} of ${rounds} done`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`\nold: ${oldRoot}\nnew: ${newRoot}\n${rounds} rounds, tokens/s, medians (each a median of 3 runs)\n`);
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
