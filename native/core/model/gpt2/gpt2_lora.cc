// GPT-2's LoRA adapters (PEFT's LoraModel on the Conv1D layers): adding, reading, copying, merging and removing them.
#include "core/model/gpt2/gpt2.h"

#include <map>
#include <set>

namespace torchlm {

// The Conv1D weights adapters can sit on, by module name, in parameter order.
static std::vector<std::pair<std::string, at::Tensor>> Conv1DWeights(
    const std::vector<std::pair<std::string, at::Tensor>>& params) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, t] : params)
    if (GPT2::IsConv1DWeight(name)) out.emplace_back(name.substr(0, name.size() - 7), t);  // without ".weight"
  return out;
}

void GPT2::AddLora(const std::vector<std::string>& modules, int64_t r, double scaling, double dropout, bool trainable) {
  if (r <= 0) throw UserError("Expected a positive rank r for LoRA but received " + std::to_string(r));
  if (modules.empty()) throw UserError("LoRA needs at least one module");
  if (!quantization_.empty())
    throw UserError("LoRA on a " + quantization_ + " model is not supported: load the model in float32");
  std::map<std::string, at::Tensor> weights;
  for (auto& [name, w] : Conv1DWeights(params_)) weights.emplace(name, w);
  std::set<std::string> seen;
  for (const auto& m : modules) {
    if (!weights.count(m))
      throw UserError("LoRA: " + m + " is not a Conv1D layer of this model (c_attn, c_proj or c_fc of h.0 to h." +
                      std::to_string(cfg_.n_layer - 1) + ")");
    if (lora_.count(m) || !seen.insert(m).second) throw UserError("LoRA: " + m + " already has an adapter");
  }
  std::map<std::string, Lora> made;
  for (const auto& m : modules) {
    const at::Tensor& w = weights.at(m);
    Lora l = NewLora(w.size(0), w.size(1), r, scaling, dropout, w.options().requires_grad(false));
    l.A.requires_grad_(trainable);
    l.B.requires_grad_(trainable);
    made.emplace(m, std::move(l));
  }
  lora_.merge(made);
  SetRequiresGrad(false);  // PEFT freezes the base model
  Bind();
}

std::vector<std::pair<std::string, at::Tensor>> GPT2::LoraParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [module, w] : Conv1DWeights(params_)) {
    auto it = lora_.find(module);
    if (it == lora_.end()) continue;
    out.emplace_back(module + ".lora_A.weight", it->second.A);
    out.emplace_back(module + ".lora_B.weight", it->second.B);
  }
  return out;
}

void GPT2::CopyLora(const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
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

void GPT2::RemoveLora(bool merge) {
  if (merge) {
    std::map<std::string, at::Tensor> weights;
    for (auto& [name, w] : Conv1DWeights(params_)) weights.emplace(name, w);
    for (const auto& [module, l] : lora_) MergeLora(l, weights.at(module));
  }
  lora_.clear();
  SetRequiresGrad(true);
  Bind();
}

}  // namespace torchlm
