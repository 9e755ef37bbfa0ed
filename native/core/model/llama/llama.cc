#include "core/model/llama/llama.h"

#include "core/kernels/gemm.h"
#include "core/kernels/matvec.h"
#include "core/train/gradient_checkpointing.h"

#include <cmath>

namespace torchlm {

Llama::Llama(LlamaConfig cfg) : cfg_(std::move(cfg)) {
  // the core's own invariants (the caller's config was checked in lib/models/llama.ts): shapes it can build
  const LlamaConfig& c = cfg_;
  if (c.vocab_size < 1 || c.max_position_embeddings < 1 || c.hidden_size < 1 || c.intermediate_size < 1 ||
      c.num_hidden_layers < 1 || c.num_attention_heads < 1 || c.num_key_value_heads < 1 || c.head_dim < 2 ||
      c.head_dim % 2 != 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    throw UserError(
        "Llama config: sizes must be positive, head_dim even and num_attention_heads divisible by "
        "num_key_value_heads");
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Llama::Expected() const {
  const LlamaConfig& c = cfg_;
  const int64_t E = c.hidden_size, I = c.intermediate_size, Q = c.num_attention_heads * c.head_dim,
                KV = c.num_key_value_heads * c.head_dim, D = c.head_dim;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out = {{"model.embed_tokens.weight", {c.vocab_size, E}}};
  auto linear = [&](const std::string& name, int64_t in, int64_t o, bool bias) {
    out.push_back({name + ".weight", {o, in}});
    if (bias) out.push_back({name + ".bias", {o}});
  };
  for (int64_t i = 0; i < c.num_hidden_layers; i++) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    linear(p + "self_attn.q_proj", E, Q, c.qkv_bias);
    linear(p + "self_attn.k_proj", E, KV, c.qkv_bias);
    linear(p + "self_attn.v_proj", E, KV, c.qkv_bias);
    linear(p + "self_attn.o_proj", Q, E, c.o_bias);
    if (c.qk_norm) {
      out.push_back({p + "self_attn.q_norm.weight", {D}});
      out.push_back({p + "self_attn.k_norm.weight", {D}});
    }
    linear(p + "mlp.gate_proj", E, I, c.mlp_bias);
    linear(p + "mlp.up_proj", E, I, c.mlp_bias);
    linear(p + "mlp.down_proj", I, E, c.mlp_bias);
    out.push_back({p + "input_layernorm.weight", {E}});
    out.push_back({p + "post_attention_layernorm.weight", {E}});
  }
  out.push_back({"model.norm.weight", {E}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, E}});
  return out;
}

bool Llama::Skipped(const std::string& name) const {
  const std::string buffer = "rotary_emb.inv_freq";
  return (cfg_.tie_word_embeddings && name == "lm_head.weight") ||
         (name.size() >= buffer.size() && name.compare(name.size() - buffer.size(), buffer.size(), buffer) == 0);
}

void Llama::LoadChecked(NamedTensors tensors, bool allow_int8) {
  params_.clear();
  params_ = Match(
      std::move(tensors), Expected(), [](const std::string& n) { return n; },
      [&](const std::string& n) { return allow_int8 && Quantizable(n); });
  Bind();
}

bool Llama::Quantizable(const std::string& name) const {
  const std::string w = ".weight";
  if (name == "lm_head.weight") return !cfg_.tie_word_embeddings;
  return name.size() > w.size() && name.compare(name.size() - w.size(), w.size(), w) == 0 &&
         LoraAdaptable(name.substr(0, name.size() - w.size()));
}

void Llama::InitRandom(at::ScalarType dtype, at::Device device) {
  params_.clear();
  for (const auto& [name, shape] : Expected()) {
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool norm = name.find("norm.weight") != std::string::npos;
    at::Tensor t = bias ? at::zeros(shape) : norm ? at::ones(shape) : at::randn(shape) * cfg_.initializer_range;
    params_.emplace_back(name, t.to(device, dtype));
  }
  Bind();
}

void Llama::Bind() {
  std::map<std::string, at::Tensor> m(params_.begin(), params_.end());
  auto get = [&](const std::string& n) {
    auto it = m.find(n);
    return it == m.end() ? at::Tensor() : it->second;
  };
  embed_tokens_ = m.at("model.embed_tokens.weight");
  norm_ = m.at("model.norm.weight");
  lm_head_ = cfg_.tie_word_embeddings ? embed_tokens_ : m.at("lm_head.weight");
  inv_freq_ = InverseFrequencies().to(embed_tokens_.device());
  layers_.clear();
  for (int64_t i = 0; i < cfg_.num_hidden_layers; i++) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto linear = [&](const std::string& module) {
      return LlamaLinear{m.at(p + module + ".weight"), get(p + module + ".bias"), FindLora(p + module),
                         FindQuant(p + module + ".weight")};
    };
    layers_.push_back(LlamaLayer{m.at(p + "input_layernorm.weight"), linear("self_attn.q_proj"),
                                 linear("self_attn.k_proj"), linear("self_attn.v_proj"), linear("self_attn.o_proj"),
                                 get(p + "self_attn.q_norm.weight"), get(p + "self_attn.k_norm.weight"),
                                 m.at(p + "post_attention_layernorm.weight"), linear("mlp.gate_proj"),
                                 linear("mlp.up_proj"), linear("mlp.down_proj")});
  }
}

static const char* const kLinears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

bool Llama::LoraAdaptable(const std::string& module) const {
  const std::string p = "model.layers.";
  if (module.compare(0, p.size(), p) != 0) return false;
  const size_t dot = module.find('.', p.size());
  if (dot == std::string::npos) return false;
  for (const char* l : kLinears)
    if (module.compare(dot + 1, std::string::npos, l) == 0) return true;
  return false;
}

std::string Llama::LoraModules() const {
  return "a linear layer of this model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj of "
         "model.layers.0 to model.layers." +
         std::to_string(cfg_.num_hidden_layers - 1) + ")";
}

// transformers' _compute_default_rope_parameters, _compute_linear_scaling_rope_parameters and
// _compute_llama3_parameters, in float32 and in its order of operations (a scalar over a tensor is its reciprocal
// times the scalar, as PyTorch computes it).
at::Tensor Llama::InverseFrequencies() const {
  const RopeConfig& r = cfg_.rope;
  const int64_t D = cfg_.head_dim;
  const at::Tensor exponents = at::arange(0, D, 2, at::kLong).to(at::kFloat) / static_cast<double>(D);
  at::Tensor inv = at::pow(r.theta, exponents).reciprocal();
  if (r.type == RopeType::kLinear) return inv / r.factor;
  if (r.type == RopeType::kDefault) return inv;
  const double old = static_cast<double>(r.original_max_position_embeddings);
  const double low_wavelen = old / r.low_freq_factor, high_wavelen = old / r.high_freq_factor;
  const at::Tensor wavelen = inv.reciprocal() * (2 * M_PI);
  at::Tensor scaled = at::where(wavelen > low_wavelen, inv / r.factor, inv);
  const at::Tensor smooth = (wavelen.reciprocal() * old - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
  const at::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
  const at::Tensor medium = (wavelen < high_wavelen).logical_not().logical_and((wavelen > low_wavelen).logical_not());
  return at::where(medium, smoothed, scaled);
}

KVCache Llama::NewCache(int64_t batch, int64_t capacity) const {
  KVCache c;
  const at::TensorOptions o = embed_tokens_.options().dtype(KVDtype()).requires_grad(false);
  for (int64_t i = 0; i < cfg_.num_hidden_layers; i++) {
    c.k.push_back(at::empty({batch, cfg_.num_key_value_heads, capacity, cfg_.head_dim}, o));
    c.v.push_back(at::empty({batch, cfg_.num_key_value_heads, capacity, cfg_.head_dim}, o));
  }
  return c;
}

// nn.Linear (weights [out, in]): the matrix-vector kernel for one row, oneDNN for many, else libtorch's linear.
static at::Tensor LinearBase(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!at::GradMode::is_enabled() && x.scalar_type() == at::kFloat)
    if (at::Tensor y = MatVecNK(x, w); y.defined()) return b.defined() ? y.add_(b) : y;
  if (at::Tensor y = GemmLinear(x, w, b, true); y.defined()) return y;
  if (at::Tensor y = TrainLinear(x, w, b, true); y.defined()) return y;
  return at::linear(x, w, b.defined() ? std::optional<at::Tensor>(b) : std::nullopt);
}

at::Tensor Llama::Linear(const at::Tensor& x, const LlamaLinear& l) const {
  at::Tensor y = l.q ? QLinear(x, *l.q, l.bias) : LinearBase(x, l.weight, l.bias);
  return l.lora ? y + LoraDelta(*l.lora, x, training, y.scalar_type()) : y;
}

// LlamaRMSNorm: the mean square in float32, the weight applied in the input's dtype.
at::Tensor Llama::RMSNorm(const at::Tensor& x, const at::Tensor& w) const {
  at::Tensor h = x.to(at::kFloat);
  h = h * at::rsqrt(h.pow(2).mean(-1, true) + cfg_.rms_norm_eps);
  return w * h.to(x.scalar_type());
}

static at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

at::Tensor Llama::Hidden(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                         KVCache* cache) {
  const int64_t T = ids.size(1), past = cache ? cache->length : 0;
  const bool ragged = cache && cache->ragged();
  if (ragged) CheckRagged(ids, *cache, cfg_.max_position_embeddings);
  const int64_t S = ragged ? 1 : past + T;
  if (S > cfg_.max_position_embeddings)
    throw UserError("sequence length " + std::to_string(S) + " is longer than max_position_embeddings " +
                    std::to_string(cfg_.max_position_embeddings));
  if (cache && S > cache->capacity()) throw UserError("KV cache is too small for the sequence");
  if (!quantization_.empty() && at::GradMode::is_enabled() && training)
    throw UserError(
        "Training a " + quantization_ +
        " model is not supported: its weights are quantized for decoding; load the model in float32 to train it");
  if (DecodeOneApplies(ids, attention_mask, cache)) return DecodeOne(ids, position_ids, attention_mask, *cache);
  if (at::Tensor h = QuantizedRows(ids, position_ids, attention_mask, cache); h.defined()) return h;
  const at::ScalarType compute = embed_tokens_.scalar_type();
  BlockInputs in;
  in.bias = AttentionBias(ids, attention_mask, past, ragged, compute);
  // LlamaRotaryEmbedding: the angles in float32 (autocast off), cos and sin in the activations' dtype
  const at::Tensor freqs = position_ids.to(at::kFloat).unsqueeze(-1) * inv_freq_;  // [B, T, D / 2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  in.cos = emb.cos().to(compute);
  in.sin = emb.sin().to(compute);

  at::Tensor x = at::embedding(embed_tokens_, ids);
  const bool checkpoint = gradient_checkpointing && training && !cache && at::GradMode::is_enabled();
  for (int64_t i = 0; i < cfg_.num_hidden_layers; i++)
    x = checkpoint ? CheckpointedBlock(*this, i, x, in, compute) : Block(i, x, in, cache, compute);
  return RMSNorm(x, norm_);
}

at::Tensor Llama::Block(int64_t i, const at::Tensor& x0, const BlockInputs& in, KVCache* cache, at::ScalarType) {
  const LlamaLayer& L = layers_[i];
  const at::Tensor x = x0 + Attention(i, RMSNorm(x0, L.input_layernorm), in, cache);
  const at::Tensor h = RMSNorm(x, L.post_attention_layernorm);
  // LlamaMLP: down(silu(gate(h)) * up(h))
  return x + Linear(at::silu(Linear(h, L.gate_proj)) * Linear(h, L.up_proj), L.down_proj);
}

at::Tensor Llama::Attention(int64_t i, const at::Tensor& x, const BlockInputs& in, KVCache* cache) {
  const LlamaLayer& L = layers_[i];
  const int64_t B = x.size(0), T = x.size(1), H = cfg_.num_attention_heads, KV = cfg_.num_key_value_heads,
                D = cfg_.head_dim;
  at::Tensor q = Linear(x, L.q_proj).view({B, T, H, D});
  at::Tensor k = Linear(x, L.k_proj).view({B, T, KV, D});
  const at::Tensor v = Linear(x, L.v_proj).view({B, T, KV, D}).transpose(1, 2);
  if (cfg_.qk_norm) {  // Qwen3: each head's query and key normalised before the rotation
    q = RMSNorm(q, L.q_norm);
    k = RMSNorm(k, L.k_norm);
  }
  q = q.transpose(1, 2);  // [B, H, T, D]
  k = k.transpose(1, 2);
  const at::Tensor cos = in.cos.unsqueeze(1), sin = in.sin.unsqueeze(1);
  q = q * cos + RotateHalf(q) * sin;
  k = k * cos + RotateHalf(k) * sin;
  at::Tensor y;
  if (cache && cache->ragged()) {
    y = RaggedAttention(q, k, v, *cache, i);
  } else {
    at::Tensor keys = k, values = v;
    if (cache) {
      const int64_t s = cache->length;
      cache->k[i].narrow(2, s, T).copy_(k);
      cache->v[i].narrow(2, s, T).copy_(v);
      // a cache kept narrower than the activations (q8 / q4's bfloat16) widened to them
      keys = cache->k[i].narrow(2, 0, s + T).to(q.scalar_type());
      values = cache->v[i].narrow(2, 0, s + T).to(q.scalar_type());
    }
    y = Attend(q, keys, values, in.bias, !in.bias.defined() && T > 1);
  }
  return Linear(y.transpose(1, 2).reshape({B, T, H * D}), L.o_proj);
}

at::Tensor Llama::RaggedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, KVCache& cache,
                                  int64_t i) {
  const int64_t B = q.size(0);
  const at::ScalarType kv = cache.k[i].scalar_type();
  if (q.device().is_cpu() && MatVecEnabled() && (kv == at::kFloat || kv == at::kBFloat16) &&
      cache.k[i].is_contiguous() && cache.v[i].is_contiguous()) {
    // every row's heads in one parallel region, each as the batch-1 decoder attends (a libtorch attention per row
    // cost more in dispatch than its arithmetic)
    const at::Tensor kc = k.to(kv).contiguous(), vc = v.to(kv).contiguous(), qf = q.to(at::kFloat).contiguous();
    std::vector<int64_t> attended(cache.lengths);
    for (int64_t b = 0; b < B; b++) {
      const int64_t slot = cache.slots[b], len = cache.lengths[b];
      cache.k[i].select(0, slot).narrow(1, len, 1).copy_(kc.select(0, b));
      cache.v[i].select(0, slot).narrow(1, len, 1).copy_(vc.select(0, b));
      attended[b] = len + 1;
    }
    at::Tensor y = at::empty(qf.sizes(), qf.options());  // [B, H, 1, D]
    AttendRowsInto(qf.data_ptr<float>(), cache.k[i], cache.v[i], cache.slots, attended,
                   1.0 / std::sqrt(static_cast<double>(cfg_.head_dim)), y.data_ptr<float>(),
                   cfg_.num_attention_heads / cfg_.num_key_value_heads);
    return y.to(q.scalar_type());
  }
  std::vector<at::Tensor> ys;
  for (int64_t b = 0; b < B; b++) {
    const int64_t slot = cache.slots[b], len = cache.lengths[b];
    cache.k[i].select(0, slot).narrow(1, len, 1).copy_(k.select(0, b));
    cache.v[i].select(0, slot).narrow(1, len, 1).copy_(v.select(0, b));
    ys.push_back(Attend(q.narrow(0, b, 1), cache.k[i].narrow(0, slot, 1).narrow(2, 0, len + 1).to(q.scalar_type()),
                        cache.v[i].narrow(0, slot, 1).narrow(2, 0, len + 1).to(q.scalar_type()), at::Tensor(), false));
  }
  return at::cat(ys, 0);
}

// Grouped-query attention: each key and value head serves num_attention_heads / num_key_value_heads query heads
// (transformers' repeat_kv), scaled by head_dim^-0.5.
at::Tensor Llama::Attend(const at::Tensor& q, const at::Tensor& k0, const at::Tensor& v0, const at::Tensor& bias,
                         bool causal) const {
  const int64_t groups = cfg_.num_attention_heads / cfg_.num_key_value_heads;
  const at::Tensor k = groups > 1 ? k0.repeat_interleave(groups, 1) : k0;
  const at::Tensor v = groups > 1 ? v0.repeat_interleave(groups, 1) : v0;
  const double scale = 1.0 / std::sqrt(static_cast<double>(cfg_.head_dim));
  const double dropout = training ? cfg_.attention_dropout : 0.0;
  if (UseSdpa())
    return at::scaled_dot_product_attention(q, k, v, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt,
                                            dropout, causal, scale);
  at::Tensor att = at::matmul(q, k.transpose(-1, -2)).mul_(scale);
  if (bias.defined()) att = att + bias;
  if (causal) {
    const int64_t T = q.size(2), S = k.size(2);
    att = att.masked_fill(at::ones({T, S}, q.options().dtype(at::kBool)).triu(S - T + 1), -INFINITY);
  }
  att = at::dropout(at::softmax(att, -1, at::kFloat).to(v.scalar_type()), dropout, training);
  return at::matmul(att, v);
}

std::vector<at::Tensor> Llama::LayerParameters(int64_t i) const {
  const LlamaLayer& L = layers_[i];
  const LlamaLinear* linears[] = {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.gate_proj, &L.up_proj, &L.down_proj};
  std::vector<at::Tensor> ps;
  for (const at::Tensor& t : {L.input_layernorm, L.q_norm, L.k_norm, L.post_attention_layernorm})
    if (t.defined()) ps.push_back(t);
  for (const LlamaLinear* l : linears)
    for (const at::Tensor& t : {l->weight, l->bias})
      if (t.defined()) ps.push_back(t);
  for (const LlamaLinear* l : linears)
    if (l->lora) ps.insert(ps.end(), {l->lora->A, l->lora->B});
  return ps;
}

at::Tensor Llama::Logits(const at::Tensor& hidden) const {
  if (lm_head_q_.q.defined()) return QLinear(hidden, lm_head_q_, at::Tensor());  // a quantized model never trains
  // a decoded token's row on the matrix-vector kernel in bfloat16 too, as GPT-2's head: float32 sums rounded to
  // bfloat16 once, as a bfloat16 GEMM rounds them (oneDNN's one-row bfloat16 product took 30% of a token's time)
  if (!at::GradMode::is_enabled())
    if (at::Tensor y = MatVecNK(hidden, lm_head_); y.defined()) return y;
  return LinearBase(hidden, lm_head_, at::Tensor());
}

at::Tensor Llama::TrainingLoss(const at::Tensor& hidden, const at::Tensor& labels) const {
  if (at::Tensor loss = LMHeadLoss(hidden, lm_head_, labels); loss.defined()) return loss;
  return CausalLMLoss(Logits(hidden), labels);
}

}  // namespace torchlm
