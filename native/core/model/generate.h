// Decoding: greedy, multinomial sampling with warpers, beam search; a KV cache allocated once per call.
#pragma once

#include "core/common.h"
#include "core/model/causal_lm.h"

#include <atomic>
#include <functional>

namespace torchlm {

// Hugging Face's early_stopping: false (a heuristic), true, "never".
enum class EarlyStopping { kHeuristic, kAlways, kNever };

// Every field is set from the call's options (lib/generation.ts fills them from GenerationConfig); none has a
// default of its own that a call could fall back on.
struct GenerateConfig {
  int64_t max_new_tokens = 20, min_new_tokens = 0, min_length = 0;
  bool do_sample = false;
  double temperature = 1.0, top_p = 1.0, min_p = 0.0, typical_p = 1.0, repetition_penalty = 1.0;
  int64_t top_k = 0;  // 0: off
  int64_t no_repeat_ngram_size = 0;
  std::vector<std::vector<int64_t>> bad_words_ids;
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = 0;
  int64_t num_beams = 1, num_return_sequences = 1;
  double length_penalty = 1.0;
  EarlyStopping early_stopping = EarlyStopping::kHeuristic;
  bool use_cache = true;
  bool has_seed = false;
  uint64_t seed = 0;
};

// Decoding runs without dropout: the model's training mode is off for the scope and comes back after it.
class EvalMode {
 public:
  explicit EvalMode(CausalLM& model) : model_(model), was_(model.training) { model_.training = false; }
  ~EvalMode() { model_.training = was_; }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;

 private:
  CausalLM& model_;
  bool was_;
};

// Called after each step with the new token of every row.
using TokenSink = std::function<void(const std::vector<int64_t>&)>;

// ids [B, T] int64 (left-padded when mask is given), mask [B, T] or undefined.
// Returns [B * num_return_sequences, T + generated] on the CPU.
at::Tensor Generate(CausalLM& model, const at::Tensor& ids, const at::Tensor& mask, const GenerateConfig& cfg,
                    const TokenSink& sink, const std::atomic<int32_t>* cancel);

}  // namespace torchlm
