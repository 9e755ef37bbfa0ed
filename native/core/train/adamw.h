// AdamW with torch semantics, gradient clipping, and the fused training step.
#pragma once

#include "core/common.h"

namespace torchlm {

struct ParamGroup {
  std::vector<at::Tensor> params;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<ParamGroup> groups, double beta1, double beta2, double eps);
  // One update at learning rate lr; parameters without a gradient are skipped, as in torch.
  void Step(double lr);
  void ZeroGrad();
  // torch.nn.utils.clip_grad_norm_: returns the total 2-norm before clipping.
  double ClipGradNorm(double max_norm);
  std::vector<ParamGroup>& groups() { return groups_; }
  // State as named tensors: "<i>.exp_avg", "<i>.exp_avg_sq", "<i>.step" for the i-th parameter.
  std::vector<std::pair<std::string, at::Tensor>> State() const;
  /** Throws a UserError naming the tensor where `state` does not fit this optimizer; changes nothing. */
  void CheckState(const std::vector<std::pair<std::string, at::Tensor>>& state) const;
  void LoadState(const std::vector<std::pair<std::string, at::Tensor>>& state);

 private:
  std::vector<ParamGroup> groups_;
  double beta1_, beta2_, eps_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  std::vector<int64_t> steps_;
  std::vector<at::Tensor> All() const;
};

// Mixed precision for a training step: autocast to bf16 or fp16 (fp16 with a gradient scaler).
enum class Amp { kNone = 0, kBF16 = 1, kFP16 = 2 };

// Hugging Face / torch.cuda.amp's GradScaler: dynamic loss scale, steps with inf/NaN gradients skipped.
struct GradScaler {
  at::Tensor scale, growth_tracker;
  double growth_factor = 2.0, backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool initialised = false;
  void Init(at::Device d);
};

}  // namespace torchlm
