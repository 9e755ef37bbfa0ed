// A safetensors index from JavaScript (lib/safetensors.ts parses the header; the core checks it against the file).
#pragma once

#include <napi.h>

#include "core/io/safetensors.h"

namespace torchlm {

std::vector<SafetensorsEntry> ParseEntries(const Napi::Value& v);

}  // namespace torchlm
