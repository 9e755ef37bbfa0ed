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

Q8Weight QuantizeQ8(const at::Tensor& w_nk) {
  // in float64, so that w / s lands on the side of a rounding tie that exact arithmetic gives (weights on a coarse
  // grid hit ties), as an independent implementation of the scheme does
  const at::Tensor w = w_nk.detach().to(at::kDouble).contiguous();
  const int64_t N = w.size(0), K = w.size(1), nb = K / kQ8Block;
  if (K % kQ8Block != 0) throw UserError("q8 needs input sizes that are multiples of 32, but a weight has " + std::to_string(K));
  const at::Tensor blocks = w.view({N, nb, kQ8Block});
  // round-to-nearest of w / (max |w| / 127): every block uses the full int8 range symmetrically (-127..127)
  at::Tensor s = blocks.abs().amax(-1) / 127.0;
  at::Tensor q = (blocks / s.clamp_min(1e-30).unsqueeze(-1)).round().clamp(-127, 127).to(at::kChar).view({N, K}).contiguous();
  return {q, s.to(at::kFloat).contiguous()};
}

at::Tensor DequantizeQ8(const Q8Weight& w) {
  const int64_t N = w.q.size(0), K = w.q.size(1);
  return (w.q.to(at::kFloat).view({N, K / kQ8Block, kQ8Block}) * w.s.unsqueeze(-1)).view({N, K});
}

namespace {

// x quantized per block of 32 as the weights are: |x_q| as bytes (the unsigned operand of VNNI's dot product), its
// signs (applied to the weights instead), and each block's scale; padded with zeros to a multiple of 64.
struct QuantizedX {
  std::vector<uint8_t> mag;
  std::vector<int8_t> val;
  std::vector<uint64_t> neg;  // a bit per byte of each 64-byte chunk
  std::vector<float> scale;   // per block of 32
  int64_t chunks = 0;
};

QuantizedX QuantizeX(const float* x, int64_t K) {
  QuantizedX r;
  const int64_t nb = K / kQ8Block;
  r.chunks = (nb + 1) / 2;
  r.mag.assign(r.chunks * 64, 0);
  r.val.assign(r.chunks * 64, 0);
  r.neg.assign(r.chunks, 0);
  r.scale.assign(r.chunks * 2, 0.0f);
  for (int64_t b = 0; b < nb; b++) {
    float m = 0;
    for (int64_t i = 0; i < kQ8Block; i++) m = std::max(m, std::fabs(x[b * kQ8Block + i]));
    const float d = m / 127.0f, inv = m > 0 ? 127.0f / m : 0.0f;
    r.scale[b] = d;
    for (int64_t i = 0; i < kQ8Block; i++) {
      const int64_t k = b * kQ8Block + i;
      const int v = static_cast<int>(std::nearbyint(x[k] * inv));
      r.val[k] = static_cast<int8_t>(v);
      r.mag[k] = static_cast<uint8_t>(std::abs(v));
      if (v < 0) r.neg[k / 64] |= uint64_t(1) << (k % 64);
    }
  }
  return r;
}

// Block b of x against one row of weights: the int32 sum of products of the int8 values.
inline int32_t BlockDot(const QuantizedX& x, const int8_t* row, int64_t b) {
  int32_t d = 0;
  const int8_t* xv = x.val.data() + b * kQ8Block;
  const int8_t* wv = row + b * kQ8Block;
#pragma GCC unroll 32
  for (int64_t i = 0; i < kQ8Block; i++) d += static_cast<int32_t>(xv[i]) * wv[i];
  return d;
}

// Rows [n0, n1) of out = W x: per block, the int32 dot product of the int8 values times both scales.
__attribute__((always_inline)) inline void RowsPortable(const QuantizedX& x, const int8_t* q, const float* s, int64_t K, int64_t n0, int64_t n1, float* out) {
  const int64_t nb = K / kQ8Block;
  for (int64_t n = n0; n < n1; n++) {
    float acc = 0;
    for (int64_t b = 0; b < nb; b++) acc += static_cast<float>(BlockDot(x, q + n * K, b)) * (s[n * nb + b] * x.scale[b]);
    out[n] = acc;
  }
}

void RowsScalar(const QuantizedX& x, const int8_t* q, const float* s, int64_t K, int64_t n0, int64_t n1, float* out) {
  RowsPortable(x, q, s, K, n0, n1, out);
}

#if defined(__x86_64__)
// The same loop compiled for AVX2 (GCC vectorizes the int8 products): the fallback for CPUs without AVX-512 VNNI.
__attribute__((target("avx2,fma"))) void RowsAvx2(const QuantizedX& x, const int8_t* q, const float* s, int64_t K, int64_t n0, int64_t n1, float* out) {
  RowsPortable(x, q, s, K, n0, n1, out);
}

#endif

#if defined(__x86_64__)
// AVX-512 VNNI, 64 weights (two blocks) a step: vpdpbusd multiplies unsigned by signed bytes, so x goes in as |x_q|
// and its signs are moved onto the weights; the 16 int32 lanes hold 4-product sums, lanes 0-7 of the first block and
// 8-15 of the second, scaled by a vector of the two blocks' scales. M rows of x against each weight row, the weights
// read once for all of them (batched decoding, beams, short prompts): out[m * N + n] for n in [n0, n1). One weight row
// at a time: the rows are one sequential stream, which the hardware prefetcher follows (interleaving several rows'
// streams measured 20% slower).
template <int M>
__attribute__((target("avx512f,avx512bw,avx512vnni,avx512dq"))) void RowsVnniBatch(const QuantizedX* x, const int8_t* q, const float* s, int64_t K,
                                                                                     int64_t N, int64_t n0, int64_t n1, float* out) {
  const int64_t nb = K / kQ8Block, full = nb / 2, chunks = x[0].chunks;
  const __m512i zero = _mm512_setzero_si512();
  std::vector<float> xs(static_cast<size_t>(M * chunks * 16));
  for (int m = 0; m < M; m++)
    for (int64_t c = 0; c < chunks; c++)
      for (int j = 0; j < 16; j++) xs[(m * chunks + c) * 16 + j] = x[m].scale[2 * c + j / 8];
  for (int64_t n = n0; n < n1; n++) {
    const int8_t* qr = q + n * K;
    const float* sr = s + n * nb;
    __m512 acc[M];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) acc[m] = _mm512_setzero_ps();
    for (int64_t c = 0; c < full; c++) {
      const __m512i wv = _mm512_loadu_si512(qr + c * 64);
      const __m512 sc = _mm512_insertf32x8(_mm512_set1_ps(sr[2 * c]), _mm256_set1_ps(sr[2 * c + 1]), 1);
#pragma GCC unroll 8
      for (int m = 0; m < M; m++) {
        const __m512i w = _mm512_mask_sub_epi8(wv, x[m].neg[c], zero, wv);
        const __m512 d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, _mm512_loadu_si512(x[m].mag.data() + c * 64), w));
        acc[m] = _mm512_fmadd_ps(d, _mm512_mul_ps(sc, _mm512_loadu_ps(xs.data() + (m * chunks + c) * 16)), acc[m]);
      }
    }
    for (int m = 0; m < M; m++) {
      float r = _mm512_reduce_add_ps(acc[m]);
      if (nb % 2) r += static_cast<float>(BlockDot(x[m], qr, nb - 1)) * (sr[nb - 1] * x[m].scale[nb - 1]);  // a last lone block
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
void Rows(const QuantizedX* xq, int64_t M, const Q8Weight& w, float* out) {
  const int64_t N = w.q.size(0), K = w.q.size(1);
  const int8_t* q = w.q.data_ptr<int8_t>();
  const float* s = w.s.data_ptr<float>();
  const int level = KernelLevel();
  at::parallel_for(0, N, 128, [&](int64_t n0, int64_t n1) {
#if defined(__x86_64__)
    if (level == 2) {
      int64_t m = 0;
      for (; m + 8 <= M; m += 8) RowsVnniBatch<8>(xq + m, q, s, K, N, n0, n1, out + m * N);
      for (; m + 4 <= M; m += 4) RowsVnniBatch<4>(xq + m, q, s, K, N, n0, n1, out + m * N);
      for (; m + 2 <= M; m += 2) RowsVnniBatch<2>(xq + m, q, s, K, N, n0, n1, out + m * N);
      for (; m < M; m++) RowsVnniBatch<1>(xq + m, q, s, K, N, n0, n1, out + m * N);
      return;
    }
    if (level == 1) {
      for (int64_t m = 0; m < M; m++) RowsAvx2(xq[m], q, s, K, n0, n1, out + m * N);
      return;
    }
#endif
    for (int64_t m = 0; m < M; m++) RowsScalar(xq[m], q, s, K, n0, n1, out + m * N);
  });
}

}  // namespace

const char* Q8Kernel() { return KernelLevel() == 2 ? "avx512-vnni" : KernelLevel() == 1 ? "avx2" : "scalar"; }

void Q8MatVecInto(const float* x, const Q8Weight& w, const at::Tensor& b, float* out) {
  const QuantizedX xq = QuantizeX(x, w.q.size(1));
  Rows(&xq, 1, w, out);
  if (b.defined()) {
    const float* bp = b.data_ptr<float>();
    for (int64_t n = 0; n < w.q.size(0); n++) out[n] += bp[n];
  }
}

at::Tensor Q8Linear(const at::Tensor& x0, const Q8Weight& w, const at::Tensor& b) {
  const int64_t N = w.q.size(0), K = w.q.size(1);
  if (x0.size(-1) != K) throw UserError("q8 linear: input has " + std::to_string(x0.size(-1)) + " features but the weight takes " + std::to_string(K));
  const at::Tensor x = x0.to(at::kFloat).reshape({-1, K}).contiguous();
  const int64_t M = x.size(0);
  at::Tensor y;
  if (M <= 16) {  // the int8 kernels; past this, widening the weights to float32 once costs less
    std::vector<QuantizedX> xq;
    for (int64_t m = 0; m < M; m++) xq.push_back(QuantizeX(x.data_ptr<float>() + m * K, K));
    y = at::empty({M, N}, x.options());
    Rows(xq.data(), M, w, y.data_ptr<float>());
    if (b.defined()) y.add_(b.to(at::kFloat));
  } else {
    y = b.defined() ? at::addmm(b, x, DequantizeQ8(w).t()) : at::mm(x, DequantizeQ8(w).t());
  }
  auto sizes = x0.sizes().vec();
  sizes.back() = N;
  return y.view(sizes).to(x0.scalar_type());
}

void GPT2::Quantize(const std::string& kind) {
  if (kind != "q8") throw UserError("unknown quantization " + kind + ": torchlm has q8");
  if (!quantization_.empty()) throw UserError("the model is already " + quantization_);
  if (!lora_.empty()) throw UserError("quantizing a model with LoRA adapters is not supported: merge_and_unload() first");
  if (!wte_.device().is_cpu()) throw UserError("q8 runs on the CPU; this model is on " + DeviceName(wte_.device()));
  at::NoGradGuard ng;
  std::map<std::string, Q8Weight> made;
  for (auto& [name, t] : params_)
    if (IsConv1DWeight(name)) made.emplace(name, QuantizeQ8(t.t()));  // Conv1D [in, out]
  Q8Weight head = QuantizeQ8(wte_);
  // only now, when nothing can fail, does the model change: the float32 Conv1D weights are replaced by int8 views
  for (auto& [name, t] : params_) {
    auto it = made.find(name);
    if (it != made.end()) t = it->second.q.t();
    t.requires_grad_(false);
  }
  q8_ = std::move(made);
  lm_head_q8_ = std::move(head);
  quantization_ = kind;
  Bind();
}

std::vector<std::pair<std::string, at::Tensor>> GPT2::SavedTensors() const {
  if (quantization_.empty()) return params_;
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, t] : params_) {
    auto it = q8_.find(name);
    if (it == q8_.end()) {
      out.emplace_back(name, t);
    } else {
      out.emplace_back(name, it->second.q);
      out.emplace_back(name + "_scale", it->second.s);
    }
  }
  out.emplace_back("lm_head.weight", lm_head_q8_.q);
  out.emplace_back("lm_head.weight_scale", lm_head_q8_.s);
  return out;
}

void GPT2::LoadQuantized(std::vector<std::pair<std::string, at::Tensor>> tensors, const std::string& kind) {
  if (kind != "q8") throw UserError("unknown quantization " + kind + ": torchlm has q8");
  std::map<std::string, at::Tensor> scales, head;
  std::vector<std::pair<std::string, at::Tensor>> rest;
  for (auto& [name0, t] : tensors) {
    const std::string name = name0.rfind("transformer.", 0) == 0 ? name0.substr(12) : name0;
    if (name == "lm_head.weight" || name == "lm_head.weight_scale") head[name] = t;
    else if (name.size() > 6 && name.compare(name.size() - 6, 6, "_scale") == 0) scales[name.substr(0, name.size() - 6)] = t;
    else rest.emplace_back(name, t);
  }
  if (!head.count("lm_head.weight") || !head.count("lm_head.weight_scale")) throw UserError("q8 checkpoint is missing lm_head.weight or its scale");
  // the int8 weights are [out, in]: Load checks them against the config as the [in, out] views they stand for
  std::map<std::string, Q8Weight> made;
  for (auto& [name, t] : rest) {
    if (t.scalar_type() != at::kChar) continue;
    auto it = scales.find(name);
    if (it == scales.end()) throw UserError("q8 checkpoint has int8 tensor " + name + " but no " + name + "_scale");
    if (t.dim() != 2 || t.size(1) % kQ8Block != 0 || it->second.sizes() != at::IntArrayRef({t.size(0), t.size(1) / kQ8Block}) ||
        it->second.scalar_type() != at::kFloat)
      throw UserError("q8 tensor " + name + "_scale does not fit " + name);
    made.emplace(name, Q8Weight{t.contiguous(), it->second.contiguous()});
    t = t.t();
  }
  if (made.size() != scales.size()) throw UserError("q8 checkpoint has scales without int8 weights");
  Load(std::move(rest), /*allow_int8=*/true);
  for (const auto& [name, t] : params_) {
    const bool conv = IsConv1DWeight(name);
    if (conv != (made.count(name) == 1)) throw UserError("q8 checkpoint: " + name + (conv ? " is not int8" : " should not be int8"));
  }
  const at::Tensor hq = head.at("lm_head.weight"), hs = head.at("lm_head.weight_scale");
  if (hq.scalar_type() != at::kChar || hq.sizes() != wte_.sizes() || hs.sizes() != at::IntArrayRef({wte_.size(0), wte_.size(1) / kQ8Block}))
    throw UserError("q8 checkpoint's lm_head.weight does not fit the token embeddings");
  for (auto& [name, t] : params_) t.requires_grad_(false);
  q8_ = std::move(made);
  lm_head_q8_ = Q8Weight{hq.contiguous(), hs.to(at::kFloat).contiguous()};
  quantization_ = kind;
  Bind();
}

}  // namespace torchlm
