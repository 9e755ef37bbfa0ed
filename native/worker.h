// A Promise-returning AsyncWorker: work runs on a libuv thread, the owners stay alive until it settles.
#pragma once

#include "common.h"

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

namespace torchlm {

// Every libtorch computation runs on this one thread. OpenMP keeps a team of threads per calling thread,
// so libuv's four pool threads would each grow a team and oversubscribe the cores; one compute thread
// keeps one team, and also runs calls in submission order.
class ComputeThread {
 public:
  static ComputeThread& Get() {
    static ComputeThread* t = new ComputeThread();  // never destroyed: it may be running at exit
    return *t;
  }
  // Runs fn on the compute thread and waits for it (called from a libuv pool thread).
  void RunAndWait(const std::function<void()>& fn) {
    std::packaged_task<void()> task(fn);
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
    done.get();  // rethrows what fn threw
  }

 private:
  ComputeThread() : thread_([this] { Loop(); }) { thread_.detach(); }
  void Loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<void()>> queue_;
  std::thread thread_;
};

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
      : Napi::AsyncWorker(env, "torchlm"), deferred_(Napi::Promise::Deferred::New(env)),
        exec_(std::move(exec)), done_(std::move(done)) {
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
