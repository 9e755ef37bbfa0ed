// Probes for the bench and the tests: the machine's limits as the kernels see them (memory-read bandwidth, matmul
// FLOP/s, first-touch cost of fresh memory), and the switches and call counters of the fast paths. Kept apart from the
// kernels, and exported as `probes`, apart from the library's bindings.
#include "testing/probes.h"
#include "core/kernels/quant.h"

#include "core/kernels/gemm.h"
#include "core/kernels/matvec.h"
#include "core/kernels/row_split.h"
#include "core/io/safetensors.h"
#include "binding/promise_worker.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn about it once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace torchlm {

static float StreamSumScalar(const float* p, int64_t n) {
  float a[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < n; i++) a[i & 3] += p[i];
  return a[0] + a[1] + a[2] + a[3];
}
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float StreamSum512(const float* p, int64_t n) {  // n: a multiple of 64
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
#else
static float StreamSum512(const float* p, int64_t n) { return StreamSumScalar(p, n); }
#endif

// The machine's memory-read limit as the kernels see it: every thread (or the calling thread alone) streams its
// share of a buffer larger than the caches (vector loads, four accumulators), the best of `reps` passes, in bytes
// per second.
static double ReadBandwidth(int64_t bytes, int reps, bool all_threads) {
  const int64_t n = bytes / 4 / 64 * 64;
  at::Tensor buf = at::full({n}, 1.0f, at::TensorOptions().dtype(at::kFloat));
  const float* p = buf.data_ptr<float>();
  const auto sum = [&](int64_t b0, int64_t b1, float acc) {
    return acc + (SimdLevel() == 2 ? StreamSum512(p + b0 * 64, (b1 - b0) * 64)
                                   : StreamSumScalar(p + b0 * 64, (b1 - b0) * 64));
  };
  double best = 0;
  volatile float sink = 0;  // the sums are used, so the reads stay
  for (int r = 0; r < reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    sink =
        sink + (all_threads ? at::parallel_reduce(0, n / 64, 1, 0.0f, sum, std::plus<float>()) : sum(0, n / 64, 0.0f));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) * 4 / s);
  }
  return best;
}

// Seconds to allocate and first write `bytes` of fresh memory the way the loader does (the caching allocator's
// huge pages, 8 MB pieces on every thread), without reading a file: the floor under from_pretrained.
static double FirstTouch(int64_t bytes) {
  const auto t0 = std::chrono::steady_clock::now();
  at::Tensor buf = at::empty({bytes}, at::TensorOptions().dtype(at::kByte));
  uint8_t* p = buf.data_ptr<uint8_t>();
  at::parallel_for(0, (bytes + kReadPiece - 1) / kReadPiece, 1, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; i++)
      std::memset(p + i * kReadPiece, 1, static_cast<size_t>(std::min(kReadPiece, bytes - i * kReadPiece)));
  });
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Argument i of a probe as an integer in [1, max], or a TypeError in the library's shape.
static int64_t PositiveInt(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t max) {
  const Napi::Value v = info[i];
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
  if (!v.IsNumber() || !(d >= 1 && d <= static_cast<double>(max)) || d != std::floor(d))
    throw JsError(info.Env(),
                  std::string("Expected integer between 1 and ") + std::to_string(max) + " for " + name +
                      " but received " + v.ToString().Utf8Value(),
                  kInvalidArgument);
  return static_cast<int64_t>(d);
}

// The machine's float32 matmul limit as the addon reaches it: the best of `reps` [M, K] x [K, N] products on the
// compute thread (libtorch's thread pool), through the oneDNN linear (both weight layouts) and through addmm, in
// FLOP/s.
static double MatmulLimit(int64_t M, int64_t K, int64_t N, int reps) {
  at::InferenceMode guard;
  const at::Tensor x = at::full({M, K}, 0.5f), w = at::full({K, N}, 0.25f), wt = at::full({N, K}, 0.25f),
                   b = at::zeros({N});
  double best = 0;
  for (int r = 0; r < reps; r++) {
    for (int path = 0; path < 3; path++) {  // oneDNN with Conv1D's [K, N] and nn.Linear's [N, K] weights, addmm
      const auto t0 = std::chrono::steady_clock::now();
      at::Tensor y = path == 0   ? GemmLinear(x, w, b, false)
                     : path == 1 ? GemmLinear(x, wt, b, true)
                                 : at::addmm(b, x, w);
      if (!y.defined()) continue;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, 2.0 * M * K * N / s);
    }
  }
  return best;
}

// SplitRows on `rows` rows of `row_bytes` bytes, each row of [slow_from, rows) taking `slow_us` microseconds (a
// lagging share): how many times each row was visited, and how many blocks a thread took from another's share. With
// then_us, a NextStep taking then_us microseconds follows, with a 2 MB matrix to read ahead: how often it ran, how many
// rows had been visited when it started, and the bytes read ahead meanwhile.
struct RowVisits {
  std::vector<int32_t> visits;
  bool with_then = false;
  int64_t helped = 0, then_calls = 0, rows_done = 0, prefetched = 0;
};
static RowVisits VisitRows(int64_t rows, int64_t row_bytes, int64_t slow_from, int64_t slow_us, int64_t then_us) {
  auto spin = [](int64_t us) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    while (std::chrono::steady_clock::now() < until) {
    }
  };
  RowVisits r;
  r.with_then = then_us > 0;
  std::unique_ptr<std::atomic<int32_t>[]> seen(new std::atomic<int32_t>[rows]);
  for (int64_t i = 0; i < rows; i++) seen[i] = 0;
  std::vector<uint8_t> next(static_cast<size_t>(2 << 20), 1);
  NextStep then;
  then.serial = [&] {
    r.then_calls++;
    r.rows_done = 0;
    for (int64_t i = 0; i < rows; i++) r.rows_done += seen[i].load() > 0;
    spin(then_us);
  };
  then.next_rows = 512;
  then.next = {{next.data(), 4096}};
  SplitStats stats;
  SplitRows(
      rows, row_bytes,
      [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; i++) {
          seen[i]++;
          if (i >= slow_from) spin(slow_us);
        }
      },
      &stats, r.with_then ? &then : nullptr);
  for (int64_t i = 0; i < rows; i++) r.visits.push_back(seen[i].load());
  r.helped = stats.helped;
  r.prefetched = stats.prefetched;
  return r;
}

void InitProbes(Napi::Env env, Napi::Object exports) {
  Napi::Object probes = Napi::Object::New(env);
  // readBandwidth(bytes, reps, allThreads): bytes per second; firstTouch(bytes): seconds; matmulLimit(M, K, N, reps):
  // FLOP/s. All on the compute thread, with libtorch's threads.
  probes.Set("readBandwidth", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
               const int64_t bytes = PositiveInt(info, 0, "bytes", int64_t(1) << 40);
               const int reps = static_cast<int>(PositiveInt(info, 1, "reps", 1000));
               const bool all = info.Length() < 3 || info[2].ToBoolean().Value();
               auto result = std::make_shared<double>(0);
               return PromiseWorker::Run(
                   info.Env(), [=] { *result = ReadBandwidth(bytes, reps, all); },
                   [result](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *result); });
             }));
  probes.Set("firstTouch", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
               const int64_t bytes = PositiveInt(info, 0, "bytes", int64_t(1) << 40);
               auto result = std::make_shared<double>(0);
               return PromiseWorker::Run(
                   info.Env(), [=] { *result = FirstTouch(bytes); },
                   [result](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *result); });
             }));
  probes.Set("matmulLimit", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
               int64_t d[4];
               const char* names[] = {"M", "K", "N", "reps"};
               for (size_t i = 0; i < 4; i++) d[i] = PositiveInt(info, i, names[i], 65536);
               auto result = std::make_shared<double>(0);
               return PromiseWorker::Run(
                   info.Env(), [=] { *result = MatmulLimit(d[0], d[1], d[2], static_cast<int>(d[3])); },
                   [result](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *result); });
             }));
  probes.Set("setMatvec", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
               SetMatVecEnabled(info[0].ToBoolean().Value());
               return info.Env().Undefined();
             }));
  probes.Set("matvecCalls", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
               return Napi::Number::New(info.Env(), static_cast<double>(MatVecCalls()));
             }));
  probes.Set("setGemm", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
               SetGemmEnabled(info[0].ToBoolean().Value());
               return info.Env().Undefined();
             }));
  probes.Set("gemmCalls", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
               return Napi::Number::New(info.Env(), static_cast<double>(GemmCalls()));
             }));
  probes.Set("gemmAvailable", Napi::Boolean::New(env, GemmAvailable()));
  probes.Set("q8Kernel", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
               return Napi::String::New(info.Env(), Q8Kernel());
             }));
  probes.Set("streamRows", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
               const int64_t rows = PositiveInt(info, 0, "rows", int64_t(1) << 24),
                             row_bytes = PositiveInt(info, 1, "rowBytes", int64_t(1) << 24);
               const int64_t slow_from = PositiveInt(info, 2, "slowFrom", int64_t(1) << 24),
                             slow_us = PositiveInt(info, 3, "slowMicroseconds", 100000);
               const int64_t then_us =
                   info.Length() > 4 && !info[4].IsUndefined() ? PositiveInt(info, 4, "thenMicroseconds", 100000) : 0;
               auto result = std::make_shared<RowVisits>();
               return PromiseWorker::Run(
                   info.Env(), [=] { *result = VisitRows(rows, row_bytes, slow_from, slow_us, then_us); },
                   [result](Napi::Env env) -> Napi::Value {
                     Napi::Object o = Napi::Object::New(env);
                     Napi::Array v = Napi::Array::New(env, result->visits.size());
                     for (size_t i = 0; i < result->visits.size(); i++)
                       v.Set(static_cast<uint32_t>(i), result->visits[i]);
                     o.Set("visits", v);
                     o.Set("helped", Napi::Number::New(env, static_cast<double>(result->helped)));
                     if (result->with_then) {
                       Napi::Object t = Napi::Object::New(env);
                       t.Set("calls", Napi::Number::New(env, static_cast<double>(result->then_calls)));
                       t.Set("rowsDone", Napi::Number::New(env, static_cast<double>(result->rows_done)));
                       t.Set("prefetched", Napi::Number::New(env, static_cast<double>(result->prefetched)));
                       o.Set("then", t);
                     }
                     return o;
                   });
             }));
  exports.Set("probes", probes);
}

}  // namespace torchlm
