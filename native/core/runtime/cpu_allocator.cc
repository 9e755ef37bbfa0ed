// A caching CPU allocator. glibc serves large blocks with fresh mmap()s and returns them on free, so
// every large tensor (a [batch x seq, 50257] logits tensor is hundreds of MB) pays a page fault per
// 4 KB on first touch: measured here, an exp() over 100M floats took 0.73 s allocating its output
// and 0.027 s writing into a reused one. Blocks of 1 MB and more are kept by rounded size and reused,
// as PyTorch's CUDA caching allocator does; smaller ones are plain aligned allocations.
#include "core/runtime/cpu_allocator.h"
#include "core/runtime/env.h"
#include "core/common.h"

#include <c10/core/CPUAllocator.h>

#include <algorithm>

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <unordered_map>
#include <mutex>

namespace torchlm {

namespace {

constexpr size_t kMinCached = 1 << 20;  // 1 MB
constexpr size_t kHuge = 2 << 20;       // transparent huge page size

// Size classes eight to a power of two (at most 12.5% rounding), so that blocks fit later requests.
size_t SizeClass(size_t n) {
  size_t top = 1;
  while ((top << 1) <= n) top <<= 1;
  size_t step = std::max<size_t>(top >> 3, 4096);
  return (n + step - 1) / step * step;
}

class CachingCPUAllocator final : public c10::Allocator {
 public:
  CachingCPUAllocator() {
    // Half the machine's memory by default: a training step frees and reallocates its whole working set (at 4 x 1024,
    // GPT-2 124M's activations and its vocabulary-sized logits and gradients pass 6 GB), and whatever does not fit the
    // cache is faulted in again at the next step.
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) limit_ = std::max(limit_, static_cast<size_t>(pages) * static_cast<size_t>(page) / 2);
    const char* env = std::getenv("TORCHLM_CPU_CACHE_MB");
    if (env) limit_ = static_cast<size_t>(std::strtoull(env, nullptr, 10)) << 20;
  }

  // The context of every DataPtr is its pointer (raw_allocate / raw_deallocate need that); block sizes
  // are kept in a side table.
  c10::DataPtr allocate(size_t n) override {
    void* p = Allocate(n);
    return c10::DataPtr(p, p, &CachingCPUAllocator::Free, c10::Device(c10::DeviceType::CPU));
  }

  c10::DeleterFnPtr raw_deleter() const override { return &CachingCPUAllocator::Free; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  void* Allocate(size_t n) const {
    if (n == 0) n = 1;
    if (n < kMinCached) {
      void* p = nullptr;
      if (posix_memalign(&p, 64, n) != 0 || !p) throw std::bad_alloc();
      return p;
    }
    size_t size = SizeClass(n);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Best fit among cached blocks no more than a quarter larger: batches whose sequence length
      // varies (padding to the longest row) then keep reusing the same blocks.
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= size + size / 4) {
        p = it->second;
        size = it->first;
        free_.erase(it);
        cached_ -= size;
      }
    }
    if (!p) {
      // 2 MB aligned and marked for transparent huge pages: first touch faults once per 2 MB, not per 4 KB.
      if (posix_memalign(&p, size >= kHuge ? kHuge : 64, size) != 0 || !p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
      if (size >= kHuge) madvise(p, size, MADV_HUGEPAGE);
#endif
    }
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[p] = size;
    return p;
  }

  static void Free(void* p) {
    if (p) Instance()->Release(p);
  }

  void Release(void* p) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) {  // a small block
      std::free(p);
      return;
    }
    size_t size = it->second;
    sizes_.erase(it);
    if (size > limit_) {
      std::free(p);
      return;
    }
    // Over the limit: give back the largest cached blocks until this one fits. Flushing every block instead would
    // make the next step fault in all of its activations again (a 4 x 1024 training step of GPT-2 124M holds several
    // 823 MB vocabulary-sized blocks; each flush cost it seconds of page faults).
    while (cached_ + size > limit_ && !free_.empty()) {
      auto largest = std::prev(free_.end());
      std::free(largest->second);
      cached_ -= largest->first;
      free_.erase(largest);
    }
    free_.emplace(size, p);
    cached_ += size;
  }

  void EmptyCache() const {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [s, q] : free_) std::free(q);
    free_.clear();
    cached_ = 0;
  }

  size_t Cached() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }

  static CachingCPUAllocator*& Instance() {
    static CachingCPUAllocator* inst = nullptr;
    return inst;
  }

 private:
  mutable std::mutex mu_;
  mutable std::multimap<size_t, void*> free_;
  mutable std::unordered_map<void*, size_t> sizes_;
  mutable size_t cached_ = 0;
  size_t limit_ = size_t(4) << 30;  // at least 4 GB
};

}  // namespace

void InstallCachingAllocator() {
  auto*& inst = CachingCPUAllocator::Instance();
  if (inst || EnvFlag("TORCHLM_NO_CPU_CACHE")) return;
  inst = new CachingCPUAllocator();
  c10::SetCPUAllocator(inst, /*priority=*/10);
}

size_t CachedCPUBytes() { return CachingCPUAllocator::Instance() ? CachingCPUAllocator::Instance()->Cached() : 0; }

void EmptyCPUCache() {
  if (CachingCPUAllocator::Instance()) CachingCPUAllocator::Instance()->EmptyCache();
}

}  // namespace torchlm
