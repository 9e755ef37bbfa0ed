#include "gemm.h"

#include <atomic>
#include <cstdlib>

namespace torchlm {

// dnnl_sgemm from oneDNN's C API: row-major C = alpha * op(A) * op(B) + beta * C; returns dnnl_success (0).
using SgemmFn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                        const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Only the oneDNN that libtorch itself loaded, never one of our own.
static SgemmFn FindSgemm() {
  if (std::getenv("TORCHLM_NO_DNNL")) return nullptr;
  return reinterpret_cast<SgemmFn>(LoadedSymbol({"libdnnl.so.2", "libdnnl.so.3"}, "dnnl_sgemm"));
}

static SgemmFn Sgemm() {
  static const SgemmFn fn = FindSgemm();
  return fn;
}

static std::atomic<bool> g_enabled{true};
static std::atomic<int64_t> g_calls{0};

bool GemmAvailable() { return Sgemm() != nullptr; }

at::Tensor GemmLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool transposed) {
  SgemmFn sgemm = Sgemm();
  if (!sgemm || !g_enabled.load(std::memory_order_relaxed)) return at::Tensor();
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()))) return at::Tensor();
  if (!x.device().is_cpu() || !w.device().is_cpu() || x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat || w.dim() != 2 ||
      !w.is_contiguous() || x.dim() < 2)
    return at::Tensor();
  const int64_t K = transposed ? w.size(1) : w.size(0), N = transposed ? w.size(0) : w.size(1);
  if (x.size(-1) != K || (b.defined() && (b.scalar_type() != at::kFloat || !b.device().is_cpu() || b.numel() != N))) return at::Tensor();
  const at::Tensor a = x.reshape({-1, K}).contiguous();
  const int64_t M = a.size(0);
  if (M < 2) return at::Tensor();  // one row: the matrix-vector kernels
  at::Tensor y = b.defined() ? b.reshape({1, N}).expand({M, N}).contiguous() : at::empty({M, N}, a.options());
  const int rc = sgemm('N', transposed ? 'T' : 'N', M, N, K, 1.0f, a.data_ptr<float>(), K, w.data_ptr<float>(), transposed ? K : N,
                       b.defined() ? 1.0f : 0.0f, y.data_ptr<float>(), N);
  if (rc != 0) return at::Tensor();
  g_calls++;
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  return y.view(sizes);
}

void InitGemm(Napi::Env env, Napi::Object exports) {
  exports.Set("setGemm", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    g_enabled.store(info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }));
  exports.Set("gemmCalls", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(g_calls.load()));
  }));
  exports.Set("gemmAvailable", Napi::Boolean::New(env, GemmAvailable()));
}

}  // namespace torchlm
