#include "gemm.h"

#include "worker.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <chrono>

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

// The machine's float32 matmul limit as the addon reaches it: the best of `reps` [M, K] x [K, N] products on the compute
// thread (libtorch's thread pool), through the oneDNN linear (both weight layouts) and through addmm, in FLOP/s.
static double MatmulLimit(int64_t M, int64_t K, int64_t N, int reps) {
  at::InferenceMode guard;
  const at::Tensor x = at::full({M, K}, 0.5f), w = at::full({K, N}, 0.25f), wt = at::full({N, K}, 0.25f), b = at::zeros({N});
  double best = 0;
  for (int r = 0; r < reps; r++) {
    for (int path = 0; path < 3; path++) {  // oneDNN with Conv1D's [K, N] and nn.Linear's [N, K] weights, addmm
      const auto t0 = std::chrono::steady_clock::now();
      at::Tensor y = path == 0 ? GemmLinear(x, w, b, false) : path == 1 ? GemmLinear(x, wt, b, true) : at::addmm(b, x, w);
      if (!y.defined()) continue;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, 2.0 * M * K * N / s);
    }
  }
  return best;
}

void InitGemm(Napi::Env env, Napi::Object exports) {
  // matmulLimit(M, K, N, reps) -> Promise<FLOP/s>, on the compute thread
  exports.Set("matmulLimit", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      int64_t d[4];
      for (size_t i = 0; i < 4; i++) {
        if (!info[i].IsNumber() || info[i].As<Napi::Number>().DoubleValue() < 1 || info[i].As<Napi::Number>().DoubleValue() > 65536)
          throw Napi::TypeError::New(info.Env(), "matmulLimit(M, K, N, reps): positive integers up to 65536");
        d[i] = info[i].As<Napi::Number>().Int64Value();
      }
      auto result = std::make_shared<double>(0);
      return PromiseWorker::Run(info.Env(), [=] { *result = MatmulLimit(d[0], d[1], d[2], static_cast<int>(d[3])); },
                                [result](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *result); });
    });
  }));
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
