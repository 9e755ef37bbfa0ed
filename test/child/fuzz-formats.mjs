// Child process of test/fuzz.test.ts: hostile files in the formats added after the first fuzz test. It makes one
// valid example of a format with the library, then mutates it N times and loads each mutation:
//   quant       a q8 or q4 checkpoint (config.json's quantization_config, model.safetensors with _scale tensors)
//   peft        a LoRA adapter (adapter_config.json, adapter_model.safetensors) loaded onto a base model
//   checkpoint  a Trainer checkpoint resumed (trainer_state.json, optimizer.safetensors, scheduler.json, ...)
// Each load must succeed, or reject with an InvalidArgumentError whose message names the file it mutated and, for
// a tensor, the tensor; after a rejection the model in memory must be as it was before (no half-applied state).
// A crash or a hang kills this process, which the parent reports. argv: distIndex workDir mode N
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
const [, , distIndex, root, mode, nArg] = process.argv;
const lib = await import(distIndex);
const { GPT2LMHeadModel, GPT2Config, LoraConfig, PeftModel, get_peft_model, Trainer, TrainingArguments, Dataset } = lib;
const N = Number(nArg);
let s = 2024;
const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
const ri = (n) => Math.floor(rnd() * n);
const pick = (xs) => xs[ri(xs.length)];

const CFG = {
  vocab_size: 64,
  n_positions: 32,
  n_embd: 32,
  n_layer: 2,
  n_head: 2,
  resid_pdrop: 0,
  embd_pdrop: 0,
  attn_pdrop: 0,
};
const IDS = { input_ids: [[1, 2, 3, 4, 5]] };

// ---- safetensors as bytes: header JSON and data, mutated and written back
function parse(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + n).toString()), data: bytes.subarray(8 + n) };
}
function build(header, data) {
  const hb = Buffer.from(JSON.stringify(header));
  const lb = Buffer.alloc(8);
  lb.writeBigUInt64LE(BigInt(hb.length));
  return Buffer.concat([lb, hb, data]);
}
const tensorNames = (h) => Object.keys(h).filter((k) => k !== "__metadata__");

/** One mutation of a safetensors file: returns the bytes and the tensor it is about (null: the file as a whole). */
function mutateSafetensors(good, prefer) {
  const { header, data } = parse(good);
  const names = tensorNames(header);
  const favoured = names.filter((n) => prefer(n));
  const k = favoured.length && rnd() < 0.6 ? pick(favoured) : pick(names);
  const e = header[k];
  const dtypes = ["F32", "F16", "BF16", "I8", "U8", "I64", "F64", "BOOL"];
  switch (ri(12)) {
    case 0: // wrong shape, same byte length where it can be
      e.shape = e.shape.length === 2 ? [e.shape[1], e.shape[0]] : [...e.shape, 1];
      if (e.shape.every((d, i, a) => d === a[i])) e.shape = [e.shape[0] + 1, ...e.shape.slice(1)];
      return { bytes: build(header, data), tensor: k };
    case 1: // wrong length
      e.shape = e.shape.map((d, i) => (i === 0 ? Math.max(1, d + pick([-1, 1, 7])) : d));
      return { bytes: build(header, data), tensor: k };
    case 2: // wrong dtype (its bytes reinterpreted where the sizes allow)
      e.dtype = pick(dtypes.filter((d) => d !== e.dtype));
      return { bytes: build(header, data), tensor: k };
    case 3: // missing
      delete header[k];
      return { bytes: build(header, data), tensor: k };
    case 4: {
      // extra: another tensor's bytes under a new name
      const extra = pick([`${k}_scale`, `${k}.extra`, "lm_head.weight_scale", "h.9.attn.c_attn.weight", "junk"]);
      if (header[extra]) return { bytes: build(header, data), tensor: null };
      header[extra] = { ...e };
      return { bytes: build(header, data), tensor: extra };
    }
    case 5: {
      // renamed
      const to = k.replace(/weight/, "wieght") === k ? `${k}.x` : k.replace(/weight/, "wieght");
      header[to] = e;
      delete header[k];
      return { bytes: build(header, data), tensor: [k, to] };
    }
    case 6: // offsets past the data or overlapping another tensor
      e.data_offsets = pick([
        [e.data_offsets[0], data.length + 1 + ri(64)],
        header[pick(names)].data_offsets,
        [e.data_offsets[1], e.data_offsets[0]],
      ]);
      return { bytes: build(header, data), tensor: k };
    case 7: {
      // values: random bytes over the tensor (NaN, Inf and huge scales; int8 codes past q4's nibbles)
      const out = Buffer.from(good);
      const start = good.length - data.length + e.data_offsets[0];
      const len = e.data_offsets[1] - e.data_offsets[0];
      for (let i = 0; i < Math.min(len, 1 + ri(16)); i++) out[start + ri(len)] = ri(256);
      return { bytes: out, tensor: null };
    }
    case 8: {
      // a whole scale row of NaN / Inf float16 (0x7e00, 0x7c00)
      const out = Buffer.from(good);
      const start = good.length - data.length + e.data_offsets[0];
      const len = e.data_offsets[1] - e.data_offsets[0];
      const v = pick([0x7e00, 0x7c00, 0xfc00]);
      for (let i = 0; i + 1 < Math.min(len, 64); i += 2) out.writeUInt16LE(v, start + i);
      return { bytes: out, tensor: null };
    }
    case 9: // truncated
      return { bytes: good.subarray(0, ri(good.length)), tensor: null };
    case 10: {
      // bit flips anywhere
      const out = Buffer.from(good);
      for (let f = 0; f < 1 + ri(6); f++) out[ri(out.length)] ^= 1 << ri(8);
      return { bytes: out, tensor: null };
    }
    default: // the tensor as a string, or the header not an object
      header[k] = pick(["nonsense", null, 7, []]);
      return { bytes: build(header, data), tensor: k };
  }
}

/** One mutation of a JSON file: a key set to a hostile value, deleted or added, or the text broken. */
function mutateJson(text, keys, values) {
  const o = JSON.parse(text);
  const r = ri(10);
  if (r === 0) return text.slice(0, ri(text.length)); // broken JSON
  if (r === 1) return JSON.stringify(pick([[], null, 3, "x"]));
  const path = pick(keys);
  let obj = o;
  for (const p of path.slice(0, -1)) obj = obj?.[p];
  if (obj === null || typeof obj !== "object") return JSON.stringify(o);
  const last = path[path.length - 1];
  if (r === 2) delete obj[last];
  else if (r === 3) obj[`unknown_${ri(3)}`] = 1;
  else obj[last] = pick(values);
  return JSON.stringify(o);
}
const HOSTILE = [0, -1, 1, 2, 3, 7, 1e12, -1e12, 2 ** 53, 0.5, NaN, "x", "", null, true, [], {}, [1, 2], "q8", "q4"];

// ---- what a rejection must look like
const stats = { runs: 0, loaded: 0, rejected: 0 };
const failures = [];
function judge(e, file, tensor, what) {
  // native messages name tensors as the model does: without the checkpoint's prefixes and the _scale suffix
  const bare = (t) => t.replace(/^(base_model\.model\.)?(transformer\.)?/, "").replace(/(_scale|\.default)/g, "");
  const named = (t) => e.message.includes(t) || e.message.includes(bare(t));
  const ok =
    e instanceof Error &&
    e.name === "InvalidArgumentError" &&
    e.message.includes(file) &&
    (tensor === null || [tensor].flat().some(named));
  if (ok) stats.rejected++;
  else if (failures.length < 20)
    failures.push({ what, file, tensor, name: e?.name, message: String(e?.message ?? e).slice(0, 400) });
}

async function sameLogits(model, want, what) {
  model.eval(); // a Trainer leaves the model in training mode
  const { logits } = await model.forward(IDS);
  const got = logits.data();
  logits.dispose();
  for (let i = 0; i < want.length; i++)
    if (!Object.is(got[i], want[i])) throw new Error(`${what}: the model changed after a rejected load (logit ${i})`);
}

async function logitsOf(model) {
  model.eval();
  const { logits } = await model.forward(IDS);
  const d = Float32Array.from(logits.data());
  logits.dispose();
  return d;
}

async function finite(model) {
  const { logits } = await model.forward(IDS);
  const bad = Array.from(logits.data()).some((x) => !Number.isFinite(x));
  logits.dispose();
  return !bad;
}

mkdirSync(root, { recursive: true });
const work = join(root, "work");

if (mode === "quant") {
  // a q8 and a q4 checkpoint, saved as they load
  const base = await GPT2LMHeadModel.from_config(new GPT2Config(CFG), { seed: 3 });
  await base.save_pretrained(join(root, "f32"));
  await base.dispose();
  const goods = {};
  for (const q of ["q8", "q4"]) {
    const m = await GPT2LMHeadModel.from_pretrained(join(root, "f32"), { dtype: q });
    await m.save_pretrained(join(root, q));
    await m.dispose();
    goods[q] = {
      weights: readFileSync(join(root, q, "model.safetensors")),
      config: readFileSync(join(root, q, "config.json"), "utf8"),
    };
  }
  const qcKeys = [
    "quant_method",
    "format",
    "bits",
    "group_size",
    "symmetric",
    "scale_dtype",
    "packing",
    "lm_head_bits",
  ].map((k) => ["quantization_config", k]);
  for (let i = 0; i < N; i++) {
    const q = i % 2 ? "q4" : "q8";
    const other = q === "q8" ? "q4" : "q8";
    rmSync(work, { recursive: true, force: true });
    cpSync(join(root, q), work, { recursive: true });
    let file = "model.safetensors";
    let tensor = null;
    const r = ri(10);
    if (r < 2) {
      file = "config.json";
      writeFileSync(join(work, file), mutateJson(goods[q].config, [...qcKeys, ["quantization_config"]], HOSTILE));
    } else if (r === 2) {
      // the other format's quantization_config over these tensors
      file = "config.json";
      const c = JSON.parse(goods[q].config);
      c.quantization_config = JSON.parse(goods[other].config).quantization_config;
      writeFileSync(join(work, file), JSON.stringify(c));
    } else {
      const m = mutateSafetensors(goods[q].weights, (n) => n.endsWith("_scale") || n.includes("weight"));
      tensor = m.tensor;
      writeFileSync(join(work, file), m.bytes);
    }
    stats.runs++;
    try {
      const m = await GPT2LMHeadModel.from_pretrained(work);
      // bytes changed inside a tensor load as given; a forward over them must not crash
      await finite(m);
      await m.dispose();
      stats.loaded++;
    } catch (e) {
      judge(e, file, tensor, `quant ${q} #${i}`);
    }
  }
} else if (mode === "peft") {
  const base = await GPT2LMHeadModel.from_config(new GPT2Config(CFG), { seed: 4 });
  const want = await logitsOf(base);
  const lora = new LoraConfig({ r: 4, lora_alpha: 8, target_modules: ["c_attn", "c_proj"] });
  const p = get_peft_model(base, lora);
  await p.save_pretrained(join(root, "adapter"));
  await p.unload();
  // PEFT starts B at zero; an adapter that changes nothing could not show a half-applied load
  const file = join(root, "adapter", "adapter_model.safetensors");
  const tensors = await lib.load_file(file);
  for (const [k, t] of Object.entries(tensors))
    if (k.includes("lora_B")) {
      const [o, r] = t.shape;
      tensors[k] = lib.tensor(
        Array.from({ length: o }, (_, i) => Array.from({ length: r }, (_, j) => ((i * 7 + j * 3) % 11) / 50 - 0.1)),
      );
    }
  await lib.save_file(tensors, file, { format: "pt" });
  await sameLogits(base, want, "unload");
  const good = {
    weights: readFileSync(join(root, "adapter", "adapter_model.safetensors")),
    config: readFileSync(join(root, "adapter", "adapter_config.json"), "utf8"),
  };
  const keys = ["r", "lora_alpha", "target_modules", "peft_type", "fan_in_fan_out", "layers_to_transform", "bias"];
  for (let i = 0; i < N; i++) {
    rmSync(work, { recursive: true, force: true });
    cpSync(join(root, "adapter"), work, { recursive: true });
    let file = "adapter_model.safetensors";
    let tensor = null;
    const r = ri(10);
    if (r < 3) {
      file = "adapter_config.json";
      const values = [...HOSTILE, ["q_proj"], ["c_fc"], ["c_attn"], "c_attn", ["nonexistent"], [0], [5], "LOHA"];
      writeFileSync(
        join(work, file),
        mutateJson(
          good.config,
          keys.map((k) => [k]),
          values,
        ),
      );
    } else {
      const m = mutateSafetensors(good.weights, (n) => n.includes("lora_"));
      tensor = m.tensor;
      writeFileSync(join(work, file), m.bytes);
    }
    stats.runs++;
    let peft;
    try {
      peft = await PeftModel.from_pretrained(base, work);
    } catch (e) {
      judge(e, file, tensor, `peft #${i}`);
      await sameLogits(base, want, `peft #${i}`);
      continue;
    }
    stats.loaded++;
    await finite(peft);
    await peft.unload();
    await sameLogits(base, want, `peft #${i} unload`);
  }
} else if (mode === "checkpoint") {
  const rows = Array.from({ length: 16 }, (_, r) => Array.from({ length: 8 }, (_, c) => (r * 7 + c * 3) % 64));
  const collate = (b) => {
    const ids = lib.tensor(b.map((x) => x.input_ids));
    return { input_ids: ids, labels: ids.clone() };
  };
  const trainerFor = (model, out) =>
    new Trainer({
      model,
      args: new TrainingArguments({
        output_dir: out,
        per_device_train_batch_size: 4,
        max_steps: 3,
        save_steps: 2,
        learning_rate: 1e-3,
        logging_steps: 100,
        disable_tqdm: true,
        plot_loss: false,
        report_to: "none",
      }),
      train_dataset: Dataset.from_dict({ input_ids: rows }),
      data_collator: collate,
    });
  const first = await GPT2LMHeadModel.from_config(new GPT2Config(CFG), { seed: 5 });
  await trainerFor(first, join(root, "run")).train();
  await first.dispose();
  const ckpt = join(root, "run", "checkpoint-2");
  const files = ["trainer_state.json", "optimizer.safetensors", "scheduler.json", "rng_state.safetensors"];
  const good = Object.fromEntries(files.map((f) => [f, readFileSync(join(ckpt, f))]));
  for (let i = 0; i < N; i++) {
    // a fresh model each time: a resume that succeeds trains it on
    const model = await GPT2LMHeadModel.from_config(new GPT2Config(CFG), { seed: 6 });
    rmSync(work, { recursive: true, force: true });
    cpSync(ckpt, work, { recursive: true });
    const file = pick(files);
    let tensor = null;
    if (file.endsWith(".json")) {
      const keys =
        file === "trainer_state.json"
          ? ["global_step", "epoch", "max_steps", "log_history", "best_metric", "num_train_epochs", "total_flos"]
          : Object.keys(JSON.parse(good[file].toString()));
      writeFileSync(
        join(work, file),
        mutateJson(
          good[file].toString(),
          keys.map((k) => [k]),
          [...HOSTILE, [{ loss: "x" }], [{}]],
        ),
      );
    } else {
      const m = mutateSafetensors(good[file], () => true);
      tensor = m.tensor;
      writeFileSync(join(work, file), m.bytes);
    }
    stats.runs++;
    const want = await logitsOf(model);
    const out = join(root, "resumed");
    rmSync(out, { recursive: true, force: true });
    try {
      await trainerFor(model, out).train({ resume_from_checkpoint: work });
      stats.loaded++;
    } catch (e) {
      judge(e, file, tensor, `checkpoint ${file} #${i}`);
      await sameLogits(model, want, `checkpoint ${file} #${i} (${e?.message})`);
    }
    await model.dispose();
  }
}
console.log(JSON.stringify({ mode, ...stats, failures }));
