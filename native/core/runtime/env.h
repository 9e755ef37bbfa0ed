// The environment switches' one convention (docs/switches.md lists them all): a flag is on when set to anything but
// "" or "0", and off when unset or "0".
#pragma once

#include <cstdlib>
#include <cstring>

namespace torchlm {

inline bool EnvFlag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

}  // namespace torchlm
