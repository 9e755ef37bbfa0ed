import { readFileSync, readdirSync, statSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getEncoding } from "js-tiktoken";
import { AutoTokenizer, GPT2TokenizerFast, Tensor } from "../lib/index.js";

const root = join(import.meta.dirname ?? process.cwd(), "..");

/** Over 200 KB: prose (package READMEs), code (JavaScript and C++), Unicode, emoji, whitespace runs, specials. */
function corpus(): string[] {
  const parts: string[] = [];
  const take = (p: string, max = 60_000) => parts.push(readFileSync(p, "utf8").slice(0, max));
  for (const pkg of ["typescript", "jest", "commander", "cli-progress", "@huggingface/hub", "hyparquet"]) {
    const dir = join(root, "node_modules", pkg);
    for (const f of readdirSync(dir)) if (/^readme/i.test(f)) take(join(dir, f), 40_000);
  }
  take(join(root, "node_modules", "commander", "lib", "command.js"), 50_000);
  for (const f of readdirSync(join(root, "native"), { recursive: true, encoding: "utf8" }))
    if (/\.(cc|h)$/.test(f)) take(join(root, "native", f), 20_000);
  parts.push(
    "Ünïcödé façade — naïve café, Straße, ŝtelo, Ελληνικά, русский текст, עברית, العربية, हिन्दी, 日本語のテキスト、中文文本，한국어 " +
      "텍스트.",
    "Emoji: 😀😃😄 👩‍👩‍👧‍👦 🇫🇷 🏳️‍🌈 ✨🔥💯 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙, combining e\u0301 a\u0308.",
    "Whitespace   runs\t\ttabs\n\n\nnewlines  \r\n  and trailing spaces     ",
    "Numbers 1234567890 3.14159 1e-10 0xDEADBEEF and contractions: I'm, you're, it's, we've, they'll, he'd, don't.",
    "Text before<|endoftext|>text after <|endoftext|> again<|endoftext|>",
  );
  return parts;
}

describe("GPT-2 tokenizer", () => {
  let tok: GPT2TokenizerFast;
  beforeAll(async () => {
    tok = await AutoTokenizer.from_pretrained("gpt2");
  });

  test("empty and odd input: Python's results, or the library's error shape", () => {
    // Python (transformers 5): decode([]) == "", batch_decode([[]]) == [""], encode("") == [], and pads and
    // specials skipped leave "".
    expect(tok.decode([])).toBe("");
    expect(tok.decode(tok("", { return_tensors: "pt" }).input_ids as Tensor)).toBe("");
    expect(tok.batch_decode([[]])).toEqual([""]);
    expect(tok.batch_decode([])).toEqual([]);
    expect(tok.encode("")).toEqual([]);
    expect(tok.tokenize("")).toEqual([]);
    expect(tok.decode([50256])).toBe("<|endoftext|>");
    expect(tok.decode([50256, 50256, 50256], { skip_special_tokens: true })).toBe("");
    expect(tok.encode("<|endoftext|>")).toEqual([50256]);
    // Python cannot encode a lone surrogate (no UTF-8 form) and raises; here it is the one error shape
    for (const f of [() => tok.encode("a\ud800b"), () => tok("x\udc00"), () => tok.tokenize("\ud83d")])
      expect(f).toThrow(/^Expected well-formed text .* for text but received/);
    expect(tok.encode("😀")).toEqual(tok.encode("\ud83d\ude00"));
  });

  test("ids equal js-tiktoken's gpt2 encoding over a varied corpus of at least 200 KB", () => {
    const enc = getEncoding("gpt2");
    const texts = corpus();
    const total = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
    expect(total).toBeGreaterThan(200_000);
    let mismatches = 0;
    for (const t of texts) {
      // split on the special token: js-tiktoken encodes it when allowed
      const ours = tok.encode(t);
      const theirs = enc.encode(t, "all");
      if (JSON.stringify(ours) !== JSON.stringify(theirs)) mismatches++;
      expect(tok.decode(ours)).toBe(t); // round trip
    }
    expect(mismatches).toBe(0);
  });

  test("the tutorial's prompt, specials and properties", () => {
    expect(tok.encode("Natural language processing is ")).toEqual([35364, 3303, 7587, 318, 220]);
    const t = tok.encode("Natural language processing is ", { return_tensors: "pt" });
    expect(t).toBeInstanceOf(Tensor);
    expect(t.shape).toEqual([1, 5]);
    expect(t.dtype).toBe("int64");
    expect([
      tok.eos_token,
      tok.eos_token_id,
      tok.bos_token_id,
      tok.pad_token,
      tok.pad_token_id,
      tok.vocab_size,
    ]).toEqual(["<|endoftext|>", 50256, 50256, null, null, 50257]);
    expect(tok.decode([464, 50256, 3290], { skip_special_tokens: true })).toBe("The dog");
    expect(tok.decode([464, 50256, 3290])).toBe("The<|endoftext|> dog");
    expect(tok.batch_decode([[464], [3290]])).toEqual(["The", " dog"]);
    expect(tok.decode(t)).toBe("Natural language processing is ");
  });

  test("padding and truncation: exact ids and masks", async () => {
    const t = await AutoTokenizer.from_pretrained("openai-community/gpt2");
    expect(() => t(["a", "b c"], { padding: true })).toThrow(
      /Asking to pad but the tokenizer does not have a padding token/,
    );
    t.pad_token = t.eos_token;
    expect(t.pad_token_id).toBe(50256);
    const right = t(["Hello world", "Hi"], { padding: true });
    expect(right).toEqual({
      input_ids: [
        [15496, 995],
        [17250, 50256],
      ],
      attention_mask: [
        [1, 1],
        [1, 0],
      ],
    });
    t.padding_side = "left";
    const left = t(["Hello world", "Hi"], { padding: "longest", return_tensors: "pt" });
    expect(left.input_ids.tolist()).toEqual([
      [15496, 995],
      [50256, 17250],
    ]);
    expect(left.attention_mask.tolist()).toEqual([
      [1, 1],
      [0, 1],
    ]);
    const ml = t(["Hello world, how are you today?", "Hi"], { max_length: 4, padding: "max_length", truncation: true });
    expect(ml).toEqual({
      input_ids: [
        [15496, 995, 11, 703],
        [50256, 50256, 50256, 17250],
      ],
      attention_mask: [
        [1, 1, 1, 1],
        [0, 0, 0, 1],
      ],
    });
    expect(t("Hello world", {})).toEqual({ input_ids: [15496, 995], attention_mask: [1, 1] });
    expect(t(["Hello world", "Hi"], { pad_to_multiple_of: 4, padding: true }).input_ids).toEqual([
      [50256, 50256, 15496, 995],
      [50256, 50256, 50256, 17250],
    ]);
    expect(() => t(["Hello world", "Hi"], { return_tensors: "pt" })).toThrow(/Unable to create tensor/);
    expect(() => t("x", { padding: "maybe" as never })).toThrow(/for padding but received "maybe"/);
    expect(() => {
      t.padding_side = "up" as never;
    }).toThrow('Expected one of "left", "right" for padding_side but received "up"');
    t.truncation_side = "left";
    expect(t("Hello world, how are you", { max_length: 2, truncation: true }).input_ids).toEqual([389, 345]);
  });

  test("truncating a long text encodes only what it needs, with the same ids", () => {
    const long = corpus().join(" ").slice(0, 100_000);
    const full = tok.encode(long);
    for (const n of [1, 7, 64, 500])
      expect(tok(long, { max_length: n, truncation: true }).input_ids).toEqual(full.slice(0, n));
  });

  test("save_pretrained writes the five files and loads back the same", async () => {
    const dir = mkdtempSync(join(tmpdir(), "torchlm-tok-"));
    const t = await AutoTokenizer.from_pretrained("gpt2");
    t.pad_token = t.eos_token;
    t.padding_side = "left";
    const files = await t.save_pretrained(dir);
    expect(files.map((f) => f.slice(dir.length + 1)).sort()).toEqual([
      "merges.txt",
      "special_tokens_map.json",
      "tokenizer.json",
      "tokenizer_config.json",
      "vocab.json",
    ]);
    for (const f of files) expect(statSync(f).size).toBeGreaterThan(10);
    const back = await AutoTokenizer.from_pretrained(dir);
    expect([back.pad_token, back.padding_side]).toEqual(["<|endoftext|>", "left"]);
    const sample = "Round trip: ünïcödé 😀 <|endoftext|>";
    expect(back.encode(sample)).toEqual(t.encode(sample));
    // vocab.json + merges.txt alone are enough too
    const d2 = mkdtempSync(join(tmpdir(), "torchlm-tok-"));
    const { copyFileSync } = await import("node:fs");
    for (const f of ["vocab.json", "merges.txt"]) copyFileSync(join(dir, f), join(d2, f));
    expect((await AutoTokenizer.from_pretrained(d2)).encode(sample)).toEqual(t.encode(sample));
  });
});
