import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  mkdirSync,
  unlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel } from "../lib/index.js";
import { HubServer, COMMIT } from "./helpers/hub-server.js";
import { golden, tinyModelDir, maxAbsDiff, flatten } from "./helpers/tiny.js";
import { pythonJson } from "./helpers/python.js";

const TOKEN = "hf_secret_token_never_logged";
const env = { ...process.env };
let server: HubServer;
let cache: string;

function files(dir: string, names: string[]): Record<string, Buffer> {
  return Object.fromEntries(names.filter((n) => existsSync(join(dir, n))).map((n) => [n, readFileSync(join(dir, n))]));
}

beforeAll(async () => {
  const dir = tinyModelDir({ name: "hub-repo" });
  const tok = await AutoTokenizer.from_pretrained("gpt2");
  await tok.save_pretrained(dir);
  const huge = {
    ...JSON.parse(readFileSync(join(dir, "config.json"), "utf8")),
    n_embd: 65536,
    n_head: 64,
    n_layer: 1000,
  };
  server = new HubServer([
    {
      type: "model",
      id: "tester/tiny-gpt2",
      files: files(dir, [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.json",
        "merges.txt",
      ]),
    },
    {
      type: "model",
      id: "tester/huge",
      files: {
        "config.json": Buffer.from(JSON.stringify(huge)),
        "model.safetensors": readFileSync(join(dir, "model.safetensors")),
      },
    },
  ]);
  await server.start();
  cache = mkdtempSync(join(tmpdir(), "torchlm-hub-"));
  process.env.HF_ENDPOINT = server.url;
  process.env.HF_HUB_CACHE = cache;
  process.env.HF_TOKEN = TOKEN;
  delete process.env.HF_HUB_OFFLINE;
});
afterAll(async () => {
  await server.stop();
  process.env = env;
});

describe("the Hub", () => {
  test("downloads into the cache in Python's layout, then loads offline", async () => {
    const model = await AutoModelForCausalLM.from_pretrained("tester/tiny-gpt2");
    const out = await model.forward({ input_ids: golden.input_ids, labels: golden.labels });
    expect(Math.abs(out.loss!.item() - golden.loss)).toBeLessThan(1e-5);
    await model.dispose();
    const repo = join(cache, "models--tester--tiny-gpt2");
    expect(readFileSync(join(repo, "refs", "main"), "utf8")).toBe(COMMIT);
    const snap = join(repo, "snapshots", COMMIT, "model.safetensors");
    expect(lstatSync(snap).isSymbolicLink()).toBe(true);
    expect(readlinkSync(snap)).toMatch(/^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
    // the token went to the server, and only there
    expect(server.requests.some((r) => r.auth === `Bearer ${TOKEN}`)).toBe(true);

    await server.stop();
    process.env.HF_HUB_OFFLINE = "1";
    const again = await GPT2LMHeadModel.from_pretrained("tester/tiny-gpt2");
    expect(again.config.n_embd).toBe(64);
    await again.dispose();
    const byCommit = await GPT2LMHeadModel.from_pretrained("tester/tiny-gpt2", { revision: COMMIT });
    await byCommit.dispose();
    const tok = await AutoTokenizer.from_pretrained("tester/tiny-gpt2").catch((e) => e);
    // tokenizer files were not downloaded yet: offline, that is an error naming the cache
    expect(String(tok)).toMatch(/tester\/tiny-gpt2 has no tokenizer.json/);
    await server.start().then((url) => {
      process.env.HF_ENDPOINT = url;
    });
    delete process.env.HF_HUB_OFFLINE;
    const t2 = await AutoTokenizer.from_pretrained("tester/tiny-gpt2");
    expect(t2.encode("Hello world")).toEqual([15496, 995]);
  });

  test("offline and not cached: an error naming the id, the cache, and what to do", async () => {
    process.env.HF_HUB_OFFLINE = "1";
    try {
      const err = await GPT2LMHeadModel.from_pretrained("someone/missing-model").catch((e) => e as Error);
      expect(err.message).toContain("someone/missing-model");
      expect(err.message).toContain(join(cache, "models--someone--missing-model"));
      expect(err.message).toMatch(/HF_HUB_OFFLINE/);
      expect(err.message).not.toContain(TOKEN);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    const err = await GPT2LMHeadModel.from_pretrained("someone/missing-model").catch((e) => e as Error);
    expect(err.message).toMatch(
      new RegExp(
        "Repository someone/missing-model \\(model\\) was not found on http://127.0.0.1:\\d+: " +
          "check the id, or set HF_TOKEN",
      ),
    );
    const file = await AutoTokenizer.from_pretrained("tester/tiny-gpt2", { revision: "main" });
    expect(file.vocab_size).toBe(50257);
    expect(err.message).not.toContain(TOKEN);
  });

  test("unsafe names and cache links are refused", async () => {
    await expect(GPT2LMHeadModel.from_pretrained("../etc")).rejects.toThrow(/Invalid repository id/);
    const repo = join(cache, "models--evil--repo");
    mkdirSync(join(repo, "refs"), { recursive: true });
    mkdirSync(join(repo, "snapshots", COMMIT), { recursive: true });
    writeFileSync(join(repo, "refs", "main"), COMMIT);
    const outside = join(tmpdir(), `torchlm-outside-${process.pid}.json`);
    writeFileSync(outside, "{}");
    symlinkSync(outside, join(repo, "snapshots", COMMIT, "config.json"));
    await expect(GPT2LMHeadModel.from_pretrained("evil/repo")).rejects.toThrow(/links outside the cache/);
    unlinkSync(outside);
  });

  test("a config.json asking for a huge model is refused before its weights are downloaded", async () => {
    const seen = server.requests.length;
    await expect(GPT2LMHeadModel.from_pretrained("tester/huge")).rejects.toThrow(
      new RegExp(
        "tester/huge describes a GPT-2 of 5\\.\\d+e\\+13 parameters \\(\\d+\\.\\d GiB in float32\\), " +
          "more than this machine's memory \\(.*\\): refusing to download or load it",
      ),
    );
    const asked = server.requests.slice(seen).map((r) => r.url);
    expect(asked.some((u) => u.endsWith("/config.json"))).toBe(true);
    expect(asked.some((u) => u.includes("model.safetensors"))).toBe(false);
    const huge = JSON.parse(
      readFileSync(join(cache, "models--tester--huge", "snapshots", COMMIT, "config.json"), "utf8"),
    );
    await expect(GPT2LMHeadModel.from_config(huge)).rejects.toThrow(/refusing to create it/);
  });

  test("AutoModelForCausalLM rejects other architectures clearly", async () => {
    const d = mkdtempSync(join(tmpdir(), "torchlm-arch-"));
    writeFileSync(join(d, "config.json"), JSON.stringify({ model_type: "bert", architectures: ["BertForMaskedLM"] }));
    writeFileSync(join(d, "model.safetensors"), readFileSync(join(tinyModelDir(), "model.safetensors")));
    await expect(AutoModelForCausalLM.from_pretrained(d)).rejects.toThrow(
      'has model_type "bert": torchlm supports gpt2, llama, qwen2, qwen3',
    );
    rmSync(d, { recursive: true });
  });
});

describe("checkpoints that round-trip with Python", () => {
  test("save -> load gives identical logits; transformers loads the saved folder, same logits and loss", async () => {
    const model = await GPT2LMHeadModel.from_pretrained(tinyModelDir());
    const dir = mkdtempSync(join(tmpdir(), "torchlm-save-"));
    await model.save_pretrained(dir);
    const back = await GPT2LMHeadModel.from_pretrained(dir);
    const a = await model.forward({ input_ids: golden.input_ids });
    const b = await back.forward({ input_ids: golden.input_ids });
    expect(maxAbsDiff(a.logits.data() as Float32Array, b.logits.data() as Float32Array)).toBe(0);
    // layout: transformer. prefix, no lm_head.weight, format pt
    const buf = readFileSync(join(dir, "model.safetensors"));
    const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString());
    expect(header.__metadata__).toEqual({ format: "pt" });
    expect(
      Object.keys(header)
        .filter((k) => k !== "__metadata__")
        .every((k) => k.startsWith("transformer.")),
    ).toBe(true);
    expect(header["lm_head.weight"]).toBeUndefined();
    expect(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).architectures).toEqual(["GPT2LMHeadModel"]);
    expect(existsSync(join(dir, "generation_config.json"))).toBe(true);
    const py = pythonJson("hf-golden.py", ["--check-saved", dir, "--ids", JSON.stringify(golden.input_ids)]);
    expect(maxAbsDiff(flatten(py.logits), flatten(golden.logits))).toBeLessThan(1e-4);
    const own = await back.forward({ input_ids: golden.input_ids, labels: golden.input_ids });
    expect(Math.abs(py.loss - own.loss!.item())).toBeLessThan(1e-5);
    await model.dispose();
    await back.dispose();
  });
});
