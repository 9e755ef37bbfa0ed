// Tensor marshalling: a JavaScript object owning one libtorch tensor.
#pragma once

#include <napi.h>

#include "binding/js_error.h"
#include "core/common.h"

namespace torchlm {

// A JavaScript array of integers (shapes, token ids), checked; `what` names it in the error.
std::vector<int64_t> ToInt64Vector(const Napi::Value& v, const char* what);
// A JavaScript array of numbers (shapes, strides, token ids).
Napi::Array Numbers(Napi::Env env, at::IntArrayRef v);

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object New(Napi::Env env, at::Tensor t);
  static bool IsTensor(const Napi::Value& v);
  // The tensor behind a JavaScript value; throws a JavaScript error naming `what` if it is not a live tensor.
  static at::Tensor FromJs(const Napi::Value& v, const char* what);
  // [name, Tensor][] from JavaScript (named state, checkpoints, adapters), each pair checked.
  static std::vector<std::pair<std::string, at::Tensor>> NamedFromJs(const Napi::Value& v, const char* what);
  // [name, Tensor][] for JavaScript, each name after `prefix`; the tensors share storage.
  static Napi::Array NamedToJs(Napi::Env env, const std::vector<std::pair<std::string, at::Tensor>>& ts,
                               const std::string& prefix = "");

  explicit TensorWrap(const Napi::CallbackInfo& info);
  ~TensorWrap() override;

  const at::Tensor& Get(Napi::Env env) const;

 private:
  static Napi::FunctionReference* ctor_;
  at::Tensor tensor_;
  int64_t reported_ = 0;
  bool disposed_ = false;

  void Reset(Napi::Env env);

  static Napi::Value FromBuffer(const Napi::CallbackInfo& info);
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Strides(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value RequiresGrad(const Napi::CallbackInfo& info);
  void SetRequiresGrad(const Napi::CallbackInfo& info, const Napi::Value& v);
  Napi::Value Grad(const Napi::CallbackInfo& info);
  Napi::Value Data(const Napi::CallbackInfo& info);
  Napi::Value Item(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Permute(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
  Napi::Value View(const Napi::CallbackInfo& info);
  Napi::Value Slice(const Napi::CallbackInfo& info);
  Napi::Value Contiguous(const Napi::CallbackInfo& info);
  Napi::Value Argmax(const Napi::CallbackInfo& info);
  Napi::Value Softmax(const Napi::CallbackInfo& info);
  Napi::Value LogSoftmax(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value Compare(const Napi::CallbackInfo& info);
  Napi::Value Arith(const Napi::CallbackInfo& info);
  Napi::Value Reduce(const Napi::CallbackInfo& info);
  Napi::Value Matmul(const Napi::CallbackInfo& info);
  static Napi::Value Cat(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

}  // namespace torchlm
