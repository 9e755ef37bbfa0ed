#include "core/kernels/matvec.h"
#include "core/runtime/env.h"
#include "core/kernels/row_split.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn about it once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace torchlm {

static std::atomic<bool> g_enabled{!EnvFlag("TORCHLM_NO_MATVEC")};
bool MatVecEnabled() { return g_enabled.load(std::memory_order_relaxed); }
// Calls that took a fast path (tests check that the path they compare was really taken).
static std::atomic<int64_t> g_calls{0};

// Weights are float32 or bfloat16 (widened to float32 exactly, by a 16-bit shift); sums are float32.

static inline float Elem(const float* w, int64_t i) { return w[i]; }
static inline float Elem(const uint16_t* w, int64_t i) {
  uint32_t bits = static_cast<uint32_t>(w[i]) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Names: what the kernel computes (Axpy: rows of W scaled by x and summed; Dot: row-by-vector dot products), then the
// instruction set (Ref: the plain loop the others equal); every kernel is a template over the weights' type W, float32
// or bfloat16, against float32 activations.

// ---- acc[0:N] += sum over rows k in [k0, k1) of x[k] * W[k, :] (R rows per pass, below: one load and store of
// acc for R contiguous weight streams) ----

template <typename W>
static void AxpyRowsRef(const float* x, const W* w, float* acc, int64_t k0, int64_t k1, int64_t N) {
  for (int64_t k = k0; k < k1; k++) {
    const W* row = w + k * N;
    const float xk = x[k];
    for (int64_t n = 0; n < N; n++) acc[n] += xk * Elem(row, n);
  }
}

// ---- out[v] = dot(W[v, :], h) for rows v in [v0, v1) ----

template <typename W>
static void DotRowsRef(const float* h, const W* w, float* out, int64_t v0, int64_t v1, int64_t K) {
  for (int64_t v = v0; v < v1; v++) {
    const W* row = w + v * K;
    float s = 0;
    for (int64_t k = 0; k < K; k++) s += Elem(row, k) * h[k];
    out[v] = s;
  }
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f"))) static inline __m512 Load16(const uint16_t* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
__attribute__((target("avx2,fma"))) static inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) static inline __m256 Load8(const uint16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

// R rows per pass: acc is loaded and stored once for R weight streams. Eight rows and then four give the same
// float32 operations in the same order as four at a time (acc round-trips through memory exactly).
template <int R, typename W>
__attribute__((target("avx512f"))) static int64_t AxpyPassAvx512(const float* x, const W* w, float* acc, int64_t k,
                                                                 int64_t k1, int64_t N) {
  const int64_t N16 = N & ~int64_t(15);
  for (; k + R <= k1; k += R) {
    const W* r = w + k * N;
    __m512 xs[R];
#pragma GCC unroll 8
    for (int j = 0; j < R; j++) xs[j] = _mm512_set1_ps(x[k + j]);
    for (int64_t n = 0; n < N16; n += 16) {
      __m512 a = _mm512_loadu_ps(acc + n);
#pragma GCC unroll 8
      for (int j = 0; j < R; j++) a = _mm512_fmadd_ps(xs[j], Load16(r + j * N + n), a);
      _mm512_storeu_ps(acc + n, a);
    }
    for (int64_t n = N16; n < N; n++)
      for (int j = 0; j < R; j++) acc[n] += x[k + j] * Elem(r + j * N, n);
  }
  return k;
}

template <typename W>
__attribute__((target("avx512f"))) static void AxpyRowsAvx512(const float* x, const W* w, float* acc, int64_t k0,
                                                              int64_t k1, int64_t N) {
  int64_t k = AxpyPassAvx512<8>(x, w, acc, k0, k1, N);
  k = AxpyPassAvx512<4>(x, w, acc, k, k1, N);
  AxpyRowsRef(x, w, acc, k, k1, N);
}

template <int R, typename W>
__attribute__((target("avx2,fma"))) static int64_t AxpyPassAvx2(const float* x, const W* w, float* acc, int64_t k,
                                                                int64_t k1, int64_t N) {
  const int64_t N8 = N & ~int64_t(7);
  for (; k + R <= k1; k += R) {
    const W* r = w + k * N;
    __m256 xs[R];
#pragma GCC unroll 8
    for (int j = 0; j < R; j++) xs[j] = _mm256_set1_ps(x[k + j]);
    for (int64_t n = 0; n < N8; n += 8) {
      __m256 a = _mm256_loadu_ps(acc + n);
#pragma GCC unroll 8
      for (int j = 0; j < R; j++) a = _mm256_fmadd_ps(xs[j], Load8(r + j * N + n), a);
      _mm256_storeu_ps(acc + n, a);
    }
    for (int64_t n = N8; n < N; n++)
      for (int j = 0; j < R; j++) acc[n] += x[k + j] * Elem(r + j * N, n);
  }
  return k;
}

template <typename W>
__attribute__((target("avx2,fma"))) static void AxpyRowsAvx2(const float* x, const W* w, float* acc, int64_t k0,
                                                             int64_t k1, int64_t N) {
  int64_t k = AxpyPassAvx2<8>(x, w, acc, k0, k1, N);
  k = AxpyPassAvx2<4>(x, w, acc, k, k1, N);
  AxpyRowsRef(x, w, acc, k, k1, N);
}

__attribute__((target("avx2,fma"))) static float Hsum256(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// out[j] = the sum of accumulator j's 16 lanes plus row j's tail columns [k0, K) one by one. Sixteen accumulators are
// summed together by a transposing tree (unpack, then 128-bit lane shuffles), 45 vector operations for 16 rows: summed
// one lane at a time, the reduction cost more than the dot products themselves at attention's 64 columns.
template <int R, typename W>
__attribute__((target("avx512f"))) static void StoreRowSums(const __m512* a, const W* r, const float* h, int64_t k0,
                                                            int64_t K, float* out) {
  float s[R];
  if constexpr (R == 16) {
    __m512 b[8], c[4], d[2];
    for (int j = 0; j < 8; j++)
      b[j] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * j], a[2 * j + 1]), _mm512_unpackhi_ps(a[2 * j], a[2 * j + 1]));
    for (int j = 0; j < 4; j++) {
      const __m512d lo = _mm512_castps_pd(b[2 * j]), hi = _mm512_castps_pd(b[2 * j + 1]);
      c[j] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(lo, hi)), _mm512_castpd_ps(_mm512_unpackhi_pd(lo, hi)));
    }
    for (int j = 0; j < 2; j++)
      d[j] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * j], c[2 * j + 1], 0x88),
                           _mm512_shuffle_f32x4(c[2 * j], c[2 * j + 1], 0xDD));
    _mm512_storeu_ps(s, _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], 0x88), _mm512_shuffle_f32x4(d[0], d[1], 0xDD)));
  } else {
    for (int j = 0; j < R; j++) s[j] = _mm512_reduce_add_ps(a[j]);
  }
  for (int j = 0; j < R; j++) {
    for (int64_t k = k0; k < K; k++) s[j] += Elem(r + j * K, k) * h[k];
    out[j] = s[j];
  }
}

// R rows per pass (R weight streams against one load of h).
template <int R, typename W>
__attribute__((target("avx512f"))) static int64_t DotPassAvx512(const float* h, const W* w, float* out, int64_t v,
                                                                int64_t v1, int64_t K) {
  const int64_t K16 = K & ~int64_t(15);
  for (; v + R <= v1; v += R) {
    const W* r = w + v * K;
    __m512 a[R];
#pragma GCC unroll 16
    for (int j = 0; j < R; j++) a[j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K16; k += 16) {
      const __m512 hk = _mm512_loadu_ps(h + k);
#pragma GCC unroll 16
      for (int j = 0; j < R; j++) a[j] = _mm512_fmadd_ps(Load16(r + j * K + k), hk, a[j]);
    }
    StoreRowSums<R>(a, r, h, K16, K, out + v);
  }
  return v;
}

// Sixteen rows and then four give every row the same sums as four at a time.
template <typename W>
__attribute__((target("avx512f"))) static void DotRowsAvx512(const float* h, const W* w, float* out, int64_t v0,
                                                             int64_t v1, int64_t K) {
  int64_t v = DotPassAvx512<16>(h, w, out, v0, v1, K);
  v = DotPassAvx512<4>(h, w, out, v, v1, K);
  DotRowsRef(h, w, out, v, v1, K);
}

template <typename W>
__attribute__((target("avx2,fma"))) static void DotRowsAvx2(const float* h, const W* w, float* out, int64_t v0,
                                                            int64_t v1, int64_t K) {
  const int64_t K8 = K & ~int64_t(7);
  int64_t v = v0;
  for (; v + 4 <= v1; v += 4) {
    const W *w0 = w + v * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K8; k += 8) {
      const __m256 hk = _mm256_loadu_ps(h + k);
      a0 = _mm256_fmadd_ps(Load8(w0 + k), hk, a0);
      a1 = _mm256_fmadd_ps(Load8(w1 + k), hk, a1);
      a2 = _mm256_fmadd_ps(Load8(w2 + k), hk, a2);
      a3 = _mm256_fmadd_ps(Load8(w3 + k), hk, a3);
    }
    float s[4] = {Hsum256(a0), Hsum256(a1), Hsum256(a2), Hsum256(a3)};
    for (int64_t k = K8; k < K; k++) {
      s[0] += Elem(w0, k) * h[k];
      s[1] += Elem(w1, k) * h[k];
      s[2] += Elem(w2, k) * h[k];
      s[3] += Elem(w3, k) * h[k];
    }
    for (int j = 0; j < 4; j++) out[v + j] = s[j];
  }
  DotRowsRef(h, w, out, v, v1, K);
}
#endif

// bfloat16 rows, 32 columns at a time: one 64-byte load holds 32 bf16 values; a 16-bit shift widens the even
// ones and a mask the odd ones, exactly, with no cross-lane conversion. So each 32-column block of the vector they
// multiply is permuted to match (16 even columns, then 16 odd ones); columns past the last whole block stay.
static inline int64_t Permuted(int64_t n, int64_t N32) {
  if (n >= N32) return n;
  const int64_t base = n & ~int64_t(31), j = n & 31;
  return base + ((j & 1) ? 16 + (j >> 1) : (j >> 1));
}

#if defined(__x86_64__)
// out[v] = dot(W[v, :], h) over a [V, K] matrix read once a token (the LM head, and a Conv1D weight kept as the
// transposed view of its [out, in] rows): one row at a time, so that the rows are one sequential stream that the
// hardware prefetcher follows (sixteen rows' interleaved streams read the LM head at about 22 GB/s here, one row at a
// time at about 35). Each row's chunks alternate between two accumulators (one chain of dependent fused multiply-adds
// per row would wait on their latency); a last odd chunk goes to the first, the columns past the chunks are added one
// by one after the lanes are summed. bfloat16 chunks are 32 columns against hp, h permuted as above; float32 chunks
// are 16 columns against h as it is.
__attribute__((target("avx512f"))) static inline void FmaChunk(const uint16_t* w, const float* hp, __m512& a) {
  const __m512i x = _mm512_loadu_si512(w);
  a = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(x, 16)), _mm512_loadu_ps(hp), a);
  a = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)))),
                      _mm512_loadu_ps(hp + 16), a);
}
__attribute__((target("avx512f"))) static inline void FmaChunk(const float* w, const float* h, __m512& a) {
  a = _mm512_fmadd_ps(_mm512_loadu_ps(w), _mm512_loadu_ps(h), a);
}

template <typename W>
__attribute__((target("avx512f"))) static void SeqRowsAvx512(const float* hp, const W* w, float* out, int64_t v0,
                                                             int64_t v1, int64_t K) {
  constexpr int64_t C = std::is_same_v<W, float> ? 16 : 32;
  const int64_t KC = K - K % C;
  for (int64_t v = v0; v < v1; v++) {
    const W* r = w + v * K;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 2 * C <= KC; k += 2 * C) {
      FmaChunk(r + k, hp + k, a0);
      FmaChunk(r + k + C, hp + k + C, a1);
    }
    if (k < KC) FmaChunk(r + k, hp + k, a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (k = KC; k < K; k++) s += Elem(r, k) * hp[k];
    out[v] = s;
  }
}
#endif

template <typename W>
using AxpyFn = void (*)(const float*, const W*, float*, int64_t, int64_t, int64_t);
template <typename W>
using DotFn = void (*)(const float*, const W*, float*, int64_t, int64_t, int64_t);

int SimdLevel() {
#if defined(__x86_64__)
  static const int level = __builtin_cpu_supports("avx512f")                                   ? 2
                           : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1
                                                                                               : 0;
  return level;
#else
  return 0;
#endif
}

template <typename W>
static AxpyFn<W> Axpy() {
#if defined(__x86_64__)
  if (SimdLevel() == 2) return AxpyRowsAvx512<W>;
  if (SimdLevel() == 1) return AxpyRowsAvx2<W>;
#endif
  return AxpyRowsRef<W>;
}

template <typename W>
static DotFn<W> Dot() {
#if defined(__x86_64__)
  if (SimdLevel() == 2) return DotRowsAvx512<W>;
  if (SimdLevel() == 1) return DotRowsAvx2<W>;
#endif
  return DotRowsRef<W>;
}

// out[0:V] = W h for W [V, K] contiguous, rows split between the threads.
static void RowDots(const float* hp, const at::Tensor& w, float* o, const NextStep* then = nullptr) {
  const int64_t V = w.size(0), K = w.size(1);
  if (w.scalar_type() == at::kFloat) {
    const float* wp = w.data_ptr<float>();
#if defined(__x86_64__)
    DotFn<float> dot = SimdLevel() == 2 ? SeqRowsAvx512<float> : Dot<float>();
#else
    DotFn<float> dot = Dot<float>();
#endif
    SplitRows(
        V, K * 4, [&](int64_t v0, int64_t v1) { dot(hp, wp, o, v0, v1, K); }, nullptr, then);
    return;
  }
  const uint16_t* wp = reinterpret_cast<const uint16_t*>(w.data_ptr());
#if defined(__x86_64__)
  if (SimdLevel() == 2) {
    const int64_t K32 = K & ~int64_t(31);
    std::vector<float> perm(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; k++) perm[Permuted(k, K32)] = hp[k];
    SplitRows(
        V, K * 2, [&](int64_t v0, int64_t v1) { SeqRowsAvx512<uint16_t>(perm.data(), wp, o, v0, v1, K); }, nullptr,
        then);
    return;
  }
#endif
  DotFn<uint16_t> dot = Dot<uint16_t>();
  SplitRows(
      V, K * 2, [&](int64_t v0, int64_t v1) { dot(hp, wp, o, v0, v1, K); }, nullptr, then);
}

// Applies when no gradient is wanted, the weights are float32 or bfloat16 CPU memory, and x is one row.
static bool Applies(const at::Tensor& x, const at::Tensor& w) {
  if (!MatVecEnabled()) return false;
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad())) return false;
  const at::ScalarType t = w.scalar_type();
  return x.device().is_cpu() && w.device().is_cpu() && (t == at::kFloat || t == at::kBFloat16) &&
         (x.scalar_type() == t || x.scalar_type() == at::kFloat) && w.dim() == 2 && x.dim() >= 1 &&
         x.numel() == x.size(-1);
}

template <typename W>
static void KN(const float* x, const W* w, float* part, int64_t K, int64_t N, int64_t chunks, AxpyFn<W> axpy) {
  const int64_t per = (K + chunks - 1) / chunks;
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) axpy(x, w, part + c * N, c * per, std::min(K, (c + 1) * per), N);
  });
}

bool MatVecKNWeights(const at::Tensor& w, const at::Tensor& b) {
  const at::ScalarType t = w.scalar_type();
  if (!w.device().is_cpu() || (t != at::kFloat && t != at::kBFloat16) || w.dim() != 2 ||
      !(w.is_contiguous() || w.t().is_contiguous()))
    return false;
  return !b.defined() || (b.scalar_type() == t && b.device().is_cpu() && b.numel() == w.size(1) && b.is_contiguous());
}

void AddBias(const at::Tensor& b, float* out, int64_t N) {
  if (!b.defined()) return;
  // the pointer once: data_ptr checks storage and dtype on every call, which per element cost more than the adds
  if (b.scalar_type() == at::kFloat) {
    const float* p = b.data_ptr<float>();
    for (int64_t n = 0; n < N; n++) out[n] += p[n];
  } else {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(b.data_ptr());
    for (int64_t n = 0; n < N; n++) out[n] += Elem(p, n);
  }
}

void MatVecKNInto(const float* x, const at::Tensor& w, const at::Tensor& b, float* out, const NextStep* then) {
  g_calls++;
  const int64_t K = w.size(0), N = w.size(1);
  if (!w.is_contiguous()) {  // the transposed view of [N, K] rows (see GPT2::LayOutConv1D)
    const NextStep bias = StepBefore([&] { AddBias(b, out, N); }, then);
    RowDots(x, w.t(), out, &bias);
    return;
  }
  // Each chunk of rows streams its own contiguous slice of W into a private partial sum; the partial sums
  // are added at the end (N floats each, so the reduction is cheap).
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), K / 64));
  std::vector<float> part(static_cast<size_t>(chunks * N), 0.0f);
  if (w.scalar_type() == at::kFloat)
    KN(x, w.data_ptr<float>(), part.data(), K, N, chunks, Axpy<float>());
  else
    KN(x, reinterpret_cast<const uint16_t*>(w.data_ptr()), part.data(), K, N, chunks, Axpy<uint16_t>());
  std::fill(out, out + N, 0.0f);
  AddBias(b, out, N);  // 0 + b is b exactly: the bias, then the partial sums in order
  for (int64_t c = 0; c < chunks; c++) {
    const float* p = part.data() + c * N;
    for (int64_t n = 0; n < N; n++) out[n] += p[n];
  }
  if (then) then->serial();
}

at::Tensor MatVecKN(const at::Tensor& x0, const at::Tensor& w, const at::Tensor& b) {
  if (!Applies(x0, w) || w.size(0) != x0.size(-1) || !MatVecKNWeights(w, b)) return at::Tensor();
  const at::Tensor x = x0.to(at::kFloat).contiguous();
  const int64_t N = w.size(1);
  at::Tensor out = at::empty({N}, w.options().dtype(at::kFloat));
  MatVecKNInto(x.data_ptr<float>(), w, b, out.data_ptr<float>());
  auto sizes = x0.sizes().vec();
  sizes.back() = N;
  return out.to(x0.scalar_type()).view(sizes);
}

at::Tensor MatVecNK(const at::Tensor& h0, const at::Tensor& w) {
  if (!Applies(h0, w) || !w.is_contiguous() || w.size(1) != h0.size(-1)) return at::Tensor();
  g_calls++;
  const at::Tensor h = h0.to(at::kFloat).contiguous();
  const int64_t V = w.size(0);
  at::Tensor out = at::empty({V}, w.options().dtype(at::kFloat));
  RowDots(h.data_ptr<float>(), w, out.data_ptr<float>());
  auto sizes = h0.sizes().vec();
  sizes.back() = V;
  return out.to(h0.scalar_type()).view(sizes);
}

// One head: softmax(q.K * scale).V over S positions, p the scores' scratch.
template <typename C>
static void AttendHead(const float* qh, const C* kh, const C* vh, int64_t S, int64_t D, double scale,
                       const uint8_t* allowed, float* yh, std::vector<float>& p, DotFn<C> dot, AxpyFn<C> axpy) {
  p.resize(static_cast<size_t>(S));
  dot(qh, kh, p.data(), 0, S, D);
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < S; s++) {
    p[s] = allowed && !allowed[s] ? std::numeric_limits<float>::lowest() : static_cast<float>(p[s] * scale);
    mx = std::max(mx, p[s]);
  }
  float sum = 0;
  for (int64_t s = 0; s < S; s++) sum += p[s] = std::exp(p[s] - mx);
  for (int64_t s = 0; s < S; s++) p[s] /= sum;
  std::fill(yh, yh + D, 0.0f);
  axpy(p.data(), vh, yh, 0, S, D);
}

template <typename C>
static void Attend(const float* q, const C* k, const C* v, int64_t H, int64_t S, int64_t D, int64_t head_stride,
                   double scale, const uint8_t* allowed, float* y, int64_t groups) {
  AxpyFn<C> axpy = Axpy<C>();
  DotFn<C> dot = Dot<C>();
  at::parallel_for(0, H, 4, [&](int64_t h0, int64_t h1) {
    std::vector<float> p;
    for (int64_t h = h0; h < h1; h++) {
      const int64_t at = h / groups * head_stride;
      AttendHead(q + h * D, k + at, v + at, S, D, scale, allowed, y + h * D, p, dot, axpy);
    }
  });
}

// Every (row, head) pair of M rows in one parallel region: row m's query at q + m * H * D against its slot's first
// lengths[m] positions.
template <typename C>
static void AttendRows(const float* q, const C* k, const C* v, int64_t H, int64_t D, int64_t capacity,
                       const std::vector<int64_t>& slots, const std::vector<int64_t>& lengths, double scale, float* y,
                       int64_t groups) {
  AxpyFn<C> axpy = Axpy<C>();
  DotFn<C> dot = Dot<C>();
  const int64_t M = static_cast<int64_t>(slots.size());
  at::parallel_for(0, M * H, 4, [&](int64_t i0, int64_t i1) {
    std::vector<float> p;
    for (int64_t i = i0; i < i1; i++) {
      const int64_t m = i / H, h = i % H, at = (slots[m] * (H / groups) + h / groups) * capacity * D;
      AttendHead(q + i * D, k + at, v + at, lengths[m], D, scale, nullptr, y + i * D, p, dot, axpy);
    }
  });
}

void AttendInto(const float* q, const at::Tensor& k, const at::Tensor& v, int64_t S, double scale,
                const uint8_t* allowed, float* y, int64_t groups) {
  g_calls++;
  const int64_t H = k.size(1) * groups, D = k.size(3), stride = k.size(2) * D;
  if (k.scalar_type() == at::kFloat)
    Attend(q, k.data_ptr<float>(), v.data_ptr<float>(), H, S, D, stride, scale, allowed, y, groups);
  else
    Attend(q, reinterpret_cast<const uint16_t*>(k.data_ptr()), reinterpret_cast<const uint16_t*>(v.data_ptr()), H, S, D,
           stride, scale, allowed, y, groups);
}

void AttendRowsInto(const float* q, const at::Tensor& k, const at::Tensor& v, const std::vector<int64_t>& slots,
                    const std::vector<int64_t>& lengths, double scale, float* y, int64_t groups) {
  g_calls++;
  const int64_t H = k.size(1) * groups, cap = k.size(2), D = k.size(3);
  if (k.scalar_type() == at::kFloat)
    AttendRows(q, k.data_ptr<float>(), v.data_ptr<float>(), H, D, cap, slots, lengths, scale, y, groups);
  else
    AttendRows(q, reinterpret_cast<const uint16_t*>(k.data_ptr()), reinterpret_cast<const uint16_t*>(v.data_ptr()), H,
               D, cap, slots, lengths, scale, y, groups);
}

void SetMatVecEnabled(bool on) { g_enabled.store(on); }
int64_t MatVecCalls() { return g_calls.load(); }

}  // namespace torchlm
