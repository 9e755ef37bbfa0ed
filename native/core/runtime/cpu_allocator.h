#pragma once
#include <cstddef>
namespace torchlm {
// Replaces libtorch's CPU allocator with a caching one (TORCHLM_NO_CPU_CACHE=1 keeps the default;
// TORCHLM_CPU_CACHE_MB bounds the cache: by default half the machine's memory, at least 4096 MB).
void InstallCachingAllocator();
size_t CachedCPUBytes();
void EmptyCPUCache();
}  // namespace torchlm
