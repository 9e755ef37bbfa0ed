// What each binding file adds to the addon's exports (binding/addon.cc calls them in order).
#pragma once

#include <napi.h>

namespace torchlm {

// Every export of the shipped addon; the testing addon (native/testing) adds its probes after these.
Napi::Object InitAddon(Napi::Env env, Napi::Object exports);

void InitDevice(Napi::Env env, Napi::Object exports);
void InitTensor(Napi::Env env, Napi::Object exports);
void InitModel(Napi::Env env, Napi::Object exports);
void InitSafetensors(Napi::Env env, Napi::Object exports);
void InitLoss(Napi::Env env, Napi::Object exports);
void InitOptimizer(Napi::Env env, Napi::Object exports);
void InitDistributed(Napi::Env env, Napi::Object exports);
void InitContinuousBatching(Napi::Env env, Napi::Object exports);

}  // namespace torchlm
