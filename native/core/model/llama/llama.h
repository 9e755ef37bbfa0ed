// The Llama family, top to bottom: Llama (SmolLM2, Llama 3.2), and through its config's switches Qwen2 (q/k/v
// biases) and Qwen3 (q/k norms). RMSNorm, rotary embeddings, grouped-query attention, the SwiGLU MLP. Parameter names
// are the checkpoint's ("model.layers.0.self_attn.q_proj.weight"), so loading is a lookup.
#pragma once

#include "core/common.h"
#include "core/model/causal_lm.h"

#include <map>

namespace torchlm {

// How the rotary embedding's frequencies are made (transformers' rope_type): default, linear (positions divided by a
// factor) and Llama 3's (low frequencies divided by a factor, a smooth band between).
enum class RopeType { kDefault, kLinear, kLlama3 };

struct RopeConfig {
  RopeType type = RopeType::kDefault;
  double theta = 10000, factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  int64_t original_max_position_embeddings = 0;
};

// Every field comes from the caller (lib/models/llama.ts owns the defaults, the checks, and the families' switches).
struct LlamaConfig {
  int64_t vocab_size = 0, max_position_embeddings = 0, hidden_size = 0, intermediate_size = 0;
  int64_t num_hidden_layers = 0, num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
  double rms_norm_eps = 0, attention_dropout = 0, initializer_range = 0;
  bool qkv_bias = false, o_bias = false, mlp_bias = false;  // Llama's attention_bias sets both; Qwen2 q/k/v only
  bool qk_norm = false;                                     // Qwen3: RMSNorm of each head's query and key
  bool tie_word_embeddings = false;
  RopeConfig rope;
};

// One nn.Linear of a block: weight [out, in], its bias (or undefined), its LoRA adapter (or null) and, in q8 / q4,
// its quantized weight (or null; weight is then its stored bytes).
struct LlamaLinear {
  at::Tensor weight, bias;
  const Lora* lora = nullptr;
  const QWeight* q = nullptr;
};

struct LlamaLayer {
  at::Tensor input_layernorm;
  LlamaLinear q_proj, k_proj, v_proj, o_proj;
  at::Tensor q_norm, k_norm;  // Qwen3, else undefined
  at::Tensor post_attention_layernorm;
  LlamaLinear gate_proj, up_proj, down_proj;
};

class Llama : public CausalLM {
 public:
  explicit Llama(LlamaConfig cfg);

  const LlamaConfig& config() const { return cfg_; }
  int64_t vocab_size() const override { return cfg_.vocab_size; }
  int64_t max_positions() const override { return cfg_.max_position_embeddings; }
  int64_t num_layers() const override { return cfg_.num_hidden_layers; }

  std::vector<std::pair<std::string, std::vector<int64_t>>> Expected() const override;
  void Load(NamedTensors tensors) override { LoadChecked(std::move(tensors), false); }
  // Hugging Face's initialisation: normal(0, initializer_range) linears and embeddings, zero biases, unit norms.
  void InitRandom(at::ScalarType dtype, at::Device device) override;
  // A tied model's lm_head.weight (some checkpoints carry it), and the rotary embedding's inv_freq buffers.
  bool Skipped(const std::string& checkpoint_name) const override;
  // q8 / q4 quantize a block's linear weights, and the LM head where it is untied.
  bool Quantizable(const std::string& checkpoint_name) const override;
  std::string CheckpointName(const std::string& name) const override { return name; }
  std::string ModelName(const std::string& checkpoint_name) const override { return checkpoint_name; }
  at::Device device() const override { return embed_tokens_.device(); }
  at::ScalarType dtype() const override { return embed_tokens_.scalar_type(); }

  at::Tensor Hidden(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                    KVCache* cache) override;
  at::Tensor Logits(const at::Tensor& hidden) const override;
  at::Tensor TrainingLoss(const at::Tensor& hidden, const at::Tensor& labels) const override;
  KVCache NewCache(int64_t batch, int64_t capacity) const override;
  at::Tensor Block(int64_t i, const at::Tensor& x, const BlockInputs& in, KVCache* cache,
                   at::ScalarType compute) override;
  std::vector<at::Tensor> LayerParameters(int64_t i) const override;

  // transformers' inv_freq for the config's rope_type, in float32 as it computes it: [head_dim / 2].
  at::Tensor InverseFrequencies() const;

 private:
  LlamaConfig cfg_;
  at::Tensor embed_tokens_, norm_, lm_head_;  // lm_head_ is embed_tokens_ when tied
  at::Tensor inv_freq_;                       // float32, on the model's device
  std::vector<LlamaLayer> layers_;
  void Bind() override;
  void LoadChecked(NamedTensors tensors, bool allow_int8) override;
  at::Tensor HeadWeight() const override { return lm_head_; }
  // LoRA adapts a block's linear layers (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj).
  bool LoraAdaptable(const std::string& module) const override;
  std::string LoraModules() const override;
  // nn.Linear, with its adapter's term added where it has one (PEFT's LoraLayer.forward).
  at::Tensor Linear(const at::Tensor& x, const LlamaLinear& l) const;
  at::Tensor RMSNorm(const at::Tensor& x, const at::Tensor& w) const;
  at::Tensor Attention(int64_t i, const at::Tensor& x, const BlockInputs& in, KVCache* cache);
  // Continuous batching's ragged step: each row's new key and value into its slot, then its query against that slot.
  at::Tensor RaggedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, KVCache& cache, int64_t i);
  at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                    bool causal) const;
  // llama_decode.cc: the fused decoder (CausalLM::DecodeRows), for a float32, bfloat16 or q8 / q4 model in
  // inference; DecodeOne is its one token at batch 1.
  bool FusedDecoderSuits(const KVCache& cache) const override;
  bool DecodeOneApplies(const at::Tensor& ids, const at::Tensor& attention_mask, const KVCache* cache) const;
  at::Tensor DecodeOne(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                       KVCache& cache);
  at::Tensor DecodeRows(const std::vector<int64_t>& ids, const std::vector<int64_t>& positions,
                        const std::vector<int64_t>& slots, const std::vector<int64_t>& lengths,
                        const std::vector<uint8_t>& allowed, KVCache& cache) override;
};

}  // namespace torchlm
