// The training step's causal LM loss straight from the hidden states, with the tied LM head folded in.
#pragma once

#include "core/common.h"

namespace torchlm {

// Mean cross-entropy of logits = hidden @ wte^T against `targets` (-100 ignored), hidden [N, E] and wte [V, E] float32
// on the CPU, with autograd for both; an undefined tensor where that does not apply (the caller computes the logits).
at::Tensor FusedLMLoss(const at::Tensor& hidden, const at::Tensor& wte, const at::Tensor& targets);

}  // namespace torchlm
