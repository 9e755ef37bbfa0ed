// Tokenizers from any tokenizer.json and apply_chat_template, against transformers on the same files: byte-level BPE
// tokenizers trained in the test venv with the `tokenizers` library, saved by transformers with the real chat templates
// of Qwen2.5, Qwen3, Llama 3.2 and SmolLM3 (test/fixtures/chat_templates) and SmolLM2's; the text and ids of each
// conversation equal transformers' apply_chat_template, and what torchlm saves renders the same in transformers.
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AutoTokenizer,
  GPT2TokenizerFast,
  InvalidArgumentError,
  PreTrainedTokenizerFast,
  Tensor,
  type ChatMessage,
} from "../lib/index.js";
import { ROOT, TEST_PYTHON } from "./helpers/python.js";

interface Case {
  name: string;
  messages: ChatMessage[];
  options: Record<string, unknown>;
  text: string;
  ids: number[];
}
interface Reference {
  dir: string;
  cases: Case[];
  batch: { options: Record<string, unknown>; input_ids: number[][]; attention_mask: number[][] };
  encode: { text: string; with: number[]; without: number[] };
  length: number;
  special_tokens_map: Record<string, string>;
  all_special_tokens: string[];
}

const SCRIPT = join(ROOT, "scripts", "chat-template-check.py");
const ENV = { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_VERBOSITY: "error" };
const python = (args: string[]) =>
  JSON.parse(
    execFileSync(TEST_PYTHON, [SCRIPT, ...args], { encoding: "utf8", env: ENV })
      .trim()
      .split("\n")
      .pop()!,
  );

let refs: Record<string, Reference>;
beforeAll(() => {
  refs = python(["make", mkdtempSync(join(tmpdir(), "chat-templates-"))]);
});

const TEMPLATES = ["qwen2.5", "qwen3", "llama3.2", "smollm3", "smollm2", "bos-eos-flags"];

test.each(TEMPLATES)("%s: AutoTokenizer reads the files as transformers does", async (name) => {
  const ref = refs[name]!;
  const tok = await AutoTokenizer.from_pretrained(ref.dir);
  expect(tok).toBeInstanceOf(PreTrainedTokenizerFast);
  expect(tok instanceof GPT2TokenizerFast).toBe(name === "smollm2"); // its files name GPT2Tokenizer
  expect(tok.special_tokens_map).toEqual(ref.special_tokens_map);
  expect([...tok.all_special_tokens].sort()).toEqual(ref.all_special_tokens);
  expect(tok.length).toBe(ref.length); // len(tokenizer)
  // Llama 3's post-processor adds its BOS; the others add nothing (add_bos_token / add_eos_token in
  // tokenizer_config.json included: transformers 5 leaves them to tokenizer.json's post-processor)
  expect(tok.encode(ref.encode.text)).toEqual(ref.encode.with);
  expect(tok.encode(ref.encode.text, { add_special_tokens: false })).toEqual(ref.encode.without);
  expect(tok(ref.encode.text).input_ids).toEqual(ref.encode.with);
  expect(typeof tok.chat_template).toBe("string");
});

test.each(TEMPLATES)("%s: every conversation's text and ids equal transformers' apply_chat_template", async (name) => {
  const ref = refs[name]!;
  const tok = await AutoTokenizer.from_pretrained(ref.dir);
  expect(ref.cases.length).toBeGreaterThanOrEqual(5);
  for (const c of ref.cases) {
    const text = tok.apply_chat_template(c.messages, { ...c.options, tokenize: false });
    expect({ case: c.name, text }).toEqual({ case: c.name, text: c.text });
    const ids = tok.apply_chat_template(c.messages, { ...c.options, return_dict: false });
    expect({ case: c.name, ids }).toEqual({ case: c.name, ids: c.ids });
    const enc = tok.apply_chat_template(c.messages, c.options);
    expect(enc.input_ids).toEqual(c.ids);
    expect(enc.attention_mask).toEqual(c.ids.map(() => 1));
  }
  // a batch of conversations, padded, as tensors
  const b = ref.batch;
  const messages = ref.cases.slice(0, 2).map((c) => c.messages);
  const batch = tok.apply_chat_template(messages, { ...b.options, return_tensors: "pt" });
  expect(batch.input_ids).toBeInstanceOf(Tensor);
  expect(batch.input_ids.tolist()).toEqual(b.input_ids);
  expect(batch.attention_mask.tolist()).toEqual(b.attention_mask);
  const texts = tok.apply_chat_template(messages, { ...b.options, tokenize: false });
  expect(texts).toEqual(ref.cases.slice(0, 2).map((c) => c.text));
});

test.each(["qwen3", "llama3.2"])("%s: what save_pretrained writes, transformers renders the same", async (name) => {
  const ref = refs[name]!;
  const tok = await AutoTokenizer.from_pretrained(ref.dir);
  const dir = mkdtempSync(join(tmpdir(), "chat-saved-"));
  const files = await tok.save_pretrained(dir);
  expect(files.map((f) => f.slice(dir.length + 1)).sort()).toEqual([
    "chat_template.jinja",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
  ]);
  const casesFile = join(dir, "cases.json");
  writeFileSync(casesFile, JSON.stringify(ref.cases));
  const again: { text: string; ids: number[] }[] = python(["render", dir, casesFile]);
  expect(again).toEqual(ref.cases.map((c) => ({ text: c.text, ids: c.ids })));
  // and torchlm reads its own files back the same
  const back = await AutoTokenizer.from_pretrained(dir);
  expect(back.special_tokens_map).toEqual(tok.special_tokens_map);
  expect(back.apply_chat_template(ref.cases[0]!.messages, { ...ref.cases[0]!.options, tokenize: false })).toBe(
    ref.cases[0]!.text,
  );
});

test("a template passed by the caller, named templates, and templates that refuse", async () => {
  const tok = await AutoTokenizer.from_pretrained(refs["qwen2.5"]!.dir);
  const messages = [{ role: "user", content: "hi" }];
  const own = "{% for m in messages %}[{{ m.role }}: {{ m.content }}]{% endfor %}{{ eos_token }}";
  expect(tok.apply_chat_template(messages, { chat_template: own, tokenize: false })).toBe("[user: hi]<|im_end|>");
  // keys that are null are dropped before the template sees them, as in transformers
  expect(
    tok.apply_chat_template([{ role: "user", content: "hi", name: null }], {
      chat_template: "{{ messages[0].name is defined }}",
      tokenize: false,
    }),
  ).toBe("false");
  tok.chat_template = { default: own, tool_use: "tools: {{ tools | length if tools else 'none' }}" };
  expect(tok.apply_chat_template(messages, { tokenize: false })).toBe("[user: hi]<|im_end|>");
  expect(tok.apply_chat_template(messages, { tools: [{ name: "f" }], tokenize: false })).toBe("tools: 1");
  expect(tok.apply_chat_template(messages, { chat_template: "tool_use", tokenize: false })).toBe("tools: none");
});

test("bad conversations and options are errors that name the problem", async () => {
  const tok = await AutoTokenizer.from_pretrained(refs["qwen2.5"]!.dir);
  const bad =
    (conv: unknown, options: Record<string, unknown> = {}) =>
    () =>
      tok.apply_chat_template(conv as ChatMessage[], options);
  expect(bad([])).toThrow(/conversation/);
  expect(bad([{ content: "no role" }])).toThrow(/conversation\[0\]\.role/);
  expect(bad([[{ role: "user", content: "x" }], ["not a message"]])).toThrow(/conversation\[1\]\[0\]/);
  expect(bad([{ role: "user", content: "x" }], { tools: "get_weather" })).toThrow(/tools/);
  expect(
    bad([{ role: "assistant", content: "x" }], { continue_final_message: true, add_generation_prompt: true }),
  ).toThrow(/not compatible/);
  expect(bad([{ role: "user", content: "x" }], { chat_template: "{{ raise_exception('no users here') }}" })).toThrow(
    /no users here/,
  );
  expect(bad([{ role: "user", content: "x" }], { chat_template: "{% if %}" })).toThrow(InvalidArgumentError);
  // GPT-2's tokenizer has no template: the error says where one would come from
  const gpt2 = await AutoTokenizer.from_pretrained("gpt2");
  expect(gpt2.chat_template).toBeNull();
  expect(() => gpt2.apply_chat_template([{ role: "user", content: "x" }])).toThrow(/chat_template\.jinja/);
});
