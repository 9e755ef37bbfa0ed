// Shared includes and helpers for the torchlm addon.
#pragma once

#include <napi.h>
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include "errors.h"

#include <dlfcn.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

// libtorch 2.4 or newer (CMakeLists.txt checks): pip's CPU and CUDA builds.
static_assert(TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4), "torchlm needs libtorch 2.4 or newer");

namespace torchlm {

// Runs fn and turns libtorch / std exceptions into JavaScript errors (with their code) on the main thread; the
// JavaScript layer attaches the caller's stack.
template <typename F>
auto Guard(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw JsError(env, e);
  }
}

// A function of a library this process already loaded (libtorch's own Sleef or MKL), or null: RTLD_NOLOAD never
// loads a second copy, so whatever is found shares libtorch's build and OpenMP runtime.
inline void* LoadedSymbol(std::initializer_list<const char*> libraries, const char* symbol) {
  for (const char* name : libraries)
    if (void* lib = dlopen(name, RTLD_LAZY | RTLD_NOLOAD)) return dlsym(lib, symbol);
  return nullptr;
}

at::ScalarType ParseDtype(const std::string& name);
std::string DtypeName(at::ScalarType t);
// "[2, 3]": a shape for error messages.
std::string ShapeStr(at::IntArrayRef shape);
at::Device ParseDevice(const std::string& name);
std::string DeviceName(const at::Device& d);
std::vector<int64_t> ToInt64Vector(const Napi::Value& v, const char* what);

// Threads of libtorch's OpenMP pool are per calling thread; workers apply this before they run.
void ApplyThreadSettings();
int GetNumThreads();

}  // namespace torchlm
