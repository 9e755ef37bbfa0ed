#include "core/train/train_step.h"

#include <ATen/autocast_mode.h>

#include <cmath>

namespace torchlm {

AutocastGuard::AutocastGuard(Amp a, at::Device d) : amp(a), cuda(d.is_cuda()) {
  if (amp == Amp::kNone) return;
  at::ScalarType t = amp == Amp::kBF16 ? at::kBFloat16 : at::kHalf;
  at::DeviceType dt = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(dt, t);
  at::autocast::set_autocast_enabled(dt, true);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (amp == Amp::kNone) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(cuda ? at::kCUDA : at::kCPU, false);
}

double FinishStep(AdamW& opt, GradScaler* scaler, double lr, double max_norm, Comm* comm, bool nonfinite) {
  at::NoGradGuard ng;
  double norm;
  if (comm) {
    std::vector<at::Tensor> grads;
    for (auto& g : opt.groups())
      for (auto& p : g.params) {
        if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
        grads.push_back(p.grad());
      }
    at::Tensor flag = at::full({1}, nonfinite ? 1.0 : 0.0, at::kDouble);
    comm->AllReduce(flag, true);
    if (flag.item<double>() > 0) {
      opt.ZeroGrad();
      return std::nan("");
    }
    comm->AllReduceMean(grads, 25u << 20);
  }
  if (scaler) {
    std::vector<at::Tensor> grads;
    for (auto& g : opt.groups())
      for (auto& p : g.params)
        if (p.grad().defined()) grads.push_back(p.mutable_grad());
    at::Tensor found_inf = at::zeros({1}, scaler->scale.options());
    if (!grads.empty()) at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, scaler->scale.reciprocal());
    bool skip = found_inf.item<float>() != 0.0f;
    norm = skip ? std::nan("") : opt.ClipGradNorm(max_norm);
    if (!skip) opt.Step(lr);
    at::_amp_update_scale_(scaler->scale, scaler->growth_tracker, found_inf, scaler->growth_factor,
                           scaler->backoff_factor, scaler->growth_interval);
  } else {
    norm = opt.ClipGradNorm(max_norm);
    opt.Step(lr);
  }
  opt.ZeroGrad();
  return norm;
}

void ScaledBackward(const at::Tensor& loss, double scale, GradScaler* scaler) {
  at::Tensor l = loss * scale;
  if (scaler) {
    scaler->Init(loss.device());
    l = l * scaler->scale.to(l.device());
  }
  l.backward();
}

StepResult TrainStep(CausalLM& model, AdamW& opt, GradScaler* scaler, Comm* comm, bool& nonfinite,
                     const at::Tensor& ids, const at::Tensor& mask, const at::Tensor& labels, double scale, Amp amp,
                     const StepUpdate* update) {
  StepResult out;
  c10::AutoGradMode mode(true);
  at::Device dev = model.device();
  at::Tensor x = ids.to(dev, at::kLong);
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor pos = at::arange(T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0).expand({B, T});
  at::Tensor m = mask.defined() ? mask.to(dev) : at::Tensor();
  at::Tensor loss;
  {
    AutocastGuard ac(amp, dev);
    loss = model.TrainingLoss(model.Hidden(x, pos, m, nullptr), labels.to(dev));
  }
  out.loss = loss.item<double>();
  if (!std::isfinite(out.loss)) {
    if (!comm) {
      opt.ZeroGrad();
      return out;  // the JavaScript side reports it with the step number
    }
    nonfinite = true;  // the other ranks still wait for this window's all-reduce
  } else {
    ScaledBackward(loss, scale, scaler);
  }
  if (update) {
    out.norm = FinishStep(opt, scaler, update->lr, update->max_grad_norm, comm, nonfinite);
    nonfinite = false;
  }
  return out;
}

}  // namespace torchlm
