#include "gemm.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

namespace torchlm {

// libtorch's oneDNN inner product (the op TorchInductor fuses linears into): its JIT kernels pick AVX-512 on any
// CPU that has it, where pip's MKL sgemm behind addmm stays on AVX2 code paths on AMD (1.2-1.6x slower measured here
// on GPT-2's shapes). Called boxed through the dispatcher, so no C++ signature of ours can drift from libtorch's.
static const c10::OperatorHandle* FindLinear() {
  if (std::getenv("TORCHLM_NO_DNNL")) return nullptr;
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

at::Tensor GemmLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool transposed) {
  const c10::OperatorHandle* op = Linear();
  if (!op || !g_enabled.load(std::memory_order_relaxed)) return at::Tensor();
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()))) return at::Tensor();
  if (!x.device().is_cpu() || !w.device().is_cpu() || x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat || w.dim() != 2 ||
      !w.is_contiguous() || x.dim() < 2)
    return at::Tensor();
  const int64_t K = transposed ? w.size(1) : w.size(0), N = transposed ? w.size(0) : w.size(1);
  if (x.size(-1) != K || (b.defined() && (b.scalar_type() != at::kFloat || !b.device().is_cpu() || b.numel() != N))) return at::Tensor();
  const at::Tensor a = x.reshape({-1, K}).contiguous();
  if (a.size(0) < 2) return at::Tensor();  // one row: the matrix-vector kernels
  // the op wants nn.Linear's [N, K]; Conv1D's [K, N] goes in as its transposed view (no copy of ours)
  torch::jit::Stack stack{a, transposed ? w : w.t(), b.defined() ? c10::IValue(b.reshape({N})) : c10::IValue(),
                          c10::IValue(std::string("none")), c10::IValue(c10::List<std::optional<c10::Scalar>>()), c10::IValue()};
  op->callBoxed(&stack);
  g_calls++;
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  return stack.back().toTensor().view(sizes);
}

void SetGemmEnabled(bool on) { g_enabled.store(on); }
int64_t GemmCalls() { return g_calls.load(); }

}  // namespace torchlm
