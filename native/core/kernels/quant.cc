#include "core/kernels/quant.h"

#include "core/kernels/matvec.h"
#include "core/kernels/row_split.h"
#include "core/runtime/cpu_allocator.h"

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

// Where each of a group's 128 positions takes its input from (see QWeight): position p = 64 v + 4 L + r (v: the first
// or second half, L: the 32-bit lane, r: the byte in it) holds input 32 (L % 4) + 16 v + 4 (L / 4) + r.
struct LaneOrder {
  uint8_t at[kQGroup];
  LaneOrder() {
    for (int p = 0; p < kQGroup; p++) {
      const int v = p / 64, L = (p % 64) / 4, r = p % 4;
      at[p] = static_cast<uint8_t>(32 * (L % 4) + 16 * v + 4 * (L / 4) + r);
    }
  }
};
const LaneOrder kOrder;

// A block's scale as stored: float16, converted from the float32 nearest to the double (as torch's .float().half()).
// Scales past float16's range would turn weights into infinities, so they are refused, never stored.
c10::Half HalfScale(double d, int bits) {
  const c10::Half h(static_cast<float>(d));
  if (!std::isfinite(static_cast<float>(h)))
    throw UserError("q" + std::to_string(bits) + " stores each block's scale as float16, and a weight of magnitude " +
                    std::to_string(std::fabs(d) * (bits == 8   ? 127
                                                   : bits == 6 ? 32
                                                               : 8)) +
                    " is past its range");
  return h;
}

// One block of 32 weights, in double, so that w / s lands on the side of a rounding tie that exact arithmetic gives
// (weights on a coarse grid hit ties, and an independent implementation of the scheme in float64 agrees to the bit).
// The values are computed against the stored float16 scale, so that value times scale is the nearest it can be.
// q8: round-to-nearest-even of w / (max |w| / 127), the full int8 range used symmetrically (-127..127).
inline c10::Half QuantizeBlockQ8(const float* w, int8_t* q) {
  double m = 0;
  for (int64_t i = 0; i < kQBlock; i++) m = std::max(m, std::fabs(static_cast<double>(w[i])));
  const c10::Half s = HalfScale(m / 127.0, 8);
  const double div = std::max(static_cast<double>(static_cast<float>(s)), 1e-30);
  for (int64_t i = 0; i < kQBlock; i++)
    q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(w[i] / div), -127.0, 127.0));
  return s;
}

// q4, llama.cpp's q4_0: the block's value of largest magnitude (the first, on a tie), with its sign, maps to -8, so the
// grid -8..7 covers it; v = floor(w / d + 8.5) clamped to 0..15, less 8. q6 (q4's LM head) is the same scheme on the
// grid -32..31.
inline c10::Half QuantizeBlockOffset(const float* w, int8_t* v, int bits) {
  const double half = bits == 6 ? 32 : 8;
  double mx = 0, amax = 0;
  for (int64_t i = 0; i < kQBlock; i++)
    if (std::fabs(static_cast<double>(w[i])) > amax) amax = std::fabs(static_cast<double>(w[i])), mx = w[i];
  const c10::Half d = HalfScale(mx / -half, bits);
  const double dd = static_cast<float>(d), inv = dd != 0 ? 1.0 / dd : 0.0;
  for (int64_t i = 0; i < kQBlock; i++)
    v[i] = static_cast<int8_t>(std::clamp(std::floor(w[i] * inv + half + 0.5), 0.0, 2 * half - 1) - half);
  return d;
}

// What a stored value adds to the weight's: values are kept unsigned, u = v + 2^(bits - 1) (see QWeight).
constexpr int StoredOffset(int bits) { return 1 << (bits - 1); }

// Position p's stored (unsigned) value in a group of weights (see QWeight), and the weight's value it stands for.
inline int StoredRaw(const uint8_t* group, int p, int bits) {
  if (bits == 8) return group[p];
  const int low = p < 64 ? group[p] & 15 : group[p - 64] >> 4;
  return bits == 4 ? low : low | (((group[64 + p % 32] >> (2 * (p / 32))) & 3) << 4);
}
inline int StoredValue(const uint8_t* group, int p, int bits) { return StoredRaw(group, p, bits) - StoredOffset(bits); }

}  // namespace

QWeight QuantizeWeight(const at::Tensor& w_nk, int bits) {
  const at::Tensor w = w_nk.detach().to(at::kFloat).contiguous();
  const int64_t N = w.size(0), K = w.size(1), nb = K / kQBlock, Kp = PaddedInputs(K), groups = Kp / kQGroup;
  if (K % kQBlock != 0)
    throw UserError("q" + std::to_string(bits) + " needs input sizes that are multiples of 32, but a weight has " +
                    std::to_string(K));
  at::Tensor q = at::empty({N, Kp * bits / 8}, w.options().dtype(at::kByte));
  at::Tensor s = at::zeros({N, Kp / kQBlock}, w.options().dtype(at::kHalf));  // the padding's scales stay 0
  const float* wp = w.data_ptr<float>();
  uint8_t* qp = static_cast<uint8_t*>(q.data_ptr());
  c10::Half* sp = s.data_ptr<c10::Half>();
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    std::vector<int8_t> v(static_cast<size_t>(Kp));
    for (int64_t n = n0; n < n1; n++) {
      std::fill(v.begin() + K, v.end(), 0);
      for (int64_t b = 0; b < nb; b++)
        sp[n * (Kp / kQBlock) + b] = bits == 8
                                         ? QuantizeBlockQ8(wp + n * K + b * kQBlock, v.data() + b * kQBlock)
                                         : QuantizeBlockOffset(wp + n * K + b * kQBlock, v.data() + b * kQBlock, bits);
      uint8_t* out = qp + n * (Kp * bits / 8);
      const int offset = StoredOffset(bits);
      for (int64_t g = 0; g < groups; g++) {
        const int8_t* vg = v.data() + g * kQGroup;
        if (bits == 8) {
          for (int p = 0; p < kQGroup; p++) out[g * kQGroup + p] = static_cast<uint8_t>(vg[kOrder.at[p]] + offset);
          continue;
        }
        uint8_t* o = out + g * (kQGroup * bits / 8);
        for (int i = 0; i < 64; i++)
          o[i] =
              static_cast<uint8_t>(((vg[kOrder.at[i]] + offset) & 15) | (((vg[kOrder.at[64 + i]] + offset) & 15) << 4));
        if (bits == 6)
          for (int j = 0; j < 32; j++) {
            uint8_t h = 0;
            for (int t = 0; t < 4; t++)
              h = static_cast<uint8_t>(h | (((vg[kOrder.at[32 * t + j]] + offset) >> 4) << (2 * t)));
            o[64 + j] = h;
          }
      }
    }
  });
  return {q, s, bits, K};
}

at::Tensor DequantizeWeight(const QWeight& w) {
  const int64_t N = w.rows(), K = w.cols(), Kp = w.padded(), nbp = Kp / kQBlock, groups = Kp / kQGroup;
  at::Tensor out = at::empty({N, Kp}, w.s.options().dtype(at::kFloat));
  const uint8_t* q = static_cast<const uint8_t*>(w.q.data_ptr());
  const c10::Half* s = w.s.data_ptr<c10::Half>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      const uint8_t* qr = q + n * (Kp * w.bits / 8);
      float* orow = o + n * Kp;
      for (int64_t g = 0; g < groups; g++)
        for (int p = 0; p < kQGroup; p++) {
          const int64_t k = g * kQGroup + kOrder.at[p];
          const int v = StoredValue(qr + g * (kQGroup * w.bits / 8), p, w.bits);
          orow[k] = static_cast<float>(v) * static_cast<float>(s[n * nbp + k / kQBlock]);
        }
    }
  });
  return K == Kp ? out : out.narrow(1, 0, K).contiguous();
}

namespace {

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
__attribute__((target("avx512f,avx512bw,avx512dq"))) void QuantizeXBlockAvx512(const float* x, int8_t* val,
                                                                               float* scale) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
  const __m512 inv = _mm512_set1_ps(m > 0 ? 127.0f / m : 0.0f);
  *scale = m / 127.0f;
  const __m512i qa =
      _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(a, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m512i qb =
      _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(b, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(val), _mm512_cvtsepi32_epi8(qa));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(val + 16), _mm512_cvtsepi32_epi8(qb));
}
#endif

int KernelLevel();

// What the kernels for `bits`-bit weights read.
QuantizedX QuantizeX(const float* x, int64_t K, int bits) {
  QuantizedX r;
  const int64_t nb = K / kQBlock, Kp = PaddedInputs(K);
  r.groups = Kp / kQGroup;
  std::vector<int8_t> natural(static_cast<size_t>(Kp), 0);
  r.scale.assign(Kp / kQBlock, 0.0f);
#if defined(__x86_64__)
  const bool wide = KernelLevel() == 2;
#else
  const bool wide = false;
#endif
  for (int64_t b = 0; b < nb; b++) {
#if defined(__x86_64__)
    if (wide)
      QuantizeXBlockAvx512(x + b * kQBlock, natural.data() + b * kQBlock, &r.scale[b]);
    else
#endif
      QuantizeXBlock(x + b * kQBlock, natural.data() + b * kQBlock, &r.scale[b]);
  }
  // kOrder moves whole 4-byte runs: input dword k of a group's block b lands at dword 4 k + b (a transpose)
  r.val.resize(Kp);
  for (int64_t g = 0; g < r.groups; g++)
    for (int b = 0; b < 4; b++)
      for (int k = 0; k < 8; k++)
        std::memcpy(&r.val[g * kQGroup + 4 * (4 * k + b)], &natural[g * kQGroup + 32 * b + 4 * k], 4);
  r.offset.assign(Kp / kQBlock, 0.0f);
  for (int64_t b = 0; b < nb; b++) {
    int32_t sum = 0;
    for (int64_t i = 0; i < kQBlock; i++) sum += natural[b * kQBlock + i];
    r.offset[b] = static_cast<float>(-StoredOffset(bits) * sum) * r.scale[b];
  }
  return r;
}

// The kernels are named as ggml's are, weights x activations x instruction set: DotRowsQxQ8<ISA><Bits> takes Bits-bit
// weights (8, 4, or 6 for q4's LM head) against int8 activations; Ref is the reference every other one equals.
//
// Rows [n0, n1) of out = W x in the VNNI kernel's order of float operations (so that every kernel gives the same
// numbers, and an activation near a rounding tie in a later layer rounds the same way). First, sixteen blocks a step,
// each block's two scales multiplied and its offset term times the weights' scale fused-multiply-added into lane
// (block % 16) of the first accumulator; then a group at a time, even groups into the first accumulator and odd into
// the second: each lane's int32 sum of products times its block's scale product; last, the two added and the 16 lanes
// summed as _mm512_reduce_add_ps sums them.
template <int Bits>
__attribute__((always_inline)) inline void DotRowsQxQ8Ref(const QuantizedX& x, const uint8_t* q, const c10::Half* s,
                                                          int64_t Kp, int64_t n0, int64_t n1, float* out) {
  const int64_t nbp = Kp / kQBlock, stride = Kp * Bits / 8;
  std::vector<float> sc(static_cast<size_t>(nbp));
  for (int64_t n = n0; n < n1; n++) {
    const uint8_t* qr = q + n * stride;
    float acc[2][16] = {};
    for (int64_t b = 0; b < nbp; b++) {
      const float ws = static_cast<float>(s[n * nbp + b]);
      sc[b] = ws * x.scale[b];
      acc[0][b % 16] = std::fma(ws, x.offset[b], acc[0][b % 16]);
    }
    for (int64_t g = 0; g < x.groups; g++) {
      const int8_t* xv = x.val.data() + g * kQGroup;
      int32_t lane[16] = {};
      if constexpr (Bits == 8) {
        const uint8_t* w = qr + g * kQGroup;
        for (int i = 0; i < 64; i++)
          lane[i / 4] += static_cast<int32_t>(xv[i]) * w[i] + static_cast<int32_t>(xv[64 + i]) * w[64 + i];
      } else if constexpr (Bits == 4) {
        const uint8_t* w = qr + g * 64;
        for (int i = 0; i < 64; i++)
          lane[i / 4] += static_cast<int32_t>(xv[i]) * (w[i] & 15) + static_cast<int32_t>(xv[64 + i]) * (w[i] >> 4);
      } else {
        const uint8_t* w = qr + g * 96;
        for (int p = 0; p < kQGroup; p++) lane[(p % 64) / 4] += static_cast<int32_t>(xv[p]) * StoredRaw(w, p, 6);
      }
      float* a = acc[g % 2];
      for (int L = 0; L < 16; L++) a[L] = std::fma(static_cast<float>(lane[L]), sc[g * 4 + L % 4], a[L]);
    }
    float* a = acc[0];
    for (int i = 0; i < 16; i++) a[i] += acc[1][i];
    for (int i = 0; i < 8; i++) a[i] += a[i + 8];
    for (int i = 0; i < 4; i++) a[i] += a[i + 4];
    out[n] = (a[0] + a[2]) + (a[1] + a[3]);
  }
}

template <int Bits>
void DotRowsQxQ8Generic(const QuantizedX& x, const uint8_t* q, const c10::Half* s, int64_t Kp, int64_t n0, int64_t n1,
                        float* out) {
  DotRowsQxQ8Ref<Bits>(x, q, s, Kp, n0, n1, out);
}

#if defined(__x86_64__)
// The same loop compiled for AVX2 (GCC vectorizes the integer products): the fallback for CPUs without AVX-512 VNNI.
template <int Bits>
__attribute__((target("avx2,fma"))) void DotRowsQxQ8Avx2(const QuantizedX& x, const uint8_t* q, const c10::Half* s,
                                                         int64_t Kp, int64_t n0, int64_t n1, float* out) {
  DotRowsQxQ8Ref<Bits>(x, q, s, Kp, n0, n1, out);
}

// AVX-512 VNNI, a group of 128 weights (four blocks) a step: vpdpbusd multiplies unsigned by signed bytes into 16
// int32 lanes of 4-product sums, lane L holding block L % 4, so that one broadcast of the four blocks' scale products
// fits all 16 lanes and both halves of the group go into the same lanes before one conversion to float. The weights go
// in as their unsigned stored values (8 bits: two 64-byte loads; 4 bits: one, low nibbles the first half, high the
// second; 6 bits: 4 bits' load and the high bits moved in) against the signed x_q; the offset term comes in once a
// row, sixteen blocks a step, with the scale products (converting each group's four scales inside the loop measured
// 25% slower from memory on one thread). Even and odd groups go into two accumulators, so that consecutive groups'
// multiply-adds do not wait on each other. M rows of x against each weight row, the weights read (and unpacked) once
// for all of them (batched decoding, beams, short prompts): out[m * N + n] for n in [n0, n1). One weight row at a time:
// the rows are one sequential stream, which the hardware prefetcher follows (interleaving several rows' streams
// measured 20% slower).
template <int Bits, int M>
__attribute__((target("avx512f,avx512bw,avx512vnni,avx512dq,avx512vl,f16c"))) void DotRowsQxQ8Avx512Vnni(
    const QuantizedX* x, const uint8_t* q, const c10::Half* s, int64_t Kp, int64_t N, int64_t n0, int64_t n1,
    float* out) {
  const int64_t nbp = Kp / kQBlock, groups = x[0].groups, stride = Kp * Bits / 8;
  const __m512i low4 = _mm512_set1_epi8(15);
  thread_local std::vector<float> scales;  // row n's block scales times x_m's, x_m's at m * nbp
  scales.resize(static_cast<size_t>(M * nbp));
  float* const sc = scales.data();  // once: each thread_local access is a call
  for (int64_t n = n0; n < n1; n++) {
    const uint8_t* qr = q + n * stride;
    const uint16_t* sr = reinterpret_cast<const uint16_t*>(s + n * nbp);
    __m512 acc[M][2];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nbp; b += 16) {
      const __mmask16 k = nbp - b >= 16 ? __mmask16(0xffff) : __mmask16((1u << (nbp - b)) - 1);
      const __m512 ws = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, sr + b));
#pragma GCC unroll 8
      for (int m = 0; m < M; m++) {
        _mm512_mask_storeu_ps(sc + m * nbp + b, k, _mm512_mul_ps(ws, _mm512_maskz_loadu_ps(k, x[m].scale.data() + b)));
        acc[m][0] = _mm512_fmadd_ps(ws, _mm512_maskz_loadu_ps(k, x[m].offset.data() + b), acc[m][0]);
      }
    }
    for (int64_t g0 = 0; g0 < groups; g0 += 2)
#pragma GCC unroll 2
      for (int h = 0; h < 2; h++) {  // unrolled, so that each accumulator stays in a register
        const int64_t g = g0 + h;
        if (g == groups) break;
        __m512i w0, w1;
        if constexpr (Bits == 8) {
          w0 = _mm512_loadu_si512(qr + g * kQGroup);
          w1 = _mm512_loadu_si512(qr + g * kQGroup + 64);
        } else {
          const __m512i packed = _mm512_loadu_si512(qr + g * (kQGroup * Bits / 8));
          w0 = _mm512_and_si512(packed, low4);
          w1 = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4);
          if constexpr (Bits == 6) {  // each position's two high bits: byte j holds positions j, 32 + j, 64 + j, 96 + j
            const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qr + g * 96 + 64)),
                          three = _mm256_set1_epi8(3);
            const __m512i h0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(h, three)),
                                                  _mm256_and_si256(_mm256_srli_epi16(h, 2), three), 1);
            const __m512i h1 =
                _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(_mm256_srli_epi16(h, 4), three)),
                                   _mm256_and_si256(_mm256_srli_epi16(h, 6), three), 1);
            w0 = _mm512_or_si512(w0, _mm512_slli_epi16(h0, 4));
            w1 = _mm512_or_si512(w1, _mm512_slli_epi16(h1, 4));
          }
        }
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
          __m512i d =
              _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, _mm512_loadu_si512(x[m].val.data() + g * kQGroup));
          d = _mm512_dpbusd_epi32(d, w1, _mm512_loadu_si512(x[m].val.data() + g * kQGroup + 64));
          acc[m][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_broadcast_f32x4(_mm_loadu_ps(sc + m * nbp + 4 * g)),
                                      acc[m][h]);
        }
      }
    for (int m = 0; m < M; m++) out[m * N + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]));
  }
}
#endif

int KernelLevel() {
  static const int level = [] {
    int best = 0;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c"))
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
void MatMulQxQ8(const QuantizedX* xq, int64_t M, const QWeight& w, float* out, const NextStep* then) {
  const int64_t N = w.rows(), Kp = w.padded();
  const uint8_t* q = static_cast<const uint8_t*>(w.q.data_ptr());
  const c10::Half* s = w.s.data_ptr<c10::Half>();
  const int level = KernelLevel();
  SplitRows(
      N, Kp * Bits / 8 + Kp / kQBlock * 2,
      [&](int64_t n0, int64_t n1) {
#if defined(__x86_64__)
        if (level == 2) {
          // weight rows a tile at a time, every activation row over each tile: past 8 activation rows the weights
          // are read from memory once, and from cache for the next 8
          constexpr int64_t kTile = 32;
          for (int64_t t0 = n0; t0 < n1; t0 += kTile) {
            const int64_t t1 = std::min(n1, t0 + kTile);
            int64_t m = 0;
            for (; m + 8 <= M; m += 8) DotRowsQxQ8Avx512Vnni<Bits, 8>(xq + m, q, s, Kp, N, t0, t1, out + m * N);
            for (; m + 4 <= M; m += 4) DotRowsQxQ8Avx512Vnni<Bits, 4>(xq + m, q, s, Kp, N, t0, t1, out + m * N);
            for (; m + 2 <= M; m += 2) DotRowsQxQ8Avx512Vnni<Bits, 2>(xq + m, q, s, Kp, N, t0, t1, out + m * N);
            for (; m < M; m++) DotRowsQxQ8Avx512Vnni<Bits, 1>(xq + m, q, s, Kp, N, t0, t1, out + m * N);
          }
          return;
        }
        if (level == 1) {
          for (int64_t m = 0; m < M; m++) DotRowsQxQ8Avx2<Bits>(xq[m], q, s, Kp, n0, n1, out + m * N);
          return;
        }
#endif
        for (int64_t m = 0; m < M; m++) DotRowsQxQ8Generic<Bits>(xq[m], q, s, Kp, n0, n1, out + m * N);
      },
      nullptr, then);
}

void MatMulQ(const QuantizedX* xq, int64_t M, const QWeight& w, float* out, const NextStep* then = nullptr) {
  if (w.bits == 4)
    MatMulQxQ8<4>(xq, M, w, out, then);
  else if (w.bits == 6)
    MatMulQxQ8<6>(xq, M, w, out, then);
  else
    MatMulQxQ8<8>(xq, M, w, out, then);
}

}  // namespace

const char* Q8Kernel() { return KernelLevel() == 2 ? "avx512-vnni" : KernelLevel() == 1 ? "avx2" : "scalar"; }

QuantizedX QuantizeInput(const float* x, const QWeight& w) { return QuantizeX(x, w.cols(), w.bits); }

void QMatVecInto(const QuantizedX& x, const QWeight& w, const at::Tensor& b, float* out, const NextStep* then) {
  QMatMulInto(&x, 1, w, b, out, then);
}

void QMatMulInto(const QuantizedX* x, int64_t M, const QWeight& w, const at::Tensor& b, float* out,
                 const NextStep* then) {
  const int64_t N = w.rows();
  const NextStep bias = StepBefore(
      [&] {
        for (int64_t m = 0; m < M; m++) AddBias(b, out + m * N, N);
      },
      then);
  MatMulQ(x, M, w, out, &bias);
}

at::Tensor QLinear(const at::Tensor& x0, const QWeight& w, const at::Tensor& b) {
  const int64_t N = w.rows(), K = w.cols();
  if (x0.size(-1) != K)
    throw UserError("q" + std::to_string(w.bits) + " linear: input has " + std::to_string(x0.size(-1)) +
                    " features but the weight takes " + std::to_string(K));
  const at::Tensor x = x0.to(at::kFloat).reshape({-1, K}).contiguous();
  const int64_t M = x.size(0);
  at::Tensor y;
  if (M <= 16) {  // the integer kernels; past this, widening the weights to float32 once costs less
    std::vector<QuantizedX> xq;
    for (int64_t m = 0; m < M; m++) xq.push_back(QuantizeX(x.data_ptr<float>() + m * K, K, w.bits));
    y = at::empty({M, N}, x.options());
    MatMulQ(xq.data(), M, w, y.data_ptr<float>());
    if (b.defined()) y.add_(b.to(at::kFloat));
  } else {
    y = b.defined() ? at::addmm(b, x, DequantizeWeight(w).t()) : at::mm(x, DequantizeWeight(w).t());
  }
  auto sizes = x0.sizes().vec();
  sizes.back() = N;
  return y.view(sizes).to(x0.scalar_type());
}

}  // namespace torchlm
