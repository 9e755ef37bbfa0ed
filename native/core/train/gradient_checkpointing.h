// Gradient checkpointing for GPT-2's blocks (Hugging Face's gradient_checkpointing_enable()).
#pragma once

#include "core/model/causal_lm.h"

namespace torchlm {

// Block i of `model` on x whose activations are not kept: backward runs the block again, with the random state
// (dropout) and autocast state of this call, and takes the gradients of x and the block's parameters from that run.
at::Tensor CheckpointedBlock(CausalLM& model, int64_t i, const at::Tensor& x, const BlockInputs& in,
                             at::ScalarType compute);

}  // namespace torchlm
