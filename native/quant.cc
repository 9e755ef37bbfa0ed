#include "quant.h"
#include "gpt2.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace torchlm {

namespace {

// One block of 32 weights (in double, so that w / s lands on the side of a rounding tie that exact arithmetic gives:
// weights on a coarse grid hit ties, and an independent implementation of the scheme in float64 agrees to the bit).
// q8: round-to-nearest-even of w / (max |w| / 127), the full int8 range used symmetrically (-127..127).
inline float QuantizeBlockQ8(const float* w, int8_t* q) {
  double m = 0;
  for (int64_t i = 0; i < kQBlock; i++) m = std::max(m, std::fabs(static_cast<double>(w[i])));
  const double s = m / 127.0, div = std::max(s, 1e-30);
  for (int64_t i = 0; i < kQBlock; i++) q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(w[i] / div), -127.0, 127.0));
  return static_cast<float>(s);
}

// q4, llama.cpp's q4_0: the block's value of largest magnitude (the first, on a tie), with its sign, maps to -8, so the
// grid -8..7 covers it exactly; u = floor(w / d + 8.5) clamped to 0..15. u goes to u[0..31] in input order.
inline float QuantizeBlockQ4(const float* w, uint8_t* u) {
  double mx = 0, amax = 0;
  for (int64_t i = 0; i < kQBlock; i++)
    if (std::fabs(static_cast<double>(w[i])) > amax) amax = std::fabs(static_cast<double>(w[i])), mx = w[i];
  const double d = mx / -8.0, inv = d != 0 ? 1.0 / d : 0.0;
  for (int64_t i = 0; i < kQBlock; i++) u[i] = static_cast<uint8_t>(std::clamp(std::floor(w[i] * inv + 8.5), 0.0, 15.0));
  return static_cast<float>(d);
}

}  // namespace

QWeight QuantizeWeight(const at::Tensor& w_nk, int bits) {
  const at::Tensor w = w_nk.detach().to(at::kFloat).contiguous();
  const int64_t N = w.size(0), K = w.size(1), nb = K / kQBlock, full = nb / 2;
  if (K % kQBlock != 0) throw UserError("q" + std::to_string(bits) + " needs input sizes that are multiples of 32, but a weight has " + std::to_string(K));
  at::Tensor q = at::empty({N, K * bits / 8}, w.options().dtype(bits == 8 ? at::kChar : at::kByte));
  at::Tensor s = at::empty({N, nb}, w.options());
  const float* wp = w.data_ptr<float>();
  uint8_t* qp = static_cast<uint8_t*>(q.data_ptr());
  float* sp = s.data_ptr<float>();
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    uint8_t u[2 * kQBlock];
    for (int64_t n = n0; n < n1; n++) {
      const float* row = wp + n * K;
      if (bits == 8) {
        for (int64_t b = 0; b < nb; b++) sp[n * nb + b] = QuantizeBlockQ8(row + b * kQBlock, reinterpret_cast<int8_t*>(qp) + n * K + b * kQBlock);
        continue;
      }
      uint8_t* out = qp + n * (K / 2);
      for (int64_t c = 0; c < full; c++) {  // a pair of blocks: the first in the low nibbles of 32 bytes, the second in the high
        sp[n * nb + 2 * c] = QuantizeBlockQ4(row + c * 64, u);
        sp[n * nb + 2 * c + 1] = QuantizeBlockQ4(row + c * 64 + kQBlock, u + kQBlock);
        for (int64_t i = 0; i < 32; i++) out[c * 32 + i] = static_cast<uint8_t>(u[i] | (u[32 + i] << 4));
      }
      if (nb % 2) {  // a lone last block: 16 bytes, input i low and 16 + i high
        sp[n * nb + nb - 1] = QuantizeBlockQ4(row + full * 64, u);
        for (int64_t i = 0; i < 16; i++) out[full * 32 + i] = static_cast<uint8_t>(u[i] | (u[16 + i] << 4));
      }
    }
  });
  return {q, s, bits};
}

at::Tensor DequantizeWeight(const QWeight& w) {
  const int64_t N = w.rows(), K = w.cols(), nb = K / kQBlock, full = nb / 2;
  at::Tensor v;
  if (w.bits == 8) {
    v = w.q.to(at::kFloat);
  } else {
    std::vector<at::Tensor> parts;
    const at::Tensor lo = at::bitwise_and(w.q, 15), hi = at::bitwise_right_shift(w.q, 4);
    if (full > 0) parts.push_back(at::stack({lo.narrow(1, 0, full * 32).view({N, full, 32}), hi.narrow(1, 0, full * 32).view({N, full, 32})}, 2).reshape({N, full * 64}));
    if (nb % 2) parts.push_back(at::cat({lo.narrow(1, full * 32, 16), hi.narrow(1, full * 32, 16)}, 1));
    v = at::cat(parts, 1).to(at::kFloat) - 8.0f;
  }
  return (v.view({N, nb, kQBlock}) * w.s.unsqueeze(-1)).view({N, K});
}

namespace {

// x quantized per block of 32 as the weights are: its int8 values; for 8-bit weights |x_q| as bytes (the unsigned
// operand of VNNI's dot product) and its signs (applied to the weights instead); for 4-bit weights, whose nibbles are
// the unsigned operand, -8 times each 4-value group's sum (the offset of the nibbles, added once); each block's scale;
// padded with zeros to a multiple of 64.
struct QuantizedX {
  std::vector<uint8_t> mag;
  std::vector<int8_t> val;
  std::vector<uint64_t> neg;  // a bit per byte of each 64-byte chunk
  std::vector<int32_t> offset;  // per 4 values
  std::vector<float> scale;   // per block of 32
  int64_t chunks = 0;
};

// x * (127 / m) rounded half to even, as the AVX-512 path computes it too (same float products, same rounding).
void QuantizeXBlock(const float* x, int8_t* val, float* scale) {
  float m = 0;
  for (int64_t i = 0; i < kQBlock; i++) m = std::max(m, std::fabs(x[i]));
  const float inv = m > 0 ? 127.0f / m : 0.0f;
  *scale = m / 127.0f;
  for (int64_t i = 0; i < kQBlock; i++) val[i] = static_cast<int8_t>(std::nearbyint(x[i] * inv));
}

#if defined(__x86_64__)
// The same with AVX-512: a token's activations are quantized on one thread before each linear, so the scalar loop
// (libm's nearbyint a value) showed as 4% of batch-1 decoding's samples.
__attribute__((target("avx512f,avx512bw,avx512dq"))) void QuantizeXBlockAvx512(const float* x, int8_t* val, float* scale) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
  const __m512 inv = _mm512_set1_ps(m > 0 ? 127.0f / m : 0.0f);
  *scale = m / 127.0f;
  const __m512i qa = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(a, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m512i qb = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(b, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(val), _mm512_cvtsepi32_epi8(qa));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(val + 16), _mm512_cvtsepi32_epi8(qb));
}
#endif

int KernelLevel();

// What the kernels for `bits`-bit weights read: the values and scales, and |x_q| with its signs (8) or the offsets (4).
QuantizedX QuantizeX(const float* x, int64_t K, int bits) {
  QuantizedX r;
  const int64_t nb = K / kQBlock;
  r.chunks = (nb + 1) / 2;
  r.val.assign(r.chunks * 64, 0);
  r.scale.assign(r.chunks * 2, 0.0f);
#if defined(__x86_64__)
  const bool wide = KernelLevel() == 2;
#else
  const bool wide = false;
#endif
  for (int64_t b = 0; b < nb; b++) {
#if defined(__x86_64__)
    if (wide) QuantizeXBlockAvx512(x + b * kQBlock, r.val.data() + b * kQBlock, &r.scale[b]);
    else
#endif
      QuantizeXBlock(x + b * kQBlock, r.val.data() + b * kQBlock, &r.scale[b]);
  }
  if (bits == 4) {
    r.offset.assign(r.chunks * 16, 0);
    for (int64_t k = 0; k < nb * kQBlock; k++) r.offset[k / 4] -= 8 * r.val[k];
    return r;
  }
  r.mag.assign(r.chunks * 64, 0);
  r.neg.assign(r.chunks, 0);
  for (int64_t k = 0; k < nb * kQBlock; k++) {
    const int v = r.val[k];
    r.mag[k] = static_cast<uint8_t>(v < 0 ? -v : v);
    if (v < 0) r.neg[k / 64] |= uint64_t(1) << (k % 64);
  }
  return r;
}

// Block b of x against one row of weights: the int32 sum of products of the integer values.
template <int Bits>
inline int32_t BlockDot(const QuantizedX& x, const uint8_t* row, int64_t b, int64_t nb) {
  int32_t d = 0;
  const int8_t* xv = x.val.data() + b * kQBlock;
  if constexpr (Bits == 8) {
    const int8_t* wv = reinterpret_cast<const int8_t*>(row) + b * kQBlock;
#pragma GCC unroll 32
    for (int64_t i = 0; i < kQBlock; i++) d += static_cast<int32_t>(xv[i]) * wv[i];
  } else if (b < nb / 2 * 2) {  // in a pair: block 2c in the low nibbles of the pair's 32 bytes, 2c + 1 in the high
    const uint8_t* p = row + b / 2 * 32;
    const int shift = static_cast<int>(b % 2) * 4;
#pragma GCC unroll 32
    for (int64_t i = 0; i < kQBlock; i++) d += static_cast<int32_t>(xv[i]) * (((p[i] >> shift) & 15) - 8);
  } else {  // a lone last block
    const uint8_t* p = row + b / 2 * 32;
    for (int64_t i = 0; i < 16; i++) d += static_cast<int32_t>(xv[i]) * ((p[i] & 15) - 8) + static_cast<int32_t>(xv[16 + i]) * ((p[i] >> 4) - 8);
  }
  return d;
}

// Rows [n0, n1) of out = W x: per block, the int32 dot product of the integer values times both scales.
template <int Bits>
__attribute__((always_inline)) inline void RowsPortable(const QuantizedX& x, const uint8_t* q, const float* s, int64_t K, int64_t n0, int64_t n1, float* out) {
  const int64_t nb = K / kQBlock, stride = K * Bits / 8;
  for (int64_t n = n0; n < n1; n++) {
    float acc = 0;
    for (int64_t b = 0; b < nb; b++) acc += static_cast<float>(BlockDot<Bits>(x, q + n * stride, b, nb)) * (s[n * nb + b] * x.scale[b]);
    out[n] = acc;
  }
}

template <int Bits>
void RowsScalar(const QuantizedX& x, const uint8_t* q, const float* s, int64_t K, int64_t n0, int64_t n1, float* out) {
  RowsPortable<Bits>(x, q, s, K, n0, n1, out);
}

#if defined(__x86_64__)
// The same loop compiled for AVX2 (GCC vectorizes the integer products): the fallback for CPUs without AVX-512 VNNI.
template <int Bits>
__attribute__((target("avx2,fma"))) void RowsAvx2(const QuantizedX& x, const uint8_t* q, const float* s, int64_t K, int64_t n0, int64_t n1, float* out) {
  RowsPortable<Bits>(x, q, s, K, n0, n1, out);
}

// Pair of blocks c of one weight row against M rows of x, into acc.
template <int Bits, int M>
__attribute__((target("avx512f,avx512bw,avx512vnni,avx512dq"), always_inline)) inline void VnniPair(const QuantizedX* x, const uint8_t* qr, const float* sr,
                                                                                                     const float* xs, int64_t chunks, int64_t c, __m512* acc) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512 sc = _mm512_insertf32x8(_mm512_set1_ps(sr[2 * c]), _mm256_set1_ps(sr[2 * c + 1]), 1);
  if constexpr (Bits == 8) {
    const __m512i wv = _mm512_loadu_si512(qr + c * 64);
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) {
      const __m512i w = _mm512_mask_sub_epi8(wv, x[m].neg[c], zero, wv);
      const __m512 d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, _mm512_loadu_si512(x[m].mag.data() + c * 64), w));
      acc[m] = _mm512_fmadd_ps(d, _mm512_mul_ps(sc, _mm512_loadu_ps(xs + (m * chunks + c) * 16)), acc[m]);
    }
  } else {
    const __m256i low4 = _mm256_set1_epi8(15);
    const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qr + c * 32));
    const __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(packed, low4)), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4), 1);
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) {
      const __m512i start = _mm512_loadu_si512(x[m].offset.data() + c * 16);
      const __m512 d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start, wv, _mm512_loadu_si512(x[m].val.data() + c * 64)));
      acc[m] = _mm512_fmadd_ps(d, _mm512_mul_ps(sc, _mm512_loadu_ps(xs + (m * chunks + c) * 16)), acc[m]);
    }
  }
}

// AVX-512 VNNI, 64 weights (two blocks) a step: vpdpbusd multiplies unsigned by signed bytes. 8-bit weights go in
// signed, x as |x_q| with its signs moved onto the weights; 4-bit weights go in as their unsigned nibbles against the
// signed x_q, the accumulator starting at x's offset term. The 16 int32 lanes hold 4-product sums, lanes 0-7 of the
// first block and 8-15 of the second, scaled by a vector of the two blocks' scales. M rows of x against each weight
// row, the weights read (and unpacked) once for all of them (batched decoding, beams, short prompts):
// out[m * N + n] for n in [n0, n1). One weight row at a time: the rows are one sequential stream, which the hardware
// prefetcher follows (interleaving several rows' streams measured 20% slower).
template <int Bits, int M>
__attribute__((target("avx512f,avx512bw,avx512vnni,avx512dq"))) void RowsVnni(const QuantizedX* x, const uint8_t* q, const float* s, int64_t K,
                                                                                int64_t N, int64_t n0, int64_t n1, float* out) {
  const int64_t nb = K / kQBlock, full = nb / 2, chunks = x[0].chunks, stride = K * Bits / 8;
  std::vector<float> xs(static_cast<size_t>(M * chunks * 16));
  for (int m = 0; m < M; m++)
    for (int64_t c = 0; c < chunks; c++)
      for (int j = 0; j < 16; j++) xs[(m * chunks + c) * 16 + j] = x[m].scale[2 * c + j / 8];
  for (int64_t n = n0; n < n1; n++) {
    const uint8_t* qr = q + n * stride;
    const float* sr = s + n * nb;
    __m512 acc[M];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) acc[m] = _mm512_setzero_ps();
    for (int64_t c = 0; c < full; c++) VnniPair<Bits, M>(x, qr, sr, xs.data(), chunks, c, acc);
    for (int m = 0; m < M; m++) {
      float r = _mm512_reduce_add_ps(acc[m]);
      if (nb % 2) r += static_cast<float>(BlockDot<Bits>(x[m], qr, nb - 1, nb)) * (sr[nb - 1] * x[m].scale[nb - 1]);  // a last lone block
      out[m * N + n] = r;
    }
  }
}
#endif

int KernelLevel() {
  static const int level = [] {
    int best = 0;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("avx512dq"))
      best = 2;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      best = 1;
#endif
    const char* want = std::getenv("TORCHLM_Q8_KERNEL");
    if (want && std::strcmp(want, "scalar") == 0) best = 0;
    if (want && std::strcmp(want, "avx2") == 0) best = std::min(best, 1);
    return best;
  }();
  return level;
}

// out[m * N + n] = W x_m for M quantized rows; on VNNI each weight row is read once for up to 8 of them.
template <int Bits>
void RowsOf(const QuantizedX* xq, int64_t M, const QWeight& w, float* out) {
  const int64_t N = w.rows(), K = w.cols();
  const uint8_t* q = static_cast<const uint8_t*>(w.q.data_ptr());
  const float* s = w.s.data_ptr<float>();
  const int level = KernelLevel();
  at::parallel_for(0, N, 128, [&](int64_t n0, int64_t n1) {
#if defined(__x86_64__)
    if (level == 2) {
      int64_t m = 0;
      for (; m + 8 <= M; m += 8) RowsVnni<Bits, 8>(xq + m, q, s, K, N, n0, n1, out + m * N);
      for (; m + 4 <= M; m += 4) RowsVnni<Bits, 4>(xq + m, q, s, K, N, n0, n1, out + m * N);
      for (; m + 2 <= M; m += 2) RowsVnni<Bits, 2>(xq + m, q, s, K, N, n0, n1, out + m * N);
      for (; m < M; m++) RowsVnni<Bits, 1>(xq + m, q, s, K, N, n0, n1, out + m * N);
      return;
    }
    if (level == 1) {
      for (int64_t m = 0; m < M; m++) RowsAvx2<Bits>(xq[m], q, s, K, n0, n1, out + m * N);
      return;
    }
#endif
    for (int64_t m = 0; m < M; m++) RowsScalar<Bits>(xq[m], q, s, K, n0, n1, out + m * N);
  });
}

void Rows(const QuantizedX* xq, int64_t M, const QWeight& w, float* out) {
  if (w.bits == 4) RowsOf<4>(xq, M, w, out);
  else RowsOf<8>(xq, M, w, out);
}

}  // namespace

const char* Q8Kernel() { return KernelLevel() == 2 ? "avx512-vnni" : KernelLevel() == 1 ? "avx2" : "scalar"; }

void QMatVecInto(const float* x, const QWeight& w, const at::Tensor& b, float* out) {
  const QuantizedX xq = QuantizeX(x, w.cols(), w.bits);
  Rows(&xq, 1, w, out);
  if (b.defined()) {
    const float* bp = b.data_ptr<float>();
    for (int64_t n = 0; n < w.rows(); n++) out[n] += bp[n];
  }
}

at::Tensor QLinear(const at::Tensor& x0, const QWeight& w, const at::Tensor& b) {
  const int64_t N = w.rows(), K = w.cols();
  if (x0.size(-1) != K) throw UserError("q" + std::to_string(w.bits) + " linear: input has " + std::to_string(x0.size(-1)) + " features but the weight takes " + std::to_string(K));
  const at::Tensor x = x0.to(at::kFloat).reshape({-1, K}).contiguous();
  const int64_t M = x.size(0);
  at::Tensor y;
  if (M <= 16) {  // the integer kernels; past this, widening the weights to float32 once costs less
    std::vector<QuantizedX> xq;
    for (int64_t m = 0; m < M; m++) xq.push_back(QuantizeX(x.data_ptr<float>() + m * K, K, w.bits));
    y = at::empty({M, N}, x.options());
    Rows(xq.data(), M, w, y.data_ptr<float>());
    if (b.defined()) y.add_(b.to(at::kFloat));
  } else {
    y = b.defined() ? at::addmm(b, x, DequantizeWeight(w).t()) : at::mm(x, DequantizeWeight(w).t());
  }
  auto sizes = x0.sizes().vec();
  sizes.back() = N;
  return y.view(sizes).to(x0.scalar_type());
}

int QuantBits(const std::string& kind) {
  if (kind == "q8") return 8;
  if (kind == "q4") return 4;
  throw UserError("unknown quantization " + kind + ": torchlm has q8 and q4");
}

// What params_ holds for a quantized Conv1D weight: q8's int8 values as the [in, out] view they stand for; q4's packed
// bytes as they are (no view has the float weight's shape).
static at::Tensor StoredParameter(const QWeight& w) { return w.bits == 8 ? w.q.t() : w.q; }

void GPT2::Quantize(const std::string& kind) {
  const int bits = QuantBits(kind);
  if (!quantization_.empty()) throw UserError("the model is already " + quantization_);
  if (!lora_.empty()) throw UserError("quantizing a model with LoRA adapters is not supported: merge_and_unload() first");
  if (!wte_.device().is_cpu()) throw UserError(kind + " runs on the CPU; this model is on " + DeviceName(wte_.device()));
  at::NoGradGuard ng;
  for (const auto& [name, t] : params_)
    if (IsConv1DWeight(name) && t.size(0) % kQBlock != 0)  // Conv1D [in, out]
      throw UserError(kind + " needs input sizes that are multiples of 32, but a weight has " + std::to_string(t.size(0)));
  // the LM head stays 8-bit under q4 (llama.cpp too keeps its output matrix at 6 bits or more): on the tutorial's
  // model, 4 bits there took perplexity from +0.01% to +0.34% of float32's, mean KL from 6.9e-4 to 2.1e-3 and greedy
  // agreement from 97.8% to 91.9%
  QWeight head = QuantizeWeight(wte_, 8);
  // past the checks nothing can fail: each float32 weight is replaced by its storage as soon as it is quantized, so the
  // peak holds one weight twice rather than the model (the layers' handles go first; Bind() makes them again)
  layers_.clear();
  std::map<std::string, QWeight> made;
  for (auto& [name, t] : params_) {
    if (IsConv1DWeight(name)) {
      auto it = made.emplace(name, QuantizeWeight(t.t(), bits)).first;
      t = StoredParameter(it->second);
    }
    t.requires_grad_(false);
  }
  quant_ = std::move(made);
  lm_head_q_ = std::move(head);
  quantization_ = kind;
  Bind();
}

int64_t GPT2::NumParameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : params_) {
    auto it = quant_.find(name);
    n += it == quant_.end() ? t.numel() : it->second.rows() * it->second.cols();
  }
  return n;
}

std::vector<std::pair<std::string, at::Tensor>> GPT2::SavedTensors() const {
  if (quantization_.empty()) return params_;
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, t] : params_) {
    auto it = quant_.find(name);
    if (it == quant_.end()) {
      out.emplace_back(name, t);
    } else {
      out.emplace_back(name, it->second.q);
      out.emplace_back(name + "_scale", it->second.s);
    }
  }
  out.emplace_back("lm_head.weight", lm_head_q_.q);
  out.emplace_back("lm_head.weight_scale", lm_head_q_.s);
  return out;
}

void GPT2::LoadQuantized(std::vector<std::pair<std::string, at::Tensor>> tensors, const std::string& kind) {
  const int bits = QuantBits(kind);
  const at::ScalarType stored = bits == 8 ? at::kChar : at::kByte;
  // the stored bytes per 32 inputs
  const int64_t block_bytes = kQBlock * bits / 8;
  std::map<std::string, at::Tensor> scales, head;
  std::vector<std::pair<std::string, at::Tensor>> rest;
  for (auto& [name0, t] : tensors) {
    const std::string name = name0.rfind("transformer.", 0) == 0 ? name0.substr(12) : name0;
    if (name == "lm_head.weight" || name == "lm_head.weight_scale") head[name] = t;
    else if (name.size() > 6 && name.compare(name.size() - 6, 6, "_scale") == 0) scales[name.substr(0, name.size() - 6)] = t;
    else rest.emplace_back(name, t);
  }
  if (!head.count("lm_head.weight") || !head.count("lm_head.weight_scale")) throw UserError(kind + " checkpoint is missing lm_head.weight or its scale");
  // Load checks each quantized weight as a stand-in of the float weight's [in, out] shape (one byte, expanded)
  std::map<std::string, QWeight> made;
  for (auto& [name, t] : rest) {
    if (t.scalar_type() != at::kChar && t.scalar_type() != at::kByte) continue;
    if (t.scalar_type() != stored) throw UserError(kind + " checkpoint has " + DtypeName(t.scalar_type()) + " tensor " + name + " but " + kind + " stores " + DtypeName(stored));
    auto it = scales.find(name);
    if (it == scales.end()) throw UserError(kind + " checkpoint has quantized tensor " + name + " but no " + name + "_scale");
    const at::Tensor& s = it->second;
    if (t.dim() != 2 || s.dim() != 2 || s.size(0) != t.size(0) || s.size(1) * block_bytes != t.size(1) || s.scalar_type() != at::kFloat)
      throw UserError(kind + " tensor " + name + "_scale does not fit " + name);
    QWeight w{t.contiguous(), s.contiguous(), bits};
    t = at::zeros({1}, at::kChar).expand({w.cols(), w.rows()});
    made.emplace(name, std::move(w));
  }
  if (made.size() != scales.size()) throw UserError(kind + " checkpoint has scales without quantized weights");
  Load(std::move(rest), /*allow_int8=*/true);
  for (auto& [name, t] : params_) {
    const bool conv = IsConv1DWeight(name);
    auto it = made.find(name);
    if (conv != (it != made.end())) throw UserError(kind + " checkpoint: " + name + (conv ? " is not quantized" : " should not be quantized"));
    if (conv) t = StoredParameter(it->second);
  }
  const at::Tensor hq = head.at("lm_head.weight"), hs = head.at("lm_head.weight_scale");
  if (hq.scalar_type() != at::kChar || hq.sizes() != wte_.sizes() || hs.sizes() != at::IntArrayRef({wte_.size(0), wte_.size(1) / kQBlock}))
    throw UserError(kind + " checkpoint's lm_head.weight does not fit the token embeddings");
  for (auto& [name, t] : params_) t.requires_grad_(false);
  quant_ = std::move(made);
  lm_head_q_ = QWeight{hq.contiguous(), hs.to(at::kFloat).contiguous(), 8};
  quantization_ = kind;
  Bind();
}

}  // namespace torchlm
