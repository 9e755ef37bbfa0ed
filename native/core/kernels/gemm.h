// Inference linears over many rows on libtorch's oneDNN inner product (mkldnn::_linear_pointwise), when libtorch
// was built with oneDNN: its JIT kernels use AVX-512 where the CPU has it, whatever the BLAS behind addmm does.
#pragma once

#include "core/common.h"

namespace torchlm {

// y = b + x @ W for x [..., K] and W [K, N] (Conv1D's layout); with transposed, W is [N, K] (y = x @ W^T, the tied
// LM head). float32 on the CPU with no gradient wanted; otherwise an undefined tensor (the caller uses addmm).
at::Tensor GemmLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool transposed);
// The same for training (grad mode on, float32, no autocast): forward and backward products on oneDNN through a custom
// autograd function; otherwise an undefined tensor (the caller uses addmm).
at::Tensor TrainLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool transposed);
// a [M, K] @ w^T for w [N, K], no autograd: oneDNN's product where it applies, else mm.
at::Tensor LinearNoGrad(const at::Tensor& a, const at::Tensor& w);
// Whether libtorch has the oneDNN linear (TORCHLM_NO_DNNL=1 or probes.setGemm(false) turn the path off).
bool GemmAvailable();
void SetGemmEnabled(bool on);
// Linears that took oneDNN's path so far.
int64_t GemmCalls();

}  // namespace torchlm
