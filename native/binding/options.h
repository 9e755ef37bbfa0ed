// Named options from the typed layer (lib/addon_types.ts). Every key of a call's contract must be present, null only
// where the contract allows it: a missing or mistyped key is reported, never replaced by a default of the C++'s own
// (the defaults live in TypeScript, in GenerationConfig and TrainingArguments).
#pragma once

#include "core/common.h"
#include "binding/tensor_wrap.h"

#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

namespace torchlm {

class Options {
 public:
  Options(const Napi::Value& v, std::string call) : call_(std::move(call)) {
    if (!v.IsObject() || v.IsArray() || v.IsFunction()) throw UserError(call_ + " expects an options object");
    o_ = v.As<Napi::Object>();
  }

  // The value of a required key (null allowed; undefined is missing).
  Napi::Value Get(const char* key) const {
    Napi::Value v = o_.Get(key);
    if (v.IsUndefined()) throw UserError(Where(key) + " is missing");
    return v;
  }
  bool IsNull(const char* key) const { return Get(key).IsNull(); }

  double Num(const char* key) const {
    Napi::Value v = Get(key);
    if (!v.IsNumber() || std::isnan(v.As<Napi::Number>().DoubleValue())) throw Mistyped(key, "a number", v);
    return v.As<Napi::Number>().DoubleValue();
  }
  int64_t Int(const char* key) const {
    Napi::Value v = Get(key);
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
    if (!(std::abs(d) <= 9007199254740991.0) || d != std::floor(d)) throw Mistyped(key, "an integer", v);
    return static_cast<int64_t>(d);
  }
  bool Bool(const char* key) const {
    Napi::Value v = Get(key);
    if (!v.IsBoolean()) throw Mistyped(key, "a boolean", v);
    return v.As<Napi::Boolean>().Value();
  }
  std::string Str(const char* key) const {
    Napi::Value v = Get(key);
    if (!v.IsString()) throw Mistyped(key, "a string", v);
    return v.As<Napi::String>().Utf8Value();
  }
  // The index of the key's string among `names`.
  int Enum(const char* key, std::initializer_list<const char*> names) const {
    Napi::Value v = Get(key);
    std::string expected;
    int i = 0;
    for (const char* n : names) {
      if (v.IsString() && v.As<Napi::String>().Utf8Value() == n) return i;
      expected += (i++ ? ", \"" : "one of \"") + std::string(n) + "\"";
    }
    throw Mistyped(key, expected, v);
  }
  at::Tensor Tensor(const char* key) const {
    Napi::Value v = Get(key);
    if (!TensorWrap::IsTensor(v)) throw Mistyped(key, "a Tensor", v);
    return TensorWrap::FromJs(v, key);
  }
  // An undefined tensor for null.
  at::Tensor TensorOrNull(const char* key) const { return IsNull(key) ? at::Tensor() : Tensor(key); }
  std::vector<int64_t> Ints(const char* key) const {
    Napi::Value v = Get(key);
    if (!v.IsArray()) throw Mistyped(key, "an array of integers", v);
    return ToInt64Vector(v, key);
  }
  Napi::Object Object(const char* key) const {
    Napi::Value v = Get(key);
    if (!v.IsObject() || v.IsArray() || v.IsFunction()) throw Mistyped(key, "an object", v);
    return v.As<Napi::Object>();
  }
  Options Nested(const char* key) const { return Options(Object(key), call_ + "'s " + key); }

 private:
  std::string Where(const char* key) const { return call_ + "'s option " + key; }
  UserError Mistyped(const char* key, const std::string& expected, const Napi::Value& v) const {
    std::string got;
    if (v.IsString())
      got.append("\"").append(v.As<Napi::String>().Utf8Value()).append("\"");
    else if (v.IsNumber())
      got = v.ToString().Utf8Value();
    else if (v.IsBoolean())
      got = v.As<Napi::Boolean>().Value() ? "true" : "false";
    else
      got = v.IsNull() ? "null" : v.IsArray() ? "an array" : "an object";
    return UserError("Expected " + expected + " for " + Where(key) + " but received " + got);
  }

  Napi::Object o_;
  std::string call_;
};

}  // namespace torchlm
