// 8-bit weights for decoding (from_pretrained's dtype "q8"): symmetric int8 per block of 32 inputs with a float
// scale, as llama.cpp's q8_0, with activations quantized the same way so that dot products run on int8.
#pragma once

#include "common.h"

namespace torchlm {

constexpr int64_t kQ8Block = 32;

// A linear's weight as int8 q [N, K] (each output's weights contiguous, as the dot products read them) and float
// scales s [N, K / 32], W[n, k] ~ q[n, k] * s[n, k / 32].
struct Q8Weight {
  at::Tensor q, s;
};

// Quantizes w [N, K] (nn.Linear's layout; a Conv1D weight goes in transposed). K must be a multiple of 32.
Q8Weight QuantizeQ8(const at::Tensor& w_nk);
// w [N, K] in float32 again.
at::Tensor DequantizeQ8(const Q8Weight& w);
// out[0:N] = b + W x for x [0:K] (b float32 [N] or undefined): x quantized per block of 32, int8 dot products.
void Q8MatVecInto(const float* x, const Q8Weight& w, const at::Tensor& b, float* out);
// y = b + x W^T for x [..., K] float32: a few rows through Q8MatVecInto, many through the dequantized weight.
at::Tensor Q8Linear(const at::Tensor& x, const Q8Weight& w, const at::Tensor& b);
// The kernel Q8MatVecInto runs here: "avx512-vnni", "avx2" or "scalar" (chosen at run time; TORCHLM_Q8_KERNEL
// names a slower one, to test it).
const char* Q8Kernel();

}  // namespace torchlm
