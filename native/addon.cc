// Addon entry: every native class and function, registered in one place.
#include "allocator.h"
#include "common.h"
#include "device.h"
#include "distributed.h"
#include "loss.h"
#include "model.h"
#include "optimizer.h"
#include "probes.h"
#include "safetensors.h"
#include "tensor.h"

namespace torchlm {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallCachingAllocator();
  ApplyThreadSettings();
  InitDevice(env, exports);
  TensorWrap::Init(env, exports);
  ModelWrap::Init(env, exports);
  InitSafetensors(env, exports);
  InitLoss(env, exports);
  InitOptimizer(env, exports);
  InitDistributed(env, exports);
  InitProbes(env, exports);
  return exports;
}

}  // namespace torchlm

static Napi::Object InitTorchlm(Napi::Env env, Napi::Object exports) { return torchlm::Init(env, exports); }

NODE_API_MODULE(torchlm, InitTorchlm)
