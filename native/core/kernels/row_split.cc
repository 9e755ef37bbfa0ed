#include "core/kernels/row_split.h"
#include "core/runtime/env.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
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

// How SplitRows splits `rows`: blocks of whole rows (about 8 KB), thread t's share the blocks [First(t), First(t +
// 1)).
struct Split {
  int64_t block, blocks, threads;
  Split(int64_t rows, int64_t row_bytes) {
    block = std::max<int64_t>(1, (8 << 10) / std::max<int64_t>(1, row_bytes));
    blocks = (rows + block - 1) / block;
    threads = std::min<int64_t>(at::get_num_threads(), blocks);
  }
  int64_t First(int64_t t) const { return blocks * t / threads; }
};

// Reads the first bytes of every thread's share of a matrix, a cache line at a time, round-robin over the shares in
// 4 KB pieces (each piece sequential, for the hardware prefetcher), until `stop` or 1 MB (this core's L2). Returns the
// bytes read.
int64_t Prefetch(int64_t rows, const std::vector<MatrixRows>& streams, const std::atomic<bool>& stop) {
  int64_t row_bytes = 0;
  for (const MatrixRows& s : streams) row_bytes += s.row_bytes;
  if (rows <= 0 || row_bytes <= 0) return 0;
  const Split split(rows, row_bytes);
  constexpr int64_t kPiece = 4096, kCap = 1 << 20;
  uint64_t sink = 0;
  int64_t read = 0;
  for (int64_t c = 0; read < kCap && !stop.load(std::memory_order_acquire); c++) {
    bool any = false;
    for (int64_t t = 0; t < split.threads; t++) {
      const int64_t r0 = split.First(t) * split.block, r1 = std::min(rows, split.First(t + 1) * split.block);
      for (const MatrixRows& s : streams) {
        const int64_t from = r0 * s.row_bytes + c * kPiece, to = std::min(r1 * s.row_bytes, from + kPiece);
        const uint8_t* p = static_cast<const uint8_t*>(s.base);
        for (int64_t i = from; i < to; i += 64) sink += p[i];
        if (to > from) {
          any = true;
          read += to - from;
        }
      }
    }
    if (!any) break;
  }
  volatile uint64_t keep = sink;  // the loads are the point: kept from being optimized away
  (void)keep;
  return read;
}

}  // namespace

NextStep StepBefore(std::function<void()> first, const NextStep* then) {
  NextStep t;
  if (!then) {
    t.serial = std::move(first);
    return t;
  }
  t.serial = [first = std::move(first), then] {
    first();
    then->serial();
  };
  t.next_rows = then->next_rows;
  t.next = then->next;
  return t;
}

void SplitRows(int64_t rows, int64_t row_bytes, const std::function<void(int64_t, int64_t)>& fn, SplitStats* stats,
               const NextStep* then) {
  static const bool prefetch = !EnvFlag("TORCHLM_NO_PREFETCH");
  if (rows <= 0) {
    if (then) then->serial();
    return;
  }
  const Split split(rows, row_bytes);
  const int64_t block = split.block, blocks = split.blocks, threads = split.threads;
  if (threads <= 1 || at::in_parallel_region() || blocks > int64_t(0xffffffff)) {
    fn(0, rows);
    if (then) then->serial();
    return;
  }
  std::unique_ptr<Share[]> shares(new Share[threads]);
  for (int64_t t = 0; t < threads; t++)
    shares[t].span.store(Share::Pack(static_cast<uint64_t>(split.First(t)), static_cast<uint64_t>(split.First(t + 1))));
  std::atomic<int64_t> helped{0}, finished{0};
  std::atomic<bool> serial_done{false};
  std::atomic<int64_t> prefetched{0};
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    bool last = false;
    // the thread finishing the last block runs what follows the rows; it sees every row's output (acquire-release)
    auto run = [&](int64_t b, int64_t n) {
      fn(b * block, std::min(rows, (b + n) * block));
      if (finished.fetch_add(n, std::memory_order_acq_rel) + n == blocks) last = true;
    };
    for (int64_t t = t0; t < t1; t++) {
      int64_t b, n;
      while (shares[t].Take(true, b, n)) run(b, n);
      for (int64_t u = 1; u < threads; u++)
        while (shares[(t + u) % threads].Take(false, b, n)) {
          run(b, n);
          helped.fetch_add(1, std::memory_order_relaxed);
        }
    }
    if (!then) return;
    if (last) {
      then->serial();
      serial_done.store(true, std::memory_order_release);
    } else if (prefetch) {
      prefetched.fetch_add(Prefetch(then->next_rows, then->next, serial_done), std::memory_order_relaxed);
    }
  });
  if (stats) {
    stats->helped = helped.load();
    stats->prefetched = prefetched.load();
  }
}

}  // namespace torchlm
