// The addon's exports, registered in one place.
#include "binding/bindings.h"
#include "core/runtime/cpu_allocator.h"
#include "core/runtime/device.h"

namespace torchlm {

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  InstallCachingAllocator();
  ApplyThreadSettings();
  InitDevice(env, exports);
  InitTensor(env, exports);
  InitModel(env, exports);
  InitSafetensors(env, exports);
  InitLoss(env, exports);
  InitOptimizer(env, exports);
  InitDistributed(env, exports);
  InitContinuousBatching(env, exports);
  return exports;
}

}  // namespace torchlm
