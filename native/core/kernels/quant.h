// Quantized weights for decoding (from_pretrained's dtype "q8" / "q4", q4's LM head in 6 bits): symmetric per block of
// 32 inputs with a float16 scale, llama.cpp's q8_0 and q4_0 schemes, with activations quantized to int8 per block so
// that dot products run on integers.
#pragma once

#include "core/common.h"
#include "core/kernels/row_split.h"

#include <vector>

namespace torchlm {

constexpr int64_t kQBlock = 32, kQGroup = 128;

// Inputs as stored: K rounded up to whole groups of four blocks (the padding's weights and scales are 0).
inline int64_t PaddedInputs(int64_t K) { return (K + kQGroup - 1) / kQGroup * kQGroup; }

// A linear's weight, each output's inputs contiguous, in groups of four blocks of 32 inputs with a float16 scale each
// (s [N, Kp / 32]); W[n, k] ~ value * s[n, k / 32]. Within a group the inputs are interleaved so that 32-bit lane L of
// a 64-byte vector holds four inputs of block L % 4: position p = 64 v + 4 L + r holds input 32 (L % 4) + 16 v +
// 4 (L / 4) + r, so one broadcast of the four scales fits every lane (see DotRowsQxQ8Avx512Vnni).
// The values are kept unsigned, u = value + 2^(bits - 1), in q uint8:
// - 8 bits: [N, Kp], the group's 128 positions in order (checkpoints hold the signed values);
// - 4 bits: [N, Kp / 2], byte i of a group's 64 holds position i in its low nibble and position 64 + i in its high one;
// - 6 bits (q4's LM head): [N, Kp * 3 / 4], a group's low four bits as 4 bits' 64 bytes, then 32 bytes of the high two:
//   byte j holds those of positions j, 32 + j, 64 + j and 96 + j, from its low bits up.
struct QWeight {
  at::Tensor q, s;
  int bits = 8;
  int64_t k = 0;  // inputs before padding
  int64_t rows() const { return q.size(0); }
  int64_t cols() const { return k; }
  int64_t padded() const { return s.size(1) * kQBlock; }
};

// x quantized per block of 32 as the weights are, laid out in the weights' lane order: its int8 values; each block's
// scale and its offset term in input order. The weights are stored unsigned (the unsigned operand of VNNI's dot
// product), u = v + 2^(bits - 1), so a block's dot product is (sum of u x) minus 2^(bits - 1) times the sum of x: the
// second part depends on x alone, so it is computed once, as -2^(bits - 1) (sum of x_q) times x's scale, and each
// weight row takes it times its own block scale (cheaper than loading 16 offsets a group in the kernel's inner loop).
// Zeros over the padding.
struct QuantizedX {
  std::vector<int8_t> val;
  std::vector<float> scale;   // a block each
  std::vector<float> offset;  // a block each
  int64_t groups = 0;
};

// Quantizes w [N, K] (nn.Linear's layout; a Conv1D weight goes in transposed) to `bits` 8 or 4. K must be a multiple
// of 32. Computed in float64, as the reference implementation (scripts/quant-check.py) does.
QWeight QuantizeWeight(const at::Tensor& w_nk, int bits);
// w [N, K] in float32 again.
at::Tensor DequantizeWeight(const QWeight& w);
// For the fused decoder, in two steps: x [0:K] quantized per block of 32; then out[0:N] = b + W x (b float32 [N] or
// undefined) by integer dot products, and `then` (see SplitRows) once every row is done.
QuantizedX QuantizeInput(const float* x, const QWeight& w);
void QMatVecInto(const QuantizedX& x, const QWeight& w, const at::Tensor& b, float* out,
                 const NextStep* then = nullptr);
// The same for M rows at once, out [M, N]: each weight row is read once for several of them, and each row's result is
// what QMatVecInto gives it alone.
void QMatMulInto(const QuantizedX* x, int64_t M, const QWeight& w, const at::Tensor& b, float* out,
                 const NextStep* then = nullptr);
// y = b + x W^T for x [..., K] float32: a few rows through the integer kernels, many through the dequantized weight.
at::Tensor QLinear(const at::Tensor& x, const QWeight& w, const at::Tensor& b);
// The kernels this CPU runs: "avx512-vnni", "avx2" or "scalar" (chosen at run time; TORCHLM_Q8_KERNEL names a slower
// one, to test it).
const char* Q8Kernel();

}  // namespace torchlm
