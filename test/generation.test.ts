import { GPT2LMHeadModel, GenerationConfig, pipeline, AutoTokenizer, tensor, set_seed } from "../lib/index.js";
import { golden, tinyModelDir } from "./helpers/tiny.js";

const G = golden.generation;
let model: GPT2LMHeadModel;
beforeAll(async () => {
  model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
});
afterAll(async () => {
  await model.dispose();
});

const prompt: number[] = golden.greedy.prompt;

describe("greedy decoding", () => {
  test("equals the reference's full-recompute greedy for 30 new tokens, with and without the cache", async () => {
    const withCache = await model.generate([prompt], { max_new_tokens: 30 });
    expect(withCache.tolist()).toEqual([golden.greedy.ids]);
    const noCache = await model.generate(tensor([prompt]), { max_new_tokens: 30, use_cache: false });
    expect(noCache.tolist()).toEqual([golden.greedy.ids]);
  });

  test("max_length counts the prompt (default 20); max_new_tokens wins", async () => {
    expect((await model.generate([prompt])).shape).toEqual([1, 20]);
    expect((await model.generate([prompt], { max_length: 10 })).shape).toEqual([1, 10]);
    expect((await model.generate([prompt], { max_length: 10, max_new_tokens: 4 })).shape).toEqual([1, 7]);
  });

  test.each(G.cases.map((c: any) => [c.name, c]))("%s equals the reference", async (_n, c: any) => {
    const { eos_token_id, pad_token_id, ...rest } = c.options;
    const out = await model.generate(c.prompts, {
      ...rest,
      eos_token_id,
      pad_token_id,
      max_new_tokens: c.max_new_tokens,
      attention_mask: c.attention_mask ?? undefined,
    });
    expect(out.tolist()).toEqual(c.ids);
  });

  test("a left-padded batch gives, row for row, what each prompt gives alone", async () => {
    const a = [464, 3290, 318],
      b = [40, 1842, 7588, 13, 632];
    const batch = await model.generate([[50256, 50256, ...a], b], {
      attention_mask: [
        [0, 0, 1, 1, 1],
        [1, 1, 1, 1, 1],
      ],
      max_new_tokens: 12,
    });
    const rows = batch.tolist() as number[][];
    const alone = [
      (await model.generate([a], { max_new_tokens: 12 })).tolist(),
      (await model.generate([b], { max_new_tokens: 12 })).tolist(),
    ] as number[][][];
    expect(rows[0]!.slice(2)).toEqual(alone[0]![0]);
    expect(rows[1]).toEqual(alone[1]![0]);
  });

  test("beam search with one beam is greedy", async () => {
    const beam = await model.generate([prompt], { num_beams: 1, max_new_tokens: 15 });
    expect((beam.tolist() as number[][])[0]).toEqual(golden.greedy.ids.slice(0, 18));
  });
});

describe("sampling", () => {
  test("top_k 1 is greedy; the same seed gives the same ids", async () => {
    const k1 = await model.generate([prompt], { do_sample: true, top_k: 1, max_new_tokens: 15, seed: 7 });
    expect((k1.tolist() as number[][])[0]).toEqual(golden.greedy.ids.slice(0, 18));
    const a = await model.generate([prompt], { do_sample: true, top_k: 0, max_new_tokens: 15, seed: 3 });
    const b = await model.generate([prompt], { do_sample: true, top_k: 0, max_new_tokens: 15, seed: 3 });
    const c = await model.generate([prompt], { do_sample: true, top_k: 0, max_new_tokens: 15, seed: 4 });
    expect(a.tolist()).toEqual(b.tolist());
    expect(a.tolist()).not.toEqual(c.tolist());
    set_seed(11);
    const d = await model.generate([prompt], { do_sample: true, max_new_tokens: 8 });
    set_seed(11);
    const e = await model.generate([prompt], { do_sample: true, max_new_tokens: 8 });
    expect(d.tolist()).toEqual(e.tolist());
  });

  test("first-token frequencies match softmax(logits / T) after top-k and top-p, in that order", async () => {
    const s = G.sampling;
    const N = 2000;
    const out = await model.generate(
      Array.from({ length: N }, () => s.prompt),
      {
        do_sample: true,
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        max_new_tokens: 1,
        seed: 1234,
      },
    );
    const firsts = (out.tolist() as number[][]).map((r) => r[r.length - 1]!);
    const counts = new Map<number, number>();
    for (const t of firsts) counts.set(t, (counts.get(t) ?? 0) + 1);
    const tv = (probs: number[]) =>
      0.5 *
        s.support.reduce(
          (acc: number, tok: number, i: number) => acc + Math.abs((counts.get(tok) ?? 0) / N - probs[i]!),
          0,
        ) +
      0.5 * [...counts.entries()].filter(([t]) => !s.support.includes(t)).reduce((a, [, c]) => a + c / N, 0);
    expect(tv(s.probs)).toBeLessThan(0.04);
    expect(tv(s.wrong_order_probs)).toBeGreaterThan(0.1); // a wrong warper order fails the test above
    for (const [t] of counts) expect(s.probs[s.support.indexOf(t)]).toBeGreaterThan(0);
  });

  test("num_return_sequences samples several rows per prompt", async () => {
    const out = await model.generate([prompt], {
      do_sample: true,
      num_return_sequences: 3,
      max_new_tokens: 5,
      seed: 2,
    });
    expect(out.shape).toEqual([3, 8]);
  });
});

describe("streaming and cancellation", () => {
  test("generate_stream yields what generate returns, step by step", async () => {
    const steps: number[][] = [];
    for await (const t of model.generate_stream([prompt], { max_new_tokens: 12 })) steps.push(t);
    expect(steps.map((s) => s[0])).toEqual(golden.greedy.ids.slice(3, 15));
  });

  test("a streamer gets every step and end()", async () => {
    const got: number[] = [];
    let ended = false;
    await model.generate([prompt], {
      max_new_tokens: 6,
      streamer: {
        put: (t) => got.push(t[0]!),
        end: () => {
          ended = true;
        },
      },
    });
    expect(got).toEqual(golden.greedy.ids.slice(3, 9));
    expect(ended).toBe(true);
  });

  test("an AbortSignal cancels generate and the stream cleanly", async () => {
    const ac = new AbortController();
    const p = model.generate([prompt], { max_new_tokens: 120, use_cache: false, signal: ac.signal });
    setTimeout(() => ac.abort(), 5);
    await expect(p).rejects.toMatchObject({ name: "AbortError" });
    const ac2 = new AbortController();
    const seen: number[][] = [];
    await expect(
      (async () => {
        for await (const t of model.generate_stream([prompt], { max_new_tokens: 120, signal: ac2.signal })) {
          seen.push(t);
          if (seen.length === 3) ac2.abort();
        }
      })(),
    ).rejects.toMatchObject({ name: "AbortError" });
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen.length).toBeLessThan(120);
    // breaking out of the loop stops generation too, and the model keeps working
    for await (const _ of model.generate_stream([prompt], { max_new_tokens: 100 })) break;
    expect((await model.generate([prompt], { max_new_tokens: 2 })).shape).toEqual([1, 5]);
  });
});

describe("options", () => {
  test("bad options are errors naming them", async () => {
    await expect(model.generate([prompt], { max_new_tokens: -1 })).rejects.toThrow(
      "Expected positive integer for max_new_tokens but received -1",
    );
    await expect(model.generate([prompt], { top_p: 1.5 })).rejects.toThrow(
      "Expected number greater than 0 and at most 1 for top_p but received 1.5",
    );
    await expect(model.generate([prompt], { temprature: 0.5 } as never)).rejects.toThrow(
      "Unknown generation option temprature",
    );
    await expect(model.generate([prompt], { num_return_sequences: 2 })).rejects.toThrow(
      /Greedy decoding does not support num_return_sequences/,
    );
    await expect(model.generate([prompt], { num_beams: 2, num_return_sequences: 3 })).rejects.toThrow(
      /must be at most num_beams/,
    );
    await expect(model.generate([prompt], { max_new_tokens: 200 })).rejects.toThrow(
      /longer than the model's n_positions 128/,
    );
    await expect(model.generate([[1.5]])).rejects.toThrow(/integer id/);
  });

  test("GenerationConfig has Hugging Face's defaults and merges", () => {
    const g = new GenerationConfig();
    expect([g.max_length, g.do_sample, g.top_k, g.top_p, g.num_beams, g.temperature]).toEqual([
      20,
      false,
      50,
      1.0,
      1,
      1.0,
    ]);
    expect(model.generation_config.eos_token_id).toBe(50256);
    const m = g.merge({ do_sample: true, top_k: 0 });
    expect([m.do_sample, m.top_k, g.do_sample]).toEqual([true, 0, false]);
    expect(() => new GenerationConfig({ colour: 1 } as never)).toThrow("Unknown generation option colour");
    expect(JSON.parse(m.to_json_string())).toEqual({ do_sample: true, top_k: 0 });
  });
});

describe("text-generation pipeline", () => {
  test("returns [{ generated_text }] with the prompt, sampling as task_specific_params say", async () => {
    const dir = tinyModelDir({
      name: "with-task-params",
      config: { task_specific_params: { "text-generation": { do_sample: true, max_length: 50 } } },
    });
    const tok = await AutoTokenizer.from_pretrained("gpt2");
    await tok.save_pretrained(dir);
    const generator = await pipeline("text-generation", dir);
    const out = await generator("The cat is", { seed: 1 });
    expect(out).toHaveLength(1);
    expect(out[0]!.generated_text.startsWith("The cat is")).toBe(true);
    expect(out[0]!.generated_text.length).toBeGreaterThan("The cat is".length);
    const again = await generator("The cat is", { seed: 1 });
    expect(again).toEqual(out); // seeded sampling
    expect(await generator("The cat is", { seed: 2 })).not.toEqual(out); // sampling is on by default here
    const greedy = await generator("The cat is", { do_sample: false, max_new_tokens: 5, return_full_text: false });
    const ref = await model.generate([tok.encode("The cat is")], { max_new_tokens: 5 });
    expect(greedy[0]!.generated_text).toBe(tok.decode((ref.tolist() as number[][])[0]!.slice(3)));
    const many = await generator(["A", "B"], { max_new_tokens: 3, num_return_sequences: 2 });
    expect(many).toHaveLength(2);
    expect(many[0]).toHaveLength(2);
    await expect(generator("x", { bogus: 1 } as never)).rejects.toThrow("Unknown option bogus for text-generation");
    await generator.dispose();
  });
});
