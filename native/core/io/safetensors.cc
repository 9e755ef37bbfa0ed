#include "core/io/safetensors.h"
#include "core/runtime/env.h"

#include <ATen/Parallel.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace torchlm {

MappedFile::MappedFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError("Cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw UserError("Cannot stat " + path + ": " + std::strerror(errno));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    // Writable and private: borrowed parameters may be updated in place (copy-on-write, never the file).
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw UserError("Cannot map " + path + ": " + std::strerror(errno));
    }
    data_ = static_cast<uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

static at::ScalarType StDtype(const std::string& d, size_t* item) {
  if (d == "F32") {
    *item = 4;
    return at::kFloat;
  }
  if (d == "F16") {
    *item = 2;
    return at::kHalf;
  }
  if (d == "BF16") {
    *item = 2;
    return at::kBFloat16;
  }
  if (d == "F64") {
    *item = 8;
    return at::kDouble;
  }
  if (d == "I64") {
    *item = 8;
    return at::kLong;
  }
  if (d == "I32") {
    *item = 4;
    return at::kInt;
  }
  if (d == "U8") {
    *item = 1;
    return at::kByte;
  }
  if (d == "I8") {
    *item = 1;
    return at::kChar;
  }
  if (d == "BOOL") {
    *item = 1;
    return at::kBool;
  }
  throw UserError("unsupported safetensors dtype " + d);
}

static const char* StName(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "F32";
    case at::kHalf:
      return "F16";
    case at::kBFloat16:
      return "BF16";
    case at::kDouble:
      return "F64";
    case at::kLong:
      return "I64";
    case at::kInt:
      return "I32";
    case at::kByte:
      return "U8";
    case at::kChar:
      return "I8";
    case at::kBool:
      return "BOOL";
    default:
      throw UserError(std::string("cannot save dtype ") + c10::toString(t) + " to safetensors");
  }
}

static void PreadAll(int fd, uint8_t* dst, uint64_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    ssize_t r = ::pread(fd, dst, std::min<uint64_t>(n, 1u << 30), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      throw UserError("Cannot read " + path + ": " + (r < 0 ? std::strerror(errno) : "unexpected end of file"));
    dst += r;
    offset += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

// Reads `bytes` of dtype st at `offset` into dst (any dtype, any device) through a staging buffer of kConvertPiece.
static constexpr uint64_t kConvertPiece = 16ull << 20;
static void StreamConvert(int fd, const std::string& path, uint64_t offset, uint64_t bytes, at::ScalarType st,
                          size_t item, at::Tensor& dst) {
  const int64_t numel = static_cast<int64_t>(bytes / item), per = static_cast<int64_t>(kConvertPiece / item);
  at::Tensor stage = at::empty({std::min(per, numel)}, at::TensorOptions().dtype(st));
  at::Tensor flat = dst.view({-1});
  for (int64_t i = 0; i < numel; i += per) {
    const int64_t n = std::min(per, numel - i);
    PreadAll(fd, static_cast<uint8_t*>(stage.data_ptr()), static_cast<uint64_t>(n) * item,
             offset + static_cast<uint64_t>(i) * item, path);
    flat.narrow(0, i, n).copy_(stage.narrow(0, 0, n));
  }
}

std::vector<std::pair<std::string, at::Tensor>> ReadSafetensors(const std::string& path, uint64_t data_start,
                                                                const std::vector<SafetensorsEntry>& entries,
                                                                c10::optional<at::ScalarType> dtype,
                                                                at::Device device) {
  auto file = std::make_shared<MappedFile>(path);
  if (data_start > file->size()) throw UserError(path + ": header length points past the end of the file");
  const uint64_t data_len = file->size() - data_start;

  // Offsets must lie inside the data and must not overlap.
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : entries) {
    size_t item = 0;
    StDtype(e.dtype, &item);
    if (e.begin > e.end) throw UserError(path + ": tensor " + e.name + " has data_offsets with begin after end");
    if (e.end > data_len)
      throw UserError(path + ": tensor " + e.name + " has data_offsets past the end of the file (truncated?)");
    uint64_t numel = 1;
    for (int64_t s : e.shape) {
      if (s < 0) throw UserError(path + ": tensor " + e.name + " has a negative dimension");
      if (s != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(s))
        throw UserError(path + ": tensor " + e.name + " has a shape too large");
      numel *= static_cast<uint64_t>(s);
    }
    if (numel * item != e.end - e.begin)
      throw UserError(path + ": tensor " + e.name + " has " + std::to_string(e.end - e.begin) + " bytes but dtype " +
                      e.dtype + " and its shape need " + std::to_string(numel * item));
    sorted.push_back(&e);
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  const SafetensorsEntry* last = nullptr;
  for (const auto* e : sorted) {
    if (e->end == e->begin) continue;
    if (last && e->begin < last->end)
      throw UserError(path + ": tensors " + last->name + " and " + e->name + " overlap in the file");
    if (!last || e->end > last->end) last = e;
  }

  std::vector<std::pair<std::string, at::Tensor>> out;
  out.reserve(entries.size());
  const bool borrow = EnvFlag("TORCHLM_MMAP");  // read at each load
  struct Piece {
    uint8_t* dst;
    uint64_t n, offset;
  };
  std::vector<Piece> pieces;  // reads into the allocator's memory, done below on every thread
  int fd = -1;
  struct CloseFd {
    int& fd;
    ~CloseFd() {
      if (fd >= 0) ::close(fd);
    }
  } close_fd{fd};
  auto open_fd = [&] {
    if (fd < 0) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw UserError("Cannot open " + path + ": " + std::strerror(errno));
    return fd;
  };
  for (const auto& e : entries) {
    size_t item = 0;
    at::ScalarType st = StDtype(e.dtype, &item);
    at::ScalarType target = dtype.has_value() && at::isFloatingType(st) ? *dtype : st;
    uint8_t* ptr = const_cast<uint8_t*>(file->data()) + data_start + e.begin;
    bool aligned = reinterpret_cast<uintptr_t>(ptr) % item == 0;
    at::Tensor t;
    if (e.end == e.begin) {
      t = at::empty(e.shape, at::TensorOptions().dtype(target).device(device));
    } else if (target == st && device.is_cpu() && !borrow) {
      // Read into the allocator's memory (huge pages): streaming the weights every decoded token is about
      // 30% faster than through the file mapping's 4 KB pages, and pread costs no page fault per 4 KB.
      t = at::empty(e.shape, at::TensorOptions().dtype(st));
      open_fd();
      const uint64_t piece = kReadPiece;
      for (uint64_t at = 0; at < e.end - e.begin; at += piece)
        pieces.push_back({static_cast<uint8_t*>(t.data_ptr()) + at, std::min(piece, e.end - e.begin - at),
                          data_start + e.begin + at});
    } else if (aligned && target == st && device.is_cpu()) {
      // TORCHLM_MMAP=1: borrow the mapping (no copy; pages read in when used). MAP_PRIVATE makes later
      // in-place updates (training) copy-on-write, never touching the file.
      auto keep = file;
      t = at::from_blob(
          ptr, e.shape, [keep](void*) mutable { keep.reset(); }, at::TensorOptions().dtype(st));
    } else {
      // Another dtype or another device: converted piece by piece from a bounded staging buffer. Reading through the
      // mapping kept every page of the file it touched in this process's RSS until the load ended, so a bfloat16 load
      // peaked at the float32 file plus the result.
      t = at::empty(e.shape, at::TensorOptions().dtype(target).device(device));
      StreamConvert(open_fd(), path, data_start + e.begin, e.end - e.begin, st, item, t);
    }
    out.emplace_back(e.name, t);
  }
  // The first touch of fresh memory (the kernel zeroing each huge page) costs more than the copy from the page
  // cache; on every core at once, loading 124M takes about half the time.
  at::parallel_for(0, static_cast<int64_t>(pieces.size()), 1, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; i++) PreadAll(fd, pieces[i].dst, pieces[i].n, pieces[i].offset, path);
  });
  return out;
}

static std::string JsonEscape(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else
      o += static_cast<char>(c);
  }
  return o;
}

void WriteSafetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::vector<at::Tensor> cpu;
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); i++) {
      if (i) header += ",";
      header.append("\"")
          .append(JsonEscape(metadata[i].first))
          .append("\":\"")
          .append(JsonEscape(metadata[i].second))
          .append("\"");
    }
    header += "}";
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& [name, t0] : tensors) {
    at::Tensor t = t0.detach().to(at::kCPU).contiguous();
    const char* dt = StName(t.scalar_type());
    uint64_t n = t.nbytes();
    if (!first) header += ",";
    first = false;
    header.append("\"").append(JsonEscape(name)).append("\":{\"dtype\":\"").append(dt).append("\",\"shape\":[");
    for (int64_t i = 0; i < t.dim(); i++) header.append(i ? "," : "").append(std::to_string(t.size(i)));
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
    offset += n;
    cpu.push_back(t);
  }
  header += "}";
  while ((header.size() + 8) % 8 != 0) header += ' ';

  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw UserError("Cannot write " + tmp + ": " + std::strerror(errno));
  // A failed write (ENOSPC, EIO, ...) names its cause and removes the temporary; the target is untouched.
  auto write_all = [&](const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        int err = w < 0 ? errno : EIO;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw UserError("Cannot write " + tmp + ": " + std::strerror(err));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  };
  uint64_t hl = header.size();
  uint8_t le[8];
  for (int i = 0; i < 8; i++) le[i] = static_cast<uint8_t>(hl >> (8 * i));
  write_all(le, 8);
  write_all(header.data(), header.size());
  for (const auto& t : cpu) write_all(t.data_ptr(), t.nbytes());
  int err = ::fsync(fd) != 0 ? errno : 0;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    throw UserError("Cannot write " + tmp + ": " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw UserError("Cannot rename " + tmp + " to " + path + ": " + std::strerror(err));
  }
}

}  // namespace torchlm
