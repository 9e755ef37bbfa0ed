// One leak workload in its own process, for test/leaks.test.ts (short) and `npm run bench -- --only=leaks` (full):
//   generate  N generate calls over f32, bf16, q8 and q4 models (greedy and sampled, one in ten aborted)
//   train     N Trainer steps
//   load      N from_pretrained + forward + dispose cycles, q8 and bf16 in turn
//   lora      N get_peft_model + a training step + merge_and_unload (or unload) cycles
// Prints one JSON line: RSS after the first 10% of the iterations and at the end, the allocator's cache at both
// (cached blocks are reused, not leaked: RSS minus the cache tells one from the other), and the memory native
// objects report to V8 before any was made and after all were disposed. Run with --expose-gc.
// argv: distIndex workDir workload N
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
const [, , distIndex, root, workload, nArg] = process.argv;
const lib = await import(distIndex);
const { GPT2LMHeadModel, GPT2Config, LoraConfig, get_peft_model, Trainer, TrainingArguments, Dataset, tensor } = lib;
const N = Number(nArg);
const CFG = { vocab_size: 256, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 4, resid_pdrop: 0, embd_pdrop: 0 };
mkdirSync(root, { recursive: true });

const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
// V8 returns a collected heap's pages and glibc trims freed native memory a little after the GC: one reading right
// after a GC can sit 10 MB above the next. So collect until two readings in a row agree (within 256 kB).
const settle = async () => {
  let last = -Infinity;
  for (let i = 0; i < 40; i++) {
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 10));
    const now = rss();
    if (i >= 2 && Math.abs(now - last) <= 256 * 1024) return;
    last = now;
  }
};
let s = 99;
const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
const ri = (n) => Math.floor(rnd() * n);
// Twelve prompt lengths in turn, all met within the first 10%: libtorch and oneDNN keep per-shape caches (kernels,
// primitives) that grow until every shape was seen once, then stay; random lengths would spread that warm-up over the
// run and read as growth.
let call = 0;
const prompt = () => [Array.from({ length: 4 + ((call++ * 5) % 12) }, () => ri(CFG.vocab_size))];

await settle();
const external0 = process.memoryUsage().external;
const samples = {};
const sample = async (at) => {
  await settle();
  samples[at] = { rss: rss(), cached: lib.memory_reserved(), heap: process.memoryUsage().heapTotal };
};
const tenth = Math.max(1, Math.floor(N / 10));

const base = await GPT2LMHeadModel.from_config(new GPT2Config(CFG), { seed: 1 });
await base.save_pretrained(join(root, "f32"));
let aborted = 0;

if (workload === "generate") {
  const models = [base];
  for (const dtype of ["bfloat16", "q8", "q4"])
    models.push(await GPT2LMHeadModel.from_pretrained(join(root, "f32"), { dtype }));
  for (let i = 0; i < N; i++) {
    const m = models[i % models.length];
    const options = { max_new_tokens: 8, pad_token_id: 0 };
    if (i % 3 === 1) Object.assign(options, { do_sample: true, top_k: 20, temperature: 0.8, seed: i });
    if (i % 10 === 9) {
      const ac = new AbortController();
      const p = m.generate(prompt(), { ...options, max_new_tokens: 32, signal: ac.signal });
      setImmediate(() => ac.abort());
      await p
        .then((t) => t.dispose())
        .catch((e) => {
          if (e.name !== "AbortError") throw e;
          aborted++;
        });
    } else (await m.generate(prompt(), options)).dispose();
    if (i + 1 === tenth) await sample("tenth");
  }
  for (const m of models.slice(1)) await m.dispose();
} else if (workload === "train") {
  const rows = Array.from({ length: 64 }, (_, r) => Array.from({ length: 32 }, (_, c) => (r * 31 + c * 7) % 256));
  class Sample extends lib.TrainerCallback {
    async on_step_end({ state }) {
      if (state.global_step === tenth) await sample("tenth");
    }
  }
  const trainer = new Trainer({
    model: base,
    args: new TrainingArguments({
      output_dir: join(root, "run"),
      per_device_train_batch_size: 4,
      max_steps: N,
      save_strategy: "no",
      learning_rate: 1e-4,
      logging_steps: 50,
      disable_tqdm: true,
      plot_loss: false,
      report_to: "none",
    }),
    train_dataset: Dataset.from_dict({ input_ids: rows }),
    data_collator: (b) => {
      const ids = tensor(b.map((x) => x.input_ids));
      return { input_ids: ids, labels: ids.clone() };
    },
    callbacks: [new Sample()],
  });
  await trainer.train();
} else if (workload === "load") {
  for (let i = 0; i < N; i++) {
    const m = await GPT2LMHeadModel.from_pretrained(join(root, "f32"), { dtype: i % 2 ? "bfloat16" : "q8" });
    (await m.forward({ input_ids: prompt() })).logits.dispose();
    await m.dispose();
    if (i + 1 === tenth) await sample("tenth");
  }
} else if (workload === "lora") {
  const ids = tensor(prompt());
  for (let i = 0; i < N; i++) {
    const p = get_peft_model(base, new LoraConfig({ r: 4, lora_alpha: 8, target_modules: ["c_attn", "c_proj"] }));
    p.train();
    const out = await p.forward({ input_ids: ids, labels: ids });
    out.loss.backward();
    out.loss.dispose();
    out.logits.dispose();
    p.zero_grad();
    await (i % 2 ? p.unload() : p.merge_and_unload());
    base.eval();
    if (i + 1 === tenth) await sample("tenth");
  }
  ids.dispose();
} else throw new Error(`unknown workload ${workload}`);

await sample("end");
await base.dispose();
await settle();
const external = process.memoryUsage().external;
const { tenth: t, end } = samples;
console.log(
  JSON.stringify({
    workload,
    runs: N,
    aborted,
    rss_tenth: t.rss,
    rss_end: end.rss,
    cached_tenth: t.cached,
    cached_end: end.cached,
    growth: end.rss / t.rss - 1,
    growth_uncached: (end.rss - end.cached) / (t.rss - t.cached) - 1,
    heap_tenth: t.heap,
    heap_end: end.heap,
    external_start: external0,
    external_after_dispose: external,
  }),
);
