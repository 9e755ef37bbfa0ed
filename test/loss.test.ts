import { CrossEntropyLoss, GPT2LMHeadModel, tensor } from "../lib/index.js";
import { binding } from "../lib/native.js";
import { golden, maxAbsDiff, flatten } from "./helpers/tiny.js";

describe("CrossEntropyLoss matches torch", () => {
  test.each((golden.cross_entropy as any[]).map((c, i) => [i, c]))("case %i", (_i, c: any) => {
    const loss = new CrossEntropyLoss({ reduction: c.reduction, label_smoothing: c.label_smoothing });
    const out = loss.forward(tensor(c.input, { dtype: "float32" }), tensor(c.target));
    expect(maxAbsDiff(flatten(out.tolist()), flatten(c.output))).toBeLessThan(1e-5);
  });

  test("autograd flows through it", () => {
    const x = tensor(
      [
        [1.0, 2.0, 0.5],
        [0.1, 0.2, 3.0],
      ],
      { requires_grad: true },
    );
    const loss = new CrossEntropyLoss().forward(x, tensor([0, 2]));
    loss.backward();
    const g = x.grad!.tolist() as number[][];
    // d/dx of mean CE = (softmax - onehot) / N
    const sm = x.detach().softmax(1).tolist() as number[][];
    expect(g[0]![0]).toBeCloseTo((sm[0]![0]! - 1) / 2, 6);
    expect(g[1]![1]).toBeCloseTo(sm[1]![1]! / 2, 6);
  });

  test("bad arguments name the problem", () => {
    expect(() => new CrossEntropyLoss({ reduction: "avg" as never })).toThrow(
      'Expected one of "mean", "sum", "none" for reduction but received "avg"',
    );
    expect(() => new CrossEntropyLoss({ ignore_idx: 1 } as never)).toThrow(
      "Unknown option ignore_idx for CrossEntropyLoss",
    );
    const l = new CrossEntropyLoss();
    expect(() => l.forward(tensor([[1.0, 2.0]], { dtype: "float32" }), tensor([0, 1]))).toThrow(
      /Expected target of shape \[1\]/,
    );
    expect(() => l.forward(tensor([[1.0, 2.0]], { dtype: "float32" }), tensor([5]))).toThrow(
      /Target class out of range/,
    );
    expect(() => l.forward([[1]] as never, tensor([0]))).toThrow(
      "Expected a Tensor for input but received an array of length 1",
    );
    expect(() => l.forward(tensor([[1, 2]]), tensor([0]))).toThrow(
      "Expected a floating input for CrossEntropyLoss but received int64",
    );
  });
});

test("the fused LM head and loss (slices of rows): loss and every gradient of forward + backward", async () => {
  // a slice is 32M logits: with a vocabulary of 70000 that is 479 rows, so 2 x 300 rows take two slices, one partial
  const model = await GPT2LMHeadModel.from_config(
    {
      vocab_size: 70000,
      n_positions: 512,
      n_embd: 16,
      n_layer: 1,
      n_head: 2,
      resid_pdrop: 0,
      embd_pdrop: 0,
      attn_pdrop: 0,
    },
    { seed: 9 },
  );
  model.train();
  const ids = Array.from({ length: 2 }, (_, b) =>
    Array.from({ length: 300 }, (_, t) => (b * 7919 + t * 104729) % 70000),
  );
  const labels = ids.map((row, b) => row.map((v, t) => (b === 1 && t % 7 === 0 ? -100 : v))); // some ignored labels
  const grads = () =>
    model.named_parameters().map(([n, t]) => [n, Float32Array.from(t.grad!.data() as Float32Array)] as const);
  const opt = new binding.NativeAdamW({
    groups: [{ params: model.parameters().map((t) => t._t), weight_decay: 0 }],
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
  });
  model.zero_grad();
  const fused = await opt.trainStep({
    model: model._native,
    input_ids: tensor(ids)._t,
    attention_mask: null,
    labels: tensor(labels)._t,
    loss_scale: 1,
    update: null,
    amp: "none",
  });
  const g1 = grads();
  model.zero_grad();
  const o = await model.forward({ input_ids: ids, labels });
  o.loss!.backward();
  const g2 = grads();
  expect(Math.abs(fused.loss - (o.loss!.item() as number))).toBeLessThan(1e-5);
  for (const [i, [name, g]] of g1.entries()) {
    const ref = g2[i]![1];
    let d = 0,
      m = 1e-12;
    g.forEach((v, j) => {
      d = Math.max(d, Math.abs(v - ref[j]!));
      m = Math.max(m, Math.abs(ref[j]!));
    });
    expect([name, d / m < 1e-4]).toEqual([name, true]);
  }
  await model.dispose();
});
