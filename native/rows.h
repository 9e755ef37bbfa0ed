// Rows of a weight matrix split between the threads for streaming kernels (batch-1 decoding reads every weight once a
// token, at the memory's speed).
#pragma once

#include <cstdint>
#include <functional>

namespace torchlm {

struct StreamStats {
  int64_t helped = 0;  // blocks a thread took from another's share (the tests check that help happens)
};

// Calls fn(r0, r1) over [0, rows), rows of `row_bytes` bytes, in blocks of whole rows (about 8 KB). Each thread starts
// on its own contiguous share, front to back (one sequential stream, which the hardware prefetcher follows); a thread
// done with its share takes blocks from the back of the others'. With two fixed halves one thread streamed alone while
// the other waited at the barrier (in a bfloat16 decode the halves' times differed by about 10% of a token, either half
// lagging), and a thread that lost its core held every matrix-vector product up: with a busy process beside it a q4
// decode ran 10% faster with help. Serial where there is one thread or the caller is already inside a parallel region.
void StreamRows(int64_t rows, int64_t row_bytes, const std::function<void(int64_t, int64_t)>& fn, StreamStats* stats = nullptr);

}  // namespace torchlm
