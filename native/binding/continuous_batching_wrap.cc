// NativeContinuousBatching: the continuous batching engine (core/serving/continuous_batching.h) for JavaScript. Each
// step's events reach JavaScript in one call of a thread-safe function; the manager in lib/continuous_batching.ts
// hands them to each request's iterator.
#include "binding/bindings.h"
#include "binding/generation_config_helper.h"
#include "binding/model_wrap.h"
#include "binding/options.h"
#include "binding/promise_worker.h"
#include "core/serving/continuous_batching.h"

namespace torchlm {

class ContinuousBatchingWrap : public Napi::ObjectWrap<ContinuousBatchingWrap> {
 public:
  static Napi::FunctionReference* ctor_;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeContinuousBatching",
                                   {
                                       StaticMethod("create", &ContinuousBatchingWrap::Create),
                                       InstanceMethod("add", &ContinuousBatchingWrap::Add),
                                       InstanceMethod("cancel", &ContinuousBatchingWrap::Cancel),
                                       InstanceMethod("counts", &ContinuousBatchingWrap::Counts),
                                       InstanceMethod("keepAlive", &ContinuousBatchingWrap::KeepAlive),
                                       InstanceMethod("stop", &ContinuousBatchingWrap::Stop),
                                   });
    ctor_ = new Napi::FunctionReference(Napi::Persistent(f));
    exports.Set("NativeContinuousBatching", f);
  }

  explicit ContinuousBatchingWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ContinuousBatchingWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw JsError(info.Env(), "NativeContinuousBatching cannot be constructed directly: use create()",
                    kInvalidArgument);
    auto* made = info[0].As<Napi::External<Made>>().Data();
    engine_ = std::move(made->engine);
    events_ = std::move(made->events);
  }

 private:
  struct Made {
    std::shared_ptr<ContinuousBatching> engine;
    std::shared_ptr<Napi::ThreadSafeFunction> events;
  };
  std::shared_ptr<ContinuousBatching> engine_;
  std::shared_ptr<Napi::ThreadSafeFunction> events_;
  // Released once stop() has run; a manager never stopped leaves it unreferenced, and Node finalizes it at exit.
  bool released_ = false;

  static Napi::Value EventsToJs(Napi::Env env, const std::vector<BatchEvent>& events) {
    auto arr = Napi::Array::New(env, events.size());
    for (size_t i = 0; i < events.size(); i++) {
      const BatchEvent& e = events[i];
      auto o = Napi::Object::New(env);
      o.Set("id", Napi::Number::New(env, static_cast<double>(e.id)));
      if (e.kind == BatchEvent::kToken) {
        o.Set("token", Napi::Number::New(env, static_cast<double>(e.token)));
        o.Set("logprob", Napi::Number::New(env, e.logprob));
        auto top = Napi::Array::New(env, e.top_logprobs.size());
        for (size_t j = 0; j < e.top_logprobs.size(); j++) {
          auto pair = Napi::Array::New(env, 2);
          pair.Set(0u, Napi::Number::New(env, static_cast<double>(e.top_logprobs[j].first)));
          pair.Set(1u, Napi::Number::New(env, e.top_logprobs[j].second));
          top.Set(static_cast<uint32_t>(j), pair);
        }
        o.Set("top_logprobs", top);
      } else {
        o.Set("finish_reason", Napi::String::New(env, e.finish_reason));
        o.Set("error", e.error.empty() ? env.Null() : Napi::String::New(env, e.error));
      }
      arr.Set(static_cast<uint32_t>(i), o);
    }
    return arr;
  }

  // create({ model, max_batch_size, max_context_length, max_batch_tokens, on_events }) -> Promise
  static Napi::Value Create(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      const Options args(info[0], "NativeContinuousBatching.create");
      ModelWrap* mw = ModelWrap::UnwrapModel(args.Get("model"));
      std::shared_ptr<CausalLM> model = mw->Get(env);
      ContinuousBatchingConfig config;
      config.max_batch_size = args.Int("max_batch_size");
      config.max_context_length = args.Int("max_context_length");
      config.max_batch_tokens = args.Int("max_batch_tokens");
      if (!args.Get("on_events").IsFunction())
        throw UserError("NativeContinuousBatching.create's option on_events must be a function");
      // made last: nothing may throw after it, or the thread-safe function would hold the event loop open
      auto events = std::make_shared<Napi::ThreadSafeFunction>(
          Napi::ThreadSafeFunction::New(env, args.Get("on_events").As<Napi::Function>(), "torchlm-batch", 0, 1));
      events->Unref(env);  // the manager's requests keep the process alive (keepAlive), not the manager
      auto made = std::make_shared<Made>();
      made->events = events;
      return PromiseWorker::Run(
          env,
          [=] {
            BatchEventSink sink = [events](std::vector<BatchEvent> evs) {
              auto* copy = new std::vector<BatchEvent>(std::move(evs));
              auto status =
                  events->NonBlockingCall(copy, [](Napi::Env env, Napi::Function fn, std::vector<BatchEvent>* e) {
                    Napi::Value arr = EventsToJs(env, *e);
                    delete e;
                    fn.Call({arr});
                  });
              if (status != napi_ok) delete copy;
            };
            try {
              made->engine = std::make_shared<ContinuousBatching>(model, config, sink);
            } catch (...) {
              events->Release();
              throw;
            }
          },
          [made](Napi::Env env) -> Napi::Value { return ctor_->New({Napi::External<Made>::New(env, made.get())}); },
          {info[0].As<Napi::Object>()});
    });
  }

  std::shared_ptr<ContinuousBatching> Engine(Napi::Env env) const {
    if (!engine_ || engine_->stopped())
      throw JsError(env, "the continuous batching manager is stopped", kInvalidArgument);
    return engine_;
  }

  // add({ id, input_ids: number[], config, logprobs })
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      auto engine = Engine(env);
      const Options args(info[0], "add");
      BatchRequest r;
      r.id = args.Int("id");
      r.prompt = args.Ints("input_ids");
      r.config = ParseGenerateConfig(args.Nested("config"));
      r.logprobs = args.Int("logprobs");
      engine->Add(std::move(r));
      return env.Undefined();
    });
  }

  // cancel({ id })
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      const Options args(info[0], "cancel");
      const int64_t id = args.Int("id");
      if (engine_) engine_->Cancel(id);
      return env.Undefined();
    });
  }

  Napi::Value Counts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto o = Napi::Object::New(env);
    const auto c = engine_ ? engine_->counts() : ContinuousBatching::Counts{0, 0};
    o.Set("running", Napi::Number::New(env, static_cast<double>(c.running)));
    o.Set("waiting", Napi::Number::New(env, static_cast<double>(c.waiting)));
    return o;
  }

  // keepAlive({ on }): whether pending events keep the process alive (while requests are in flight)
  Napi::Value KeepAlive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      const Options args(info[0], "keepAlive");
      const bool on = args.Bool("on");
      if (!released_ && events_) {
        if (on)
          events_->Ref(env);
        else
          events_->Unref(env);
      }
      return env.Undefined();
    });
  }

  // stop() -> Promise: every request ends as "cancelled" (their events come first), the slots' memory is freed
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      auto engine = engine_;
      if (!engine || released_)
        return PromiseWorker::Run(
            env, [] {}, nullptr);
      released_ = true;
      auto events = events_;
      return PromiseWorker::Run(
          env,
          [engine, events] {
            engine->Stop();
            events->Release();  // after Stop's own events: a thread-safe function delivers what was queued first
          },
          nullptr, {info.This().As<Napi::Object>()});
    });
  }
};

Napi::FunctionReference* ContinuousBatchingWrap::ctor_ = nullptr;

void InitContinuousBatching(Napi::Env env, Napi::Object exports) { ContinuousBatchingWrap::Init(env, exports); }

}  // namespace torchlm
