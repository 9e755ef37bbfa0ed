// Rows of a weight matrix split between the threads for streaming kernels (batch-1 decoding reads every weight once a
// token, at the memory's speed).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace torchlm {

struct SplitStats {
  int64_t helped = 0;      // blocks a thread took from another's share (the tests check that help happens)
  int64_t prefetched = 0;  // bytes of the next matrix read ahead while NextStep::serial ran
};

// A matrix's bytes as SplitRows will read them: row r of each stream at base + r * row_bytes.
struct MatrixRows {
  const void* base = nullptr;
  int64_t row_bytes = 0;
};

// What follows the rows, in the same parallel region: `serial` on the thread that finished the last block, while the
// others read the first bytes of each thread's share of the next matrix (`next_rows` rows of `next`) into cache until
// it returns: between two linears of a decoded token the other thread would have nothing to do
// (TORCHLM_NO_PREFETCH=1 turns the read-ahead off, to measure it).
struct NextStep {
  std::function<void()> serial;
  int64_t next_rows = 0;
  std::vector<MatrixRows> next;
};

// `first`, then `then`'s serial work (if any), reading ahead what `then` reads ahead: how a linear adds its bias before
// what follows it.
NextStep StepBefore(std::function<void()> first, const NextStep* then);

// Calls fn(r0, r1) over [0, rows), rows of `row_bytes` bytes, in blocks of whole rows (about 8 KB). Each thread starts
// on its own contiguous share, front to back (one sequential stream, which the hardware prefetcher follows); a thread
// done with its share takes blocks from the back of the others', so that a thread that lost its core or lags holds
// no product up (HISTORY.md has the measurements). Serial where there is one thread or the caller is already inside a
// parallel region; `then` after the rows.
void SplitRows(int64_t rows, int64_t row_bytes, const std::function<void(int64_t, int64_t)>& fn,
               SplitStats* stats = nullptr, const NextStep* then = nullptr);

}  // namespace torchlm
