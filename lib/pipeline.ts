// pipeline("text-generation", ...): tokenizer + model + generate, with Hugging Face's defaults.
import { check, invalid, InvalidArgumentError, isPlainObject } from "./errors.js";
import { checkDevice } from "./device.js";
import { PreTrainedModel } from "./model.js";
import { AutoModelForCausalLM } from "./auto.js";
import { PreTrainedTokenizerFast, AutoTokenizer } from "./tokenizer.js";
import { GENERATION_KEYS, type GenerationOptions } from "./generation_config.js";
import type { GenerateOptions } from "./generation.js";

export interface TextGenerationOptions extends GenerationOptions {
  return_full_text?: boolean;
  seed?: number;
  signal?: AbortSignal;
}

export interface TextGenerationPipeline {
  (text: string, options?: TextGenerationOptions): Promise<{ generated_text: string }[]>;
  (text: string[], options?: TextGenerationOptions): Promise<{ generated_text: string }[][]>;
  model: PreTrainedModel;
  tokenizer: PreTrainedTokenizerFast;
  task: "text-generation";
  dispose(): Promise<void>;
}

/**
 * `await pipeline("text-generation", "gpt2")` returns a function from prompts to `[{ generated_text }]`.
 * As in Hugging Face, config.json's task_specific_params["text-generation"] apply (GPT-2: sampling,
 * max_length 50); call options win.
 */
export async function pipeline(
  task: "text-generation",
  model: string | PreTrainedModel = "gpt2",
  options: {
    device?: string;
    tokenizer?: PreTrainedTokenizerFast | string;
    dtype?: "float32" | "float16" | "bfloat16" | "q8" | "q4";
  } = {},
): Promise<TextGenerationPipeline> {
  if (task !== "text-generation") throw invalid("task", '"text-generation"', task);
  if (!isPlainObject(options)) throw invalid("options", "an object", options);
  check.knownKeys("pipeline", options, ["device", "tokenizer", "dtype"]);
  const device = options.device === undefined ? undefined : checkDevice("device", options.device);
  let m: PreTrainedModel;
  if (model instanceof PreTrainedModel) {
    m = model;
    if (device && device !== m.device) await m.to(device);
  } else m = await AutoModelForCausalLM.from_pretrained(check.string("model", model), { device, dtype: options.dtype });
  const tok =
    options.tokenizer instanceof PreTrainedTokenizerFast
      ? options.tokenizer
      : await AutoTokenizer.from_pretrained(
          typeof options.tokenizer === "string" ? options.tokenizer : (m.name_or_path ?? "gpt2"),
        );
  const taskParams = (m.config.task_specific_params?.["text-generation"] ?? {}) as Record<string, unknown>;
  const defaults = Object.fromEntries(
    Object.entries(taskParams).filter(([k]) => (GENERATION_KEYS as readonly string[]).includes(k)),
  );

  async function one(text: string, opts: TextGenerationOptions): Promise<{ generated_text: string }[]> {
    const { return_full_text = true, seed, signal, ...gen } = opts;
    const ids = tok.encode(text);
    if (ids.length === 0)
      throw new InvalidArgumentError("The prompt is empty: text-generation needs at least one token");
    // Hugging Face drops the default max_length when max_new_tokens is given.
    const merged: GenerateOptions = { ...defaults, ...gen, seed, signal };
    if (gen.max_new_tokens !== undefined && gen.max_length === undefined) delete merged.max_length;
    const out = await m.generate([ids], merged);
    const rows = out.tolist() as number[][];
    out.dispose();
    const prompt = tok.decode(ids);
    return rows.map((r) => {
      const all = tok.decode(r, { skip_special_tokens: true });
      const newText = tok.decode(r.slice(ids.length), { skip_special_tokens: true });
      return { generated_text: return_full_text ? (all.startsWith(prompt) ? all : prompt + newText) : newText };
    });
  }

  const run = async (text: string | string[], opts: TextGenerationOptions = {}) => {
    if (!isPlainObject(opts)) throw invalid("options", "an object of generation options", opts);
    check.knownKeys("text-generation", opts, [...GENERATION_KEYS, "return_full_text", "seed", "signal"]);
    if (opts.return_full_text !== undefined) check.boolean("return_full_text", opts.return_full_text);
    if (typeof text === "string") return one(text, opts);
    if (!Array.isArray(text)) throw invalid("text", "a string or an array of strings", text);
    const out: { generated_text: string }[][] = [];
    for (const [i, t] of text.entries()) {
      if (typeof t !== "string") throw invalid(`text[${i}]`, "a string", t);
      out.push(await one(t, opts));
    }
    return out;
  };
  const p = run as unknown as TextGenerationPipeline;
  p.model = m;
  p.tokenizer = tok;
  p.task = "text-generation";
  p.dispose = () => m.dispose();
  return p;
}
