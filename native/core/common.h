// Shared includes and helpers of the native core (no Node: the binding is the only code that knows N-API).
#pragma once

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include "core/errors.h"

#include <dlfcn.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

// libtorch 2.4 or newer (CMakeLists.txt checks): pip's CPU and CUDA builds.
static_assert(TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4),
              "torchlm needs libtorch 2.4 or newer");

namespace torchlm {

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

}  // namespace torchlm
