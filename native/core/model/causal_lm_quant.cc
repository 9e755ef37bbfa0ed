// q8 / q4 for any architecture: quantizing a float checkpoint as it loads, and a quantized checkpoint's load and save.
// The architecture says which weights are quantized (Quantizable), their layout (FanInFanOut) and which float weight
// the LM head's own quantized copy is made from (HeadWeight); its layers point into quant_ (Bind).
#include "core/model/causal_lm.h"

#include "core/kernels/quant.h"
#include "core/runtime/cpu_allocator.h"

#include <map>

namespace torchlm {

static int QuantBits(const std::string& kind) {
  if (kind == "q8") return 8;
  if (kind == "q4") return 4;
  throw UserError("unknown quantization " + kind + ": torchlm has q8 and q4");
}

// The tied LM head's bits: 8 under q8; 6 under q4 (as llama.cpp's q4_0 keeps its output matrix in q6_K). On the
// tutorial's model 4 bits there took q4's perplexity from +0.01% to +0.34% of float32's, mean KL from 6.9e-4 to 2.1e-3
// and greedy agreement from 97.8% to 91.9%; 6 bits cost little against 8 (README) for a quarter fewer bytes a token.
static int HeadBits(int bits) { return bits == 4 ? 6 : 8; }

static const std::string kHead = "lm_head.weight";

// A weight [out, in], or a Conv1D's [in, out] (fan_in_fan_out), as QuantizeWeight reads it: [out, in].
static at::Tensor OutIn(const at::Tensor& w, bool fan_in_fan_out) { return fan_in_fan_out ? w.t() : w; }

// What Load checks in place of a quantized weight: one byte expanded to the float weight's shape.
static at::Tensor StandIn(const QWeight& w, bool fan_in_fan_out) {
  const at::Tensor b = at::zeros({1}, at::kChar);
  return fan_in_fan_out ? b.expand({w.cols(), w.rows()}) : b.expand({w.rows(), w.cols()});
}

const QWeight* CausalLM::FindQuant(const std::string& name) const {
  auto it = quant_.find(name);
  return it == quant_.end() ? nullptr : &it->second;
}

void CausalLM::LoadQuantizing(NamedTensors tensors, const std::vector<std::string>& quantizable,
                              const std::function<at::Tensor(size_t)>& read, const std::string& kind) {
  const int bits = QuantBits(kind);
  at::NoGradGuard ng;
  for (const auto& [name, t] : tensors)
    if (!t.device().is_cpu()) throw UserError(kind + " runs on the CPU; this model is on " + DeviceName(t.device()));
  const auto expected = Expected();
  const std::map<std::string, std::vector<int64_t>> shapes(expected.begin(), expected.end());
  std::map<std::string, QWeight> made;
  for (size_t i = 0; i < quantizable.size(); i++) {
    const std::string name = ModelName(quantizable[i]);
    auto it = shapes.find(name);
    if (it == shapes.end()) continue;  // not the config's (a layer past the last): Load ignores it too
    const at::Tensor t = read(i);
    CheckTensor(name, t, it->second);
    QWeight w = QuantizeWeight(OutIn(t, FanInFanOut()), name == kHead ? HeadBits(bits) : bits);
    tensors.emplace_back(name, StandIn(w, FanInFanOut()));
    made.emplace(name, std::move(w));
  }
  LoadChecked(std::move(tensors), /*allow_int8=*/true);
  for (auto& [name, t] : params_) {
    auto it = made.find(name);
    if (it != made.end()) t = it->second.q;  // the stored bytes (no view has the float weight's shape)
    t.requires_grad_(false);
  }
  // an untied head was quantized as it loaded; a tied one is a quantized copy of the embeddings
  auto head = made.find(kHead);
  lm_head_q_ = head != made.end() ? head->second : QuantizeWeight(HeadWeight(), HeadBits(bits));
  if (head != made.end()) made.erase(head);
  quant_ = std::move(made);
  quantization_ = kind;
  Bind();
  // the float32 weights' blocks, read and freed one at a time, would stay in the CPU cache at sizes nothing of a
  // quantized model asks for again
  EmptyCPUCache();
}

// A checkpoint's scales: one a block of the true inputs (the padding's zeros are not written), so K reads off them.
static at::Tensor StoredScales(const QWeight& w) { return w.s.narrow(1, 0, w.cols() / kQBlock).contiguous(); }
// A checkpoint's values: 8-bit ones as int8 (v, not the kernels' v + 128: the flip of the top bit), the others as kept.
static at::ScalarType CheckpointDtype(int bits) { return bits == 8 ? at::kChar : at::kByte; }
static at::Tensor StoredValues(const QWeight& w) {
  return w.bits == 8 ? at::bitwise_xor(w.q, 128).view(at::kChar) : w.q;
}

// A weight from a checkpoint, its dtype and shapes checked: q as kept, the scales padded again to whole groups.
static QWeight FromCheckpoint(const std::string& kind, const std::string& name, const at::Tensor& q,
                              const at::Tensor& s, int bits) {
  if (q.scalar_type() != CheckpointDtype(bits))
    throw UserError(kind + " checkpoint has " + DtypeName(q.scalar_type()) + " tensor " + name + " but " + kind +
                    " stores " + DtypeName(CheckpointDtype(bits)));
  const int64_t K = s.dim() == 2 ? s.size(1) * kQBlock : 0, Kp = PaddedInputs(K);
  if (q.dim() != 2 || s.dim() != 2 || s.size(0) != q.size(0) || q.size(1) != Kp * bits / 8)
    throw UserError(kind + " tensor " + name + "_scale " + ShapeStr(s.sizes()) + " does not fit " + name + " " +
                    ShapeStr(q.sizes()));
  // the loader widens floating tensors to the model's dtype; float16 values come back from it exactly
  const at::Tensor h = s.to(at::kHalf);
  if (!at::isFloatingType(s.scalar_type()) || !at::equal(h.to(s.scalar_type()), s))
    throw UserError(kind + " tensor " + name + "_scale holds values that are not float16 (" +
                    DtypeName(s.scalar_type()) + "): " + kind + " stores float16 scales");
  at::Tensor sp = at::zeros({s.size(0), Kp / kQBlock}, h.options());
  sp.narrow(1, 0, K / kQBlock).copy_(h);
  return QWeight{bits == 8 ? at::bitwise_xor(q.contiguous().view(at::kByte), 128) : q.contiguous(), sp, bits, K};
}

NamedTensors CausalLM::SavedTensors() const {
  NamedTensors out;
  for (const auto& [name, t] : params_) {
    const QWeight* q = FindQuant(name);
    if (quantization_.empty() || (!q && name != kHead)) {
      out.emplace_back(CheckpointName(name), t);
    } else if (q) {
      out.emplace_back(CheckpointName(name), StoredValues(*q));
      out.emplace_back(CheckpointName(name) + "_scale", StoredScales(*q));
    }
  }
  if (!quantization_.empty()) {  // the head, tied or not, as its own quantized copy
    out.emplace_back(kHead, StoredValues(lm_head_q_));
    out.emplace_back(kHead + "_scale", StoredScales(lm_head_q_));
  }
  return out;
}

void CausalLM::LoadQuantized(NamedTensors tensors, const std::string& kind) {
  const int bits = QuantBits(kind);
  std::map<std::string, at::Tensor> scales, head;
  NamedTensors rest;
  for (auto& [name0, t] : tensors) {
    const std::string name = ModelName(name0);
    if (name == kHead || name == kHead + "_scale")
      head[name] = t;
    else if (name.size() > 6 && name.compare(name.size() - 6, 6, "_scale") == 0)
      scales[name.substr(0, name.size() - 6)] = t;
    else
      rest.emplace_back(name, t);
  }
  if (!head.count(kHead) || !head.count(kHead + "_scale"))
    throw UserError(kind + " checkpoint is missing lm_head.weight or its scale");
  // Load checks each quantized weight as a stand-in of the float weight's shape (one byte, expanded)
  std::map<std::string, QWeight> made;
  for (auto& [name, t] : rest) {
    if (t.scalar_type() != at::kChar && t.scalar_type() != at::kByte) continue;
    auto it = scales.find(name);
    if (it == scales.end())
      throw UserError(kind + " checkpoint has quantized tensor " + name + " but no " + name + "_scale");
    QWeight w = FromCheckpoint(kind, name, t, it->second, bits);
    t = StandIn(w, FanInFanOut());
    made.emplace(name, std::move(w));
  }
  for (const auto& [name, t] : scales)
    if (!made.count(name))
      throw UserError(kind + " checkpoint has " + name + "_scale but no quantized tensor " + name + " for it");
  const bool untied = Quantizable(kHead);  // a tied head is not a parameter of its own
  // the head after the blocks' weights; an untied one first, as Load checks its stand-in among the parameters
  QWeight lm_head;
  auto read_head = [&] {
    lm_head = FromCheckpoint(kind, kHead, head.at(kHead), head.at(kHead + "_scale"), HeadBits(bits));
  };
  if (untied) {
    read_head();
    rest.emplace_back(kHead, StandIn(lm_head, false));
  }
  LoadChecked(std::move(rest), /*allow_int8=*/true);
  if (!untied) read_head();
  const at::Tensor embeddings = HeadWeight();
  if (lm_head.rows() != embeddings.size(0) || lm_head.cols() != embeddings.size(1))
    throw UserError(kind + " checkpoint's lm_head.weight does not fit the token embeddings");
  for (auto& [name, t] : params_) {
    if (name == kHead) {
      t = lm_head.q;
      continue;
    }
    const bool quantizable = Quantizable(CheckpointName(name));
    auto it = made.find(name);
    if (quantizable != (it != made.end()))
      throw UserError(kind + " checkpoint: " + name + (quantizable ? " is not quantized" : " should not be quantized"));
    if (quantizable) t = it->second.q;  // the stored bytes (no view has the float weight's shape)
  }
  for (auto& [name, t] : params_) t.requires_grad_(false);
  quant_ = std::move(made);
  lm_head_q_ = std::move(lm_head);
  quantization_ = kind;
  Bind();
}

int64_t CausalLM::NumParameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : params_) {
    const QWeight* q = name == kHead && !quantization_.empty() ? &lm_head_q_ : FindQuant(name);
    n += q ? q->rows() * q->cols() : t.numel();
  }
  return n;
}

}  // namespace torchlm
