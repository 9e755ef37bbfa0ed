// LoRA adapters, as PEFT's LoraLayer computes them (on nn.Linear, or GPT-2's Conv1D with fan_in_fan_out).
#pragma once

#include "core/common.h"

namespace torchlm {

// One adapter: y = base(x) + dropout(x) A^T B^T * scaling, with A [r, in] and B [out, r] (nn.Linear's layout, as
// PEFT stores them whatever the base layer's fan_in_fan_out).
struct Lora {
  at::Tensor A, B;
  double scaling = 1.0, dropout = 0.0;
};

// The adapter's term for x [..., in]: computed in A's dtype (as PEFT casts its input), returned in `out`'s dtype.
at::Tensor LoraDelta(const Lora& l, const at::Tensor& x, bool training, at::ScalarType out);
// PEFT's initialisation: A as nn.Linear's kaiming_uniform(a = sqrt(5)), that is U(-1/sqrt(in), 1/sqrt(in)); B zeros,
// so a new adapter leaves the model's outputs unchanged.
Lora NewLora(int64_t in, int64_t out, int64_t r, double scaling, double dropout, const at::TensorOptions& options);
// The adapter folded into its base weight: w [out, in] += B A * scaling, or with fan_in_fan_out (a Conv1D weight
// [in, out]) its transpose.
void MergeLora(const Lora& l, const at::Tensor& w, bool fan_in_fan_out);

}  // namespace torchlm
