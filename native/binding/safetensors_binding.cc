// safetensors files for JavaScript: readSafetensors and writeSafetensors, on the compute thread.
#include "binding/safetensors_binding.h"

#include "binding/bindings.h"
#include "binding/options.h"
#include "binding/promise_worker.h"
#include "binding/tensor_wrap.h"

namespace torchlm {

std::vector<SafetensorsEntry> ParseEntries(const Napi::Value& v) {
  if (!v.IsArray()) throw UserError("Expected an array of safetensors entries");
  auto arr = v.As<Napi::Array>();
  std::vector<SafetensorsEntry> out;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    const Options o(arr.Get(i), "a safetensors entry");
    SafetensorsEntry e;
    e.name = o.Str("name");
    e.dtype = o.Str("dtype");
    e.shape = o.Ints("shape");
    const double b = o.Num("begin"), en = o.Num("end");
    if (!(b >= 0 && en >= 0 && b <= 9007199254740991.0 && en <= 9007199254740991.0))
      throw UserError("tensor " + e.name + " has invalid data_offsets");
    e.begin = static_cast<uint64_t>(b);
    e.end = static_cast<uint64_t>(en);
    out.push_back(std::move(e));
  }
  return out;
}

// readSafetensors({ path, data_start, entries, dtype: string | null (the file's own), device }) -> Promise<[name,
// Tensor][]>
static Napi::Value JsRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "readSafetensors");
    auto path = args.Str("path");
    auto start = static_cast<uint64_t>(args.Int("data_start"));
    auto entries = ParseEntries(args.Get("entries"));
    c10::optional<at::ScalarType> dtype;
    if (!args.IsNull("dtype")) dtype = ParseDtype(args.Str("dtype"));
    at::Device device = ParseDevice(args.Str("device"));
    auto result = std::make_shared<std::vector<std::pair<std::string, at::Tensor>>>();
    return PromiseWorker::Run(
        env, [=] { *result = ReadSafetensors(path, start, entries, dtype, device); },
        [result](Napi::Env env) -> Napi::Value { return TensorWrap::NamedToJs(env, *result); });
  });
}

// writeSafetensors({ path, tensors: [name, Tensor][], metadata: { [key]: string } }) -> Promise<void>
static Napi::Value JsWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "writeSafetensors");
    const std::string path = args.Str("path");
    auto tensors = TensorWrap::NamedFromJs(args.Get("tensors"), "writeSafetensors's tensors");
    std::vector<std::pair<std::string, std::string>> meta;
    const Napi::Object o = args.Object("metadata");
    const Napi::Array keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      const std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
      const Napi::Value v = o.Get(k);
      if (!v.IsString()) throw UserError("Expected a string for writeSafetensors's metadata " + k);
      meta.emplace_back(k, v.As<Napi::String>().Utf8Value());
    }
    return PromiseWorker::Run(
        env, [=] { WriteSafetensors(path, tensors, meta); }, nullptr);
  });
}

void InitSafetensors(Napi::Env env, Napi::Object exports) {
  exports.Set("readSafetensors", Napi::Function::New(env, JsRead));
  exports.Set("writeSafetensors", Napi::Function::New(env, JsWrite));
}

}  // namespace torchlm
