// The shipped addon, torchlm.node: the library's exports and nothing else.
#include "binding/bindings.h"

static Napi::Object InitTorchlm(Napi::Env env, Napi::Object exports) { return torchlm::InitAddon(env, exports); }

NODE_API_MODULE(torchlm, InitTorchlm)
