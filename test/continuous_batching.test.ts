// Continuous batching: a request's tokens are the same alone or beside others (greedy and seeded sampling, fp32 and
// q8), requests join, wait for a slot, get cancelled and leave mid-run, and each keeps its own options.
import { GPT2LMHeadModel, InvalidArgumentError, tensor } from "../lib/index.js";
import { tinyModelDir } from "./helpers/tiny.js";

const models: Record<string, GPT2LMHeadModel> = {};
beforeAll(async () => {
  models.float32 = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
  models.q8 = await GPT2LMHeadModel.from_pretrained(tinyModelDir(), { dtype: "q8" });
});
afterAll(async () => {
  for (const m of Object.values(models)) await m.dispose();
});

// prompts of different lengths, so that requests prefill over several steps and decode at different positions
function prompts(n: number): number[][] {
  return Array.from({ length: n }, (_, i) =>
    Array.from({ length: 3 + ((i * 7) % 29) }, (_, t) => (i * 131 + t * 17) % 50000),
  );
}

async function alone(model: GPT2LMHeadModel, ids: number[], options: Record<string, unknown>): Promise<number[]> {
  const out = (await model.generate([ids], options)).tolist() as number[][];
  return out[0]!.slice(ids.length);
}

describe.each(["float32", "q8"])("%s", (dtype) => {
  test("greedy: 10 requests through 4 slots and chunked prefill give generate()'s tokens alone", async () => {
    const model = models[dtype]!;
    const ps = prompts(10);
    const options = { max_new_tokens: 12, eos_token_id: null };
    const expected = [];
    for (const p of ps) expected.push(await alone(model, p, options));
    const manager = await model.init_continuous_batching({ max_batch_size: 4, max_batch_tokens: 9 });
    const handles = ps.map((p) => manager.add_request(p, options));
    // 4 slots: the rest wait (a request may have finished already: the model is tiny)
    expect(manager.running).toBeLessThanOrEqual(4);
    expect(manager.waiting).toBeGreaterThanOrEqual(1);
    const results = await Promise.all(handles.map((h) => h.result));
    expect(results.map((r) => r.generated_tokens)).toEqual(expected);
    expect(results.map((r) => r.finish_reason)).toEqual(Array(10).fill("length"));
    expect([manager.running, manager.waiting]).toEqual([0, 0]);
    await manager.stop();
  });

  test("sampling with a seed per request gives the same seed's tokens alone", async () => {
    const model = models[dtype]!;
    const ps = prompts(6);
    const opts = (i: number) => ({
      max_new_tokens: 10,
      do_sample: true,
      temperature: [0.7, 1.3][i % 2],
      top_k: [0, 40, 5][i % 3],
      top_p: [1, 0.9][i % 2],
      repetition_penalty: i === 4 ? 1.3 : 1,
      eos_token_id: null,
      seed: 1000 + i,
    });
    const expected = [];
    for (let i = 0; i < ps.length; i++) expected.push(await alone(model, ps[i]!, opts(i)));
    const manager = await model.init_continuous_batching({ max_batch_size: 3, max_batch_tokens: 16 });
    const results = await Promise.all(ps.map((p, i) => manager.add_request(p, opts(i)).result));
    expect(results.map((r) => r.generated_tokens)).toEqual(expected);
    await manager.stop();
  });
});

test("tokens stream through each request's iterator as made; a request that joins later runs beside", async () => {
  const model = models.float32!;
  const [a, b] = prompts(2);
  const options = { max_new_tokens: 16, eos_token_id: null };
  const expectedB = await alone(model, b!, options);
  const manager = await model.init_continuous_batching({ max_batch_size: 2 });
  const first = manager.add_request(a!, options);
  const seen: number[] = [];
  let second: ReturnType<typeof manager.add_request> | null = null;
  for await (const t of first) {
    seen.push(t.token);
    expect(t.logprob).toBeNull();
    if (seen.length === 4) second = manager.add_request(b!, options);
  }
  expect(seen).toEqual((await first.result).generated_tokens);
  expect((await second!.result).generated_tokens).toEqual(expectedB);
  await manager.stop();
});

test("a cancelled request frees its slot; the others are unaffected; an abort signal cancels too", async () => {
  const model = models.float32!;
  const ps = prompts(3);
  const options = { max_new_tokens: 30, eos_token_id: null };
  const expected2 = await alone(model, ps[2]!, options);
  const manager = await model.init_continuous_batching({ max_batch_size: 2 });
  const controller = new AbortController();
  const h0 = manager.add_request(ps[0]!, options);
  const h1 = manager.add_request(ps[1]!, { ...options, signal: controller.signal });
  const h2 = manager.add_request(ps[2]!, options); // waits for a slot
  let n = 0;
  for await (const _ of h0) if (++n === 3) manager.cancel_request(h0.request_id);
  controller.abort();
  const [r0, r1, r2] = await Promise.all([h0.result, h1.result, h2.result]);
  expect([r0.status, r0.finish_reason]).toEqual(["cancelled", "cancelled"]);
  expect(r0.generated_tokens.length).toBeGreaterThanOrEqual(3);
  expect(r0.generated_tokens.length).toBeLessThan(30);
  expect(r1.status).toBe("cancelled");
  expect(r2.generated_tokens).toEqual(expected2);
  expect([manager.running, manager.waiting]).toEqual([0, 0]);
  await manager.stop();
});

test("an end-of-sequence token ends its request with finish_reason stop; logprobs are the model's", async () => {
  const model = models.float32!;
  const p = prompts(1)[0]!;
  const greedy = await alone(model, p, { max_new_tokens: 8, eos_token_id: null });
  const manager = await model.init_continuous_batching();
  // the 3rd greedy token as the end of sequence
  const stopped = await manager.add_request(p, { max_new_tokens: 8, eos_token_id: greedy[2]! }).result;
  expect([stopped.generated_tokens, stopped.finish_reason]).toEqual([greedy.slice(0, 3), "stop"]);

  const h = manager.add_request(p, { max_new_tokens: 8, eos_token_id: null, logprobs: 3 });
  const steps = [];
  for await (const t of h) steps.push(t);
  const r = await h.result;
  // the reference: log_softmax of one forward pass over prompt + tokens
  const full = [...p, ...r.generated_tokens];
  const logits = (await model.forward({ input_ids: tensor([full]) })).logits.log_softmax(-1);
  const rows = logits.tolist() as number[][][];
  for (let i = 0; i < steps.length; i++) {
    const row = rows[0]![p.length - 1 + i]!;
    expect(steps[i]!.logprob).toBeCloseTo(row[r.generated_tokens[i]!]!, 4);
    const best = [...row.keys()].sort((x, y) => row[y]! - row[x]!).slice(0, 3);
    expect(steps[i]!.top_logprobs.map(([t]) => t)).toEqual(best);
  }
  expect(r.logprobs).toEqual(steps.map((s) => s.logprob));
  await manager.stop();
});

test("generate_batch: one result per input, in order, each equal to generate() alone", async () => {
  const model = models.q8!;
  const ps = prompts(5);
  const expected = [];
  for (const p of ps) expected.push(await alone(model, p, { max_new_tokens: 6, eos_token_id: null }));
  const results = await model.generate_batch(ps, { max_new_tokens: 6, eos_token_id: null });
  expect(results.map((r) => r.generated_tokens)).toEqual(expected);
  expect(results.map((r) => r.prompt_ids)).toEqual(ps);
});

test("generate() and forward() calls run between the manager's steps", async () => {
  const model = models.float32!;
  const manager = await model.init_continuous_batching({ max_batch_size: 2 });
  const h = manager.add_request(prompts(1)[0]!, { max_new_tokens: 40, eos_token_id: null });
  const other = await model.generate([[1, 2, 3]], { max_new_tokens: 3 });
  expect(other.shape).toEqual([1, 6]);
  expect((await h.result).generated_tokens.length).toBe(40);
  await manager.stop();
});

test("bad requests are refused with InvalidArgumentError; after stop() nothing is accepted", async () => {
  const model = models.float32!;
  const manager = await model.init_continuous_batching({ max_batch_size: 2, max_context_length: 64 });
  expect(() => manager.add_request([], {})).toThrow(InvalidArgumentError);
  expect(() => manager.add_request([1, 50257])).toThrow(/input_ids\[1\]/);
  expect(() => manager.add_request([1, 2], { max_new_tokens: 63 })).toThrow(/max_context_length 64/);
  expect(() => manager.add_request([1, 2], { num_beams: 2 })).toThrow(/beam search/);
  expect(() => manager.add_request([1, 2], { logprobs: 21 } as never)).toThrow(InvalidArgumentError);
  expect(() => manager.add_request([1, 2], { stream: true } as never)).toThrow(/Unknown generation option stream/);
  const pending = manager.add_request([1, 2, 3], { max_new_tokens: 50, eos_token_id: null });
  await manager.stop();
  expect((await pending.result).status).toBe("cancelled");
  expect(() => manager.add_request([1, 2])).toThrow(/stopped/);
  await expect(model.init_continuous_batching({ max_batch_size: 0 })).rejects.toThrow(InvalidArgumentError);
  await expect(model.init_continuous_batching({ max_batch_size: 4, max_batch_tokens: 4 })).rejects.toThrow(
    /max_batch_tokens/,
  );
  await expect(model.init_continuous_batching({ max_context_length: 129 })).rejects.toThrow(/max_context_length/);
});
