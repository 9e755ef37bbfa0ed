#include "rows.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>

namespace torchlm {

namespace {

// One thread's share in blocks: [front, back) not yet taken, packed in one word, so that the owner (from the front)
// and a helper (from the back) each claim with one compare-and-swap and never take the same block. The owner claims up
// to kRun blocks at once, fewer as its share runs out (each call sets up the kernel's row loop again); a helper one at
// a time, so that the last blocks are split finely.
constexpr uint64_t kRun = 8;
struct alignas(64) Share {
  std::atomic<uint64_t> span{0};

  static uint64_t Pack(uint64_t front, uint64_t back) { return front << 32 | back; }
  // [first, first + n) taken, or false when nothing is left
  bool Take(bool from_front, int64_t& first, int64_t& n) {
    uint64_t old = span.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t front = old >> 32, back = old & 0xffffffffu;
      if (front >= back) return false;
      const uint64_t take = from_front ? std::clamp<uint64_t>((back - front) / 4, 1, kRun) : 1;
      const uint64_t next = from_front ? Pack(front + take, back) : Pack(front, back - take);
      if (span.compare_exchange_weak(old, next, std::memory_order_relaxed)) {
        first = static_cast<int64_t>(from_front ? front : back - take);
        n = static_cast<int64_t>(take);
        return true;
      }
    }
  }
};

}  // namespace

void StreamRows(int64_t rows, int64_t row_bytes, const std::function<void(int64_t, int64_t)>& fn, StreamStats* stats) {
  if (rows <= 0) return;
  const int64_t block = std::max<int64_t>(1, (8 << 10) / std::max<int64_t>(1, row_bytes));
  const int64_t blocks = (rows + block - 1) / block;
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), blocks);
  if (threads <= 1 || at::in_parallel_region() || blocks > int64_t(0xffffffff)) {
    fn(0, rows);
    return;
  }
  std::unique_ptr<Share[]> shares(new Share[threads]);
  for (int64_t t = 0; t < threads; t++)
    shares[t].span.store(Share::Pack(static_cast<uint64_t>(blocks * t / threads), static_cast<uint64_t>(blocks * (t + 1) / threads)));
  std::atomic<int64_t> helped{0};
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      int64_t b, n;
      while (shares[t].Take(true, b, n)) fn(b * block, std::min(rows, (b + n) * block));
      for (int64_t u = 1; u < threads; u++)
        while (shares[(t + u) % threads].Take(false, b, n)) {
          fn(b * block, std::min(rows, (b + n) * block));
          helped.fetch_add(1, std::memory_order_relaxed);
        }
    }
  });
  if (stats) stats->helped = helped.load();
}

}  // namespace torchlm
