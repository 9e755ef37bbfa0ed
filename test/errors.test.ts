// Bad input is a rejected Promise or a thrown Error naming the problem; the process lives on.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GPT2LMHeadModel, tensor } from "../lib/index.js";
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
    await expect(load(dirWith(b.subarray(0, b.length - 1000)))).rejects.toThrow(/past the end of the data \(truncated file\?\)/);
    await expect(load(dirWith(b.subarray(0, 5)))).rejects.toThrow(/fewer than the 8-byte header length/);
  });
  test("header length past the end", async () => {
    const b = good();
    b.writeBigUInt64LE(BigInt(b.length), 0);
    await expect(load(dirWith(b))).rejects.toThrow(/header length .* points past the end/);
  });
  test("offsets out of range", async () => {
    await expect(load(dirWith(withHeader((h) => { h["wpe.weight"].data_offsets = [0, 1e12]; })))).rejects.toThrow(/wpe.weight has (data_offsets past the end|\d+ bytes)/);
  });
  test("overlapping offsets", async () => {
    await expect(load(dirWith(withHeader((h) => { h["ln_f.bias"].data_offsets = h["ln_f.weight"].data_offsets; })))).rejects.toThrow(/overlap/);
  });
  test("a byte count that does not match dtype and shape", async () => {
    await expect(load(dirWith(withHeader((h) => { h["ln_f.bias"].dtype = "F16"; })))).rejects.toThrow(/ln_f.bias has 256 bytes but dtype F16/);
  });
  test("unknown dtype and invalid JSON", async () => {
    await expect(load(dirWith(withHeader((h) => { h["ln_f.bias"].dtype = "Q4"; })))).rejects.toThrow(/unknown dtype "Q4"/);
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
    await expect(load(d)).rejects.toThrow("tensor h.1.mlp.c_fc.weight has shape [256, 64] but the config needs [64, 256]");
  });
  test("a missing tensor", async () => {
    const d = dirWith(null);
    writeSafetensors(join(d, "model.safetensors"), [...tinyWeights().entries()].filter(([k]) => k !== "h.0.ln_2.bias"));
    await expect(load(d)).rejects.toThrow("checkpoint is missing tensor h.0.ln_2.bias");
  });
  test("unknown model_type, missing files, a bad device", async () => {
    const d = dirWith(null, { ...TINY, model_type: "llama" });
    copyFileSync(join(tinyModelDir(), "model.safetensors"), join(d, "model.safetensors"));
    await expect(load(d)).rejects.toThrow('Unknown model_type "llama"');
    await expect(load(dirWith(null))).rejects.toThrow(/has no model.safetensors/);
    await expect(GPT2LMHeadModel.from_pretrained(tinyModelDir(), { device: "tpu" })).rejects.toThrow('Expected cpu, cuda, cuda:N or mps for device but received "tpu"');
    await expect(GPT2LMHeadModel.from_pretrained(tinyModelDir(), { device: "cuda" })).rejects.toThrow(/Device cuda is not available/);
    await expect(GPT2LMHeadModel.from_pretrained(tinyModelDir(), { colour: "red" } as never)).rejects.toThrow("Unknown option colour for from_pretrained");
  });
});

describe("bad forward inputs", () => {
  let model: GPT2LMHeadModel;
  beforeAll(async () => { model = await GPT2LMHeadModel.from_pretrained(tinyModelDir()); });
  afterAll(async () => { await model.dispose(); });

  test("non-integer ids", async () => {
    await expect(model.forward({ input_ids: [[1, 2.5]] })).rejects.toThrow("Expected an integer id for input_ids[0][1] but received 2.5");
    await expect(model.forward({ input_ids: tensor([[1.5, 2]]) })).rejects.toThrow(/integer ids for input_ids/);
  });
  test("ids out of the vocabulary", async () => {
    await expect(model.forward({ input_ids: [[1, 50257]] })).rejects.toThrow("input_ids must be in [0, 50257) but range over [1, 50257]");
    await expect(model.forward({ input_ids: [[-1, 3]] })).rejects.toThrow(/must be in \[0, 50257\)/);
  });
  test("a sequence longer than n_positions", async () => {
    await expect(model.forward({ input_ids: [Array.from({ length: 129 }, () => 1)] })).rejects.toThrow("sequence length 129 is longer than n_positions 128");
  });
  test("shapes that do not agree", async () => {
    await expect(model.forward({ input_ids: [[1, 2, 3]], attention_mask: [[1, 1]] })).rejects.toThrow("Expected attention_mask of shape [1, 3]");
    await expect(model.forward({ input_ids: [[1, 2, 3]], labels: [[1, 2]] })).rejects.toThrow("Expected labels of shape [1, 3]");
    await expect(model.forward({ input_ids: [[1, 2], [3]] })).rejects.toThrow(/rows must be the same length/);
    await expect(model.forward({ inputs: [[1]] } as never)).rejects.toThrow("Unknown option inputs for forward");
  });
  test("the model still works afterwards", async () => {
    const out = await model.forward({ input_ids: [[464, 3290]] });
    expect(out.logits.shape).toEqual([1, 2, 50257]);
  });
});
