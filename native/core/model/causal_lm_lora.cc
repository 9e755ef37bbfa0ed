// LoRA adapters (PEFT's LoraModel) on any architecture's layers: adding, reading, copying, merging and removing them.
// The architecture says which modules can take one (LoraAdaptable) and how its weights are laid out (FanInFanOut).
#include "core/model/causal_lm.h"

#include <set>

namespace torchlm {

static const std::string kWeight = ".weight";

// The weights adapters can sit on, by module name (without ".weight"), in parameter order.
template <typename Adaptable>
static std::vector<std::pair<std::string, at::Tensor>> AdaptableWeights(const NamedTensors& params,
                                                                        const Adaptable& adaptable) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, t] : params) {
    if (name.size() <= kWeight.size() || name.compare(name.size() - kWeight.size(), kWeight.size(), kWeight) != 0)
      continue;
    std::string module = name.substr(0, name.size() - kWeight.size());
    if (adaptable(module)) out.emplace_back(std::move(module), t);
  }
  return out;
}

const Lora* CausalLM::FindLora(const std::string& module) const {
  auto it = lora_.find(module);
  return it == lora_.end() ? nullptr : &it->second;
}

void CausalLM::AddLora(const std::vector<std::string>& modules, int64_t r, double scaling, double dropout,
                       bool trainable) {
  if (r <= 0) throw UserError("Expected a positive rank r for LoRA but received " + std::to_string(r));
  if (modules.empty()) throw UserError("LoRA needs at least one module");
  if (!quantization_.empty())
    throw UserError("LoRA on a " + quantization_ + " model is not supported: load the model in float32");
  std::map<std::string, at::Tensor> weights;
  for (auto& [name, w] : AdaptableWeights(params_, [this](const std::string& m) { return LoraAdaptable(m); }))
    weights.emplace(name, w);
  std::set<std::string> seen;
  for (const auto& m : modules) {
    if (!weights.count(m)) throw UserError("LoRA: " + m + " is not " + LoraModules());
    if (lora_.count(m) || !seen.insert(m).second) throw UserError("LoRA: " + m + " already has an adapter");
  }
  std::map<std::string, Lora> made;
  for (const auto& m : modules) {
    const at::Tensor& w = weights.at(m);
    const int64_t in = FanInFanOut() ? w.size(0) : w.size(1), out = FanInFanOut() ? w.size(1) : w.size(0);
    Lora l = NewLora(in, out, r, scaling, dropout, w.options().requires_grad(false));
    l.A.requires_grad_(trainable);
    l.B.requires_grad_(trainable);
    made.emplace(m, std::move(l));
  }
  lora_.merge(made);
  SetRequiresGrad(false);  // PEFT freezes the base model
  Bind();
}

NamedTensors CausalLM::LoraParameters() const {
  NamedTensors out;
  for (const auto& [module, w] : AdaptableWeights(params_, [this](const std::string& m) { return FindLora(m); })) {
    const Lora& l = lora_.at(module);
    out.emplace_back(module + ".lora_A.weight", l.A);
    out.emplace_back(module + ".lora_B.weight", l.B);
  }
  return out;
}

void CausalLM::CopyLora(const NamedTensors& tensors) {
  std::map<std::string, at::Tensor> given;
  for (const auto& [name, t] : tensors)
    if (!given.emplace(name, t).second) throw UserError("LoRA tensor " + name + " is given twice");
  const auto mine = LoraParameters();
  for (const auto& [name, t] : given) {
    bool known = false;
    for (const auto& [n, p] : mine) known = known || n == name;
    if (!known) throw UserError("LoRA tensor " + name + " has no adapter in this model");
  }
  for (const auto& [name, p] : mine) {
    auto it = given.find(name);
    if (it == given.end()) throw UserError("LoRA weights are missing tensor " + name);
    if (it->second.sizes() != p.sizes())
      throw UserError("LoRA tensor " + name + " has shape " + ShapeStr(it->second.sizes()) + " but the adapter's is " +
                      ShapeStr(p.sizes()));
    if (!at::isFloatingType(it->second.scalar_type()))
      throw UserError("LoRA tensor " + name + " is not a floating-point tensor");
  }
  at::NoGradGuard ng;
  for (const auto& [name, p] : mine) p.detach().copy_(given.at(name));
}

void CausalLM::RemoveLora(bool merge) {
  if (merge)
    for (const auto& [module, w] : AdaptableWeights(params_, [this](const std::string& m) { return FindLora(m); }))
      MergeLora(lora_.at(module), w, FanInFanOut());
  lora_.clear();
  SetRequiresGrad(true);
  Bind();
}

}  // namespace torchlm
