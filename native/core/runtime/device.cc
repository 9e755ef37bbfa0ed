// Devices, dtypes and the compute threads' count.
#include "core/runtime/device.h"

#include <ATen/Parallel.h>
#include <ATen/Context.h>
#include <torch/cuda.h>

#include <ATen/CPUGeneratorImpl.h>

#include <atomic>
#include <mutex>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cstdlib>

namespace torchlm {

static std::atomic<int> g_threads{0};

// OMP_NUM_THREADS when set (torchlm launch and torchrun set it per rank), else the cores available.
static int DefaultThreads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    int v = std::atoi(env);
    if (v > 0) return v;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int GetNumThreads() {
  int n = g_threads.load();
  return n > 0 ? n : DefaultThreads();
}

void SetNumThreads(int n) {
  g_threads.store(n);
  ApplyThreadSettings();
}

void ApplyThreadSettings() {
  int n = GetNumThreads();
  if (at::get_num_threads() != n) at::set_num_threads(n);
}

// The JavaScript thread (the binding calls this there) runs only small synchronous work (tensor creation, reads) and
// keeps one OpenMP thread, so that it never grows a second thread team beside the compute thread's. libgomp stops
// spinning between parallel regions once its threads outnumber the cores, and the wake-ups cost batch-1 bf16 decoding
// 20% (125 -> 101 tok/s).
void KeepCallingThreadSerial() {
  at::get_num_threads();  // ATen's per-thread lazy init first, or it would set the thread count back
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
}

at::ScalarType ParseDtype(const std::string& name) {
  if (name == "float32" || name == "float") return at::kFloat;
  if (name == "float16" || name == "half") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float64" || name == "double") return at::kDouble;
  if (name == "int64" || name == "long") return at::kLong;
  if (name == "int32" || name == "int") return at::kInt;
  if (name == "uint8") return at::kByte;
  if (name == "bool") return at::kBool;
  throw UserError(
      "Expected one of float32, float16, bfloat16, float64, int64, int32, uint8, bool for dtype but received " + name);
}

std::string ShapeStr(at::IntArrayRef shape) {
  std::string o = "[";
  for (size_t i = 0; i < shape.size(); i++) o += (i ? ", " : "") + std::to_string(shape[i]);
  return o + "]";
}

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    case at::kDouble:
      return "float64";
    case at::kLong:
      return "int64";
    case at::kInt:
      return "int32";
    case at::kByte:
      return "uint8";
    case at::kChar:
      return "int8";
    case at::kBool:
      return "bool";
    default:
      return c10::toString(t);
  }
}

bool CudaAvailable() { return torch::cuda::is_available(); }

int CudaDeviceCount() { return CudaAvailable() ? static_cast<int>(torch::cuda::device_count()) : 0; }

bool MpsAvailable() {
#if defined(__APPLE__)
  return at::hasMPS();
#else
  return false;
#endif
}

at::Device ParseDevice(const std::string& name) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (name == "mps") {
    if (!MpsAvailable())
      throw UserError("Device mps is not available: this libtorch has no MPS support or this machine has no Apple GPU");
#if defined(__APPLE__)
    return at::Device(at::kMPS);
#endif
  }
  if (name.rfind("cuda", 0) == 0) {
    int index = 0;
    if (name.size() > 4) {
      if (name[4] != ':' || name.size() == 5)
        throw UserError("Expected a device like cuda or cuda:0 but received " + name);
      for (size_t i = 5; i < name.size(); i++)
        if (name[i] < '0' || name[i] > '9')
          throw UserError("Expected a device like cuda or cuda:0 but received " + name);
      index = std::stoi(name.substr(5));
    }
    if (!CudaAvailable())
      throw UserError("Device " + name +
                      " is not available: this libtorch was built without CUDA or no NVIDIA GPU is visible");
    int n = static_cast<int>(torch::cuda::device_count());
    if (index >= n)
      throw UserError("Device " + name + " is not available: " + std::to_string(n) + " CUDA device(s) visible");
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw UserError("Expected cpu, cuda, cuda:N or mps for device but received " + name);
}

std::string DeviceName(const at::Device& d) {
  if (d.is_cpu()) return "cpu";
  if (d.is_cuda()) return "cuda:" + std::to_string(d.has_index() ? d.index() : 0);
  return d.str();
}

}  // namespace torchlm

namespace torchlm {

void ManualSeed(uint64_t seed) { at::manual_seed(seed); }

at::Tensor CpuRngState() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void SetCpuRngState(const at::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state.to(at::kCPU, at::kByte).contiguous());
}

}  // namespace torchlm
