// Batch-1 decoding of one token through every layer on raw float32 buffers, as GPT-2's fused decoder does it: the
// matrix-vector kernels (float32, bfloat16 or q8 / q4 weights; float32 activations) for the seven linears, one-pass
// grouped-query attention over the cache, and RMSNorm, the rotary embedding, SwiGLU and residuals in plain loops. At
// one row libtorch's per-op dispatch costs more than these ops' arithmetic, so this path keeps the token to the
// weights' memory traffic.
#include "core/kernels/matvec.h"
#include "core/model/llama/llama.h"

#include <cmath>

namespace torchlm {

// LlamaRMSNorm over n values: the mean square, then x * rsqrt(ms + eps) * w (float32 or bfloat16 weights).
static void RMSNormInto(const float* x, Floats w, double eps, int64_t n, float* y) {
  double sq = 0;
  for (int64_t i = 0; i < n; i++) sq += static_cast<double>(x[i]) * x[i];
  const float r = static_cast<float>(1.0 / std::sqrt(sq / n + eps));
  for (int64_t i = 0; i < n; i++) y[i] = w[i] * (x[i] * r);
}

// Each head's [D] rotated in place as transformers' apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, where
// rotate_half pairs position d with d + D / 2 (x + (-y) rounds as x - y).
static void Rotate(float* x, int64_t heads, int64_t D, const float* cos, const float* sin) {
  const int64_t h = D / 2;
  for (int64_t hd = 0; hd < heads; hd++) {
    float* v = x + hd * D;
    for (int64_t d = 0; d < h; d++) {
      const float a = v[d], b = v[d + h];
      v[d] = a * cos[d] - b * sin[d];
      v[d + h] = b * cos[d + h] + a * sin[d + h];
    }
  }
}

bool Llama::DecodeOneApplies(const at::Tensor& ids, const at::Tensor& attention_mask, const KVCache* cache) const {
  if (!OneTokenStep(ids, attention_mask, cache) || !Inference() || !MatVecEnabled() || !lora_.empty()) return false;
  // float32 activations over float32, bfloat16 or quantized weights, as GPT-2's decoder has them (the general path
  // computes a bfloat16 model in bfloat16, as transformers does)
  const at::ScalarType dtype = embed_tokens_.scalar_type();
  if (!embed_tokens_.device().is_cpu() || (dtype != at::kFloat && dtype != at::kBFloat16)) return false;
  for (size_t i = 0; i < layers_.size(); i++) {
    if (!cache->k[i].is_contiguous() || !cache->v[i].is_contiguous() || cache->k[i].scalar_type() != dtype)
      return false;
    const LlamaLayer& L = layers_[i];
    for (const LlamaLinear* l : {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.gate_proj, &L.up_proj, &L.down_proj})
      if (!(l->q ? !l->bias.defined() || l->bias.is_contiguous() : MatVecKNWeights(l->weight.t(), l->bias)))
        return false;
  }
  return lm_head_q_.q.defined() || MatVecKNWeights(lm_head_.t(), at::Tensor());
}

at::Tensor Llama::DecodeOne(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                            KVCache& cache) {
  const LlamaConfig& c = cfg_;
  const int64_t E = c.hidden_size, I = c.intermediate_size, H = c.num_attention_heads, KV = c.num_key_value_heads,
                D = c.head_dim, S = cache.length + 1, len = cache.length;
  const int64_t id = ids.reshape({-1})[0].item<int64_t>(), pos = position_ids.reshape({-1})[0].item<int64_t>();
  CheckTokenIds(ids, c.vocab_size);
  const std::vector<uint8_t> allowed = AllowedPositions(attention_mask, S);
  // the angles as Hidden computes them (float32, the same ops), for this one position
  const at::Tensor freqs = inv_freq_ * static_cast<double>(pos);
  const at::Tensor emb = at::cat({freqs, freqs});
  const at::Tensor cos_t = emb.cos().contiguous(), sin_t = emb.sin().contiguous();
  const float *cos = cos_t.data_ptr<float>(), *sin = sin_t.data_ptr<float>();

  std::vector<float> buf(static_cast<size_t>(3 * E + H * D + 2 * KV * D + H * D + 2 * I));
  float *x = buf.data(), *h = x + E, *o = h + E, *q = o + E, *k = q + H * D, *v = k + KV * D, *y = v + KV * D,
        *g = y + H * D, *u = g + I;
  const Floats embed(embed_tokens_);
  for (int64_t e = 0; e < E; e++) x[e] = embed[id * E + e];
  auto linear = [](const float* in, const LlamaLinear& l, float* out) {
    if (l.q)
      QMatVecInto(QuantizeInput(in, *l.q), *l.q, l.bias, out);
    else
      MatVecKNInto(in, l.weight.t(), l.bias, out);
  };
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (int64_t i = 0; i < c.num_hidden_layers; i++) {
    const LlamaLayer& L = layers_[i];
    RMSNormInto(x, Floats(L.input_layernorm), c.rms_norm_eps, E, h);
    linear(h, L.q_proj, q);
    linear(h, L.k_proj, k);
    linear(h, L.v_proj, v);
    if (c.qk_norm) {  // Qwen3: each head's query and key normalised before the rotation
      for (int64_t hd = 0; hd < H; hd++) RMSNormInto(q + hd * D, Floats(L.q_norm), c.rms_norm_eps, D, q + hd * D);
      for (int64_t hd = 0; hd < KV; hd++) RMSNormInto(k + hd * D, Floats(L.k_norm), c.rms_norm_eps, D, k + hd * D);
    }
    Rotate(q, H, D, cos, sin);
    Rotate(k, KV, D, cos, sin);
    const int64_t cap = cache.capacity();
    for (int64_t hd = 0; hd < KV; hd++) {
      StoreFloats(cache.k[i], (hd * cap + len) * D, k + hd * D, D);
      StoreFloats(cache.v[i], (hd * cap + len) * D, v + hd * D, D);
    }
    AttendInto(q, cache.k[i], cache.v[i], S, scale, allowed.empty() ? nullptr : allowed.data(), y, H / KV);
    linear(y, L.o_proj, o);
    for (int64_t e = 0; e < E; e++) x[e] += o[e];
    RMSNormInto(x, Floats(L.post_attention_layernorm), c.rms_norm_eps, E, h);
    linear(h, L.gate_proj, g);
    linear(h, L.up_proj, u);
    for (int64_t j = 0; j < I; j++) g[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];  // silu(gate) * up
    linear(g, L.down_proj, o);
    for (int64_t e = 0; e < E; e++) x[e] += o[e];
  }
  at::Tensor out = at::empty({1, 1, E}, embed_tokens_.options().dtype(at::kFloat));
  RMSNormInto(x, Floats(norm_), c.rms_norm_eps, E, out.data_ptr<float>());
  return out.to(embed_tokens_.scalar_type());  // outputs keep the model's dtype
}

}  // namespace torchlm
