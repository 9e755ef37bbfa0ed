// The kinds of error the core raises. The binding turns each into a JavaScript error with a `code` that lib/errors.ts
// maps to its class, so the split between the caller's mistakes and libtorch's failures survives the boundary.
#pragma once

#include <c10/util/Exception.h>

#include <stdexcept>
#include <string>

namespace torchlm {

// The caller's mistake (a wrong shape, an id out of range, a missing option): ERR_TORCHLM_INVALID_ARGUMENT.
struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A tensor or model used after dispose(): ERR_TORCHLM_DISPOSED.
struct DisposedError : UserError {
  using UserError::UserError;
};
// Work cancelled through its AbortSignal: ABORT_ERR, as Node's own AbortError.
struct AbortedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kInvalidArgument = "ERR_TORCHLM_INVALID_ARGUMENT";
inline constexpr const char* kDisposed = "ERR_TORCHLM_DISPOSED";
inline constexpr const char* kAborted = "ABORT_ERR";
// libtorch's own errors (c10::Error) and anything else thrown below us.
inline constexpr const char* kNative = "ERR_TORCHLM_NATIVE";

inline const char* ErrorCode(const std::exception& e) {
  if (dynamic_cast<const DisposedError*>(&e)) return kDisposed;
  if (dynamic_cast<const UserError*>(&e)) return kInvalidArgument;
  if (dynamic_cast<const AbortedError*>(&e)) return kAborted;
  return kNative;
}

// libtorch's messages without the C++ backtrace it appends in debug builds.
inline std::string ErrorMessage(const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

}  // namespace torchlm
