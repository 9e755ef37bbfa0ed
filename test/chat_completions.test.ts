// torchlm serve's /v1/chat/completions against OpenAI's own clients (npm and Python): each reply is generate()'s tokens
// on the conversation the tokenizer's chat template renders, whole or streamed, in float32 and q8; the tokenizer's end
// of turn ends a reply and stays out of its text; seeds, n, text parts, stop strings, logprobs with bytes; and the
// 400s of a conversation the server cannot take.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { AutoTokenizer, GPT2LMHeadModel, type ChatMessage } from "../lib/index.js";
import { serve, type Server } from "../lib/serve.js";
import { ROOT, TEST_PYTHON } from "./helpers/python.js";
import { tinyModelDir } from "./helpers/tiny.js";

// A plain template in GPT-2's vocabulary: the tiny model's tokenizer has none of ChatML's control tokens.
const TEMPLATE =
  "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}" +
  "{% if add_generation_prompt %}assistant:{% endif %}";
const KEY = "sk-chat";
let model: GPT2LMHeadModel;
let q8: GPT2LMHeadModel;
let tok: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;
let server: Server;
let q8server: Server;
let client: OpenAI;

beforeAll(async () => {
  const dir = tinyModelDir({ name: "chat-model" });
  tok = await AutoTokenizer.from_pretrained("gpt2");
  tok.chat_template = TEMPLATE;
  model = await GPT2LMHeadModel.from_pretrained(dir);
  q8 = await GPT2LMHeadModel.from_pretrained(dir, { dtype: "q8" });
  server = await serve({ model, tokenizer: tok, model_name: "tiny", port: 0, max_batch: 4, api_key: KEY });
  q8server = await serve({ model: q8, tokenizer: tok, model_name: "tiny-q8", port: 0, max_batch: 4 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
});
afterAll(async () => {
  await server.close(1000);
  await q8server.close(1000);
  await model.dispose();
  await q8.dispose();
});

const CHAT: ChatMessage[] = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Name a colour." },
];

/** What generate() gives on the rendered conversation: the new tokens. */
async function generated(m: GPT2LMHeadModel, messages: ChatMessage[], options: Record<string, unknown>) {
  const ids = tok.apply_chat_template(messages, { add_generation_prompt: true, return_dict: false }) as number[];
  const out = (await m.generate([ids], { eos_token_id: null, ...options })).tolist() as number[][];
  return { prompt: ids, tokens: out[0]!.slice(ids.length) };
}

test.each(["tiny", "tiny-q8"])(
  "%s: a greedy reply is generate()'s tokens on the rendered conversation",
  async (name) => {
    const m = name === "tiny" ? model : q8;
    const c = name === "tiny" ? client : new OpenAI({ baseURL: `${q8server.url}/v1`, apiKey: "none", maxRetries: 0 });
    const { prompt, tokens } = await generated(m, CHAT, { max_new_tokens: 12 });
    const r = await c.chat.completions.create({ model: name, messages: CHAT, max_tokens: 12, temperature: 0 });
    expect(r.object).toBe("chat.completion");
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices[0]!.message).toMatchObject({ role: "assistant", content: tok.decode(tokens) });
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect(r.usage).toEqual({ prompt_tokens: prompt.length, completion_tokens: 12, total_tokens: prompt.length + 12 });
    // the same streamed: the first chunk carries the role, the last the finish reason, then usage
    const stream = await c.chat.completions.create({
      model: name,
      messages: CHAT,
      max_completion_tokens: 12,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    for (const chunk of chunks) text += chunk.choices[0]?.delta.content ?? "";
    expect(chunks.every((k) => k.object === "chat.completion.chunk")).toBe(true);
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    expect(text).toBe(tok.decode(tokens));
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("length");
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(12);
  },
);

test("n choices with a seed each equal generate() with that seed; text parts read as the same text", async () => {
  const r = await client.chat.completions.create({
    model: "tiny",
    messages: CHAT,
    max_tokens: 10,
    temperature: 0.8,
    top_p: 0.9,
    n: 2,
    seed: 5,
  });
  const sampled = { max_new_tokens: 10, do_sample: true, temperature: 0.8, top_p: 0.9, top_k: 0 };
  expect(r.choices.map((c) => c.message.content)).toEqual([
    tok.decode((await generated(model, CHAT, { ...sampled, seed: 5 })).tokens),
    tok.decode((await generated(model, CHAT, { ...sampled, seed: 6 })).tokens),
  ]);
  const parts = await client.chat.completions.create({
    model: "tiny",
    messages: [
      { role: "system", content: [{ type: "text", text: "You are terse." }] },
      {
        role: "user",
        content: [
          { type: "text", text: "Name a " },
          { type: "text", text: "colour." },
        ],
      },
    ],
    max_tokens: 10,
    temperature: 0,
  });
  expect(parts.choices[0]!.message.content).toBe(
    tok.decode((await generated(model, CHAT, { max_new_tokens: 10 })).tokens),
  );
});

test("the tokenizer's end of turn ends a reply with finish_reason stop and stays out of the text", async () => {
  // seeded sampling: the tiny model's greedy reply repeats one token
  const sampled = { max_new_tokens: 8, do_sample: true, temperature: 1, top_p: 1, top_k: 0, seed: 3 };
  const { tokens } = await generated(model, CHAT, sampled);
  // make a token that first comes mid-reply the end of turn (the tiny model's own eos is GPT-2's <|endoftext|>)
  const k = tokens.findIndex((t, i) => i >= 1 && !tokens.slice(0, i).includes(t));
  expect(k).toBeGreaterThan(0); // a token that first comes after the reply has begun
  const saved = tok.eos_token;
  tok.eos_token = tok.convert_ids_to_tokens(tokens[k]!);
  try {
    const r = await client.chat.completions.create({ model: "tiny", messages: CHAT, max_tokens: 8, seed: 3 });
    expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(r.choices[0]!.message.content).toBe(tok.decode(tokens.slice(0, k)));
    expect(r.usage!.completion_tokens).toBe(k + 1);
    // ignore_eos (vLLM's and llama-server's) runs on through it
    const on = await client.chat.completions.create({
      model: "tiny",
      messages: CHAT,
      max_tokens: 8,
      seed: 3,
      ignore_eos: true,
    } as never);
    expect(on.choices[0]!.message.content).toBe(tok.decode(tokens));
  } finally {
    tok.eos_token = saved;
  }
});

test("stop strings and logprobs with top_logprobs and bytes", async () => {
  const full = tok.decode((await generated(model, CHAT, { max_new_tokens: 20 })).tokens);
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
  const r = await client.chat.completions.create({
    model: "tiny",
    messages: CHAT,
    max_tokens: 20,
    temperature: 0,
    stop,
  });
  expect([r.choices[0]!.message.content, r.choices[0]!.finish_reason]).toEqual([
    full.slice(0, full.indexOf(stop)),
    "stop",
  ]);

  const lp = await client.chat.completions.create({
    model: "tiny",
    messages: CHAT,
    max_tokens: 5,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
  });
  const content = lp.choices[0]!.logprobs!.content!;
  expect(content.length).toBe(5);
  // the same as /v1/completions gives on the same prompt ids (whose logprobs are tested against a forward pass)
  const ids = tok.apply_chat_template(CHAT, { add_generation_prompt: true, return_dict: false }) as number[];
  const ref = await client.completions.create({
    model: "tiny",
    prompt: ids,
    max_tokens: 5,
    temperature: 0,
    logprobs: 3,
  });
  content.forEach((t, i) => {
    expect(t.token).toBe(ref.choices[0]!.logprobs!.tokens![i]);
    expect(t.logprob).toBeCloseTo(ref.choices[0]!.logprobs!.token_logprobs![i]!, 5);
    expect(t.bytes).toEqual([...Buffer.from(t.token, "utf8")]);
    expect(t.top_logprobs.length).toBe(3);
    expect(Math.max(...t.top_logprobs.map((x) => x.logprob))).toBeCloseTo(t.logprob, 5); // greedy: the likeliest
  });
});

test("a conversation the server cannot take is a 400 in OpenAI's body", async () => {
  const bad = (body: Record<string, unknown>) =>
    client.chat.completions.create({ model: "tiny", max_tokens: 2, ...body } as never).catch((e) => e);
  for (const body of [
    { messages: [] },
    { messages: [{ role: "wizard", content: "hi" }] },
    { messages: [{ content: "no role" }] },
    { messages: CHAT, top_logprobs: 9, logprobs: true },
    { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] },
  ]) {
    const e = await bad(body);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e.error.type).toBe("invalid_request_error");
  }
  const image = await bad({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] });
  expect(image.error.message).toMatch(/text parts only/);
  // a template that refuses the conversation: its own words come back
  const saved = tok.chat_template;
  tok.chat_template = "{{ raise_exception('Conversation roles must alternate') }}";
  try {
    expect((await bad({ messages: CHAT })).error.message).toMatch(/roles must alternate/);
  } finally {
    tok.chat_template = saved;
  }
  // without a template: the error names the files it would come from
  tok.chat_template = null;
  try {
    const none = await bad({ messages: CHAT });
    expect(none.status).toBe(400);
    expect(none.error.message).toMatch(/chat_template\.jinja/);
  } finally {
    tok.chat_template = saved;
  }
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
});

test("Python's openai client: the same reply, streamed or not, and a 400", async () => {
  const { tokens } = await generated(model, [{ role: "user", content: "Hello there" }], { max_new_tokens: 9 });
  const { stdout } = await promisify(execFile)(
    TEST_PYTHON,
    [join(ROOT, "scripts", "openai-client.py"), "chat", `${server.url}/v1`, KEY, "tiny", "Hello there", "9"],
    { encoding: "utf8" },
  );
  const out = JSON.parse(stdout.trim().split("\n").pop()!);
  expect(out.text).toBe(tok.decode(tokens));
  expect(out.streamed).toBe(tok.decode(tokens));
  expect([out.role, out.finish_reason, out.usage.completion_tokens]).toEqual(["assistant", "length", 9]);
  expect(out.refused.status).toBe(400);
});
