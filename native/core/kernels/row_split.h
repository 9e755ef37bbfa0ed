// Rows of a weight matrix split between the threads for streaming kernels (batch-1 decoding reads every weight once a
// token, at the memory's speed).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace torchlm {

struct StreamStats {
  int64_t helped = 0;      // blocks a thread took from another's share (the tests check that help happens)
  int64_t prefetched = 0;  // bytes of the next matrix read ahead while Then::serial ran
};

// A matrix's bytes as StreamRows will read them: row r of each stream at base + r * row_bytes.
struct RowStream {
  const void* base = nullptr;
  int64_t row_bytes = 0;
};

// What follows the rows, in the same parallel region: `serial` on the thread that finished the last block, while the
// others read the first bytes of each thread's share of the next matrix (`next_rows` rows of `next`) into cache until
// it returns. Between two linears of a decoded token the other thread had nothing to do (bfloat16 about +3%, q4 the
// same; TORCHLM_NO_PREFETCH=1 turns the read-ahead off, to measure it).
struct Then {
  std::function<void()> serial;
  int64_t next_rows = 0;
  std::vector<RowStream> next;
};

// Calls fn(r0, r1) over [0, rows), rows of `row_bytes` bytes, in blocks of whole rows (about 8 KB). Each thread starts
// on its own contiguous share, front to back (one sequential stream, which the hardware prefetcher follows); a thread
// done with its share takes blocks from the back of the others'. With two fixed halves one thread streamed alone while
// the other waited at the barrier (in a bfloat16 decode the halves' times differed by about 10% of a token, either half
// lagging), and a thread that lost its core held every matrix-vector product up: with a busy process beside it a q4
// decode ran 10% faster with help. Serial where there is one thread or the caller is already inside a parallel region,
// `then` after the rows.
// `first`, then `then`'s serial work (if any), reading ahead what `then` reads ahead: how a linear adds its bias before
// what follows it.
Then After(std::function<void()> first, const Then* then);

void StreamRows(int64_t rows, int64_t row_bytes, const std::function<void(int64_t, int64_t)>& fn,
                StreamStats* stats = nullptr, const Then* then = nullptr);

}  // namespace torchlm
