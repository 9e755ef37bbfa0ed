// Comparing the parameters of two training runs (test/distributed.test.ts, test/multinode.test.ts).
import { load_file, type Tensor } from "../../lib/index.js";

/** ||a - b|| / ||a|| over the elements [lo, hi) of one tensor. */
export function relNorm(a: Tensor, b: Tensor, lo = 0, hi = Infinity): number {
  const x = a.data() as Float32Array,
    y = b.data() as Float32Array;
  let n = 0,
    d = 0;
  for (let i = lo; i < Math.min(hi, x.length); i++) {
    n += x[i]! ** 2;
    d += (x[i]! - y[i]!) ** 2;
  }
  return Math.sqrt(d / n);
}

/**
 * The parameters of two saved runs more than 1e-5 apart (relative), with the tensors they name.
 * The key bias's true gradient is exactly zero (softmax ignores it): AdamW turns the rounding noise of the two
 * summation orders into updates of about lr, so only the query and value biases are compared (the tiny model's
 * n_embd is 64), as in test/distributed.test.ts.
 */
export async function farParams(fileA: string, fileB: string): Promise<(string | number)[][]> {
  const pa = await load_file(fileA);
  const pb = await load_file(fileB);
  expect(Object.keys(pb).sort()).toEqual(Object.keys(pa).sort());
  return Object.entries(pa).flatMap(([name, t]) => {
    const parts: [number, number][] = name.endsWith("attn.c_attn.bias")
      ? [
          [0, 64],
          [128, 192],
        ]
      : [[0, Infinity]];
    return parts.map(([lo, hi]) => [name, lo, relNorm(t, pb[name]!, lo, hi)]).filter(([, , d]) => Number(d) > 1e-5);
  });
}
