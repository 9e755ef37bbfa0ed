// The core's errors as JavaScript errors: the message, and the `code` lib/errors.ts maps to its class.
#pragma once

#include <napi.h>

#include "core/errors.h"

namespace torchlm {

inline Napi::Error JsError(Napi::Env env, const std::string& message, const char* code) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}
inline Napi::Error JsError(Napi::Env env, const std::exception& e) {
  return JsError(env, ErrorMessage(e), ErrorCode(e));
}

// Runs fn and turns libtorch / std exceptions into JavaScript errors (with their code) on the main thread; the
// JavaScript layer attaches the caller's stack.
template <typename F>
auto Guard(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw JsError(env, e);
  }
}

}  // namespace torchlm
