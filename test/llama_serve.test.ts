// A Qwen2-shaped model served as a user would serve one: `torchlm serve -m DIR` on a folder with the model
// (save_pretrained) and a tokenizer carrying Qwen2.5's own chat template (trained in the test venv), answered for
// OpenAI's npm client on /v1/chat/completions (whole and streamed) and /v1/completions: each reply is generate()'s
// tokens on what apply_chat_template renders, and the template's end of turn ends it. In float32 and in q8.
import { spawn, type ChildProcess } from "node:child_process";
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { AutoTokenizer, Qwen2ForCausalLM, type ChatMessage, type PreTrainedModel } from "../lib/index.js";
import { ROOT, TEST_PYTHON } from "./helpers/python.js";

describe.each(["float32", "q8"] as const)("torchlm serve --dtype %s", (dtype) => {
  let dir: string;
  let model: PreTrainedModel;
  let tok: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;
  let child: ChildProcess;
  let client: OpenAI;

  beforeAll(async () => {
    const made = mkdtempSync(join(tmpdir(), "torchlm-qwen-tok-"));
    const out = execFileSync(TEST_PYTHON, [join(ROOT, "scripts", "chat-template-check.py"), "make", made], {
      encoding: "utf8",
      env: { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_VERBOSITY: "error" },
    });
    const refs = JSON.parse(out.trim().split("\n").pop()!);
    tok = await AutoTokenizer.from_pretrained(refs["qwen2.5"].dir);
    dir = mkdtempSync(join(tmpdir(), "torchlm-qwen-serve-"));
    const config = {
      vocab_size: tok.length,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 512,
      tie_word_embeddings: true,
      eos_token_id: tok.convert_tokens_to_ids("<|im_end|>"),
    };
    const m = await Qwen2ForCausalLM.from_config(config, { seed: 5 });
    await m.save_pretrained(dir);
    await m.dispose();
    await tok.save_pretrained(dir);
    model = await Qwen2ForCausalLM.from_pretrained(dir, { dtype });

    const args = [join(ROOT, "dist", "lib", "cli.js"), "serve", "-m", dir, "--dtype", dtype, "--port", "0"];
    child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout!.on("data", (d) => {
        log += d;
        const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
        if (m) resolve(m[1]!);
      });
      child.stderr!.on("data", (d) => (log += d));
      child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${log}`)));
    });
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "none", maxRetries: 0 });
  }, 120_000);
  afterAll(async () => {
    child?.kill("SIGTERM");
    await model?.dispose();
  });

  const CHAT: ChatMessage[] = [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "What is the capital of France?" },
  ];

  async function generated(max_new_tokens: number, seed?: number, eos: number | null = null) {
    const ids = tok.apply_chat_template(CHAT, { add_generation_prompt: true, return_dict: false }) as number[];
    const sampling =
      seed === undefined ? { do_sample: false } : { do_sample: true, temperature: 0.9, top_p: 1, top_k: 0, seed };
    const out = (
      await model.generate([ids], { max_new_tokens, eos_token_id: eos, ...sampling })
    ).tolist() as number[][];
    return { prompt: ids, tokens: out[0]!.slice(ids.length) };
  }

  test("a greedy chat reply is generate()'s tokens on Qwen2.5's rendered chat, whole and streamed", async () => {
    const { prompt, tokens } = await generated(10);
    const r = await client.chat.completions.create({ model: dir, messages: CHAT, max_tokens: 10, temperature: 0 });
    expect(r.model).toBe(dir);
    expect(r.usage!.prompt_tokens).toBe(prompt.length);
    const eos = tok.convert_tokens_to_ids("<|im_end|>")!;
    const cut = tokens.indexOf(eos);
    const want = cut < 0 ? tokens : tokens.slice(0, cut);
    expect(r.choices[0]!.message.content).toBe(tok.decode(want));
    expect(r.choices[0]!.finish_reason).toBe(cut < 0 ? "length" : "stop");
    const stream = await client.chat.completions.create({
      model: dir,
      messages: CHAT,
      max_tokens: 10,
      temperature: 0,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe(r.choices[0]!.message.content);
  });

  test("a seeded sampled reply is the same seed's generate(); /v1/completions takes the same model", async () => {
    const { tokens } = await generated(8, 11);
    const r = await client.chat.completions.create({
      model: dir,
      messages: CHAT,
      max_tokens: 8,
      temperature: 0.9,
      seed: 11,
    });
    const eos = tok.convert_tokens_to_ids("<|im_end|>")!;
    const cut = tokens.indexOf(eos);
    expect(r.choices[0]!.message.content).toBe(tok.decode(cut < 0 ? tokens : tokens.slice(0, cut)));
    const c = await client.completions.create({ model: dir, prompt: "The capital of France is", max_tokens: 6 });
    expect(c.choices[0]!.text.length).toBeGreaterThan(0);
    expect(c.usage!.completion_tokens).toBeLessThanOrEqual(6);
  });
});
