// GPT-2, top to bottom. Parameter names are the checkpoint's names (hub layout, no "transformer." prefix),
// so loading is a lookup.
#pragma once

#include "core/common.h"
#include "core/model/causal_lm.h"
#include "core/model/lora.h"
#include "core/kernels/quant.h"

#include <memory>

#include <functional>
#include <map>

namespace torchlm {

// The MLP's activation as the kernel it runs (lib/config.ts maps Hugging Face's names onto these).
enum class Activation { kGeluTanh, kGelu, kRelu };

// Every field comes from the caller (lib/config.ts owns the defaults and the checks); n_inner 0 is 4 * n_embd.
struct GPT2Config {
  int64_t vocab_size = 0, n_positions = 0, n_embd = 0, n_layer = 0, n_head = 0, n_inner = 0;
  double layer_norm_epsilon = 0, embd_pdrop = 0, attn_pdrop = 0, resid_pdrop = 0;
  Activation activation = Activation::kGeluTanh;
  bool scale_attn_weights = true;
  bool scale_attn_by_inverse_layer_idx = false;
  int64_t inner() const { return n_inner > 0 ? n_inner : 4 * n_embd; }
};

struct Layer {
  at::Tensor ln_1_w, ln_1_b, c_attn_w, c_attn_b, attn_proj_w, attn_proj_b;
  at::Tensor ln_2_w, ln_2_b, c_fc_w, c_fc_b, mlp_proj_w, mlp_proj_b;
  // LoRA adapters on the Conv1D layers, or null
  const Lora *c_attn_lora = nullptr, *attn_proj_lora = nullptr, *c_fc_lora = nullptr, *mlp_proj_lora = nullptr;
  // quantized Conv1D weights, or null (the _w fields are then views of their int8 / packed storage)
  const QWeight *c_attn_q = nullptr, *attn_proj_q = nullptr, *c_fc_q = nullptr, *mlp_proj_q = nullptr;
};

class GPT2 : public CausalLM {
 public:
  explicit GPT2(GPT2Config cfg);

  const GPT2Config& config() const { return cfg_; }
  int64_t vocab_size() const override { return cfg_.vocab_size; }
  int64_t max_positions() const override { return cfg_.n_positions; }
  int64_t num_layers() const override { return cfg_.n_layer; }
  // Expected (name, shape) pairs in Hugging Face's named_parameters() order.
  std::vector<std::pair<std::string, std::vector<int64_t>>> Expected() const override;
  // Takes tensors by checkpoint name (hub or saved layout); checks names and shapes.
  void Load(NamedTensors tensors) override { LoadChecked(std::move(tensors), false); }
  // Hugging Face's initialisation (normal 0.02, residual projections scaled by 1/sqrt(2 n_layer)).
  void InitRandom(at::ScalarType dtype, at::Device device) override;
  // transformers' attention-mask buffers (".attn.bias", ".attn.masked_bias"), which older checkpoints carry, and the
  // LM head, tied to wte (a quantized checkpoint's own quantized copy is read by LoadQuantized).
  bool Skipped(const std::string& checkpoint_name) const override;
  // The saved layout's "transformer." prefix on every name but lm_head's.
  std::string CheckpointName(const std::string& name) const override;
  std::string ModelName(const std::string& checkpoint_name) const override;

  void Apply(const std::function<at::Tensor(const at::Tensor&)>& fn) override;
  at::Device device() const override { return wte_.device(); }
  at::ScalarType dtype() const override { return wte_.scalar_type(); }

  at::Tensor Hidden(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                    KVCache* cache) override;
  // Logits for hidden states: the LM head is tied to wte.
  at::Tensor Logits(const at::Tensor& hidden) const override;
  // The LM loss from the hidden states, for a training step (no logits wanted): the LM head and the loss fused a
  // slice of rows at a time where that applies (core/train/lm_loss.cc).
  at::Tensor TrainingLoss(const at::Tensor& hidden, const at::Tensor& labels) const override;
  KVCache NewCache(int64_t batch, int64_t capacity) const override;
  // Block i (attention and MLP with their residuals) on hidden states x in the `compute` dtype.
  at::Tensor Block(int64_t i, const at::Tensor& x, const BlockInputs& in, KVCache* cache,
                   at::ScalarType compute) override;
  // Whether a parameter (by name) is a block's Conv1D weight: c_attn, c_proj or c_fc, what LoRA adapts and q8 / q4
  // quantize.
  static bool IsConv1DWeight(const std::string& name);
  static bool IsBuffer(const std::string& name);
  bool Quantizable(const std::string& checkpoint_name) const override { return IsConv1DWeight(checkpoint_name); }
  // Block i's parameters, in Layer's order, then its LoRA adapters' A and B.
  std::vector<at::Tensor> LayerParameters(int64_t i) const override;

 private:
  GPT2Config cfg_;
  at::Tensor wte_, wpe_, ln_f_w_, ln_f_b_;
  std::vector<Layer> layers_;
  // LoRA adapts the Conv1D layers (c_attn, c_proj, c_fc), stored [in, out].
  bool LoraAdaptable(const std::string& module) const override { return IsConv1DWeight(module + ".weight"); }
  std::string LoraModules() const override;
  bool FanInFanOut() const override { return true; }
  void LoadChecked(NamedTensors tensors, bool allow_int8) override;
  at::Tensor HeadWeight() const override { return wte_; }
  void Bind() override;
  void LayOutConv1D();
  at::Tensor Attention(int64_t i, const at::Tensor& x, const at::Tensor& bias, KVCache* cache);
  at::Tensor AttentionOutput(int64_t i, const at::Tensor& y, int64_t B, int64_t T);
  // Ragged decoding's attention: each row's new key and value into its slot, then its query against that slot.
  at::Tensor RaggedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, KVCache& cache, int64_t i,
                             double scale);
  // gpt2_decode.cc: the fused decoder (CausalLM::DecodeRows); DecodeOne is its one token at batch 1.
  bool DecodeOneApplies(const at::Tensor& ids, const at::Tensor& attention_mask, const KVCache* cache) const;
  bool FusedDecoderSuits(const KVCache& cache) const override;
  at::Tensor DecodeOne(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                       KVCache& cache);
  at::Tensor DecodeRows(const std::vector<int64_t>& ids, const std::vector<int64_t>& positions,
                        const std::vector<int64_t>& slots, const std::vector<int64_t>& lengths,
                        const std::vector<uint8_t>& allowed, KVCache& cache) override;
};

}  // namespace torchlm
