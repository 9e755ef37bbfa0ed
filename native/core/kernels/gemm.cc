#include "core/kernels/gemm.h"
#include "core/runtime/env.h"

#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

namespace torchlm {

// libtorch's oneDNN inner product (the op TorchInductor fuses linears into): its JIT kernels pick AVX-512 on any
// CPU that has it, where pip's MKL sgemm behind addmm stays on AVX2 code paths on AMD (1.2-1.6x slower measured here
// on GPT-2's shapes). Called boxed through the dispatcher, so no C++ signature of ours can drift from libtorch's.
static const c10::OperatorHandle* FindLinear() {
  if (EnvFlag("TORCHLM_NO_DNNL")) return nullptr;
  auto op = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
  if (!op || !op->hasKernelForDispatchKey(c10::DispatchKey::CPU)) return nullptr;
  static c10::OperatorHandle handle = *op;
  return &handle;
}

static const c10::OperatorHandle* Linear() {
  static const c10::OperatorHandle* op = FindLinear();
  return op;
}

static std::atomic<bool> g_enabled{true};
static std::atomic<int64_t> g_calls{0};

bool GemmAvailable() { return Linear() != nullptr; }

// out [M, N] = a [M, K] @ wnk^T + b through the oneDNN op, wnk being nn.Linear's [N, K] (a strided view is accepted).
static at::Tensor Dnnl(const c10::OperatorHandle* op, const at::Tensor& a, const at::Tensor& wnk, const at::Tensor& b) {
  torch::jit::Stack stack{a,
                          wnk,
                          b.defined() ? c10::IValue(b.reshape({wnk.size(0)})) : c10::IValue(),
                          c10::IValue(std::string("none")),
                          c10::IValue(c10::List<std::optional<c10::Scalar>>()),
                          c10::IValue()};
  op->callBoxed(&stack);
  g_calls++;
  return stack.back().toTensor();
}

static bool Suits(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool transposed) {
  if (!x.device().is_cpu() || !w.device().is_cpu() || x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat ||
      w.dim() != 2 || !w.is_contiguous() || x.dim() < 2)
    return false;
  const int64_t K = transposed ? w.size(1) : w.size(0), N = transposed ? w.size(0) : w.size(1);
  return x.size(-1) == K && (!b.defined() || (b.scalar_type() == at::kFloat && b.device().is_cpu() && b.numel() == N));
}

at::Tensor GemmLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool transposed) {
  const c10::OperatorHandle* op = Linear();
  if (!op || !g_enabled.load(std::memory_order_relaxed)) return at::Tensor();
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad())))
    return at::Tensor();
  if (!Suits(x, w, b, transposed)) return at::Tensor();
  const at::Tensor a = x.reshape({-1, x.size(-1)}).contiguous();
  if (a.size(0) < 2) return at::Tensor();  // one row: the matrix-vector kernels
  // the op wants nn.Linear's [N, K]; Conv1D's [K, N] goes in as its transposed view (no copy of ours)
  auto sizes = x.sizes().vec();
  sizes.back() = transposed ? w.size(0) : w.size(1);
  return Dnnl(op, a, transposed ? w : w.t(), b).view(sizes);
}

// A linear for training in float32 whose forward and input-gradient products run on oneDNN, where autograd's addmm
// would take MKL's AVX2 sgemm on AMD CPUs (114-196 against oneDNN's 198-215 GFLOP/s on GPT-2's training shapes here,
// 2 threads). Conv1D (W [K, N]): y = x W + b, dx = dy W^T, dW = x^T dy, db = sum(dy). The tied LM head (transposed,
// W [N, K]): y = x W^T, dx = dy W, dW = dy^T x. oneDNN's op computes a b^T with b as nn.Linear's [out, in] weight, so
// W or its transposed view goes in as b.
struct DnnlLinearFn : public torch::autograd::Function<DnnlLinearFn> {
  // the bias is optional so that an absent one is no autograd input (an undefined tensor would be taken for one)
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x2d, const at::Tensor& w,
                            const std::optional<at::Tensor>& b, bool transposed) {
    ctx->save_for_backward({x2d, w});
    ctx->saved_data["transposed"] = transposed;
    ctx->saved_data["bias"] = b.has_value();
    return Dnnl(Linear(), x2d, transposed ? w : w.t(), b.value_or(at::Tensor()));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const bool transposed = ctx->saved_data["transposed"].toBool();
    const c10::OperatorHandle* op = Linear();
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) dx = Dnnl(op, dy, transposed ? w.t() : w, at::Tensor());
    // the weight gradient contracts over the rows of x and dy: oneDNN's inner product would need both transposed
    // into copies (3.3 GB a step at 4 x 1024, 1.7 s), which cost more than MKL's packing gains back
    if (ctx->needs_input_grad(1)) dw = transposed ? at::mm(dy.t(), x) : at::mm(x.t(), dy);
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) db = dy.sum(0);
    return {dx, dw, db, at::Tensor()};
  }
};

at::Tensor TrainLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool transposed) {
  const c10::OperatorHandle* op = Linear();
  if (!op || !g_enabled.load(std::memory_order_relaxed) || !at::GradMode::is_enabled()) return at::Tensor();
  if (at::autocast::is_autocast_enabled(at::kCPU)) return at::Tensor();  // autocast picks bfloat16 addmm
  if (!Suits(x, w, b, transposed)) return at::Tensor();
  auto sizes = x.sizes().vec();
  sizes.back() = transposed ? w.size(0) : w.size(1);
  return DnnlLinearFn::apply(x.reshape({-1, x.size(-1)}), w, b.defined() ? std::optional<at::Tensor>(b) : std::nullopt,
                             transposed)
      .view(sizes);
}

at::Tensor LinearNoGrad(const at::Tensor& a, const at::Tensor& w) {
  const c10::OperatorHandle* op = Linear();
  if (op && g_enabled.load(std::memory_order_relaxed) && Suits(a, w, at::Tensor(), true) && a.dim() == 2 &&
      a.size(0) > 1)
    return Dnnl(op, a.contiguous(), w, at::Tensor());
  return at::mm(a, w.t());
}

void SetGemmEnabled(bool on) { g_enabled.store(on); }
int64_t GemmCalls() { return g_calls.load(); }

}  // namespace torchlm
