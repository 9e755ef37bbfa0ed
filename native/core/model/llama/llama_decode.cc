// Decoding through every layer on raw float32 buffers, as GPT-2's fused decoder does it: the matrix-vector kernels
// (float32, bfloat16 or q8 / q4 weights; float32 activations) for the seven linears, one-pass grouped-query attention
// over the cache, and RMSNorm, the rotary embedding, SwiGLU and residuals in plain loops. At a few rows libtorch's
// per-op dispatch costs more than these ops' arithmetic, so this path keeps a token to the weights' memory traffic.
// Over several rows (continuous batching's step, a quantized prompt) the integer kernels read each weight once for
// all of them, and each row computes what it would alone.
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

bool Llama::FusedDecoderSuits(const KVCache& cache) const {
  if (!Inference() || !MatVecEnabled() || !lora_.empty()) return false;
  // float32 activations over float32, bfloat16 or quantized weights, as GPT-2's decoder has them (the general path
  // computes a bfloat16 model in bfloat16, as transformers does)
  const at::ScalarType dtype = embed_tokens_.scalar_type();
  if (!embed_tokens_.device().is_cpu() || (dtype != at::kFloat && dtype != at::kBFloat16)) return false;
  for (size_t i = 0; i < layers_.size(); i++) {
    if (!cache.k[i].is_contiguous() || !cache.v[i].is_contiguous() || cache.k[i].scalar_type() != KVDtype())
      return false;
    const LlamaLayer& L = layers_[i];
    for (const LlamaLinear* l : {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.gate_proj, &L.up_proj, &L.down_proj})
      if (!(l->q ? !l->bias.defined() || l->bias.is_contiguous() : MatVecKNWeights(l->weight.t(), l->bias)))
        return false;
  }
  return lm_head_q_.q.defined() || MatVecKNWeights(lm_head_.t(), at::Tensor());
}

bool Llama::DecodeOneApplies(const at::Tensor& ids, const at::Tensor& attention_mask, const KVCache* cache) const {
  return OneTokenStep(ids, attention_mask, cache) && FusedDecoderSuits(*cache);
}

at::Tensor Llama::DecodeOne(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                            KVCache& cache) {
  const std::vector<uint8_t> allowed = AllowedPositions(attention_mask, cache.length + 1);
  return DecodeRows({ids.reshape({-1})[0].item<int64_t>()}, {position_ids.reshape({-1})[0].item<int64_t>()}, {0},
                    {cache.length}, allowed, cache);
}

at::Tensor Llama::DecodeRows(const std::vector<int64_t>& ids, const std::vector<int64_t>& positions,
                             const std::vector<int64_t>& slots, const std::vector<int64_t>& lengths,
                             const std::vector<uint8_t>& allowed, KVCache& cache) {
  const LlamaConfig& c = cfg_;
  const int64_t E = c.hidden_size, I = c.intermediate_size, H = c.num_attention_heads, KV = c.num_key_value_heads,
                D = c.head_dim, M = static_cast<int64_t>(ids.size()), cap = cache.capacity();
  CheckRows(ids, positions);
  // each row's angles as Hidden computes them (float32, the same ops)
  const at::Tensor freqs = at::tensor(positions, at::kLong).to(at::kFloat).unsqueeze(-1) * inv_freq_;  // [M, D / 2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  const at::Tensor cos_t = emb.cos().contiguous(), sin_t = emb.sin().contiguous();
  const float *cos = cos_t.data_ptr<float>(), *sin = sin_t.data_ptr<float>();

  // each buffer holds M rows
  std::vector<float> buf(static_cast<size_t>(M * (3 * E + H * D + 2 * KV * D + H * D + 2 * I)));
  float *x = buf.data(), *h = x + M * E, *o = h + M * E, *q = o + M * E, *k = q + M * H * D, *v = k + M * KV * D,
        *y = v + M * KV * D, *g = y + M * H * D, *u = g + M * I;
  const Floats embed(embed_tokens_);
  for (int64_t m = 0; m < M; m++)
    for (int64_t e = 0; e < E; e++) x[m * E + e] = embed[ids[m] * E + e];
  // Integer weights take every row in one pass over the weights, each row's input quantized once for the linears
  // that read it (q/k/v, gate/up); float weights take one row at a time (batched float decoding goes through GEMM in
  // Hidden instead).
  std::vector<QuantizedX> xq(static_cast<size_t>(M));
  auto linear = [&](const float* in, const LlamaLinear& l, float* out, bool same_input) {
    if (l.q) {
      const int64_t K = l.q->cols();
      if (!same_input)
        for (int64_t m = 0; m < M; m++) xq[m] = QuantizeInput(in + m * K, *l.q);
      QMatMulInto(xq.data(), M, *l.q, l.bias, out);
      return;
    }
    const int64_t N = l.weight.size(0), K = l.weight.size(1);
    for (int64_t m = 0; m < M; m++) MatVecKNInto(in + m * K, l.weight.t(), l.bias, out + m * N);
  };
  // q/k/v (and gate/up) share a quantized input where their weights share a format (q4's layers do; only its LM
  // head differs)
  auto shares = [](const LlamaLinear& a, const LlamaLinear& b) {
    return a.q && b.q && a.q->bits == b.q->bits && a.q->cols() == b.q->cols();
  };
  auto norm_rows = [&](const float* in, const at::Tensor& w, int64_t n, int64_t rows, float* out) {
    for (int64_t r = 0; r < rows; r++) RMSNormInto(in + r * n, Floats(w), c.rms_norm_eps, n, out + r * n);
  };
  std::vector<int64_t> attended(lengths);  // the positions each row attends to, its own included
  for (auto& a : attended) a++;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (int64_t i = 0; i < c.num_hidden_layers; i++) {
    const LlamaLayer& L = layers_[i];
    norm_rows(x, L.input_layernorm, E, M, h);
    linear(h, L.q_proj, q, false);
    linear(h, L.k_proj, k, shares(L.q_proj, L.k_proj));
    linear(h, L.v_proj, v, shares(L.q_proj, L.v_proj));
    if (c.qk_norm) {  // Qwen3: each head's query and key normalised before the rotation
      norm_rows(q, L.q_norm, D, M * H, q);
      norm_rows(k, L.k_norm, D, M * KV, k);
    }
    for (int64_t m = 0; m < M; m++) {
      Rotate(q + m * H * D, H, D, cos + m * D, sin + m * D);
      Rotate(k + m * KV * D, KV, D, cos + m * D, sin + m * D);
      for (int64_t hd = 0; hd < KV; hd++) {  // its key and value, at its position in its slot
        const int64_t at = ((slots[m] * KV + hd) * cap + lengths[m]) * D;
        StoreFloats(cache.k[i], at, k + (m * KV + hd) * D, D);
        StoreFloats(cache.v[i], at, v + (m * KV + hd) * D, D);
      }
    }
    if (M == 1)
      AttendInto(q, cache.k[i].narrow(0, slots[0], 1), cache.v[i].narrow(0, slots[0], 1), attended[0], scale,
                 allowed.empty() ? nullptr : allowed.data(), y, H / KV);
    else  // one parallel region for every row's heads
      AttendRowsInto(q, cache.k[i], cache.v[i], slots, attended, scale, y, H / KV);
    linear(y, L.o_proj, o, false);
    for (int64_t e = 0; e < M * E; e++) x[e] += o[e];
    norm_rows(x, L.post_attention_layernorm, E, M, h);
    linear(h, L.gate_proj, g, false);
    linear(h, L.up_proj, u, shares(L.gate_proj, L.up_proj));
    for (int64_t j = 0; j < M * I; j++) g[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];  // silu(gate) * up
    linear(g, L.down_proj, o, false);
    for (int64_t e = 0; e < M * E; e++) x[e] += o[e];
  }
  at::Tensor out = at::empty({M, 1, E}, embed_tokens_.options().dtype(at::kFloat));
  norm_rows(x, norm_, E, M, out.data_ptr<float>());
  return out.to(embed_tokens_.scalar_type());  // outputs keep the model's dtype
}

}  // namespace torchlm
