// generate()'s options object (lib/generation.ts's NativeGenerateConfig) as the core's GenerateConfig.
#pragma once

#include "binding/options.h"
#include "core/model/generate.h"

namespace torchlm {

GenerateConfig ParseGenerateConfig(const Options& o);

}  // namespace torchlm
