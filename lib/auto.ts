// AutoConfig and AutoModelForCausalLM: the class for a checkpoint picked from its config.json's model_type, as
// Hugging Face's auto classes do. Adding an architecture is a line here (and its file under lib/models/).
import { GPT2Config, PretrainedConfig, readConfigJson } from "./config.js";
import { check, invalid, InvalidArgumentError, isPlainObject } from "./errors.js";
import { localDir, resolveHubFile } from "./hub.js";
import { GPT2LMHeadModel, PreTrainedModel, type FromPretrainedOptions } from "./model.js";
import {
  LlamaConfig,
  LlamaForCausalLM,
  Qwen2Config,
  Qwen2ForCausalLM,
  Qwen3Config,
  Qwen3ForCausalLM,
} from "./models/llama.js";
import type { Dtype } from "./tensor.js";
import { join } from "node:path";
import { existsSync } from "node:fs";

const CAUSAL_LM: Record<string, typeof PreTrainedModel> = {
  gpt2: GPT2LMHeadModel,
  llama: LlamaForCausalLM,
  qwen2: Qwen2ForCausalLM,
  qwen3: Qwen3ForCausalLM,
};
const CONFIGS: Record<string, new (values?: Record<string, unknown>) => PretrainedConfig> = {
  gpt2: GPT2Config,
  llama: LlamaConfig,
  qwen2: Qwen2Config,
  qwen3: Qwen3Config,
};

function modelClass(model_type: unknown, where: string): typeof PreTrainedModel {
  const cls = typeof model_type === "string" && Object.hasOwn(CAUSAL_LM, model_type) ? CAUSAL_LM[model_type] : null;
  if (!cls)
    throw new InvalidArgumentError(
      `${where} has model_type ${JSON.stringify(model_type)}: torchlm supports ${Object.keys(CAUSAL_LM).join(", ")}`,
    );
  return cls;
}

async function configJson(idOrDir: string, options: FromPretrainedOptions): Promise<string> {
  const dir = localDir(idOrDir);
  if (dir) {
    const path = join(dir, "config.json");
    if (!existsSync(path)) throw new InvalidArgumentError(`${dir} has no config.json`);
    return path;
  }
  return (await resolveHubFile(idOrDir, "config.json", {
    revision: options.revision,
    offline: options.local_files_only,
  }))!;
}

/** Hugging Face's AutoConfig: the config class for config.json's model_type. */
export class AutoConfig {
  static async from_pretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<PretrainedConfig> {
    check.string("pretrained_model_name_or_path", idOrDir);
    const json = await readConfigJson(await configJson(idOrDir, options));
    return AutoConfig.for_model(json.model_type as string, json, idOrDir);
  }
  /** A config of the given model_type from values. */
  static for_model(model_type: string, values: Record<string, unknown> = {}, where = "The config"): PretrainedConfig {
    modelClass(model_type, where);
    return new CONFIGS[model_type]!({ ...values, model_type });
  }
}

/** Picks the model class from config.json's model_type, as Hugging Face's AutoModelForCausalLM does. */
export class AutoModelForCausalLM {
  static async from_pretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<PreTrainedModel> {
    check.string("pretrained_model_name_or_path", idOrDir);
    const json = await readConfigJson(await configJson(idOrDir, options));
    return modelClass(json.model_type ?? "gpt2", idOrDir).from_pretrained(idOrDir, options);
  }
  static async from_config(
    config: PretrainedConfig | Record<string, unknown>,
    options: { device?: string; dtype?: Dtype; seed?: number } = {},
  ): Promise<PreTrainedModel> {
    if (!(config instanceof PretrainedConfig) && !isPlainObject(config))
      throw invalid("config", "a config or an object of config values", config);
    return modelClass(config.model_type ?? "gpt2", "The config").from_config(config, options);
  }
}
