#pragma once
#include "common.h"
#include <torch/version.h>

namespace torchlm {
bool CudaAvailable();
bool MpsAvailable();
void InitDevice(Napi::Env env, Napi::Object exports);
}  // namespace torchlm
