#include "core/model/causal_lm.h"

#include "core/runtime/env.h"
#include "core/train/lm_loss.h"

#include <algorithm>
#include <map>

namespace torchlm {

KVCache KVCache::Slot(int64_t b, int64_t len) const {
  KVCache c;
  for (size_t i = 0; i < k.size(); i++) {
    c.k.push_back(k[i].narrow(0, b, 1));
    c.v.push_back(v[i].narrow(0, b, 1));
  }
  c.length = len;
  return c;
}

void CausalLM::Apply(const std::function<at::Tensor(const at::Tensor&)>& fn) {
  if (!quantization_.empty())
    throw UserError("a " + quantization_ +
                    " model stays on the CPU as it was loaded: load it again to move it or change its dtype");
  for (auto& [name, t] : params_) {
    const bool rg = t.requires_grad();
    t = fn(t.detach());
    if (rg) t.requires_grad_(true);
  }
  for (auto& [name, l] : lora_)
    for (at::Tensor* t : {&l.A, &l.B}) {
      const bool rg = t->requires_grad();
      *t = fn(t->detach());
      if (rg) t->requires_grad_(true);
    }
  Bind();
}

void CausalLM::CopyWeights(NamedTensors tensors) {
  NamedTensors kept;
  for (auto& [name, t] : tensors)
    if (!Skipped(name)) kept.emplace_back(name, std::move(t));
  const NamedTensors src = Match(
      std::move(kept), Expected(), [this](const std::string& n) { return ModelName(n); },
      [](const std::string&) { return false; });
  at::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); i++) params_[i].second.detach().copy_(src[i].second);
}

bool CausalLM::OneTokenStep(const at::Tensor& ids, const at::Tensor& attention_mask, const KVCache* cache) {
  if (!cache || cache->ragged() || ids.size(0) != 1 || ids.size(1) != 1) return false;
  return !attention_mask.defined() || (attention_mask.device().is_cpu() && attention_mask.numel() == cache->length + 1);
}

bool CausalLM::Inference() const {
  if (training) return false;
  if (at::GradMode::is_enabled())
    for (const auto& [name, t] : params_)
      if (t.requires_grad()) return false;
  return true;
}

std::vector<uint8_t> CausalLM::AllowedPositions(const at::Tensor& attention_mask, int64_t S) {
  if (!attention_mask.defined()) return {};
  const at::Tensor m = attention_mask.reshape({-1}).to(at::kBool).contiguous();
  const bool* mp = m.data_ptr<bool>();
  if (std::all_of(mp, mp + S, [](bool b) { return b; })) return {};
  return std::vector<uint8_t>(mp, mp + S);
}

void CausalLM::SetRequiresGrad(bool on) {
  for (auto& [name, t] : params_) t.requires_grad_(on);
}

// Hugging Face's shifted labels without slicing the logits: position t is scored against label t + 1, and the last
// position of each row is ignored (-100), so the [B * T, V] logits are read in place and their gradient written in
// place, instead of copying a [B * (T - 1), V] slice and scattering its gradient back.
static at::Tensor ShiftedLabels(const at::Tensor& labels, at::Device device) {
  const int64_t T = labels.size(1);
  at::Tensor y = at::full(labels.sizes(), -100, labels.options().dtype(at::kLong).device(device));
  y.narrow(1, 0, T - 1).copy_(labels.narrow(1, 1, T - 1));
  return y.reshape({-1});
}

at::Tensor CausalLM::CausalLMLoss(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t V = logits.size(-1);
  return at::cross_entropy_loss(logits.reshape({-1, V}).to(at::kFloat), ShiftedLabels(labels, logits.device()), {},
                                at::Reduction::Mean, -100);
}

at::Tensor CausalLM::LMHeadLoss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels) {
  return FusedLMLoss(hidden.reshape({-1, hidden.size(-1)}), weight, ShiftedLabels(labels, hidden.device()));
}

void CausalLM::CheckTensor(const std::string& name, const at::Tensor& t, at::IntArrayRef shape, bool int8_ok) {
  if (!at::isFloatingType(t.scalar_type()) && !(int8_ok && t.scalar_type() == at::kChar))
    throw UserError("tensor " + name + " has dtype " + DtypeName(t.scalar_type()) + " but a floating dtype is needed");
  if (t.sizes() != shape)
    throw UserError("tensor " + name + " has shape " + ShapeStr(t.sizes()) + " but the config needs " +
                    ShapeStr(shape));
}

NamedTensors CausalLM::Match(NamedTensors tensors,
                             const std::vector<std::pair<std::string, std::vector<int64_t>>>& want,
                             const std::function<std::string(const std::string&)>& model_name,
                             const std::function<bool(const std::string&)>& int8_ok) {
  std::map<std::string, at::Tensor> by_name;
  for (auto& [name0, t] : tensors) {
    const std::string name = model_name(name0);
    if (by_name.count(name)) throw UserError("tensor " + name + " appears twice in the checkpoint");
    by_name[name] = std::move(t);
  }
  tensors.clear();
  NamedTensors out;
  for (const auto& [name, shape] : want) {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw UserError("checkpoint is missing tensor " + name);
    CheckTensor(name, it->second, shape, int8_ok(name));
    out.emplace_back(name, std::move(it->second));
    by_name.erase(it);
  }
  return out;
}

at::Tensor CausalLM::AttentionBias(const at::Tensor& ids, const at::Tensor& attention_mask, int64_t past, bool ragged,
                                   at::ScalarType dtype) {
  const int64_t T = ids.size(1), S = past + T;
  if (ragged || !(T > 1 || attention_mask.defined()) || (UseSdpa() && !attention_mask.defined() && past == 0))
    return at::Tensor();
  auto opts = at::TensorOptions().device(ids.device());
  at::Tensor allowed = at::arange(S, opts.dtype(at::kLong)).unsqueeze(0) <=
                       (at::arange(T, opts.dtype(at::kLong)) + past).unsqueeze(1);  // [T, S]
  allowed = allowed.unsqueeze(0).unsqueeze(0);
  if (attention_mask.defined()) allowed = allowed.logical_and(attention_mask.to(at::kBool).unsqueeze(1).unsqueeze(2));
  const double minv = dtype == at::kHalf       ? -65504.0
                      : dtype == at::kBFloat16 ? -3.3895313892515355e38
                      : dtype == at::kDouble   ? -1.7976931348623157e308
                                               : -3.4028234663852886e38;
  return at::zeros(allowed.sizes(), opts.dtype(dtype)).masked_fill_(allowed.logical_not(), minv);
}

void CausalLM::CheckRagged(const at::Tensor& ids, const KVCache& cache, int64_t max_positions) {
  if (ids.size(1) != 1 || static_cast<int64_t>(cache.slots.size()) != ids.size(0) ||
      cache.lengths.size() != cache.slots.size())
    throw UserError("ragged decoding takes one token a row and a slot and a length for each row");
  for (size_t b = 0; b < cache.slots.size(); b++)
    if (cache.slots[b] < 0 || cache.slots[b] >= cache.k[0].size(0) || cache.lengths[b] < 0 ||
        cache.lengths[b] >= std::min(cache.capacity(), max_positions))
      throw UserError("ragged decoding: row " + std::to_string(b) + "'s slot or length is outside the cache");
}

bool CausalLM::UseSdpa() { return !EnvFlag("TORCHLM_NO_SDPA"); }

at::Tensor CausalLM::QuantizedRows(const at::Tensor& ids, const at::Tensor& position_ids,
                                   const at::Tensor& attention_mask, KVCache* cache) {
  const int64_t T = ids.size(1);
  const bool ragged = cache && cache->ragged();
  if (!cache || quantization_.empty() || !(ragged || (ids.size(0) == 1 && T > 1 && AllOnes(attention_mask))) ||
      !FusedDecoderSuits(*cache))
    return {};
  const at::Tensor p = position_ids.reshape({-1}).to(at::kCPU).contiguous();
  const at::Tensor t = ids.reshape({-1}).to(at::kCPU).contiguous();
  std::vector<int64_t> slots = cache->slots, lengths = cache->lengths;
  if (!ragged)
    for (int64_t i = 0; i < T; i++) {
      slots.push_back(0);
      lengths.push_back(cache->length + i);
    }
  const at::Tensor h = DecodeRows(std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel()),
                                  std::vector<int64_t>(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel()), slots,
                                  lengths, {}, *cache);
  return ragged ? h : h.view({1, T, -1});
}

void CausalLM::CheckRows(const std::vector<int64_t>& ids, const std::vector<int64_t>& positions) const {
  for (int64_t id : ids)
    if (id < 0 || id >= vocab_size())
      throw UserError("token id " + std::to_string(id) + " is out of range for vocab_size " +
                      std::to_string(vocab_size()));
  for (int64_t p : positions)
    if (p < 0 || p >= max_positions())
      throw UserError("position " + std::to_string(p) + " is out of range for the model's " +
                      std::to_string(max_positions()) + " positions");
}

bool AllOnes(const at::Tensor& mask) { return !mask.defined() || mask.to(at::kCPU).all().item<bool>(); }

void CheckTokenIds(const at::Tensor& ids, int64_t vocab_size) {
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= vocab_size)
    throw UserError("input_ids must be in [0, " + std::to_string(vocab_size) + ") but range over [" +
                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

}  // namespace torchlm
