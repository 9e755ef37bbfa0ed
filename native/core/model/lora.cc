#include "core/model/lora.h"

#include <ATen/autocast_mode.h>

#include <cmath>

namespace torchlm {

at::Tensor LoraDelta(const Lora& l, const at::Tensor& x, bool training, at::ScalarType out) {
  at::Tensor h = at::dropout(x, l.dropout, training);
  // under autocast the linears pick their own dtype; otherwise x meets the adapter in the adapter's dtype (float32
  // activations over bfloat16 weights in batch-1 inference)
  if (h.scalar_type() != l.A.scalar_type() && !at::autocast::is_autocast_enabled(x.device().type()))
    h = h.to(l.A.scalar_type());
  at::Tensor d = at::linear(at::linear(h, l.A), l.B).mul(l.scaling);
  return d.scalar_type() == out ? d : d.to(out);
}

Lora NewLora(int64_t in, int64_t out, int64_t r, double scaling, double dropout, const at::TensorOptions& options) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  Lora l;
  l.A = at::empty({r, in}, at::kFloat).uniform_(-bound, bound).to(options);
  l.B = at::zeros({out, r}, options);
  l.scaling = scaling;
  l.dropout = dropout;
  return l;
}

void MergeLora(const Lora& l, const at::Tensor& w, bool fan_in_fan_out) {
  at::NoGradGuard ng;
  at::Tensor delta = at::mm(l.B.to(at::kFloat), l.A.to(at::kFloat)).mul_(l.scaling);
  if (fan_in_fan_out) delta = delta.t();
  w.detach().add_(delta.to(w.scalar_type()));
}

}  // namespace torchlm
