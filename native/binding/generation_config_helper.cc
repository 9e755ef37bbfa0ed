#include "binding/generation_config_helper.h"

namespace torchlm {

GenerateConfig ParseGenerateConfig(const Options& o) {
  using G = GenerateConfig;
  static constexpr std::pair<const char*, int64_t G::*> kIntegers[] = {
      {"max_new_tokens", &G::max_new_tokens},
      {"min_new_tokens", &G::min_new_tokens},
      {"min_length", &G::min_length},
      {"top_k", &G::top_k},
      {"no_repeat_ngram_size", &G::no_repeat_ngram_size},
      {"pad_token_id", &G::pad_token_id},
      {"num_beams", &G::num_beams},
      {"num_return_sequences", &G::num_return_sequences}};
  static constexpr std::pair<const char*, double G::*> kNumbers[] = {{"temperature", &G::temperature},
                                                                     {"top_p", &G::top_p},
                                                                     {"min_p", &G::min_p},
                                                                     {"typical_p", &G::typical_p},
                                                                     {"repetition_penalty", &G::repetition_penalty},
                                                                     {"length_penalty", &G::length_penalty}};
  G c;
  for (const auto& [key, field] : kIntegers) c.*field = o.Int(key);
  for (const auto& [key, field] : kNumbers) c.*field = o.Num(key);
  c.do_sample = o.Bool("do_sample");
  c.use_cache = o.Bool("use_cache");
  auto words = o.Get("bad_words_ids");
  if (!words.IsArray()) throw UserError("Expected an array of id arrays for generate's option bad_words_ids");
  for (uint32_t i = 0; i < words.As<Napi::Array>().Length(); i++)
    c.bad_words_ids.push_back(ToInt64Vector(words.As<Napi::Array>().Get(i), "bad_words_ids"));
  c.eos_token_ids = o.Ints("eos_token_ids");
  c.early_stopping = static_cast<EarlyStopping>(o.Enum("early_stopping", {"heuristic", "always", "never"}));
  if (!o.IsNull("seed")) {
    c.has_seed = true;
    c.seed = static_cast<uint64_t>(o.Int("seed"));
  }
  if (c.max_new_tokens < 1 || c.num_beams < 1 || c.num_return_sequences < 1 || c.top_k < 0 || c.min_new_tokens < 0 ||
      c.min_length < 0 || c.no_repeat_ngram_size < 0)
    throw UserError(
        "generate: max_new_tokens, num_beams and num_return_sequences must be positive; top_k, min_new_tokens, "
        "min_length "
        "and no_repeat_ngram_size non-negative");
  return c;
}

}  // namespace torchlm
