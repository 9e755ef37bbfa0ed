// Batch-1 decoding of one token through every layer on raw float32 buffers: the matrix-vector kernels for the
// four linears, one-pass attention over the cache, and layer norm, biases, GELU and residuals in plain loops.
// At one row libtorch's per-op dispatch and allocation cost more than these ops' arithmetic (about 2 ms a token
// on GPT-2 124M), so this path keeps the token to the weights' memory traffic.
#include "core/model/gpt2/gpt2.h"
#include "core/kernels/matvec.h"
#include "core/kernels/row_split.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace torchlm {

// libtorch's layer norm: biased variance, (x * rstd - mean * rstd) * w + b; moments in double.
static void LayerNorm(const float* x, Floats w, Floats b, double eps, int64_t E, float* y) {
  double sum = 0, sq = 0;
  for (int64_t e = 0; e < E; e++) sum += x[e];
  const double mean = sum / E;
  for (int64_t e = 0; e < E; e++) sq += (x[e] - mean) * (x[e] - mean);
  const float rstd = static_cast<float>(1.0 / std::sqrt(sq / E + eps));
  const float scale = rstd, shift = -rstd * static_cast<float>(mean);
  for (int64_t e = 0; e < E; e++) y[e] = (x[e] * scale + shift) * w[e] + b[e];
}

// GELU with tanh, as libtorch computes it: Sleef's tanh (the one libtorch's AVX2 kernel calls) over 16 floats at
// a time in the same order of operations, the tail one by one.
#if defined(__x86_64__)
using TanhF8 = __m256 (*)(__m256);
static TanhF8 FindTanh() {
  if (!__builtin_cpu_supports("avx2")) return nullptr;
  return reinterpret_cast<TanhF8>(LoadedSymbol({"libtorch_cpu.so", "libsleef.so.3"}, "Sleef_tanhf8_u10"));
}
__attribute__((target("avx2"))) static int64_t GeluTanh8(TanhF8 tanh8, float* x, int64_t n) {
  const __m256 beta = _mm256_set1_ps(static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5)), kappa = _mm256_set1_ps(0.044715f);
  const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 cube = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
    const __m256 inner = _mm256_mul_ps(beta, _mm256_add_ps(v, _mm256_mul_ps(kappa, cube)));
    _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, tanh8(inner))));
  }
  return i;
}
#endif

static void Activate(Activation a, float* x, int64_t n) {
  if (a == Activation::kRelu) {
    for (int64_t i = 0; i < n; i++) x[i] = std::max(x[i], 0.0f);
  } else if (a == Activation::kGelu) {
    for (int64_t i = 0; i < n; i++) x[i] = static_cast<float>(0.5 * x[i] * (1.0 + std::erf(x[i] * M_SQRT1_2)));
  } else {
    int64_t i = 0;
#if defined(__x86_64__)
    static const TanhF8 tanh8 = FindTanh();
    if (tanh8) {  // split between the threads: serial, it was 3% of a batch-1 token's time
      i = n - n % 16;
      at::parallel_for(0, i / 16, 64, [&](int64_t b0, int64_t b1) { GeluTanh8(tanh8, x + b0 * 16, (b1 - b0) * 16); });
    }
#endif
    const float beta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
    for (; i < n; i++) {
      const float v = x[i], cube = v * v * v, inner = beta * (v + kappa * cube);
      x[i] = 0.5f * v * (1.0f + std::tanh(inner));
    }
  }
}

bool GPT2::DecodeOneApplies(const at::Tensor& ids, const at::Tensor& attention_mask, const KVCache* cache) const {
  return OneTokenStep(ids, attention_mask, cache) && FusedDecoderSuits(*cache);
}

bool GPT2::FusedDecoderSuits(const KVCache& cache) const {
  // adapters run on the general path (merge_and_unload() brings this one back)
  if (!Inference() || !MatVecEnabled() || !lora_.empty()) return false;
  if (!wte_.device().is_cpu() || (wte_.scalar_type() != at::kFloat && wte_.scalar_type() != at::kBFloat16))
    return false;
  for (size_t i = 0; i < layers_.size(); i++) {
    const Layer& L = layers_[i];
    if (!cache.k[i].is_contiguous() || !cache.v[i].is_contiguous() || cache.k[i].scalar_type() != KVDtype())
      return false;
    auto suits = [](const at::Tensor& w, const at::Tensor& b, const QWeight* qw) {
      return qw ? (!b.defined() || (b.scalar_type() == at::kFloat && b.is_contiguous())) : MatVecKNWeights(w, b);
    };
    if (!suits(L.c_attn_w, L.c_attn_b, L.c_attn_q) || !suits(L.attn_proj_w, L.attn_proj_b, L.attn_proj_q) ||
        !suits(L.c_fc_w, L.c_fc_b, L.c_fc_q) || !suits(L.mlp_proj_w, L.mlp_proj_b, L.mlp_proj_q))
      return false;
    for (const at::Tensor* t : {&L.ln_1_w, &L.ln_1_b, &L.ln_2_w, &L.ln_2_b})
      if (!t->is_contiguous() || t->scalar_type() != wte_.scalar_type()) return false;
  }
  return wte_.is_contiguous() && wpe_.is_contiguous() && ln_f_w_.is_contiguous() && ln_f_b_.is_contiguous();
}

at::Tensor GPT2::DecodeOne(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                           KVCache& cache) {
  const std::vector<uint8_t> allowed = AllowedPositions(attention_mask, cache.length + 1);
  return DecodeRows({ids.reshape({-1})[0].item<int64_t>()}, {position_ids.reshape({-1})[0].item<int64_t>()}, {0},
                    {cache.length}, allowed, cache);
}

at::Tensor GPT2::DecodeRows(const std::vector<int64_t>& ids, const std::vector<int64_t>& positions,
                            const std::vector<int64_t>& slots, const std::vector<int64_t>& lengths,
                            const std::vector<uint8_t>& allowed, KVCache& cache) {
  const int64_t E = cfg_.n_embd, H = cfg_.n_head, D = E / H, I = cfg_.inner(), M = static_cast<int64_t>(ids.size());
  const int64_t cap = cache.capacity();
  CheckRows(ids, positions);
  at::Tensor out = at::empty({M, 1, E}, wte_.options().dtype(at::kFloat));
  // each buffer holds M rows
  std::vector<float> buf(static_cast<size_t>(M * (3 * E + 3 * E + I)));
  float *x = buf.data(), *h = x + M * E, *y = h + M * E, *qkv = y + M * E, *f = qkv + M * 3 * E;
  const Floats wte(wte_), wpe(wpe_);
  for (int64_t m = 0; m < M; m++)
    for (int64_t e = 0; e < E; e++) x[m * E + e] = wte[ids[m] * E + e] + wpe[positions[m] * E + e];
  const double scale = cfg_.scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(D)) : 1.0;
  // Each linear's rows streamed by both threads, then the serial step up to the next linear (its input quantized, for
  // integer weights) in the same parallel region, while the other thread reads the next linear's first rows into
  // cache: a step is what it runs and the weights it reads ahead.
  std::vector<QuantizedX> xq(static_cast<size_t>(M));
  std::vector<float> q_rows(static_cast<size_t>(M > 1 ? M * E : 0));
  std::vector<int64_t> attended(lengths);  // the positions each row attends to, its own included
  for (auto& a : attended) a++;
  auto step = [&](std::function<void()> serial, const at::Tensor& w, const QWeight* qw) {
    NextStep t;
    t.serial = std::move(serial);
    if (qw) {
      t.next_rows = qw->rows();
      t.next = {{qw->q.data_ptr(), qw->q.size(1)}, {qw->s.data_ptr(), qw->s.size(1) * 2}};
    } else if (w.defined() && !w.is_contiguous()) {  // [N, K] rows seen transposed (w [K, N])
      t.next_rows = w.size(1);
      t.next = {{w.data_ptr(), w.size(0) * static_cast<int64_t>(w.element_size())}};
    }
    return t;
  };
  // Integer weights take every row in one pass over the weights (a row computes as it would alone); float weights
  // take one row at a time (batched float decoding goes through GEMM in GPT2::Hidden instead).
  auto linear = [&](const float* in, int64_t K, const at::Tensor& w, const at::Tensor& b, const QWeight* qw, float* o,
                    int64_t N, const NextStep& next) {
    if (qw) {
      QMatMulInto(xq.data(), M, *qw, b, o, &next);
      return;
    }
    for (int64_t m = 0; m < M; m++) MatVecKNInto(in + m * K, w, b, o + m * N, m + 1 == M ? &next : nullptr);
  };
  auto quantize = [&](const float* in, int64_t K, const QWeight* qw) {
    if (qw)
      for (int64_t m = 0; m < M; m++) xq[m] = QuantizeInput(in + m * K, *qw);
  };
  // the residual of layer i - 1's MLP (none before layer 0), then layer i's first layer norm; past the last layer the
  // final layer norm into `out`
  float* final = out.data_ptr<float>();
  auto enter = [&](int64_t i) {
    if (i > 0)
      for (int64_t e = 0; e < M * E; e++) x[e] += h[e];
    if (i == cfg_.n_layer) {
      for (int64_t m = 0; m < M; m++)
        LayerNorm(x + m * E, Floats(ln_f_w_), Floats(ln_f_b_), cfg_.layer_norm_epsilon, E, final + m * E);
      return;
    }
    const Layer& L = layers_[i];
    for (int64_t m = 0; m < M; m++)
      LayerNorm(x + m * E, Floats(L.ln_1_w), Floats(L.ln_1_b), cfg_.layer_norm_epsilon, E, h + m * E);
    quantize(h, E, L.c_attn_q);
  };
  enter(0);
  for (int64_t i = 0; i < cfg_.n_layer; i++) {
    const Layer& L = layers_[i];
    // the serial steps between this layer's linears
    const auto store_kv = [&] {  // each row's key and value, at its position in its slot, for each head
      for (int64_t m = 0; m < M; m++)
        for (int64_t hd = 0; hd < H; hd++) {
          const int64_t at = ((slots[m] * H + hd) * cap + lengths[m]) * D;
          StoreFloats(cache.k[i], at, qkv + m * 3 * E + E + hd * D, D);
          StoreFloats(cache.v[i], at, qkv + m * 3 * E + 2 * E + hd * D, D);
        }
    };
    const auto attention_residual_ln_2 = [&] {
      for (int64_t e = 0; e < M * E; e++) x[e] += h[e];
      for (int64_t m = 0; m < M; m++)
        LayerNorm(x + m * E, Floats(L.ln_2_w), Floats(L.ln_2_b), cfg_.layer_norm_epsilon, E, h + m * E);
      quantize(h, E, L.c_fc_q);
    };
    const auto enter_next = [&] { enter(i + 1); };
    // what the last linear reads ahead: layer i + 1's c_attn, or the LM head (GPT2::Logits: the quantized head, else
    // wte's [V, E] rows, which wte_.t() presents as a Conv1D's transposed view)
    const bool head = i + 1 == cfg_.n_layer;
    const at::Tensor next_w = head ? wte_.t() : layers_[i + 1].c_attn_w;
    const QWeight* next_q = head ? (lm_head_q_.q.defined() ? &lm_head_q_ : nullptr) : layers_[i + 1].c_attn_q;

    linear(h, E, L.c_attn_w, L.c_attn_b, L.c_attn_q, qkv, 3 * E, step(store_kv, L.attn_proj_w, L.attn_proj_q));
    const double layer_scale = cfg_.scale_attn_by_inverse_layer_idx ? scale / static_cast<double>(i + 1) : scale;
    if (M == 1) {
      AttendInto(qkv, cache.k[i].narrow(0, slots[0], 1), cache.v[i].narrow(0, slots[0], 1), lengths[0] + 1, layer_scale,
                 allowed.empty() ? nullptr : allowed.data(), y);
    } else {                           // one parallel region for every row's heads (each computes as it would alone)
      for (int64_t m = 0; m < M; m++)  // the queries gathered: each row's is the first E of its 3 E
        std::copy(qkv + m * 3 * E, qkv + m * 3 * E + E, q_rows.data() + m * E);
      AttendRowsInto(q_rows.data(), cache.k[i], cache.v[i], slots, attended, layer_scale, y);
    }
    quantize(y, E, L.attn_proj_q);
    linear(y, E, L.attn_proj_w, L.attn_proj_b, L.attn_proj_q, h, E, step(attention_residual_ln_2, L.c_fc_w, L.c_fc_q));
    linear(h, E, L.c_fc_w, L.c_fc_b, L.c_fc_q, f, I, step([] {}, L.mlp_proj_w, L.mlp_proj_q));
    // elementwise, in 16-value vectors: one call over every row where rows start on a vector's boundary
    if (I % 16 == 0)
      Activate(cfg_.activation, f, M * I);
    else
      for (int64_t m = 0; m < M; m++) Activate(cfg_.activation, f + m * I, I);
    quantize(f, I, L.mlp_proj_q);
    linear(f, I, L.mlp_proj_w, L.mlp_proj_b, L.mlp_proj_q, h, E, step(enter_next, next_w, next_q));
  }
  return out.to(wte_.scalar_type());  // outputs keep the model's dtype
}

}  // namespace torchlm
