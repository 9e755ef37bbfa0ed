#pragma once
#include "common.h"
namespace torchlm {
void InitLoss(Napi::Env env, Napi::Object exports);
}
