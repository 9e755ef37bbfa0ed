import { CrossEntropyLoss, tensor } from "../lib/index.js";
import { golden, maxAbsDiff, flatten } from "./helpers/tiny.js";

describe("CrossEntropyLoss matches torch", () => {
  test.each((golden.cross_entropy as any[]).map((c, i) => [i, c]))("case %i", (_i, c: any) => {
    const loss = new CrossEntropyLoss({ reduction: c.reduction, label_smoothing: c.label_smoothing });
    const out = loss.forward(tensor(c.input, { dtype: "float32" }), tensor(c.target));
    expect(maxAbsDiff(flatten(out.tolist()), flatten(c.output))).toBeLessThan(1e-5);
  });

  test("autograd flows through it", () => {
    const x = tensor([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]], { requires_grad: true });
    const loss = new CrossEntropyLoss().forward(x, tensor([0, 2]));
    loss.backward();
    const g = x.grad!.tolist() as number[][];
    // d/dx of mean CE = (softmax - onehot) / N
    const sm = x.detach().softmax(1).tolist() as number[][];
    expect(g[0]![0]).toBeCloseTo((sm[0]![0]! - 1) / 2, 6);
    expect(g[1]![1]).toBeCloseTo(sm[1]![1]! / 2, 6);
  });

  test("bad arguments name the problem", () => {
    expect(() => new CrossEntropyLoss({ reduction: "avg" as never })).toThrow('Expected one of "mean", "sum", "none" for reduction but received "avg"');
    expect(() => new CrossEntropyLoss({ ignore_idx: 1 } as never)).toThrow("Unknown option ignore_idx for CrossEntropyLoss");
    const l = new CrossEntropyLoss();
    expect(() => l.forward(tensor([[1.0, 2.0]], { dtype: "float32" }), tensor([0, 1]))).toThrow(/Expected target of shape \[1\]/);
    expect(() => l.forward(tensor([[1.0, 2.0]], { dtype: "float32" }), tensor([5]))).toThrow(/Target class out of range/);
    expect(() => l.forward([[1]] as never, tensor([0]))).toThrow("Expected a Tensor for input but received an array of length 1");
    expect(() => l.forward(tensor([[1, 2]]), tensor([0]))).toThrow("Expected a floating input for CrossEntropyLoss but received int64");
  });
});
