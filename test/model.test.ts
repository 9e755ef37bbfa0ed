import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  GPT2LMHeadModel,
  AutoModelForCausalLM,
  Dataset,
  set_seed,
  tensor,
  Trainer,
  TrainingArguments,
} from "../lib/index.js";
import { binding } from "../lib/native.js";
import { golden, tinyModelDir, maxAbsDiff, flatten, pick } from "./helpers/tiny.js";

describe("GPT-2 forward parity with the PyTorch reference (fp32)", () => {
  let model: GPT2LMHeadModel;
  beforeAll(async () => {
    model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
  });
  afterAll(async () => {
    await model.dispose();
  });

  test("weights regenerated from the seed equal the reference's", () => {
    for (const [name, t] of model.named_parameters()) {
      const key = name.replace(/^transformer\./, "");
      const sum = (t.data() as Float32Array).reduce((a, b) => a + b, 0);
      expect(Math.abs(sum - golden.param_sums[key])).toBeLessThan(1e-3 + 1e-6 * Math.abs(golden.param_sums[key]));
    }
    expect(model.num_parameters()).toBe(
      50257 * 64 + 128 * 64 + 2 * (4 * 64 + 64 * 192 + 192 + 64 * 64 + 64 + 64 * 256 + 256 + 256 * 64 + 64) + 128,
    );
  });

  test("logits within 1e-4 and loss within 1e-5", async () => {
    const out = await model.forward({ input_ids: golden.input_ids, labels: golden.labels });
    expect(out.logits.shape).toEqual([2, 8, 50257]);
    expect(maxAbsDiff(pick(out.logits, golden.columns), flatten(golden.logits))).toBeLessThan(1e-4);
    expect(out.logits.argmax(-1).tolist() as number[][]).toEqual(golden.argmax);
    expect(Math.abs(out.loss!.item() - golden.loss)).toBeLessThan(1e-5);
    expect(out.loss!.requires_grad).toBe(false); // eval mode records no graph
  });

  test("gradients within 1e-4", async () => {
    const out = await model.forward({
      input_ids: tensor(golden.input_ids),
      labels: tensor(golden.labels),
      requires_grad: true,
    });
    model.zero_grad();
    out.loss!.backward();
    const params = Object.fromEntries(model.named_parameters().map(([n, t]) => [n.replace(/^transformer\./, ""), t]));
    for (const name of ["ln_f.weight", "h.0.attn.c_attn.bias", "h.1.mlp.c_proj.bias"]) {
      expect(maxAbsDiff(params[name]!.grad!.data() as Float32Array, golden.grads[name])).toBeLessThan(1e-4);
    }
    const wpe = params["wpe.weight"]!.grad!.slice(0, 0, 2);
    expect(maxAbsDiff(wpe.data() as Float32Array, flatten(golden.grads["wpe.weight[0:2]"]))).toBeLessThan(1e-4);
    for (const [name, norm] of Object.entries(golden.grad_norms as Record<string, number>)) {
      const g = params[name]!.grad!.data() as Float32Array;
      const n = Math.sqrt(g.reduce((a, b) => a + b * b, 0));
      expect(Math.abs(n - norm)).toBeLessThan(1e-4 + 1e-4 * norm);
    }
    model.zero_grad();
    expect(params["ln_f.weight"]!.grad).toBeNull();
  });

  test("left-padded rows give their unpadded logits", async () => {
    const p = golden.padded;
    const out = await model.forward({
      input_ids: p.input_ids,
      attention_mask: p.attention_mask,
      position_ids: p.position_ids,
    });
    expect(maxAbsDiff(pick(out.logits, golden.columns), flatten(p.logits).map(Number))).toBeLessThan(1e-4);
    const real = out.logits.slice(0, 0, 1).slice(1, 3); // row 0, the 5 real tokens
    expect(maxAbsDiff(pick(real, golden.columns), flatten(p.alone_logits))).toBeLessThan(1e-4);
    // and row 1 (unpadded) equals the plain batch's row 1
    expect(maxAbsDiff(pick(out.logits.slice(0, 1), golden.columns), flatten(golden.logits[1]))).toBeLessThan(1e-4);
  });

  test("past_key_values: prefix then suffix equals one pass", async () => {
    const ids = golden.input_ids as number[][];
    const full = await model.forward({ input_ids: ids });
    const a = await model.forward({ input_ids: ids.map((r) => r.slice(0, 5)), use_cache: true });
    expect(a.past_key_values).toHaveLength(2);
    expect(a.past_key_values![0]![0].shape).toEqual([2, 4, 5, 16]);
    const b = await model.forward({
      input_ids: ids.map((r) => r.slice(5)),
      past_key_values: a.past_key_values,
      position_ids: ids.map(() => [5, 6, 7]),
    });
    expect(
      maxAbsDiff(b.logits.data() as Float32Array, full.logits.slice(1, 5).contiguous().data() as Float32Array),
    ).toBeLessThan(1e-4);
  });
});

describe("layouts and dtypes", () => {
  test.each([
    ["hub", "F32"],
    ["saved", "F32"],
    ["saved", "F16"],
    ["hub", "BF16"],
    ["hub", "F16"],
  ] as const)("%s layout, %s weights", async (layout, dtype) => {
    const model = await AutoModelForCausalLM.from_pretrained(tinyModelDir({ layout, dtype }));
    const out = await model.forward({ input_ids: golden.input_ids, labels: golden.labels });
    const ref = dtype === "F32" ? { logits: golden.logits, loss: golden.loss } : golden.low_precision[dtype];
    expect(maxAbsDiff(pick(out.logits, golden.columns), flatten(ref.logits))).toBeLessThan(1e-4);
    expect(Math.abs(out.loss!.item() - ref.loss)).toBeLessThan(1e-5);
    await model.dispose();
  });

  test("dtype bfloat16 runs in bfloat16 close to fp32", async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "bfloat16" });
    expect(model.dtype).toBe("bfloat16");
    const out = await model.forward({ input_ids: golden.input_ids, labels: golden.labels });
    expect(out.logits.dtype).toBe("bfloat16");
    expect(Math.abs(out.loss!.item() - golden.loss)).toBeLessThan(5e-2);
    await model.dispose();
  });
});

test(
  "bfloat16 on the CPU keeps each Conv1D weight as the transposed view of [out, in] rows: its values, what it " +
    "saves, and AdamW updating each element against its own gradient",
  async () => {
    const config = {
      vocab_size: 301,
      n_positions: 64,
      n_embd: 48,
      n_layer: 2,
      n_head: 4,
      resid_pdrop: 0,
      embd_pdrop: 0,
      attn_pdrop: 0,
    };
    const f32 = await GPT2LMHeadModel.from_config(config, { seed: 7 });
    const b16 = await GPT2LMHeadModel.from_config(config, { seed: 7 });
    await b16.to("bfloat16");
    const conv1d = (name: string) => /\.(c_attn|c_proj|c_fc)\.weight$/.test(name);
    const ref = new Map(f32.named_parameters().map(([n, t]) => [n, t.data() as Float32Array]));
    const weights = b16.named_parameters().filter(([n]) => conv1d(n));
    expect(weights.length).toBe(4 * config.n_layer);
    for (const [name, t] of weights) {
      const [rows] = t.shape as [number, number];
      expect([name, t.is_contiguous(), t.stride()]).toEqual([name, false, [1, rows]]);
      expect(
        f32
          .named_parameters()
          .find(([n]) => n === name)![1]
          .is_contiguous(),
      ).toBe(true); // float32 keeps [in, out]
      // weights ~N(0, 0.02), rounded
      expect(maxAbsDiff(t.data() as Float32Array, ref.get(name)!)).toBeLessThan(2 ** -8 * 0.1);
    }
    // saved as [in, out]: loaded back in float32 (which does not transpose), the values are the bfloat16 model's
    const dir = mkdtempSync(join(tmpdir(), "torchlm-b16-"));
    await b16.save_pretrained(dir);
    const back = await GPT2LMHeadModel.from_pretrained(dir);
    const saved = new Map(back.named_parameters().map(([n, t]) => [n, t.data() as Float32Array]));
    for (const [name, t] of weights)
      expect([name, maxAbsDiff(t.data() as Float32Array, saved.get(name)!)]).toEqual([name, 0]);
    // one AdamW step (no decay): its first update moves each weight by about lr against the sign of its own gradient
    b16.train();
    const out = await b16.forward({ input_ids: [[1, 2, 3, 4, 5, 6, 7, 8]], labels: [[1, 2, 3, 4, 5, 6, 7, 8]] });
    out.loss!.backward();
    const before = weights.map(([, t]) => t.data() as Float32Array),
      grads = weights.map(([, t]) => t.grad!.data() as Float32Array);
    const opt = new binding.NativeAdamW({
      groups: [{ params: b16.parameters().map((t) => t._t), weight_decay: 0 }],
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
    });
    await opt.step({ lr: 0.01 });
    let against = 0,
      moved = 0;
    weights.forEach(([, t], i) => {
      const after = t.data() as Float32Array;
      after.forEach((v, j) => {
        const d = v - before[i]![j]!,
          g = grads[i]![j]!;
        if (Math.abs(g) < 1e-6) return;
        moved++;
        if (Math.sign(d) === -Math.sign(g) && Math.abs(Math.abs(d) - 0.01) < 0.004) against++;
      });
    });
    expect(moved).toBeGreaterThan(10000);
    expect(against / moved).toBeGreaterThan(0.99);
    await Promise.all([f32.dispose(), b16.dispose(), back.dispose()]);
  },
);

describe("worker threads and ordering", () => {
  test("a timer keeps firing during a long forward", async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const ids = Array.from({ length: 16 }, (_, b) => Array.from({ length: 128 }, (_, t) => (b * 131 + t * 17) % 50257));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = Date.now();
    let n = 0;
    while (Date.now() - t0 < 300 || n < 2) {
      await model.forward({ input_ids: ids });
      n++;
    }
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(n); // the event loop ran while forwards were in flight
    await model.dispose();
  });

  test("calls on one model run in order, and dispose waits for them", async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const order: number[] = [];
    const calls = [0, 1, 2, 3].map((i) => model.forward({ input_ids: [[1 + i, 2, 3]] }).then(() => order.push(i)));
    const disposed = model.dispose();
    await Promise.all(calls);
    await disposed;
    expect(order).toEqual([0, 1, 2, 3]);
    await expect(model.forward({ input_ids: [[1]] })).rejects.toThrow(/disposed/);
  });
});

describe("gradient checkpointing", () => {
  test("the same loss and gradients as without it, dropout included (recomputation replays the RNG)", async () => {
    const model = await GPT2LMHeadModel.from_config(
      {
        vocab_size: 300,
        n_positions: 32,
        n_embd: 32,
        n_layer: 3,
        n_head: 4,
        resid_pdrop: 0.1,
        embd_pdrop: 0.1,
        attn_pdrop: 0.1,
      },
      { seed: 5 },
    );
    model.train();
    const ids = [
      [1, 2, 3, 4, 5, 6, 7, 8],
      [9, 10, 11, 12, 13, 14, 15, 16],
    ];
    const run = async (on: boolean) => {
      if (on) model.gradient_checkpointing_enable();
      else model.gradient_checkpointing_disable();
      set_seed(123);
      model.zero_grad();
      const o = await model.forward({
        input_ids: ids,
        labels: ids,
        attention_mask: [
          [1, 1, 1, 1, 1, 1, 1, 1],
          [0, 0, 1, 1, 1, 1, 1, 1],
        ],
      });
      o.loss!.backward();
      const grads = model
        .named_parameters()
        .map(([n, t]) => [n, Float32Array.from(t.grad!.data() as Float32Array)] as const);
      return { loss: o.loss!.item() as number, grads };
    };
    const plain = await run(false);
    const ckpt = await run(true);
    expect(model.is_gradient_checkpointing).toBe(true);
    expect(ckpt.loss).toBe(plain.loss);
    for (const [i, [name, g]] of ckpt.grads.entries()) {
      const ref = plain.grads[i]![1];
      let d = 0,
        m = 1e-12;
      g.forEach((v, j) => {
        d = Math.max(d, Math.abs(v - ref[j]!));
        m = Math.max(m, Math.abs(ref[j]!));
      });
      expect([name, d / m < 1e-5]).toEqual([name, true]);
    }
    await model.dispose();
  });

  test("TrainingArguments gradient_checkpointing: the Trainer's losses as without it", async () => {
    const make = async (gradient_checkpointing: boolean) => {
      const model = await GPT2LMHeadModel.from_config(
        { vocab_size: 300, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4 },
        { seed: 6 },
      );
      const ds = Dataset.from_dict({
        input_ids: Array.from({ length: 8 }, (_, r) => Array.from({ length: 12 }, (_, t) => (r * 31 + t * 7) % 300)),
      });
      const args = new TrainingArguments({
        output_dir: mkdtempSync(join(tmpdir(), "torchlm-gc-")),
        per_device_train_batch_size: 4,
        max_steps: 3,
        logging_steps: 1,
        save_strategy: "no",
        disable_tqdm: true,
        plot_loss: false,
        gradient_checkpointing,
      });
      const collate = (rows: any[]) => {
        const t = tensor(rows.map((r) => r.input_ids));
        return { input_ids: t, labels: t.clone() };
      };
      const trainer = new Trainer({ model, args, train_dataset: ds, data_collator: collate });
      await trainer.train();
      expect(model.is_gradient_checkpointing).toBe(gradient_checkpointing);
      const losses = trainer.state.log_history.filter((r) => "loss" in r).map((r) => r.loss!);
      await model.dispose();
      return losses;
    };
    const plain = await make(false),
      ckpt = await make(true);
    expect(ckpt).toHaveLength(3);
    ckpt.forEach((l, i) => expect(Math.abs(l - plain[i]!)).toBeLessThan(1e-5));
  });
});
