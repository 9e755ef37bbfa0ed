// A Promise-returning AsyncWorker: a libuv thread hands the work to the compute thread and waits; the owners stay alive
// until it settles.
#pragma once

#include "binding/js_error.h"
#include "core/runtime/compute_thread.h"
#include "core/runtime/device.h"

#include <functional>
#include <memory>
#include <vector>

namespace torchlm {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Exec = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  static Napi::Promise Run(Napi::Env env, Exec exec, Done done, std::vector<Napi::Object> keep = {}) {
    auto* w = new PromiseWorker(env, std::move(exec), std::move(done), keep);
    auto promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 protected:
  PromiseWorker(Napi::Env env, Exec exec, Done done, const std::vector<Napi::Object>& keep)
      : Napi::AsyncWorker(env, "torchlm"),
        deferred_(Napi::Promise::Deferred::New(env)),
        exec_(std::move(exec)),
        done_(std::move(done)) {
    for (const auto& o : keep) refs_.push_back(Napi::Persistent(o));
  }

  void Execute() override {
    try {
      ComputeThread::Get().RunAndWait([this] {
        ApplyThreadSettings();
        exec_();
      });
    } catch (const std::exception& e) {
      code_ = ErrorCode(e);
      SetError(ErrorMessage(e));
    } catch (...) {
      code_ = kNative;
      SetError("unknown native error");
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Value result;
    try {
      result = done_ ? done_(env) : env.Undefined();
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      return;
    } catch (const std::exception& e) {
      deferred_.Reject(JsError(env, e).Value());
      return;
    }
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& e) override {
    e.Value().Set("code", Napi::String::New(Env(), code_));
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Exec exec_;
  Done done_;
  const char* code_ = kNative;
  std::vector<Napi::ObjectReference> refs_;
};

}  // namespace torchlm
