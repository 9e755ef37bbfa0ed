// The bench's and the tests' probes (machine limits, fast-path switches and counters), exported as `probes`.
#pragma once

#include <napi.h>

namespace torchlm {

void InitProbes(Napi::Env env, Napi::Object exports);

}  // namespace torchlm
