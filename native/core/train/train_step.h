// One training step on the compute thread: forward, the fused LM loss, backward, and at the end of an accumulation
// window the gradients' all-reduce, clipping, the update and zeroing (no JavaScript per operation).
#pragma once

#include "core/distributed/comm.h"
#include "core/model/causal_lm.h"
#include "core/train/adamw.h"

namespace torchlm {

// Autocast for the calling thread while alive (thread-local, like torch.autocast).
struct AutocastGuard {
  Amp amp;
  bool cuda;
  AutocastGuard(Amp a, at::Device d);
  ~AutocastGuard();
};

// Clip, update and zero the gradients; with a scaler (float16), unscale first and skip the update on inf/NaN.
// Returns the gradient norm before clipping (NaN when the step was skipped).
// In a process group, gradients are averaged over the ranks first (a missing one counts as zeros, so
// every rank sends the same buckets), and a non-finite loss on any rank makes every rank skip the update.
double FinishStep(AdamW& opt, GradScaler* scaler, double lr, double max_norm, Comm* comm = nullptr,
                  bool nonfinite = false);

// Backward of loss * scale, times the scaler's loss scale with a scaler (float16).
void ScaledBackward(const at::Tensor& loss, double scale, GradScaler* scaler);

struct StepUpdate {
  double lr = 0, max_grad_norm = 0;
};
struct StepResult {
  double loss = 0, norm = -1;  // norm -1: no update this call
};

// Forward and backward of the causal LM loss on ids [B, T] (labels the same shape), the loss times `scale` (and the
// scaler's scale under float16); with `update`, FinishStep closes the window. A non-finite loss zeroes the gradients
// alone, or in a process group sets `nonfinite`, so that every rank skips the window's update together.
StepResult TrainStep(CausalLM& model, AdamW& opt, GradScaler* scaler, Comm* comm, bool& nonfinite,
                     const at::Tensor& ids, const at::Tensor& mask, const at::Tensor& labels, double scale, Amp amp,
                     const StepUpdate* update);

}  // namespace torchlm
