// Devices, threads, seeds and the build's facts for JavaScript.
#include "binding/bindings.h"
#include "binding/js_error.h"
#include "binding/options.h"
#include "binding/tensor_wrap.h"
#include "core/runtime/cpu_allocator.h"
#include "core/runtime/device.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

namespace torchlm {

static Napi::Value JsCudaAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), CudaAvailable());
}
static Napi::Value JsMpsAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), MpsAvailable());
}
static Napi::Value JsCudaDeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), CudaDeviceCount());
}
static Napi::Value JsSetNumThreads(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&] {
    SetNumThreads(static_cast<int>(Options(info[0], "setNumThreads").Int("threads")));
    KeepCallingThreadSerial();
    return info.Env().Undefined();
  });
}
static Napi::Value JsGetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), GetNumThreads());
}
static Napi::Value JsManualSeed(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&] {
    ManualSeed(static_cast<uint64_t>(Options(info[0], "manualSeed").Int("seed")));
    return info.Env().Undefined();
  });
}
static Napi::Value JsGetRngState(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value { return TensorWrap::New(info.Env(), CpuRngState()); });
}
static Napi::Value JsSetRngState(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    SetCpuRngState(TensorWrap::FromJs(info[0], "rng_state"));
    return info.Env().Undefined();
  });
}

// The CPU allocator's cache: free blocks kept for reuse (counted in RSS, not leaked), and giving them back. Both only
// take the allocator's lock, so they may run beside the compute thread.
static Napi::Value JsCpuMemoryReserved(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(CachedCPUBytes()));
}
static Napi::Value JsCpuEmptyCache(const Napi::CallbackInfo& info) {
  EmptyCPUCache();
  return info.Env().Undefined();
}

static Napi::Value JsInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("torch_version", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                             std::to_string(TORCH_VERSION_PATCH));
  o.Set("parallel_info", at::get_parallel_info());
  o.Set("cuda", CudaAvailable());
  o.Set("mps", MpsAvailable());
  o.Set("num_threads", GetNumThreads());
  o.Set("mkldnn", at::hasMKLDNN());
  return o;
}

void InitDevice(Napi::Env env, Napi::Object exports) {
  KeepCallingThreadSerial();  // Init runs on the JavaScript thread
  exports.Set("cudaIsAvailable", Napi::Function::New(env, JsCudaAvailable));
  exports.Set("mpsIsAvailable", Napi::Function::New(env, JsMpsAvailable));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, JsCudaDeviceCount));
  exports.Set("setNumThreads", Napi::Function::New(env, JsSetNumThreads));
  exports.Set("getNumThreads", Napi::Function::New(env, JsGetNumThreads));
  exports.Set("manualSeed", Napi::Function::New(env, JsManualSeed));
  exports.Set("info", Napi::Function::New(env, JsInfo));
  exports.Set("getRngState", Napi::Function::New(env, JsGetRngState));
  exports.Set("setRngState", Napi::Function::New(env, JsSetRngState));
  exports.Set("cpuMemoryReserved", Napi::Function::New(env, JsCpuMemoryReserved));
  exports.Set("cpuEmptyCache", Napi::Function::New(env, JsCpuEmptyCache));
}

}  // namespace torchlm
