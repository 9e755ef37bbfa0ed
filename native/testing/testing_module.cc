// The testing addon, torchlm_testing.node: the shipped addon's exports plus `probes` (machine limits, fast-path
// switches and counters) for the tests and the bench. Never loaded unless TORCHLM_BINARY names it.
#include "binding/bindings.h"
#include "testing/probes.h"

static Napi::Object InitTorchlmTesting(Napi::Env env, Napi::Object exports) {
  torchlm::InitAddon(env, exports);
  torchlm::InitProbes(env, exports);
  return exports;
}

NODE_API_MODULE(torchlm_testing, InitTorchlmTesting)
