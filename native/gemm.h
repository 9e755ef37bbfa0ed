// Inference linears over many rows on oneDNN's sgemm, when libtorch brought oneDNN along: its JIT kernels use
// AVX-512 whatever OpenBLAS was told (OPENBLAS_CORETYPE=Haswell on this machine caps addmm at AVX2).
#pragma once

#include "common.h"

namespace torchlm {

// y = b + x @ W for x [..., K] and W [K, N] (Conv1D's layout); with transposed, W is [N, K] (y = x @ W^T, the tied
// LM head). float32 on the CPU with no gradient wanted; otherwise an undefined tensor (the caller uses addmm).
at::Tensor GemmLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool transposed);
// Whether oneDNN's sgemm was found in this process (TORCHLM_NO_DNNL=1 or setGemm(false) turn the path off).
bool GemmAvailable();

void InitGemm(Napi::Env env, Napi::Object exports);

}  // namespace torchlm
