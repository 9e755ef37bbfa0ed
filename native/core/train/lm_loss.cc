// The LM head and the cross-entropy of a training step, a slice of rows at a time, as Liger's fused linear
// cross-entropy does: the [N, V] logits (1.65 GB at 8 x 1024 for GPT-2's vocabulary) are never whole, nor their
// log-softmax, nor their gradient. Each slice's gradient is made at once (softmax minus one-hot, over the number of
// counted labels) and turned into the hidden states' and wte's gradients, which backward only scales.
#include "core/train/lm_loss.h"
#include "core/runtime/env.h"

#include "core/kernels/gemm.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdlib>

namespace torchlm {

namespace {

constexpr int64_t kSliceElements = int64_t(32) << 20;  // 128 MB of float32 logits a slice

struct FusedLMLossFn : public torch::autograd::Function<FusedLMLossFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h, const at::Tensor& w,
                            const at::Tensor& targets) {
    const int64_t N = h.size(0), V = w.size(0);
    const int64_t rows = std::max<int64_t>(1, kSliceElements / V);
    const at::Tensor counted = targets.ne(-100);
    const double n = static_cast<double>(counted.sum().item<int64_t>());  // 0: NaN, as a mean over nothing is
    // a frozen LM head (LoRA) needs no [V, E] gradient: a third of the head's products saved
    const bool want_w = w.requires_grad();
    at::Tensor gh = at::empty_like(h), gw = want_w ? at::zeros_like(w) : at::Tensor();
    double total = 0;
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      const int64_t r = std::min(rows, N - r0);
      const at::Tensor hs = h.narrow(0, r0, r), cs = counted.narrow(0, r0, r);
      const at::Tensor ts = targets.narrow(0, r0, r).clamp_min(0).unsqueeze(1);
      at::Tensor logits = LinearNoGrad(hs, w);  // [r, V]
      const at::Tensor lse = logits.logsumexp(-1, /*keepdim=*/true);
      total += (lse.squeeze(1) - logits.gather(1, ts).squeeze(1)).masked_fill(cs.logical_not(), 0).sum().item<double>();
      // d(mean loss)/d(logits) = (softmax - one-hot) / n on counted rows, 0 elsewhere; in place over the logits
      logits.sub_(lse).exp_();
      logits.scatter_add_(1, ts, at::full({r, 1}, -1.0, logits.options()));
      logits.mul_((cs.to(logits.scalar_type()) / n).unsqueeze(1));
      gh.narrow(0, r0, r).copy_(at::mm(logits, w));
      if (want_w) gw.addmm_(logits.t(), hs);
    }
    ctx->save_for_backward({gh, gw});
    return at::scalar_tensor(total / n, h.options());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor go = grads[0];
    return {saved[0] * go, saved[1].defined() ? saved[1] * go : at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor FusedLMLoss(const at::Tensor& hidden, const at::Tensor& wte, const at::Tensor& targets) {
  if (EnvFlag("TORCHLM_NO_FUSED_LOSS") || !at::GradMode::is_enabled()) return at::Tensor();
  if (!hidden.device().is_cpu() || hidden.scalar_type() != at::kFloat || wte.scalar_type() != at::kFloat ||
      hidden.dim() != 2 || at::autocast::is_autocast_enabled(at::kCPU))
    return at::Tensor();
  return FusedLMLossFn::apply(hidden.contiguous(), wte, targets.to(at::kLong).contiguous());
}

}  // namespace torchlm
