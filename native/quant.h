// Quantized weights for decoding (from_pretrained's dtype "q8" / "q4"): symmetric per block of 32 inputs with a
// float scale, as llama.cpp's q8_0 and q4_0, with activations quantized to int8 per block so that dot products run on
// integers.
#pragma once

#include "common.h"

namespace torchlm {

constexpr int64_t kQBlock = 32;

// A linear's weight, each output's inputs contiguous, with float scales s [N, K / 32]:
// - 8 bits: q int8 [N, K], W[n, k] ~ q[n, k] * s[n, k / 32];
// - 4 bits: q uint8 [N, K / 2] of nibbles u in 0..15, W ~ (u - 8) * s. Each 64 inputs (two blocks) take 32 bytes,
//   input i in the low nibble of byte i and input 32 + i in the high one, so one load and two masks give the 64
//   weights in input order; a last lone block takes 16 bytes in llama.cpp's q4_0 order (i low, 16 + i high).
struct QWeight {
  at::Tensor q, s;
  int bits = 8;
  int64_t rows() const { return q.size(0); }
  int64_t cols() const { return s.size(1) * kQBlock; }
};

// Quantizes w [N, K] (nn.Linear's layout; a Conv1D weight goes in transposed) to `bits` 8 or 4. K must be a multiple
// of 32. Computed in float64, as the reference implementation (scripts/quant-check.py) does.
QWeight QuantizeWeight(const at::Tensor& w_nk, int bits);
// w [N, K] in float32 again.
at::Tensor DequantizeWeight(const QWeight& w);
// out[0:N] = b + W x for x [0:K] (b float32 [N] or undefined): x quantized per block of 32, integer dot products.
void QMatVecInto(const float* x, const QWeight& w, const at::Tensor& b, float* out);
// y = b + x W^T for x [..., K] float32: a few rows through the integer kernels, many through the dequantized weight.
at::Tensor QLinear(const at::Tensor& x, const QWeight& w, const at::Tensor& b);
// The kernels this CPU runs: "avx512-vnni", "avx2" or "scalar" (chosen at run time; TORCHLM_Q8_KERNEL names a slower
// one, to test it).
const char* Q8Kernel();

}  // namespace torchlm
