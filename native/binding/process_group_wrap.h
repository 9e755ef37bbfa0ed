// NativeProcessGroup's handle, for the optimizer's binding.
#pragma once

#include <napi.h>

#include "core/distributed/comm.h"

#include <memory>

namespace torchlm {

// The live process group behind a JavaScript NativeProcessGroup; throws a JavaScript error otherwise.
std::shared_ptr<Comm> UnwrapComm(const Napi::Value& v);

}  // namespace torchlm
