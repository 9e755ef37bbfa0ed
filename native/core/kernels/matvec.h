// Batch-1 linear layers that stream their weights at memory speed (decoding reads every weight once a token).
#pragma once

#include "core/common.h"
#include "core/kernels/row_split.h"

#include <c10/util/BFloat16.h>

#include <algorithm>
#include <vector>

namespace torchlm {

// For the fused decoders: a float32 or bfloat16 CPU tensor's memory read as float32, with the dtype looked up once
// rather than per element.
struct Floats {
  const float* f = nullptr;
  const c10::BFloat16* h = nullptr;
  explicit Floats(const at::Tensor& t) {
    if (t.scalar_type() == at::kFloat)
      f = t.data_ptr<float>();
    else
      h = reinterpret_cast<const c10::BFloat16*>(t.data_ptr());
  }
  float operator[](int64_t i) const { return f ? f[i] : static_cast<float>(h[i]); }
};

// n float32 values into a float32 or bfloat16 tensor (a KV cache) from element `offset`, rounded to nearest even as
// copy_ rounds them.
inline void StoreFloats(at::Tensor& t, int64_t offset, const float* src, int64_t n) {
  if (t.scalar_type() == at::kFloat) {
    std::copy(src, src + n, t.data_ptr<float>() + offset);
  } else {
    c10::BFloat16* dst = reinterpret_cast<c10::BFloat16*>(t.data_ptr()) + offset;
    for (int64_t i = 0; i < n; i++) dst[i] = c10::BFloat16(src[i]);
  }
}

// y = b + x @ W for one row x [K] and W [K, N] (Conv1D's layout): float32 or bfloat16, CPU, contiguous or the
// transposed view of contiguous [N, K] rows (a bfloat16 model's layout, GPT2::LayOutConv1D). Returns an
// undefined tensor when the fast path does not apply (the caller falls back to addmm).
at::Tensor MatVecKN(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);
// The same on raw memory, for the fused decoder: whether W and b suit it, and out[0:N] = b + x[0:K] @ W, then `then`
// (see SplitRows).
bool MatVecKNWeights(const at::Tensor& w, const at::Tensor& b);
void MatVecKNInto(const float* x, const at::Tensor& w, const at::Tensor& b, float* out, const NextStep* then = nullptr);
// out[0:N] += b (float32 or bfloat16 CPU, contiguous), when b is defined.
void AddBias(const at::Tensor& b, float* out, int64_t N);
// y = W @ h for one row h [K] and W [V, K] (the tied LM head, wte).
at::Tensor MatVecNK(const at::Tensor& h, const at::Tensor& w);
// Batch-1 decoding attention, where a BLAS call per head costs more than the arithmetic: q [H * D] against
// the first S positions of the caches k, v [1, H, capacity, D] (float32 or bfloat16, contiguous):
// softmax(q.K * scale).V into y [H * D] float32; `allowed` (S bytes, or null for all) leaves out masked positions.
// Grouped-query attention: with `groups` query heads a key and value head, q has H * groups heads, head h reading
// cache head h / groups.
void AttendInto(const float* q, const at::Tensor& k, const at::Tensor& v, int64_t S, double scale,
                const uint8_t* allowed, float* y, int64_t groups = 1);
// The same for M rows in one parallel region: row m's query (q + m * H * D, rows of H * D) against slot slots[m] of the
// caches k, v [slots, H / groups, capacity, D] (contiguous) over its first lengths[m] positions, into y's row m. Each
// (row, head) computes as AttendInto computes it, `groups` query heads to a cache head as there.
void AttendRowsInto(const float* q, const at::Tensor& k, const at::Tensor& v, const std::vector<int64_t>& slots,
                    const std::vector<int64_t>& lengths, double scale, float* y, int64_t groups = 1);
// 2: AVX-512F, 1: AVX2 + FMA, 0: neither (checked once, at run time).
int SimdLevel();
// On by default; TORCHLM_NO_MATVEC=1 or probes.setMatvec(false) turns it off (to measure the lever).
bool MatVecEnabled();
void SetMatVecEnabled(bool on);
// Calls that took a fast path so far (tests check that the path they compare was really taken).
int64_t MatVecCalls();

}  // namespace torchlm
