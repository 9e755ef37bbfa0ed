// The argument audit: every public function checks its arguments and throws one error shape,
// "Expected <what> for <argument> but received <value>", as a TorchlmError; the process lives on.
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as t from "../lib/index.js";
import { tinyModelDir } from "./helpers/tiny.js";

let dir: string;
let model: t.GPT2LMHeadModel;
let tok: t.GPT2TokenizerFast;
beforeAll(async () => {
  dir = tinyModelDir();
  model = await t.GPT2LMHeadModel.from_pretrained(dir);
  tok = await t.AutoTokenizer.from_pretrained("gpt2");
});
afterAll(async () => {
  await model.dispose();
});

function calls(): Record<string, () => unknown> {
  const T = t as any,
    m = model as any,
    k = tok as any;
  const x = t.tensor([[1, 2, 3]]) as any;
  const ds = t.Dataset.from_dict({ a: [1, 2, 3] }) as any;
  return {
    "tensor(bad)": () => T.tensor("x"),
    "tensor dtype": () => T.tensor([1], { dtype: "int3" }),
    "tensor shape": () => T.tensor([1, 2], { shape: [3] }),
    "cat non-array": () => T.cat(5),
    "cat dim": () => T.cat([x, x], 7),
    "x.size(9)": () => x.size(9),
    "x.slice bad": () => x.slice("a", 0),
    "x.get(99)": () => x.get(99),
    "x.to bad": () => x.to("gpu"),
    "x.reshape bad": () => x.reshape([5]),
    "x.permute bad": () => x.permute([0]),
    "x.argmax dim": () => x.argmax(5),
    "x.add str": () => x.add("a"),
    "x.matmul bad": () => x.matmul(5),
    "x.softmax dim": () => x.float().softmax(4),
    set_num_threads: () => T.set_num_threads(0),
    set_seed: () => T.set_seed(-1),
    range: () => T.range(1.5),
    load_file: () => T.load_file(5),
    save_file: () => T.save_file({ a: 5 }, join(tmpdir(), "torchlm-args.safetensors")),
    "save_file path": () => T.save_file({ a: x }, 5),
    "CE options": () => new T.CrossEntropyLoss({ reduction: "avg" }),
    "CE forward": () => new T.CrossEntropyLoss().forward(5, x),
    get_scheduler: () => T.get_scheduler("weird", 1e-3, { num_training_steps: 10 }),
    "get_scheduler lr": () => T.get_scheduler("linear", -1, { num_training_steps: 10 }),
    "get_scheduler steps": () => T.get_scheduler("linear", 1e-3, { num_training_steps: -1 }),
    plot: () => T.plot_log_history(5, join(tmpdir(), "torchlm-args.png")),
    "plot file": () => T.plot_log_history([], 5),
    "collator tok": () => new T.DataCollatorForLanguageModeling(5),
    "collator opts": () => new T.DataCollatorForLanguageModeling(k, { mlm: "no" }),
    "pipeline model": () => T.pipeline("text-generation", 5),
    "forward ids": () => m.forward({ input_ids: "abc" }),
    "forward opts": () => m.forward(5),
    "generate opts": () => m.generate(x, { max_new_tokens: -1 }),
    "generate ids": () => m.generate(5),
    "m.to": () => m.to("tpu"),
    "m.train": () => m.train("yes"),
    save_pretrained: () => m.save_pretrained(5),
    "from_pretrained opts": () => T.GPT2LMHeadModel.from_pretrained(dir, { device: "x" }),
    "from_pretrained dtype": () => T.GPT2LMHeadModel.from_pretrained(dir, { dtype: "int8" }),
    "tok call": () => k(5),
    "tok opts": () => k("a", { max_length: -2 }),
    "k.encode": () => k.encode(5),
    "k.decode": () => k.decode("a"),
    "k.decode ids": () => k.decode([1.5]),
    "k.batch_decode": () => k.batch_decode(5),
    "tok pad side": () => {
      k.padding_side = "middle";
    },
    AutoTokenizer: () => T.AutoTokenizer.from_pretrained(5),
    load_dataset: () => T.load_dataset(5),
    "ds.select": () => ds.select("a"),
    "ds.select range": () => ds.select([5]),
    "ds.map fn": () => ds.map(5),
    "ds.map opts": () => ds.map((r) => r, { batch_size: 0 }),
    "ds.shuffle": () => ds.shuffle({ seed: "a" }),
    "ds.get": () => ds.get(10),
    TrainingArguments: () => new T.TrainingArguments({ learning_rate: "x" }),
    "TrainingArguments report_to": () => new T.TrainingArguments({ report_to: ["wandb"] }),
    Trainer: () => new T.Trainer(5),
    GenerationConfig: () => new T.GenerationConfig({ top_p: 2 }),
    GPT2Config: () => new T.GPT2Config({ n_embd: -1 }),
    init_process_group: () => T.init_process_group({ backend: "mpi" }),
    all_reduce: () => T.all_reduce(["a"]),
    DistributedSampler: () => new T.DistributedSampler(-1),
    launch: () => T.launch("", [], { nproc_per_node: 0 }),
  };
}

test.each(Object.keys(calls()))("%s: a TorchlmError in the one shape", async (name) => {
  let err: unknown = null;
  try {
    const r = calls()[name]!();
    if (r && typeof (r as Promise<unknown>).then === "function") await r;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(t.TorchlmError);
  expect((err as Error).message).toMatch(/^Expected .+ for .+ but received .+/);
});

test("options torchlm does not implement are refused, not ignored", () => {
  expect(() => new t.TrainingArguments({ report_to: "wandb" })).toThrow(
    /^Expected "none", "all" or "tensorboard" .* for report_to but received "wandb"/,
  );
  expect(() => new t.TrainingArguments({ load_best_model_at_end: true })).toThrow(
    'load_best_model_at_end requires the save and eval strategy to match, but found eval_strategy "no" and ' +
      'save_strategy "steps"',
  );
  expect(
    () =>
      new t.TrainingArguments({ load_best_model_at_end: true, eval_strategy: "steps", eval_steps: 3, save_steps: 5 }),
  ).toThrow("save_steps (5) to be a multiple of eval_steps (3)");
  const best = new t.TrainingArguments({
    load_best_model_at_end: true,
    eval_strategy: "steps",
    eval_steps: 5,
    save_steps: 10,
  });
  expect([best.metric_for_best_model, best.greater_is_better]).toEqual(["loss", false]);
  expect(new t.TrainingArguments({ metric_for_best_model: "accuracy" }).greater_is_better).toBe(true);
  expect(() => new t.TrainingArguments({ save_safetensors: false })).toThrow(
    /save_safetensors: false is not supported/,
  );
  for (const report_to of ["none", "all", "tensorboard", ["none"], ["tensorboard"], []] as const)
    expect(new t.TrainingArguments({ report_to: report_to as any }).report_to).toEqual(report_to);
});

test("unknown options name themselves and the known ones", async () => {
  await expect(t.load_dataset("x", { spilt: "train" } as any)).rejects.toThrow(
    "Unknown option spilt for load_dataset: expected one of split, data_files, revision, data_dir",
  );
  expect(() => tok("a", { foo: 1 } as any)).toThrow(
    /^Unknown option foo for the tokenizer call: expected one of padding, truncation, max_length/,
  );
  await expect(model.generate(t.tensor([[1]]), { foo: 1 } as any)).rejects.toThrow("Unknown generation option foo");
  // and the model still works
  expect((await model.forward({ input_ids: [[1, 2]] })).logits.shape).toEqual([1, 2, 50257]);
});
