import { mkdtempSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import {
  AutoTokenizer,
  DataCollatorForLanguageModeling,
  Dataset,
  load_dataset,
  range,
  Tensor,
  GPT2TokenizerFast,
} from "../lib/index.js";
import { HubServer, COMMIT } from "./helpers/hub-server.js";

function imdbParquet(texts: string[], labels: number[]): Buffer {
  return Buffer.from(
    parquetWriteBuffer({
      columnData: [
        { name: "text", data: texts, type: "STRING" },
        { name: "label", data: BigInt64Array.from(labels.map(BigInt)), type: "INT64" },
      ],
    }),
  );
}
const dir = mkdtempSync(join(tmpdir(), "torchlm-ds-"));
const reviews = ["A wonderful film.", "Terrible acting, awful plot.", "I laughed and cried.", "Not worth the ticket."];

describe("Dataset", () => {
  const ds = Dataset.from_dict({ text: ["a", "b", "c", "d", "e"], label: [0, 1, 0, 1, 1] });

  test("rows, columns, iteration", () => {
    expect(ds.length).toBe(5);
    expect(ds.column_names).toEqual(["text", "label"]);
    expect(ds.get(1)).toEqual({ text: "b", label: 1 });
    expect(ds.get(-1)).toEqual({ text: "e", label: 1 });
    expect([...ds].map((r) => r.text)).toEqual(["a", "b", "c", "d", "e"]);
    expect(
      Dataset.from_list([
        { x: 1, y: "p" },
        { x: 2, y: "q" },
      ]).to_dict(),
    ).toEqual({ x: [1, 2], y: ["p", "q"] });
    expect(ds.column("label")).toEqual([0, 1, 0, 1, 1]);
    expect(String(ds)).toBe("Dataset({ features: ['text', 'label'], num_rows: 5 })");
  });

  test("select, filter, shuffle, train_test_split", async () => {
    expect(ds.select(range(2)).to_list()).toEqual([
      { text: "a", label: 0 },
      { text: "b", label: 1 },
    ]);
    expect(ds.select([4, 0]).column("text")).toEqual(["e", "a"]);
    expect((await ds.filter((r) => r.label === 1)).column("text")).toEqual(["b", "d", "e"]);
    const s1 = ds.shuffle({ seed: 42 }).column("text");
    expect(ds.shuffle({ seed: 42 }).column("text")).toEqual(s1);
    expect([...s1].sort()).toEqual(["a", "b", "c", "d", "e"]);
    expect(ds.shuffle({ seed: 1 }).column("text")).not.toEqual(s1);
    const { train, test } = ds.train_test_split({ test_size: 0.4, seed: 0 });
    expect([train.length, test.length]).toEqual([3, 2]);
    expect([...train.column("text"), ...test.column("text")].sort()).toEqual(["a", "b", "c", "d", "e"]);
    expect(() => ds.select([9])).toThrow("Expected an index in [0, 5) for indices[0] but received 9");
  });

  test("map: per row and batched, remove_columns, changing row counts, as in Python", async () => {
    const upper = await ds.map((r) => ({ text: r.text.toUpperCase(), n: r.text.charCodeAt(0) }));
    expect(upper.get(0)).toEqual({ text: "A", label: 0, n: 97 });
    const b = await ds.map((batch: any) => ({ len: batch.text.map((t: string) => t.length) }), {
      batched: true,
      batch_size: 2,
    });
    expect(b.column_names).toEqual(["text", "label", "len"]);
    const removed = await ds.map((batch: any) => ({ doubled: batch.text.map((t: string) => t + t) }), {
      batched: true,
      remove_columns: ds.column_names,
    });
    expect(removed.column_names).toEqual(["doubled"]);
    const grown = await ds.map((batch: any) => ({ ch: batch.text.flatMap((t: string) => [t, t]) }), {
      batched: true,
      batch_size: 2,
      remove_columns: ["text", "label"],
    });
    expect(grown.length).toBe(10);
    await expect(
      ds.map((batch: any) => ({ ch: batch.text.flatMap((t: string) => [t, t]) }), { batched: true }),
    ).rejects.toThrow(/remove the old columns \(text, label\) with remove_columns/);
    await expect(ds.map((r) => r, { remove_columns: ["nope"] })).rejects.toThrow(
      "Column nope in remove_columns is not in the dataset: it has text, label",
    );
    await expect(ds.map((r) => r, { batchsize: 3 } as never)).rejects.toThrow("Unknown option batchsize for map");
  });

  test("the tutorial's tokenize function: Tensors become typed columns, one row per row", async () => {
    const tokenizer = await AutoTokenizer.from_pretrained("gpt2");
    tokenizer.pad_token = tokenizer.eos_token;
    tokenizer.padding_side = "left";
    const data = Dataset.from_dict({ text: reviews, label: [1, 0, 1, 0] });
    const tokenize = (input: any, max_length = 8) => {
      const t = tokenizer(input.text, { max_length, padding: "max_length", truncation: true, return_tensors: "pt" });
      t.attention_mask = (t.input_ids as Tensor).ne(tokenizer.pad_token_id!).long();
      return { input_ids: t.input_ids, attention_mask: t.attention_mask };
    };
    const tokenized = await data.map(tokenize, { batched: true, remove_columns: data.column_names });
    expect(tokenized.column_names).toEqual(["input_ids", "attention_mask"]);
    expect(tokenized.length).toBe(4);
    const row = tokenized.get(0);
    expect(row.input_ids).toEqual([50256, 50256, 50256, 50256, 32, 7932, 2646, 13]);
    expect(row.attention_mask).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    expect(tokenized._cols.get("input_ids")!.kind).toBe("matrix");
    const saved = join(dir, "saved");
    await tokenized.save_to_disk(saved);
    const back = await Dataset.load_from_disk(saved);
    expect(back.to_list()).toEqual(tokenized.to_list());
    expect((await load_dataset(saved)).length ?? 0).toBe(4);
  });
});

describe("load_dataset", () => {
  test("local parquet (IMDB's schema), json, jsonl, csv and text files", async () => {
    const pq = join(dir, "train.parquet");
    writeFileSync(pq, imdbParquet(reviews, [1, 0, 1, 0]));
    const d = await load_dataset(pq, { split: "train" });
    expect(d.column_names).toEqual(["text", "label"]);
    expect(d.get(1)).toEqual({ text: reviews[1], label: 0 });
    writeFileSync(
      join(dir, "rows.json"),
      JSON.stringify([
        { a: 1, b: "x" },
        { a: 2, b: "y" },
      ]),
    );
    writeFileSync(join(dir, "rows.jsonl"), '{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n');
    writeFileSync(join(dir, "rows.csv"), 'a,b\n1,x\n2,"y, with comma"\n');
    writeFileSync(join(dir, "lines.txt"), "first line\nsecond line\n");
    expect((await load_dataset(join(dir, "rows.json"), { split: "train" })).to_list()).toEqual([
      { a: 1, b: "x" },
      { a: 2, b: "y" },
    ]);
    expect((await load_dataset(join(dir, "rows.jsonl"), { split: "train" })).to_list()).toEqual([
      { a: 1, b: "x" },
      { a: 2, b: "y" },
    ]);
    expect((await load_dataset("csv", { data_files: join(dir, "rows.csv"), split: "train" })).to_list()).toEqual([
      { a: 1, b: "x" },
      { a: 2, b: "y, with comma" },
    ]);
    expect(
      (await load_dataset("text", { data_files: { train: join(dir, "lines.txt") }, split: "train" })).column("text"),
    ).toEqual(["first line", "second line"]);
    await expect(load_dataset(pq, { split: "test" })).rejects.toThrow(/Unknown split "test" .* it has train/);
  });

  test("a Hub dataset end to end, splits found from file names, then offline from the cache", async () => {
    const server = new HubServer([
      {
        type: "dataset",
        id: "stanfordnlp/imdb",
        files: {
          "README.md": Buffer.from("# imdb"),
          "plain_text/train-00000-of-00001.parquet": imdbParquet(reviews, [0, 0, 1, 1]),
          "plain_text/test-00000-of-00001.parquet": imdbParquet(reviews.slice(0, 2), [0, 1]),
          "plain_text/unsupervised-00000-of-00001.parquet": imdbParquet(reviews.slice(0, 3), [-1, -1, -1]),
        },
      },
    ]);
    const env = { ...process.env };
    const cache = mkdtempSync(join(tmpdir(), "torchlm-dscache-"));
    try {
      process.env.HF_ENDPOINT = await server.start();
      process.env.HF_HUB_CACHE = cache;
      delete process.env.HF_HUB_OFFLINE;
      const train = await load_dataset("stanfordnlp/imdb", { split: "train" });
      expect(train.length).toBe(4);
      expect(train.column("label")).toEqual([0, 0, 1, 1]);
      const all = await load_dataset("stanfordnlp/imdb");
      expect(Object.keys(all).sort()).toEqual(["test", "train", "unsupervised"]);
      expect(
        existsSync(
          join(cache, "datasets--stanfordnlp--imdb", "snapshots", COMMIT, "plain_text", "train-00000-of-00001.parquet"),
        ),
      ).toBe(true);
      await server.stop();
      process.env.HF_HUB_OFFLINE = "1";
      expect((await load_dataset("stanfordnlp/imdb", { split: "test" })).length).toBe(2);
      const err = await load_dataset("someone/other", { split: "train" }).catch((e) => e as Error);
      expect(err.message).toMatch(
        /Dataset someone\/other .* is not in the Hugging Face cache at .*datasets--someone--other/,
      );
    } finally {
      process.env = env;
    }
  });
});

describe("DataCollatorForLanguageModeling", () => {
  let tok: GPT2TokenizerFast;
  beforeAll(async () => {
    tok = await AutoTokenizer.from_pretrained("gpt2");
    tok.pad_token = tok.eos_token;
  });

  test("pads to the longest row with -100 labels on the pad id (right padding)", () => {
    const c = new DataCollatorForLanguageModeling(tok, { mlm: false });
    const out = c([{ input_ids: [5, 6, 7] }, { input_ids: [8, 50256] }]);
    expect(out.input_ids.tolist()).toEqual([
      [5, 6, 7],
      [8, 50256, 50256],
    ]);
    expect(out.attention_mask.tolist()).toEqual([
      [1, 1, 1],
      [1, 1, 0],
    ]);
    expect(out.labels.tolist()).toEqual([
      [5, 6, 7],
      [8, -100, -100],
    ]); // a real eos equal to pad is masked too
    expect(out.input_ids.dtype).toBe("int64");
  });

  test("left padding, existing masks, pad_to_multiple_of", () => {
    tok.padding_side = "left";
    const c = new DataCollatorForLanguageModeling(tok, { mlm: false, pad_to_multiple_of: 4 });
    const out = c.collate([{ input_ids: [50256, 1, 2], attention_mask: [0, 1, 1] }, { input_ids: [3] }]);
    expect(out.input_ids.tolist()).toEqual([
      [50256, 50256, 1, 2],
      [50256, 50256, 50256, 3],
    ]);
    expect(out.attention_mask.tolist()).toEqual([
      [0, 0, 1, 1],
      [0, 0, 0, 1],
    ]);
    expect(out.labels.tolist()).toEqual([
      [-100, -100, 1, 2],
      [-100, -100, -100, 3],
    ]);
    tok.padding_side = "right";
  });

  test("mlm: true is an error explaining that GPT-2 is causal", () => {
    expect(() => new DataCollatorForLanguageModeling(tok)).toThrow(
      /GPT-2 is a causal language model: pass \{ mlm: false \}/,
    );
    expect(() => new DataCollatorForLanguageModeling(tok, { mlm: false }).collate([])).toThrow(/non-empty array/);
  });
});
