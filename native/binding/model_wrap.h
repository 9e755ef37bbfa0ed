// NativeModel: the JavaScript handle on one causal LM (any architecture); heavy calls run on worker threads.
#pragma once

#include <napi.h>

#include "core/common.h"
#include "core/model/causal_lm.h"

#include <memory>

namespace torchlm {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object New(Napi::Env env, std::shared_ptr<CausalLM> model);
  static ModelWrap* UnwrapModel(const Napi::Value& v);
  explicit ModelWrap(const Napi::CallbackInfo& info);

  std::shared_ptr<CausalLM> Get(Napi::Env env) const;

 private:
  static Napi::FunctionReference* ctor_;
  std::shared_ptr<CausalLM> model_;

  static Napi::Value Load(const Napi::CallbackInfo& info);
  static Napi::Value Create(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);  // generation.cc
  Napi::Value SetTraining(const Napi::CallbackInfo& info);
  Napi::Value SetGradientCheckpointing(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Parameters(const Napi::CallbackInfo& info);
  Napi::Value NumParameters(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value Save(const Napi::CallbackInfo& info);
  Napi::Value LoadWeights(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value AddLora(const Napi::CallbackInfo& info);
  Napi::Value LoraParameters(const Napi::CallbackInfo& info);
  Napi::Value CopyLora(const Napi::CallbackInfo& info);
  Napi::Value RemoveLora(const Napi::CallbackInfo& info);
  Napi::Value Quantization(const Napi::CallbackInfo& info);
};

}  // namespace torchlm
