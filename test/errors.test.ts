// Bad input is a rejected Promise or a thrown Error naming the problem; the process lives on.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AbortError,
  DisposedError,
  GPT2LMHeadModel,
  InvalidArgumentError,
  NativeError,
  tensor,
  TorchlmError,
} from "../lib/index.js";
import { withStack } from "../lib/errors.js";
import { binding } from "../lib/native.js";
import { TINY, tinyModelDir, tinyWeights, writeSafetensors } from "./helpers/tiny.js";

const root = join(tmpdir(), `torchlm-errors-${process.pid}`);
let n = 0;
function dirWith(weights: Buffer | null, config: Record<string, unknown> = TINY): string {
  const d = join(root, String(n++));
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, "config.json"), JSON.stringify(config));
  if (weights) writeFileSync(join(d, "model.safetensors"), weights);
  return d;
}
const good = () => readFileSync(join(tinyModelDir(), "model.safetensors"));
function withHeader(mutate: (h: Record<string, any>) => void): Buffer {
  const buf = good();
  const len = Number(buf.readBigUInt64LE(0));
  const h = JSON.parse(buf.subarray(8, 8 + len).toString());
  mutate(h);
  let text = JSON.stringify(h);
  while ((text.length + 8) % 8) text += " ";
  const hb = Buffer.from(text);
  const lb = Buffer.alloc(8);
  lb.writeBigUInt64LE(BigInt(hb.length));
  return Buffer.concat([lb, hb, buf.subarray(8 + len)]);
}

describe("hostile or broken checkpoints", () => {
  const load = (d: string) => GPT2LMHeadModel.from_pretrained(d);

  test("truncated file", async () => {
    const b = good();
    await expect(load(dirWith(b.subarray(0, b.length - 1000)))).rejects.toThrow(
      /past the end of the data \(truncated file\?\)/,
    );
    await expect(load(dirWith(b.subarray(0, 5)))).rejects.toThrow(/fewer than the 8-byte header length/);
  });
  test("header length past the end", async () => {
    const b = good();
    b.writeBigUInt64LE(BigInt(b.length), 0);
    await expect(load(dirWith(b))).rejects.toThrow(/header length .* points past the end/);
  });
  test("offsets out of range", async () => {
    await expect(
      load(
        dirWith(
          withHeader((h) => {
            h["wpe.weight"].data_offsets = [0, 1e12];
          }),
        ),
      ),
    ).rejects.toThrow(/wpe.weight has (data_offsets past the end|\d+ bytes)/);
  });
  test("overlapping offsets", async () => {
    await expect(
      load(
        dirWith(
          withHeader((h) => {
            h["ln_f.bias"].data_offsets = h["ln_f.weight"].data_offsets;
          }),
        ),
      ),
    ).rejects.toThrow(/overlap/);
  });
  test("a byte count that does not match dtype and shape", async () => {
    await expect(
      load(
        dirWith(
          withHeader((h) => {
            h["ln_f.bias"].dtype = "F16";
          }),
        ),
      ),
    ).rejects.toThrow(/ln_f.bias has 256 bytes but dtype F16/);
  });
  test("unknown dtype and invalid JSON", async () => {
    await expect(
      load(
        dirWith(
          withHeader((h) => {
            h["ln_f.bias"].dtype = "Q4";
          }),
        ),
      ),
    ).rejects.toThrow(/unknown dtype "Q4"/);
    const b = good();
    b.write("#", 8);
    await expect(load(dirWith(b))).rejects.toThrow(/not valid JSON/);
  });
  test("a wrong shape for a name", async () => {
    const w = [...tinyWeights().entries()];
    const i = w.findIndex(([k]) => k === "h.1.mlp.c_fc.weight");
    w[i] = [w[i]![0], { shape: [256, 64], data: w[i]![1].data }];
    const d = dirWith(null);
    writeSafetensors(join(d, "model.safetensors"), w);
    await expect(load(d)).rejects.toThrow(
      "tensor h.1.mlp.c_fc.weight has shape [256, 64] but the config needs [64, 256]",
    );
  });
  test("a missing tensor", async () => {
    const d = dirWith(null);
    writeSafetensors(
      join(d, "model.safetensors"),
      [...tinyWeights().entries()].filter(([k]) => k !== "h.0.ln_2.bias"),
    );
    await expect(load(d)).rejects.toThrow("checkpoint is missing tensor h.0.ln_2.bias");
  });
  test("unknown model_type, missing files, a bad device", async () => {
    const d = dirWith(null, { ...TINY, model_type: "llama" });
    copyFileSync(join(tinyModelDir(), "model.safetensors"), join(d, "model.safetensors"));
    await expect(load(d)).rejects.toThrow('Unknown model_type "llama"');
    await expect(load(dirWith(null))).rejects.toThrow(/has no model.safetensors/);
    await expect(GPT2LMHeadModel.from_pretrained(tinyModelDir(), { device: "tpu" })).rejects.toThrow(
      'Expected cpu, cuda, cuda:N or mps for device but received "tpu"',
    );
    await expect(GPT2LMHeadModel.from_pretrained(tinyModelDir(), { device: "cuda" })).rejects.toThrow(
      /Device cuda is not available/,
    );
    await expect(GPT2LMHeadModel.from_pretrained(tinyModelDir(), { colour: "red" } as never)).rejects.toThrow(
      "Unknown option colour for from_pretrained",
    );
  });
});

describe("bad forward inputs", () => {
  let model: GPT2LMHeadModel;
  beforeAll(async () => {
    model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
  });
  afterAll(async () => {
    await model.dispose();
  });

  test("non-integer ids", async () => {
    await expect(model.forward({ input_ids: [[1, 2.5]] })).rejects.toThrow(
      "Expected an integer id for input_ids[0][1] but received 2.5",
    );
    await expect(model.forward({ input_ids: tensor([[1.5, 2]]) })).rejects.toThrow(/integer ids for input_ids/);
  });
  test("ids out of the vocabulary", async () => {
    await expect(model.forward({ input_ids: [[1, 50257]] })).rejects.toThrow(
      "input_ids must be in [0, 50257) but range over [1, 50257]",
    );
    await expect(model.forward({ input_ids: [[-1, 3]] })).rejects.toThrow(/must be in \[0, 50257\)/);
  });
  test("a sequence longer than n_positions", async () => {
    await expect(model.forward({ input_ids: [Array.from({ length: 129 }, () => 1)] })).rejects.toThrow(
      "sequence length 129 is longer than n_positions 128",
    );
  });
  test("shapes that do not agree", async () => {
    await expect(model.forward({ input_ids: [[1, 2, 3]], attention_mask: [[1, 1]] })).rejects.toThrow(
      "Expected attention_mask of shape [1, 3]",
    );
    await expect(model.forward({ input_ids: [[1, 2, 3]], labels: [[1, 2]] })).rejects.toThrow(
      "Expected labels of shape [1, 3]",
    );
    await expect(model.forward({ input_ids: [[1, 2], [3]] })).rejects.toThrow(/rows must be the same length/);
    await expect(model.forward({ inputs: [[1]] } as never)).rejects.toThrow("Unknown option inputs for forward");
  });
  test("the model still works afterwards", async () => {
    const out = await model.forward({ input_ids: [[464, 3290]] });
    expect(out.logits.shape).toEqual([1, 2, 50257]);
  });
});

describe("error classes and codes", () => {
  let model: GPT2LMHeadModel;
  beforeAll(async () => {
    model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
  });
  afterAll(async () => {
    await model.dispose();
  });

  test("an argument checked in TypeScript: InvalidArgumentError, ERR_TORCHLM_INVALID_ARGUMENT", async () => {
    const e = await model.generate([[1, 2]], { max_new_tokens: -1 }).catch((x) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e).toBeInstanceOf(TorchlmError);
    expect(e).toMatchObject({ name: "InvalidArgumentError", code: "ERR_TORCHLM_INVALID_ARGUMENT" });
    expect(e.message).toBe("Expected positive integer for max_new_tokens but received -1");
  });
  test("the caller's mistake found in C++ keeps its kind and the caller's stack", async () => {
    const e = await model.forward({ input_ids: [[1, 50257]] }).catch((x) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.code).toBe("ERR_TORCHLM_INVALID_ARGUMENT");
    expect(e.stack).toContain("errors.test.ts");
  });
  test("libtorch's own failure: NativeError, ERR_TORCHLM_NATIVE", () => {
    const e = (() => {
      try {
        tensor([[1, 2, 3]]).matmul(tensor([[1, 2]]));
      } catch (x) {
        return x;
      }
    })() as Error;
    expect(e).toBeInstanceOf(NativeError);
    expect(e).toMatchObject({ name: "NativeError", code: "ERR_TORCHLM_NATIVE" });
  });
  test("a disposed tensor or model: DisposedError, ERR_TORCHLM_DISPOSED", async () => {
    const t = tensor([1, 2]);
    t.dispose();
    expect(() => t.sum()).toThrow(DisposedError);
    const m = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    await m.dispose();
    const e = await m.forward({ input_ids: [[1]] }).catch((x) => x);
    expect(e).toMatchObject({ name: "DisposedError", code: "ERR_TORCHLM_DISPOSED" });
  });
  test("an aborted call: AbortError with Node's ABORT_ERR, from the native loop as from the signal", async () => {
    const controller = new AbortController();
    const p = model.generate([[1, 2]], {
      max_new_tokens: 100,
      signal: controller.signal,
      streamer: { put: () => controller.abort(), end: () => undefined },
    });
    const e = await p.catch((x) => x);
    expect(e).toBeInstanceOf(AbortError);
    expect(e).toMatchObject({ name: "AbortError", code: "ABORT_ERR" });
  });
});

describe("the raw binding's contract (lib/addon_types.ts): named options, every key required, string enums", () => {
  // the typed layer always passes every key; these calls go around it, as a bug in it would. The binding checks
  // options before it starts work, so it throws synchronously: `later` makes that a rejection, as withStack does.
  const later = <T>(f: () => Promise<T>) => Promise.resolve().then(f);
  const config = {
    architecture: "gpt2" as const,
    vocab_size: 64,
    n_positions: 16,
    n_embd: 8,
    n_layer: 1,
    n_head: 2,
    n_inner: null,
    layer_norm_epsilon: 1e-5,
    embd_pdrop: 0,
    attn_pdrop: 0,
    resid_pdrop: 0,
    activation: "gelu_tanh",
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
  };
  test("a missing key is named, not replaced by a default of the C++'s own", async () => {
    await expect(
      later(() => binding.NativeModel.create({ config, device: "cpu", dtype: "float32" } as never)),
    ).rejects.toThrow("NativeModel.create's option seed is missing");
    const { n_head: _, ...partial } = config;
    await expect(
      later(() => binding.NativeModel.create({ config: partial, device: "cpu", dtype: "float32", seed: 1 } as never)),
    ).rejects.toThrow("NativeModel.create's config's option n_head is missing");
  });
  test("a mistyped key or an unknown enum value is refused with the library's error shape", async () => {
    const nm = await binding.NativeModel.create({ config, device: "cpu", dtype: "float32", seed: 1 });
    const ids = tensor([[1, 2]])._t;
    const base = {
      input_ids: ids,
      attention_mask: null,
      position_ids: null,
      labels: null,
      past_key_values: null,
      use_cache: false,
      grad: false,
    };
    await expect(later(() => nm.forward({ ...base, use_cache: 0 } as never))).rejects.toThrow(
      "Expected a boolean for forward's option use_cache but received 0",
    );
    const opt = new binding.NativeAdamW({
      groups: [{ params: nm.parameters().map(([, t]) => t), weight_decay: 0 }],
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
    });
    const step = { model: nm, input_ids: ids, attention_mask: null, labels: ids, loss_scale: 1, update: null, amp: 1 };
    const e = await later(() => opt.trainStep(step as never)).catch((x) => x);
    expect(e.message).toBe('Expected one of "none", "bfloat16", "float16" for trainStep\'s option amp but received 1');
    expect(e.code).toBe("ERR_TORCHLM_INVALID_ARGUMENT");
    expect(() =>
      binding.crossEntropy({
        input: tensor([[0.5, 0.5]])._t,
        target: tensor([0])._t,
        ignore_index: -100,
        reduction: "avg",
        label_smoothing: 0,
      } as never),
    ).toThrow('Expected one of "mean", "sum", "none" for crossEntropy\'s option reduction but received "avg"');
    nm.dispose();
  });
  test("every entry point that takes options refuses a mistyped one with InvalidArgumentError, naming it", async () => {
    const nm = await binding.NativeModel.create({ config, device: "cpu", dtype: "float32", seed: 1 });
    const opt = new binding.NativeAdamW({
      groups: [{ params: nm.parameters().map(([, t]) => t), weight_decay: 0 }],
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
    });
    const ids = tensor([[1, 2]])._t;
    const calls: [string, () => unknown][] = [
      ["setNumThreads's option threads", () => binding.setNumThreads({ threads: "2" } as never)],
      ["manualSeed's option seed", () => binding.manualSeed({ seed: 1.5 } as never)],
      [
        "writeSafetensors's option path",
        () => binding.writeSafetensors({ path: 1, tensors: [], metadata: {} } as never),
      ],
      [
        "writeSafetensors's metadata format",
        () => binding.writeSafetensors({ path: "x", tensors: [], metadata: { format: 1 } } as never),
      ],
      [
        "readSafetensors's option data_start",
        () => binding.readSafetensors({ path: "x", data_start: "8", entries: [], dtype: null, device: "cpu" } as never),
      ],
      [
        "a safetensors entry's option begin",
        () =>
          binding.readSafetensors({
            path: "x",
            data_start: 8,
            entries: [{ name: "w", dtype: "F32", shape: [1], begin: "0", end: 4 }],
            dtype: null,
            device: "cpu",
          } as never),
      ],
      [
        "NativeModel.create's option dtype",
        () => binding.NativeModel.create({ config, device: "cpu", dtype: 32, seed: 1 } as never),
      ],
      [
        "NativeModel.create's config's option activation",
        () =>
          binding.NativeModel.create({
            config: { ...config, activation: "swish" },
            device: "cpu",
            dtype: "float32",
            seed: 1,
          } as never),
      ],
      [
        "forward's option grad",
        () =>
          nm.forward({
            input_ids: ids,
            attention_mask: null,
            position_ids: null,
            labels: null,
            past_key_values: null,
            use_cache: false,
            grad: "no",
          } as never),
      ],
      ["to's option device", () => nm.to({ device: 0, dtype: null } as never)],
      ["save's option path", () => nm.save({ path: ["x"] } as never)],
      ["loadWeights's option data_start", () => nm.loadWeights({ path: "x", data_start: null, entries: [] } as never)],
      [
        "addLora's option r",
        () => nm.addLora({ modules: [], r: "8", scaling: 1, dropout: 0, trainable: true } as never),
      ],
      ["removeLora's option merge", () => nm.removeLora({ merge: 1 } as never)],
      ["step's option lr", () => opt.step({ lr: "0.1" } as never)],
      ["clipGradNorm's option max_norm", () => opt.clipGradNorm({ max_norm: null } as never)],
      ["finishStep's option max_grad_norm", () => opt.finishStep({ lr: 0.1, max_grad_norm: "1" } as never)],
      ["backward's option scale", () => opt.backward({ loss: ids, scale: "1", amp: "none" } as never)],
      [
        "NativeProcessGroup.connect's option master_port",
        () =>
          binding.NativeProcessGroup.connect({
            master_addr: "127.0.0.1",
            master_port: "1",
            rank: 0,
            world_size: 1,
            timeout_ms: 1000,
          } as never),
      ],
      [
        "tensor's option shape",
        () => binding.NativeTensor.fromBuffer({ data: new Float32Array(1), shape: 1 } as never),
      ],
      ["cat's option dim", () => binding.NativeTensor.cat({ tensors: [ids], dim: "0" } as never)],
      ["permute's option dims", () => ids.permute({ dims: 0 } as never)],
      ["reshape's option shape", () => ids.reshape({ shape: "4" } as never)],
      ["view's option shape", () => ids.view({} as never)],
      ["slice's option step", () => ids.slice({ dim: 0, start: 0, end: null, step: 1.5 } as never)],
      ["argmax's option keepdim", () => ids.argmax({ dim: 0, keepdim: 0 } as never)],
      ["softmax's option dim", () => ids.softmax({ dim: null } as never)],
      ["log_softmax's option dim", () => ids.log_softmax({ dim: "1" } as never)],
      ["backward's option gradient", () => ids.backward({ gradient: 1 } as never)],
      ["compare's option op", () => ids.compare({ op: "eqq", other: 1 } as never)],
      ["arith's option op", () => ids.arith({ op: 1, other: 1 } as never)],
      ["reduce's option keepdim", () => ids.reduce({ op: "sum", dim: null, keepdim: "no" } as never)],
      ["matmul's option other", () => ids.matmul({ other: 2 } as never)],
      [
        "NativeAdamW's option eps",
        () => new binding.NativeAdamW({ groups: [], beta1: 0.9, beta2: 0.999, eps: "1e-8" } as never),
      ],
    ];
    for (const [what, call] of calls) {
      // through the library's mapping of the addon's codes (lib/errors.ts), as every caller in lib/ gets them
      const e = await withStack(async () => call()).catch((x) => x);
      expect([what, e]).toEqual([what, expect.any(InvalidArgumentError)]);
      expect(e.code).toBe("ERR_TORCHLM_INVALID_ARGUMENT");
      expect(e.message).toContain(what);
    }
    nm.dispose();
  });
  test("generate's settings arrive whole: early_stopping as a name, not a code", async () => {
    const nm = await binding.NativeModel.create({ config, device: "cpu", dtype: "float32", seed: 1 });
    const settings = {
      max_new_tokens: 2,
      min_new_tokens: 0,
      min_length: 0,
      do_sample: false,
      temperature: 1,
      top_k: 0,
      top_p: 1,
      min_p: 0,
      typical_p: 1,
      repetition_penalty: 1,
      no_repeat_ngram_size: 0,
      bad_words_ids: [],
      eos_token_ids: [],
      pad_token_id: 0,
      num_beams: 2,
      num_return_sequences: 1,
      length_penalty: 1,
      early_stopping: "always",
      use_cache: true,
      seed: null,
    } as const;
    const request = { input_ids: tensor([[1, 2]])._t, attention_mask: null, on_tokens: null, cancel: null };
    const out = await nm.generate({ ...request, config: settings });
    expect(out.shape).toEqual([1, 4]);
    await expect(
      later(() => nm.generate({ ...request, config: { ...settings, early_stopping: 1 } } as never)),
    ).rejects.toThrow(/Expected one of "heuristic", "always", "never" for generate's config's option early_stopping/);
    const cancel = new Int32Array(new SharedArrayBuffer(4));
    Atomics.store(cancel, 0, 1);
    await expect(nm.generate({ ...request, cancel, config: settings })).rejects.toMatchObject({
      code: "ABORT_ERR",
      message: "generation was aborted",
    });
    const { top_k: _, ...noTopK } = settings;
    await expect(later(() => nm.generate({ ...request, config: noTopK } as never))).rejects.toThrow(
      "generate's config's option top_k is missing",
    );
    nm.dispose();
  });
});
