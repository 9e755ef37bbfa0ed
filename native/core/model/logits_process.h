// Hugging Face's logits processors and warpers (transformers' generation/logits_process.py): each edits the scores
// of the next token in place. generate() and continuous batching build the same list from a request's options.
#pragma once

#include "core/common.h"
#include "core/model/generate.h"

#include <functional>
#include <vector>

namespace torchlm {

// What a logits processor sees at a step: every row's ids so far (prompt included), the same as a [B, len] tensor
// where a processor needs one, and the prompt's length.
struct Step {
  const std::vector<std::vector<int64_t>>& rows;
  const at::Tensor& seen;
  int64_t prompt_len;
  int64_t len() const { return static_cast<int64_t>(rows[0].size()); }
};

// A Hugging Face LogitsProcessor or LogitsWarper: edits the scores [B, V] of the next token in place.
using LogitsProcessor = std::function<void(at::Tensor& scores, const Step& step)>;

// The processors a call needs, assembled once, in Hugging Face's order: the logits processors, then (when sampling)
// the warpers.
struct Processors {
  std::vector<LogitsProcessor> list;
  bool needs_seen = false;  // a [B, len] tensor of the ids so far (repetition penalty)
  bool needs_cpu = false;   // per-element edits through accessors

  void operator()(at::Tensor& scores, const Step& step) const {
    for (const auto& p : list) p(scores, step);
  }
};

Processors BuildProcessors(const GenerateConfig& c, bool warpers);

bool IsEos(int64_t t, const GenerateConfig& c);

// The next token of each row of processed scores [B, V]: the argmax, or a draw from their softmax (from `gen` where
// given: a seeded call's own generator, on the CPU). [B] int64 on the CPU.
at::Tensor ChooseNext(const at::Tensor& scores, bool do_sample, c10::optional<at::Generator>& gen);

}  // namespace torchlm
