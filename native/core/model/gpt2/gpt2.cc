#include "core/model/gpt2/gpt2.h"
#include "core/runtime/env.h"
#include "core/train/gradient_checkpointing.h"

#include <cstring>

#include "core/kernels/gemm.h"
#include "core/kernels/matvec.h"

#include <cmath>
#include <set>

namespace torchlm {

GPT2::GPT2(GPT2Config cfg) : cfg_(std::move(cfg)) {
  // the core's own invariants (the caller's config was checked in lib/config.ts): shapes it can build
  if (cfg_.vocab_size < 1 || cfg_.n_positions < 1 || cfg_.n_embd < 1 || cfg_.n_layer < 1 || cfg_.n_head < 1 ||
      cfg_.n_inner < 0 || cfg_.n_embd % cfg_.n_head != 0)
    throw UserError("GPT-2 config: sizes must be positive and n_embd divisible by n_head");
}

std::vector<std::pair<std::string, std::vector<int64_t>>> GPT2::Expected() const {
  const int64_t E = cfg_.n_embd, I = cfg_.inner();
  std::vector<std::pair<std::string, std::vector<int64_t>>> out = {{"wte.weight", {cfg_.vocab_size, E}},
                                                                   {"wpe.weight", {cfg_.n_positions, E}}};
  for (int64_t i = 0; i < cfg_.n_layer; i++) {
    std::string p = "h." + std::to_string(i) + ".";
    out.push_back({p + "ln_1.weight", {E}});
    out.push_back({p + "ln_1.bias", {E}});
    out.push_back({p + "attn.c_attn.weight", {E, 3 * E}});
    out.push_back({p + "attn.c_attn.bias", {3 * E}});
    out.push_back({p + "attn.c_proj.weight", {E, E}});
    out.push_back({p + "attn.c_proj.bias", {E}});
    out.push_back({p + "ln_2.weight", {E}});
    out.push_back({p + "ln_2.bias", {E}});
    out.push_back({p + "mlp.c_fc.weight", {E, I}});
    out.push_back({p + "mlp.c_fc.bias", {I}});
    out.push_back({p + "mlp.c_proj.weight", {I, E}});
    out.push_back({p + "mlp.c_proj.bias", {E}});
  }
  out.push_back({"ln_f.weight", {E}});
  out.push_back({"ln_f.bias", {E}});
  return out;
}

std::string GPT2::ModelName(const std::string& name) const {
  return name.rfind("transformer.", 0) == 0 ? name.substr(12) : name;
}

std::string GPT2::CheckpointName(const std::string& name) const {
  return name.rfind("lm_head.", 0) == 0 ? name : "transformer." + name;
}

bool GPT2::Skipped(const std::string& name) const { return IsBuffer(name) || name == "lm_head.weight"; }

bool GPT2::IsConv1DWeight(const std::string& name) {
  for (const char* m : {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"}) {
    const size_t n = std::strlen(m);
    if (name.size() > n && name.compare(name.size() - n, n, m) == 0) return true;
  }
  return false;
}

std::string GPT2::LoraModules() const {
  return "a Conv1D layer of this model (c_attn, c_proj or c_fc of h.0 to h." + std::to_string(cfg_.n_layer - 1) + ")";
}

void GPT2::LoadChecked(NamedTensors tensors, bool allow_int8) {
  params_.clear();
  // params_ holds the only references after Match, so a weight laid out again frees its first copy at once
  params_ = Match(
      std::move(tensors), Expected(), [this](const std::string& n) { return ModelName(n); },
      [allow_int8](const std::string& n) { return allow_int8 && IsConv1DWeight(n); });
  LayOutConv1D();
  Bind();
}

void GPT2::InitRandom(at::ScalarType dtype, at::Device device) {
  params_.clear();
  const double std = 0.02, proj_std = 0.02 / std::sqrt(2.0 * cfg_.n_layer);
  for (const auto& [name, shape] : Expected()) {
    at::Tensor t;
    bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    bool is_ln = name.find("ln_") != std::string::npos;
    if (is_bias)
      t = at::zeros(shape);
    else if (is_ln)
      t = at::ones(shape);
    else if (name.find("c_proj.weight") != std::string::npos)
      t = at::randn(shape) * proj_std;
    else
      t = at::randn(shape) * std;
    params_.emplace_back(name, t.to(device, dtype));
  }
  LayOutConv1D();
  Bind();
}

// On the CPU in bfloat16 each Conv1D weight [in, out] is the transposed view of [out, in] rows: batch-1 decoding reads
// an output's weights as one sequential row (about 31 GB/s here, against about 24 for eight [in, out] rows streamed
// together), and libtorch's ops, autograd (gradients take their parameter's strides) and the fused AdamW (states made
// with zeros_like) all take the view as it is. Elsewhere they stay [in, out] contiguous, the layout the float32 GEMM
// paths are measured on. Moves between the two copy each weight once.
void GPT2::LayOutConv1D() {
  layers_.clear();  // its references would keep each weight's first copy alive until Bind()
  for (auto& [name, t] : params_) {
    if (!IsConv1DWeight(name) || t.dim() != 2 || !at::isFloatingType(t.scalar_type()))
      continue;  // not a quantized load's stand-in
    const bool rows = t.device().is_cpu() && t.scalar_type() == at::kBFloat16;
    if (rows ? t.t().is_contiguous() : t.is_contiguous()) continue;
    const bool rg = t.requires_grad();
    at::Tensor u = rows ? t.detach().t().contiguous().t() : t.detach().contiguous();
    if (rg) u.requires_grad_(true);
    t = u;
  }
}

void GPT2::Bind() {
  std::map<std::string, at::Tensor> m(params_.begin(), params_.end());
  wte_ = m.at("wte.weight");
  wpe_ = m.at("wpe.weight");
  ln_f_w_ = m.at("ln_f.weight");
  ln_f_b_ = m.at("ln_f.bias");
  layers_.clear();
  for (int64_t i = 0; i < cfg_.n_layer; i++) {
    std::string p = "h." + std::to_string(i) + ".";
    layers_.push_back(Layer{m.at(p + "ln_1.weight"), m.at(p + "ln_1.bias"), m.at(p + "attn.c_attn.weight"),
                            m.at(p + "attn.c_attn.bias"), m.at(p + "attn.c_proj.weight"), m.at(p + "attn.c_proj.bias"),
                            m.at(p + "ln_2.weight"), m.at(p + "ln_2.bias"), m.at(p + "mlp.c_fc.weight"),
                            m.at(p + "mlp.c_fc.bias"), m.at(p + "mlp.c_proj.weight"), m.at(p + "mlp.c_proj.bias")});
    auto lora = [&](const std::string& module) { return FindLora(p + module); };
    Layer& L = layers_.back();
    auto quantized = [&](const std::string& module) { return FindQuant(p + module + ".weight"); };
    L.c_attn_q = quantized("attn.c_attn");
    L.attn_proj_q = quantized("attn.c_proj");
    L.c_fc_q = quantized("mlp.c_fc");
    L.mlp_proj_q = quantized("mlp.c_proj");
    L.c_attn_lora = lora("attn.c_attn");
    L.attn_proj_lora = lora("attn.c_proj");
    L.c_fc_lora = lora("mlp.c_fc");
    L.mlp_proj_lora = lora("mlp.c_proj");
  }
}

void GPT2::Apply(const std::function<at::Tensor(const at::Tensor&)>& fn) {  // with the adapters
  if (!quantization_.empty())
    throw UserError("a " + quantization_ +
                    " model stays on the CPU as it was loaded: load it again to move it or change its dtype");
  auto move = [&](at::Tensor& t) {
    bool rg = t.requires_grad();
    t = fn(t.detach());
    if (rg) t.requires_grad_(true);
  };
  for (auto& [name, t] : params_) move(t);
  for (auto& [name, l] : lora_) {
    move(l.A);
    move(l.B);
  }
  LayOutConv1D();
  Bind();
}

KVCache GPT2::NewCache(int64_t batch, int64_t capacity) const {
  KVCache c;
  const int64_t H = cfg_.n_head, D = cfg_.n_embd / cfg_.n_head;
  const at::TensorOptions o = wte_.options().dtype(KVDtype()).requires_grad(false);
  for (int64_t i = 0; i < cfg_.n_layer; i++) {
    c.k.push_back(at::empty({batch, H, capacity, D}, o));
    c.v.push_back(at::empty({batch, H, capacity, D}, o));
  }
  return c;
}

// Conv1D: weights stored [in, out].
static at::Tensor Conv1DBase(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (at::Tensor y = MatVecKN(x, w, b); y.defined()) return y;  // one row (batch-1 decoding)
  if (at::Tensor y = GemmLinear(x, w, b, false); y.defined()) return y;
  if (at::Tensor y = TrainLinear(x, w, b, false); y.defined()) return y;
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(1);
  if (x.scalar_type() != w.scalar_type())  // float32 activations over bfloat16 weights
    return at::addmm(b, x.reshape({-1, x.size(-1)}).to(w.scalar_type()), w).view(sizes).to(x.scalar_type());
  return at::addmm(b, x.reshape({-1, x.size(-1)}), w).view(sizes);
}

// With a LoRA adapter, its term is added to the base layer's output (PEFT's LoraLayer.forward); a quantized weight
// takes the integer kernels.
static at::Tensor Conv1D(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const Lora* lora, bool training,
                         const QWeight* qw = nullptr) {
  at::Tensor y = qw ? QLinear(x, *qw, b) : Conv1DBase(x, w, b);
  return lora ? y + LoraDelta(*lora, x, training, y.scalar_type()) : y;
}

at::Tensor GPT2::Attention(int64_t i, const at::Tensor& x, const at::Tensor& bias, KVCache* cache) {
  const Layer& L = layers_[i];
  const int64_t B = x.size(0), T = x.size(1), E = cfg_.n_embd, H = cfg_.n_head, D = E / H;
  at::Tensor qkv_flat = Conv1D(x, L.c_attn_w, L.c_attn_b, L.c_attn_lora, training, L.c_attn_q);
  double scale = 1.0;
  if (cfg_.scale_attn_weights) scale /= std::sqrt(static_cast<double>(D));
  if (cfg_.scale_attn_by_inverse_layer_idx) scale /= static_cast<double>(i + 1);
  auto qkv = qkv_flat.view({B, T, 3, H, D}).permute({2, 0, 3, 1, 4});  // [3, B, H, T, D]
  at::Tensor q = qkv[0], k = qkv[1], v = qkv[2];
  at::Tensor y;
  if (cache && cache->ragged()) return AttentionOutput(i, RaggedAttention(q, k, v, *cache, i, scale), B, T);
  if (cache) {
    int64_t s = cache->length;
    cache->k[i].narrow(2, s, T).copy_(k);
    cache->v[i].narrow(2, s, T).copy_(v);
    if (T == 1 && cache->k[i].scalar_type() == at::kBFloat16 && q.scalar_type() == at::kFloat && q.device().is_cpu() &&
        !at::GradMode::is_enabled() && MatVecEnabled()) {
      // batched decoding over a cache kept narrower than the activations (q8 / q4's bfloat16): each row through the
      // fused decoder's attention, which reads the cache as it is, rather than widening the whole cache every step
      y = at::empty({B, H, 1, D}, q.options());
      const at::Tensor qc = q.contiguous();
      const at::Tensor allowed =
          bias.defined() ? bias.eq(0).to(at::kByte).contiguous() : at::Tensor();  // [B or 1, 1, 1, S]
      for (int64_t b = 0; b < B; b++)
        AttendInto(qc.data_ptr<float>() + b * H * D, cache->k[i].narrow(0, b, 1), cache->v[i].narrow(0, b, 1), s + 1,
                   scale,
                   allowed.defined() ? allowed.data_ptr<uint8_t>() + (allowed.size(0) == 1 ? 0 : b) * (s + 1) : nullptr,
                   y.data_ptr<float>() + b * H * D);
      return AttentionOutput(i, y, B, T);
    }
    k = cache->k[i].narrow(2, 0, s + T).to(q.scalar_type());
    v = cache->v[i].narrow(2, 0, s + T).to(q.scalar_type());
  }
  if (UseSdpa()) {
    // PyTorch 2's fused attention (flash on the CPU, flash / cuDNN / memory-efficient on CUDA): no [T, S] score
    // matrix kept for backward. With no padding and no cache, the causal mask is implied rather than read.
    const bool causal = !bias.defined() && T > 1;
    y = at::scaled_dot_product_attention(q, k, v, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt,
                                         training ? cfg_.attn_pdrop : 0.0, causal, scale);
  } else {
    at::Tensor att = at::matmul(q, k.transpose(-1, -2)).mul_(scale);
    if (bias.defined()) att = att + bias;
    att = at::softmax(att, -1, at::kFloat).to(v.scalar_type());
    att = at::dropout(att, cfg_.attn_pdrop, training);
    y = at::matmul(att, v);
  }
  return AttentionOutput(i, y, B, T);
}

at::Tensor GPT2::RaggedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, KVCache& cache,
                                 int64_t i, double scale) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3);
  const at::Tensor kc = k.to(cache.k[i].scalar_type()).contiguous(), vc = v.to(cache.v[i].scalar_type()).contiguous();
  const at::Tensor qf = q.to(at::kFloat).contiguous();  // [B, H, 1, D]
  at::Tensor y = at::empty({B, H, 1, D}, qf.options());
  for (int64_t b = 0; b < B; b++) {
    const int64_t slot = cache.slots[b], len = cache.lengths[b];
    cache.k[i].select(0, slot).narrow(1, len, 1).copy_(kc.select(0, b));
    cache.v[i].select(0, slot).narrow(1, len, 1).copy_(vc.select(0, b));
    AttendInto(qf.data_ptr<float>() + b * H * D, cache.k[i].narrow(0, slot, 1), cache.v[i].narrow(0, slot, 1), len + 1,
               scale, nullptr, y.data_ptr<float>() + b * H * D);
  }
  return y.to(q.scalar_type());
}

// Attention's heads y [B, H, T, D] joined and projected.
at::Tensor GPT2::AttentionOutput(int64_t i, const at::Tensor& y, int64_t B, int64_t T) {
  const Layer& L = layers_[i];
  const at::Tensor joined = y.transpose(1, 2).reshape({B, T, cfg_.n_embd});
  return at::dropout(Conv1D(joined, L.attn_proj_w, L.attn_proj_b, L.attn_proj_lora, training, L.attn_proj_q),
                     cfg_.resid_pdrop, training);
}

static at::Tensor Activate(Activation a, const at::Tensor& x) {
  switch (a) {
    case Activation::kRelu:
      return at::relu(x);
    case Activation::kGelu:
      return at::gelu(x);
    case Activation::kGeluTanh:
      break;
  }
  return at::gelu(x, "tanh");  // gelu_new and gelu_pytorch_tanh
}

at::Tensor GPT2::Hidden(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                        KVCache* cache) {
  const int64_t T = ids.size(1);
  const int64_t past = cache ? cache->length : 0;
  // bfloat16 weights on the CPU, batch 1, inference: activations stay float32 (float32 sums are more accurate, and
  // the matrix-vector kernels widen each bfloat16 weight exactly as they stream it).
  const at::ScalarType compute = wte_.scalar_type() == at::kBFloat16 && wte_.device().is_cpu() && ids.size(0) == 1 &&
                                         !training && !at::GradMode::is_enabled() && MatVecEnabled()
                                     ? at::kFloat
                                     : wte_.scalar_type();
  const bool ragged = cache && cache->ragged();
  if (ragged) CheckRagged(ids, *cache, cfg_.n_positions);
  const int64_t S = ragged ? 1 : past + T;
  if (!quantization_.empty() && at::GradMode::is_enabled() && (training || wte_.requires_grad()))
    throw UserError(
        "Training a " + quantization_ +
        " model is not supported: its weights are quantized for decoding; load the model in float32 to train it");
  if (S > cfg_.n_positions)
    throw UserError("sequence length " + std::to_string(S) + " is longer than n_positions " +
                    std::to_string(cfg_.n_positions));
  if (cache && S > cache->capacity()) throw UserError("KV cache is too small for the sequence");
  if (DecodeOneApplies(ids, attention_mask, cache)) return DecodeOne(ids, position_ids, attention_mask, *cache);
  if (at::Tensor h = QuantizedRows(ids, position_ids, attention_mask, cache); h.defined()) return h;

  BlockInputs in;
  in.bias = AttentionBias(ids, attention_mask, past, ragged, compute);

  at::Tensor x = (at::embedding(wte_, ids) + at::embedding(wpe_, position_ids)).to(compute);
  x = at::dropout(x, cfg_.embd_pdrop, training);
  const bool checkpoint = gradient_checkpointing && training && !cache && at::GradMode::is_enabled();
  for (int64_t i = 0; i < cfg_.n_layer; i++)
    x = checkpoint ? CheckpointedBlock(*this, i, x, in, compute) : Block(i, x, in, cache, compute);
  return at::layer_norm(x, {cfg_.n_embd}, ln_f_w_.to(compute), ln_f_b_.to(compute), cfg_.layer_norm_epsilon)
      .to(wte_.scalar_type());  // outputs keep the model's dtype
}

at::Tensor GPT2::Block(int64_t i, const at::Tensor& x0, const BlockInputs& in, KVCache* cache, at::ScalarType compute) {
  const Layer& L = layers_[i];
  auto ln = [&](const at::Tensor& t, const at::Tensor& w, const at::Tensor& b) {
    return at::layer_norm(t, {cfg_.n_embd}, w.to(compute), b.to(compute), cfg_.layer_norm_epsilon);
  };
  at::Tensor x = x0 + Attention(i, ln(x0, L.ln_1_w, L.ln_1_b), in.bias, cache);
  at::Tensor h = ln(x, L.ln_2_w, L.ln_2_b);
  h = Conv1D(Activate(cfg_.activation, Conv1D(h, L.c_fc_w, L.c_fc_b, L.c_fc_lora, training, L.c_fc_q)), L.mlp_proj_w,
             L.mlp_proj_b, L.mlp_proj_lora, training, L.mlp_proj_q);
  return x + at::dropout(h, cfg_.resid_pdrop, training);
}

std::vector<at::Tensor> GPT2::LayerParameters(int64_t i) const {
  const Layer& L = layers_[i];
  std::vector<at::Tensor> ps = {L.ln_1_w, L.ln_1_b, L.c_attn_w, L.c_attn_b, L.attn_proj_w, L.attn_proj_b,
                                L.ln_2_w, L.ln_2_b, L.c_fc_w,   L.c_fc_b,   L.mlp_proj_w,  L.mlp_proj_b};
  for (const Lora* l : {L.c_attn_lora, L.attn_proj_lora, L.c_fc_lora, L.mlp_proj_lora})
    if (l) ps.insert(ps.end(), {l->A, l->B});
  return ps;
}

at::Tensor GPT2::Logits(const at::Tensor& hidden) const {
  if (lm_head_q_.q.defined()) return QLinear(hidden, lm_head_q_, at::Tensor());  // a quantized model never trains
  if (at::Tensor y = MatVecNK(hidden, wte_); y.defined()) return y;
  if (at::Tensor y = GemmLinear(hidden, wte_, at::Tensor(), true); y.defined()) return y;
  if (at::Tensor y = TrainLinear(hidden, wte_, at::Tensor(), true); y.defined()) return y;
  if (hidden.scalar_type() != wte_.scalar_type())
    return at::matmul(hidden.to(wte_.scalar_type()), wte_.t()).to(hidden.scalar_type());
  return at::matmul(hidden, wte_.t());
}

at::Tensor GPT2::TrainingLoss(const at::Tensor& hidden, const at::Tensor& labels) const {
  if (at::Tensor loss = LMHeadLoss(hidden, wte_, labels); loss.defined()) return loss;
  return CausalLMLoss(Logits(hidden), labels);
}

bool GPT2::IsBuffer(const std::string& name) {
  const std::string bias = ".attn.bias";
  return (name.size() > bias.size() && name.compare(name.size() - bias.size(), bias.size(), bias) == 0) ||
         name.find(".attn.masked_bias") != std::string::npos;
}

}  // namespace torchlm
