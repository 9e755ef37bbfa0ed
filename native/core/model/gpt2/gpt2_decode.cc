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

// A float32 or bfloat16 CPU tensor's memory read as float32, with the dtype looked up once rather than per element.
struct Floats {
  const float* f = nullptr;
  const c10::BFloat16* h = nullptr;
  explicit Floats(const at::Tensor& t) {
    if (t.scalar_type() == at::kFloat)
      f = t.data_ptr<float>();
    else
      h = reinterpret_cast<const c10::BFloat16*>(t.data_ptr());
  }
  float operator[](int64_t i) const { return f ? f[i] : static_cast<float>(h[i]); }
};

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

static void Store(at::Tensor& cache, int64_t offset, const float* src, int64_t n) {
  if (cache.scalar_type() == at::kFloat) {
    std::copy(src, src + n, cache.data_ptr<float>() + offset);
  } else {
    c10::BFloat16* dst = reinterpret_cast<c10::BFloat16*>(cache.data_ptr()) + offset;
    for (int64_t i = 0; i < n; i++) dst[i] = c10::BFloat16(src[i]);  // round to nearest even, as copy_ does
  }
}

bool GPT2::DecodeOneApplies(const at::Tensor& ids, const at::Tensor& attention_mask, const KVCache* cache) const {
  // adapters run on the general path (merge_and_unload() brings this one back)
  if (!cache || ids.size(0) != 1 || ids.size(1) != 1 || training || !MatVecEnabled() || !lora_.empty()) return false;
  if (at::GradMode::is_enabled())
    for (const auto& [name, t] : params_)
      if (t.requires_grad()) return false;
  if (!wte_.device().is_cpu() || (wte_.scalar_type() != at::kFloat && wte_.scalar_type() != at::kBFloat16))
    return false;
  if (attention_mask.defined() && (!attention_mask.device().is_cpu() || attention_mask.numel() != cache->length + 1))
    return false;
  for (size_t i = 0; i < layers_.size(); i++) {
    const Layer& L = layers_[i];
    if (!cache->k[i].is_contiguous() || !cache->v[i].is_contiguous() || cache->k[i].scalar_type() != KVDtype())
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
  const int64_t E = cfg_.n_embd, H = cfg_.n_head, D = E / H, I = cfg_.inner(), s = cache.length, S = s + 1;
  const int64_t id = ids.reshape({-1})[0].item<int64_t>(), pos = position_ids.reshape({-1})[0].item<int64_t>();
  if (id < 0 || id >= cfg_.vocab_size)
    throw UserError("token id " + std::to_string(id) + " is out of range for vocab_size " +
                    std::to_string(cfg_.vocab_size));
  if (pos < 0 || pos >= cfg_.n_positions)
    throw UserError("position " + std::to_string(pos) + " is out of range for n_positions " +
                    std::to_string(cfg_.n_positions));
  std::vector<uint8_t> allowed;
  if (attention_mask.defined()) {
    const at::Tensor m = attention_mask.reshape({-1}).to(at::kBool).contiguous();
    const bool* mp = m.data_ptr<bool>();
    if (!std::all_of(mp, mp + S, [](bool b) { return b; })) allowed.assign(mp, mp + S);
  }
  at::Tensor out = at::empty({1, 1, E}, wte_.options().dtype(at::kFloat));
  std::vector<float> buf(static_cast<size_t>(3 * E + 3 * E + I));
  float *x = buf.data(), *h = x + E, *y = h + E, *qkv = y + E, *f = qkv + 3 * E;
  const Floats wte(wte_), wpe(wpe_);
  for (int64_t e = 0; e < E; e++) x[e] = wte[id * E + e] + wpe[pos * E + e];
  const double scale = cfg_.scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(D)) : 1.0;
  // Each linear's rows streamed by both threads, then the serial step up to the next linear (its input quantized, for
  // integer weights) in the same parallel region, while the other thread reads the next linear's first rows into
  // cache: a step is what it runs and the weights it reads ahead.
  QuantizedX xq;
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
  auto linear = [&](const float* in, const at::Tensor& w, const at::Tensor& b, const QWeight* qw, float* out,
                    const NextStep& next) {
    if (qw)
      QMatVecInto(xq, *qw, b, out, &next);
    else
      MatVecKNInto(in, w, b, out, &next);
  };
  auto quantize = [&](const float* in, const QWeight* qw) {
    if (qw) xq = QuantizeInput(in, *qw);
  };
  // the residual of layer i - 1's MLP (none before layer 0), then layer i's first layer norm; past the last layer the
  // final layer norm into `out`
  float* final = out.data_ptr<float>();
  auto enter = [&](int64_t i) {
    if (i > 0)
      for (int64_t e = 0; e < E; e++) x[e] += h[e];
    if (i == cfg_.n_layer) {
      LayerNorm(x, Floats(ln_f_w_), Floats(ln_f_b_), cfg_.layer_norm_epsilon, E, final);
      return;
    }
    const Layer& L = layers_[i];
    LayerNorm(x, Floats(L.ln_1_w), Floats(L.ln_1_b), cfg_.layer_norm_epsilon, E, h);
    quantize(h, L.c_attn_q);
  };
  enter(0);
  for (int64_t i = 0; i < cfg_.n_layer; i++) {
    const Layer& L = layers_[i];
    // the serial steps between this layer's linears
    const auto store_kv = [&] {  // this token's key and value, at position s of each head
      for (int64_t hd = 0; hd < H; hd++) {
        Store(cache.k[i], (hd * cache.capacity() + s) * D, qkv + E + hd * D, D);
        Store(cache.v[i], (hd * cache.capacity() + s) * D, qkv + 2 * E + hd * D, D);
      }
    };
    const auto attention_residual_ln_2 = [&] {
      for (int64_t e = 0; e < E; e++) x[e] += h[e];
      LayerNorm(x, Floats(L.ln_2_w), Floats(L.ln_2_b), cfg_.layer_norm_epsilon, E, h);
      quantize(h, L.c_fc_q);
    };
    const auto enter_next = [&] { enter(i + 1); };
    // what the last linear reads ahead: layer i + 1's c_attn, or the LM head (GPT2::Logits: the quantized head, else
    // wte's [V, E] rows, which wte_.t() presents as a Conv1D's transposed view)
    const bool head = i + 1 == cfg_.n_layer;
    const at::Tensor next_w = head ? wte_.t() : layers_[i + 1].c_attn_w;
    const QWeight* next_q = head ? (lm_head_q_.q.defined() ? &lm_head_q_ : nullptr) : layers_[i + 1].c_attn_q;

    linear(h, L.c_attn_w, L.c_attn_b, L.c_attn_q, qkv, step(store_kv, L.attn_proj_w, L.attn_proj_q));
    const double layer_scale = cfg_.scale_attn_by_inverse_layer_idx ? scale / static_cast<double>(i + 1) : scale;
    AttendInto(qkv, cache.k[i], cache.v[i], S, layer_scale, allowed.empty() ? nullptr : allowed.data(), y);
    quantize(y, L.attn_proj_q);
    linear(y, L.attn_proj_w, L.attn_proj_b, L.attn_proj_q, h, step(attention_residual_ln_2, L.c_fc_w, L.c_fc_q));
    linear(h, L.c_fc_w, L.c_fc_b, L.c_fc_q, f, step([] {}, L.mlp_proj_w, L.mlp_proj_q));
    Activate(cfg_.activation, f, I);
    quantize(f, L.mlp_proj_q);
    linear(f, L.mlp_proj_w, L.mlp_proj_b, L.mlp_proj_q, h, step(enter_next, next_w, next_q));
  }
  return out.to(wte_.scalar_type());  // outputs keep the model's dtype
}

}  // namespace torchlm
