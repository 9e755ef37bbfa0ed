// safetensors files: memory-mapped reading with a validated index, atomic writing.
#pragma once

#include "core/common.h"

#include <memory>
#include <utility>

namespace torchlm {

// Bytes per pread of the loader, spread over every thread (the first-touch probe in matvec.cc writes the same pieces).
constexpr int64_t kReadPiece = 8 << 20;

// One entry of a safetensors header, parsed from JSON by the JavaScript layer and checked again here.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL"
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

// A read-only private mapping of a whole file; tensors may borrow from it and keep it alive.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// Validates entries against the file (offsets inside the data, no overlap, byte length = dtype size x shape)
// and returns tensors in the requested dtype on the requested device. CPU tensors whose dtype already
// matches are read straight into the allocator's memory (TORCHLM_MMAP=1: borrow the mapping instead); the others
// are converted 16 MB at a time, so a converting load holds the result and one piece, never the whole file.
std::vector<std::pair<std::string, at::Tensor>> ReadSafetensors(const std::string& path, uint64_t data_start,
                                                                const std::vector<SafetensorsEntry>& entries,
                                                                c10::optional<at::ScalarType> dtype, at::Device device);

// Writes tensors (any device, contiguous copies made on the CPU) with 8-byte aligned data to a temporary
// name beside `path`, then renames, so a reader never sees half a file.
void WriteSafetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::vector<std::pair<std::string, std::string>>& metadata);

}  // namespace torchlm
