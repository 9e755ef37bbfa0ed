// What the engine (the decoding loop, continuous batching, the training step and gradient checkpointing) needs of a
// causal language model, and the rules every architecture shares (the attention bias, the shifted LM loss, checkpoint
// tensors' checks). An architecture is one class deriving CausalLM in its own folder (gpt2/, llama/), saying only how
// its blocks compute and what its checkpoint holds.
#pragma once

#include "core/common.h"
#include "core/kernels/quant.h"
#include "core/model/lora.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torchlm {

// Keys and values of every layer, [batch, kv_heads, capacity, head_dim], written in place up to `length`.
// Continuous batching gives each row of a step its own place instead: row b is slot slots[b] of the cache, with
// lengths[b] tokens in it, and writes its one new key and value there (ragged decoding, one token a row).
struct KVCache {
  std::vector<at::Tensor> k, v;
  int64_t length = 0;
  std::vector<int64_t> slots, lengths;
  int64_t capacity() const { return k.empty() ? 0 : k[0].size(2); }
  bool ragged() const { return !slots.empty(); }
  // Slot b alone, as a cache of batch 1 holding `length` tokens (views: writes land in this cache).
  KVCache Slot(int64_t b, int64_t length) const;
};

// What one block reads besides its input, the same for every block of a forward pass: the additive attention bias
// (undefined: causal, implied), and the rotary embedding's cos and sin [B, T, head_dim] for architectures with one.
struct BlockInputs {
  at::Tensor bias, cos, sin;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

class CausalLM : public std::enable_shared_from_this<CausalLM> {
 public:
  virtual ~CausalLM() = default;

  // The sizes the engine checks against.
  virtual int64_t vocab_size() const = 0;
  virtual int64_t max_positions() const = 0;
  virtual int64_t num_layers() const = 0;

  // Loading and parameters. Names are the model's own (Parameters()); CheckpointName() gives each one's name in
  // Hugging Face's saved layout, and ModelName() the inverse.
  // (name, shape) of every parameter, in Hugging Face's named_parameters() order.
  virtual std::vector<std::pair<std::string, std::vector<int64_t>>> Expected() const = 0;
  virtual void Load(NamedTensors tensors) = 0;  // by checkpoint or model name; names and shapes checked
  // A checkpoint's tensors copied into the parameters in place (names and shapes checked first), so that optimizers
  // holding them stay valid: resuming training.
  void CopyWeights(NamedTensors tensors);
  virtual void InitRandom(at::ScalarType dtype, at::Device device) = 0;  // Hugging Face's initialisation
  // Whether a checkpoint tensor is one the model does not read (a tied LM head, an old mask buffer).
  virtual bool Skipped(const std::string& checkpoint_name) const = 0;
  virtual std::string CheckpointName(const std::string& name) const = 0;
  virtual std::string ModelName(const std::string& checkpoint_name) const = 0;
  const NamedTensors& Parameters() const { return params_; }
  virtual void Apply(const std::function<at::Tensor(const at::Tensor&)>& fn);  // device / dtype moves
  // The base weights' requires_grad (LoRA adapters keep theirs).
  void SetRequiresGrad(bool on);
  virtual at::Device device() const = 0;
  virtual at::ScalarType dtype() const = 0;
  // The float model's parameter count (a quantized weight counts its rows times its inputs, whatever its storage).
  int64_t NumParameters() const;
  // What save_pretrained writes, in checkpoint names: the parameters, or for a quantized model each quantized weight as
  // stored (q8 int8 [out, in], q4 uint8 [out, in / 2]) with "<name>_scale" [out, in / 32] beside it and the LM head's
  // own copy as "lm_head.weight" / "lm_head.weight_scale".
  NamedTensors SavedTensors() const;

  bool training = false;
  // Hugging Face's gradient checkpointing: in training with autograd, each block keeps only its input for backward
  // and runs again there (core/train/gradient_checkpointing.cc).
  bool gradient_checkpointing = false;

  // Hidden states after the final norm for ids [B, T]. `position_ids` [B, T]. `attention_mask` [B, past + T] of 0/1
  // (undefined: attend everywhere allowed by causality). With `cache`, keys and values are written at
  // cache->length (or, ragged, at each row's slot and length) and attention covers the cache; the caller advances it.
  virtual at::Tensor Hidden(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                            KVCache* cache) = 0;
  virtual at::Tensor Logits(const at::Tensor& hidden) const = 0;
  // The training step's loss from the hidden states (the LM head and the loss fused where that applies).
  virtual at::Tensor TrainingLoss(const at::Tensor& hidden, const at::Tensor& labels) const = 0;
  virtual KVCache NewCache(int64_t batch, int64_t capacity) const = 0;
  // Block i (attention and MLP with their residuals) on hidden states x in the `compute` dtype.
  virtual at::Tensor Block(int64_t i, const at::Tensor& x, const BlockInputs& in, KVCache* cache,
                           at::ScalarType compute) = 0;
  // Block i's parameters (then its LoRA adapters' A and B): what its backward hands gradients to.
  virtual std::vector<at::Tensor> LayerParameters(int64_t i) const = 0;

  // LoRA (PEFT's LoraModel), the same for every architecture (core/model/causal_lm_lora.cc). Modules are the model's
  // names without ".weight" ("h.0.attn.c_attn", "model.layers.0.self_attn.q_proj"); each gets a new adapter of rank r
  // in the model's dtype and device. `trainable`: the adapters require grad (the base weights never do while adapters
  // are on). An architecture says which modules LoRA can adapt (LoraAdaptable) and binds its layers to lora_.
  void AddLora(const std::vector<std::string>& modules, int64_t r, double scaling, double dropout, bool trainable);
  // The adapters' tensors as "<module>.lora_A.weight", "<module>.lora_B.weight", in the model's parameter order.
  NamedTensors LoraParameters() const;
  // Copies tensors named as LoraParameters() into the adapters in place; every adapter must be given, shapes checked.
  void CopyLora(const NamedTensors& tensors);
  // Drops every adapter, first folding it into its base weight with `merge`; the base weights require grad again.
  void RemoveLora(bool merge);
  // q8 / q4 decoding, the same for every architecture (core/model/causal_lm_quant.cc): "q8" stores the quantizable
  // weights and the LM head in 8 bits per block of 32, "q4" them in 4 bits and the head in 6 (the token embeddings stay
  // float32 for lookups). Inference only, on the CPU.
  // Whether a checkpoint tensor is one q8 / q4 store quantized (read one at a time by LoadQuantizing): a block's
  // linear weights, and an untied LM head.
  virtual bool Quantizable(const std::string& checkpoint_name) const { return false; }
  // A float checkpoint quantized as it loads: `tensors` are the float32 tensors other than the quantizable ones, and
  // read(i) reads the one named quantizable[i], which is checked and quantized before the next is read, so that the
  // float32 model is never in memory whole.
  void LoadQuantizing(NamedTensors tensors, const std::vector<std::string>& quantizable,
                      const std::function<at::Tensor(size_t)>& read, const std::string& kind);
  // A q8 / q4 checkpoint as SavedTensors() wrote it (no re-quantizing): names, dtypes and shapes checked.
  void LoadQuantized(NamedTensors tensors, const std::string& kind);
  const std::string& quantization() const { return quantization_; }

  // Hugging Face's causal LM loss: logits[:, :-1] against labels[:, 1:], -100 ignored, mean, in float32.
  static at::Tensor CausalLMLoss(const at::Tensor& logits, const at::Tensor& labels);
  // The same loss from hidden states through an LM head weight [V, E].
  static at::Tensor LMHeadLoss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels);
  // A checkpoint tensor against the config: a floating dtype (or int8, where int8_ok: a quantized load's stand-in) and
  // the expected shape, else a UserError naming the tensor.
  static void CheckTensor(const std::string& name, const at::Tensor& t, at::IntArrayRef shape, bool int8_ok = false);
  // Tensors by model name, each checked against Expected(): the parameters in their order.
  static NamedTensors Match(NamedTensors tensors, const std::vector<std::pair<std::string, std::vector<int64_t>>>& want,
                            const std::function<std::string(const std::string&)>& model_name,
                            const std::function<bool(const std::string&)>& int8_ok);
  // The additive bias [B or 1, 1, T, past + T]: causal, plus padding from the mask, the most negative finite value of
  // `dtype` where masked (not -inf, so that fully masked rows stay finite, as Hugging Face does). Undefined where
  // scaled_dot_product_attention's is_causal says the same (no mask, no past) or for ragged decoding.
  static at::Tensor AttentionBias(const at::Tensor& ids, const at::Tensor& attention_mask, int64_t past, bool ragged,
                                  at::ScalarType dtype);
  // Checks a ragged step's rows against the cache and the positions limit.
  static void CheckRagged(const at::Tensor& ids, const KVCache& cache, int64_t max_positions);
  // TORCHLM_NO_SDPA=1 keeps the explicit matmul-softmax-matmul attention (the reference path; read at each call so
  // that one process can measure both).
  static bool UseSdpa();

 protected:
  NamedTensors params_;
  std::string quantization_;
  std::map<std::string, Lora> lora_;  // by module name; the architecture's layers point into it (Bind)
  // Whether LoRA can adapt a module, and a phrase naming the modules it can (for the error that refuses another).
  virtual bool LoraAdaptable(const std::string&) const { return false; }
  virtual std::string LoraModules() const { return "a layer LoRA adapts: this architecture has no LoRA yet"; }
  // PEFT's fan_in_fan_out: weights stored [in, out] (GPT-2's Conv1D) rather than nn.Linear's [out, in].
  virtual bool FanInFanOut() const { return false; }
  // The adapter on a module, or null.
  const Lora* FindLora(const std::string& module) const;
  // What the architectures' fused batch-1 decoders take: one token at batch 1 through a cache that is not ragged, a
  // mask (if any) on the CPU over the cache and that token; inference with nothing to differentiate; and the batch-1
  // mask as bytes (empty where it lets every position through).
  static bool OneTokenStep(const at::Tensor& ids, const at::Tensor& attention_mask, const KVCache* cache);
  bool Inference() const;
  // The KV cache's dtype: the model's, but bfloat16 under q8 / q4 (their decoding is memory-bound, and a float32
  // cache is most of what a token reads at long contexts)
  at::ScalarType KVDtype() const { return quantization_.empty() ? dtype() : at::kBFloat16; }
  static std::vector<uint8_t> AllowedPositions(const at::Tensor& attention_mask, int64_t S);
  // The fused decoder on raw buffers (each architecture's *_decode.cc). Whether the model and the cache suit it (CPU,
  // float32 / bfloat16 / quantized weights, inference), and M rows, one token each: row m at positions[m], writing
  // into slot slots[m] of the cache at lengths[m] and attending to what is there (`allowed`: batch 1's mask, or
  // empty). Hidden states [M, 1, hidden].
  virtual bool FusedDecoderSuits(const KVCache& cache) const = 0;
  virtual at::Tensor DecodeRows(const std::vector<int64_t>& ids, const std::vector<int64_t>& positions,
                                const std::vector<int64_t>& slots, const std::vector<int64_t>& lengths,
                                const std::vector<uint8_t>& allowed, KVCache& cache) = 0;
  // A quantized model's tokens through the cache on the fused decoder, a row per token: ragged decoding (each row in
  // its own slot) and a batch-1 prompt (each token after the ones before it in the same slot). Each row then computes
  // what it would alone, whatever its neighbours or the prompt's chunking (the kernels quantize activations, so a
  // rounding apart upstream could move a value a whole step), and the weights stay packed; float weights take GEMM.
  // The hidden states as Hidden returns them, or undefined where these rows do not apply.
  at::Tensor QuantizedRows(const at::Tensor& ids, const at::Tensor& position_ids, const at::Tensor& attention_mask,
                           KVCache* cache);
  // The fused decoder's token ids and positions in range, else a UserError naming the first that is not.
  void CheckRows(const std::vector<int64_t>& ids, const std::vector<int64_t>& positions) const;
  std::map<std::string, QWeight> quant_;  // quantized weights by parameter name; the layers point into it (Bind)
  QWeight lm_head_q_;                     // the LM head's quantized copy
  // A quantized weight by parameter name, or null.
  const QWeight* FindQuant(const std::string& name) const;
  // The float [vocab, hidden] weight the LM head computes with (the token embeddings, where tied).
  virtual at::Tensor HeadWeight() const = 0;
  // Parameters from tensors by checkpoint or model name, names and shapes checked; with allow_int8, the quantizable
  // weights may be int8 stand-ins of their shape (a quantized load).
  virtual void LoadChecked(NamedTensors tensors, bool allow_int8) = 0;
  // After Load / InitRandom / Apply: the architecture's views of params_.
  virtual void Bind() = 0;
};

// Whether an attention mask lets every position through (undefined: no mask).
bool AllOnes(const at::Tensor& mask);

// Token ids in [0, vocab_size), else a UserError saying the range they span (a reduction: call it on the compute
// thread).
void CheckTokenIds(const at::Tensor& ids, int64_t vocab_size);

}  // namespace torchlm
