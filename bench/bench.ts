// npm run bench: torchlm against Hugging Face transformers on PyTorch 2 (bench/hf_peer.py), plain PyTorch eager
// (bench/baseline.py) and transformers.js, on the same GPT-2 124M-shaped weights written here from a seed (never
// committed), in the same run, rounds interleaved, as ratios. Measuring is bench/measure.ts's, the table
// bench/render.ts's; results go to bench/results/.
import "./testing-addon.js";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel, get_num_threads, torch_info } from "../lib/index.js";
import { packageRoot } from "../lib/native.js";
import { benchConfig, measure, scalingRows } from "./measure.js";
import { render, scalingTable, writeResults } from "./render.js";
import { llamaBench, renderLlama, SCALING_SHAPES, SHAPES } from "./llama.js";
import { leakPassed, leaksBench, renderLeaks } from "./leaks.js";
import { batchApi, prefillBench, renderServe, renderSoak, serveBench, soakBench } from "./serve.js";

const root = packageRoot();
const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const only = argv
  .find((a) => a.startsWith("--only="))
  ?.slice(7)
  .split(",");
const weightsDir = join(root, "bench", ".weights", quick ? "gpt2-tiny" : "gpt2-124m");

// --only=llama, serve-llama and scaling-llama bring their own shapes and dtypes
const llamaOnly = only?.every((o) => o.endsWith("llama")) ?? false;
console.log(
  `torchlm bench: ${llamaOnly ? "Llama-family" : quick ? "tiny" : "GPT-2 124M"} shapes` +
    `${llamaOnly ? "" : ", fp32"}, ${get_num_threads()} threads, libtorch ${torch_info().torch_version}`,
);
if (!existsSync(join(weightsDir, "model.safetensors"))) {
  console.log(`writing seeded random weights to ${weightsDir}`);
  const m = await GPT2LMHeadModel.from_config(benchConfig(quick), { seed: 0 });
  await m.save_pretrained(weightsDir);
  await m.dispose();
  // GPT-2's tokenizer beside them: the servers' text, and the peers' converters read it
  await (await AutoTokenizer.from_pretrained("gpt2")).save_pretrained(weightsDir);
}
if (only?.includes("prefill")) {
  const rows = await prefillBench(root, weightsDir, get_num_threads());
  console.log("\n| engine | format | prefill 512 tokens/s |\n|---|---|---:|");
  for (const r of rows) console.log(`| ${r.engine} | ${r.format} | ${r.tokens_per_s.toFixed(0)} |`);
  if (only.length === 1) process.exit(0);
}
if (only?.includes("llama")) {
  const table = renderLlama(await llamaBench(root, get_num_threads()));
  console.log("\n" + table.join("\n"));
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "llama-cpu.md"), table.join("\n") + "\n");
  if (only.length === 1) process.exit(0);
}
if (only?.includes("serve-llama")) {
  // the Llama family served: SmolLM2-135M- and Qwen2.5-0.5B-shaped weights and llama.cpp's conversions of them, as
  // --only=llama writes them; 1 and 16 closed-loop clients against llama-server, and prefill beside llama-bench pp512
  const lines: string[] = [];
  for (const s of SHAPES) {
    const dir = join(root, "bench", ".weights", s.dir);
    if (!existsSync(join(dir + "-gguf", "gguf-q8_0.gguf"))) {
      console.log(`serve-llama: ${dir}-gguf has no conversions: run npm run bench -- --only=llama first`);
      continue;
    }
    const shape = {
      gguf: (f: string) => join(dir + "-gguf", `gguf-${f}.gguf`),
      vocab: s.config.vocab_size,
      levels: [1, 16],
    };
    const prefill = await prefillBench(root, dir, get_num_threads(), shape);
    const rows = await serveBench(root, dir, get_num_threads(), false, undefined, shape);
    lines.push(
      `### ${s.name}-shaped weights`,
      "",
      ...renderServe(rows),
      "",
      "| engine | format | prefill 512 tokens/s |",
      "|---|---|---:|",
      ...prefill.map((r) => `| ${r.engine} | ${r.format} | ${r.tokens_per_s.toFixed(0)} |`),
      "",
    );
  }
  console.log("\n" + lines.join("\n"));
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "serve-llama-cpu.md"), lines.join("\n"));
  if (only.length === 1) process.exit(0);
}
if (only?.includes("scaling-llama")) {
  // the Llama family's scaling table, in q4 (the size a laptop runs 1.7B in), as GPT-2's in the main run
  const rows = await scalingRows(
    SCALING_SHAPES.map((s) => ({
      name: s.name,
      dir: join(root, "bench", ".weights", `scaling-${s.name.toLowerCase()}`),
      make: () => AutoModelForCausalLM.from_config(s.config, { seed: 0 }),
    })),
    ["q4"],
    console.log,
  );
  const lines = scalingTable(rows, "Llama-family shape");
  console.log("\n" + lines.join("\n"));
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "scaling-llama-cpu.md"), lines.join("\n") + "\n");
  writeFileSync(join(root, "bench", "results", "scaling-llama-cpu.json"), JSON.stringify(rows, null, 2) + "\n");
  if (only.length === 1) process.exit(0);
}
if (only?.includes("leaks")) {
  // each workload in its own process; CI's short versions are in test/leaks.test.ts
  const rows = await leaksBench(root);
  const lines = renderLeaks(rows);
  console.log("\n" + lines.join("\n"));
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "leaks-cpu.md"), lines.join("\n") + "\n");
  writeFileSync(join(root, "bench", "results", "leaks-cpu.json"), JSON.stringify(rows, null, 2) + "\n");
  if (!rows.every(leakPassed)) process.exitCode = 1;
  if (only.length === 1) process.exit();
}
if (only?.includes("soak")) {
  // --soak-requests=N (10,000 by default; CI's short version is in test/serve.test.ts)
  const n = Number(argv.find((a) => a.startsWith("--soak-requests="))?.slice(16) ?? 10_000);
  const r = await soakBench(root, weightsDir, n);
  const lines = renderSoak(r);
  console.log("\n" + lines.join("\n"));
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "soak-cpu.md"), lines.join("\n") + "\n");
  writeFileSync(join(root, "bench", "results", "soak-cpu.json"), JSON.stringify(r, null, 2) + "\n");
  if (!r.passed) process.exitCode = 1;
  if (only.length === 1) process.exit();
}
if (only?.includes("serve")) {
  // serving is its own run: servers in child processes and a load generator (bench/serve.ts)
  const servers = argv
    .find((a) => a.startsWith("--servers="))
    ?.slice(10)
    .split(",");
  const rows = await serveBench(root, weightsDir, get_num_threads(), quick, servers);
  if (!servers || servers.includes("batch"))
    rows.push({ server: "batch API, in process", results: await batchApi(weightsDir, get_num_threads(), quick) });
  const table = renderServe(rows);
  console.log("\n" + table.join("\n"));
  if (!quick) {
    mkdirSync(join(root, "bench", "results"), { recursive: true });
    writeFileSync(join(root, "bench", "results", "serve-cpu.md"), table.join("\n") + "\n");
    writeFileSync(join(root, "bench", "results", "serve-cpu.json"), JSON.stringify(rows, null, 2) + "\n");
  }
  if (only.length === 1) process.exit(0);
}
const measured = await measure({
  quick,
  only,
  noPeers: argv.includes("--no-peers"),
  noTransformersJs: argv.includes("--no-transformers-js"),
  weightsDir,
});
const out = render(measured);
console.log("\n" + out.table.join("\n") + "\n\n" + out.extra.map((l) => `- ${l}`).join("\n"));
if (only) console.log("\n(a partial run with --only: bench/results/ left as it was)");
else console.log(`\nwritten to ${writeResults(join(root, "bench", "results"), measured, out)}.{json,md}`);
