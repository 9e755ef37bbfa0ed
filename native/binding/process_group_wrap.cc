// NativeProcessGroup: a c10d process group (core/distributed/comm.h) for JavaScript.
#include "binding/process_group_wrap.h"

#include "binding/bindings.h"
#include "binding/model_wrap.h"
#include "binding/options.h"
#include "binding/promise_worker.h"

namespace torchlm {

// DDP's default bucket size.
static constexpr size_t kBucketBytes = 25u << 20;

class ProcessGroupWrap : public Napi::ObjectWrap<ProcessGroupWrap> {
 public:
  static Napi::FunctionReference* ctor_;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeProcessGroup",
                                   {
                                       StaticMethod("connect", &ProcessGroupWrap::Connect),
                                       InstanceMethod("broadcastParameters", &ProcessGroupWrap::BroadcastParameters),
                                       InstanceMethod("allReduce", &ProcessGroupWrap::AllReduce),
                                       InstanceMethod("barrier", &ProcessGroupWrap::Barrier),
                                       InstanceMethod("dispose", &ProcessGroupWrap::Dispose),
                                       InstanceAccessor("rank", &ProcessGroupWrap::Rank, nullptr),
                                       InstanceAccessor("worldSize", &ProcessGroupWrap::WorldSize, nullptr),
                                   });
    ctor_ = new Napi::FunctionReference(Napi::Persistent(f));
    exports.Set("NativeProcessGroup", f);
    exports.Set("distributedAvailable", Napi::Boolean::New(env, Comm::Available()));
  }

  explicit ProcessGroupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessGroupWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw JsError(info.Env(), "NativeProcessGroup cannot be constructed directly: use init_process_group()",
                    kInvalidArgument);
    comm_ = *info[0].As<Napi::External<std::shared_ptr<Comm>>>().Data();
  }

  std::shared_ptr<Comm> Get(Napi::Env env) const {
    if (!comm_)
      throw JsError(env, "The process group is destroyed: it cannot be used after destroy_process_group()", kDisposed);
    return comm_;
  }

 private:
  std::shared_ptr<Comm> comm_;

  // connect({ master_addr, master_port, rank, world_size, timeout_ms, gloo_interface, gloo_address })
  //   -> Promise<NativeProcessGroup>
  static Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&] {
      const Options args(info[0], "NativeProcessGroup.connect");
      const std::string addr = args.Str("master_addr");
      const int port = static_cast<int>(args.Int("master_port"));
      const int rank = static_cast<int>(args.Int("rank")), world = static_cast<int>(args.Int("world_size"));
      const int64_t timeout = args.Int("timeout_ms");
      const std::string ifname = args.IsNull("gloo_interface") ? "" : args.Str("gloo_interface");
      const std::string local = args.IsNull("gloo_interface") ? args.Str("gloo_address") : "";
      auto out = std::make_shared<std::shared_ptr<Comm>>();
      return PromiseWorker::Run(
          env, [=] { *out = Comm::Connect(addr, port, rank, world, timeout, ifname, local); },
          [out](Napi::Env env) -> Napi::Value {
            return ctor_->New({Napi::External<std::shared_ptr<Comm>>::New(env, out.get())});
          });
    });
  }

  // broadcastParameters({ model, root }) -> Promise<void>: every rank starts from root's weights.
  Napi::Value BroadcastParameters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&] {
      const Options args(info[0], "broadcastParameters");
      auto comm = Get(env);
      auto model = ModelWrap::UnwrapModel(args.Get("model"))->Get(env);
      const int root = static_cast<int>(args.Int("root"));
      return PromiseWorker::Run(env,
                                [=] {
                                  std::vector<at::Tensor> ps;
                                  for (const auto& [name, t] : model->Parameters()) ps.push_back(t.detach());
                                  for (const auto& [name, t] : model->LoraParameters()) ps.push_back(t.detach());
                                  comm->Broadcast(ps, root, kBucketBytes);
                                },
                                nullptr, {info.This().As<Napi::Object>(), args.Object("model")});
    });
  }

  // allReduce({ values: Float64Array, op: "sum" | "max" }) -> Promise<Float64Array>: small metrics.
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&] {
      const Options args(info[0], "allReduce");
      auto comm = Get(env);
      const Napi::Value v = args.Get("values");
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        throw UserError("Expected a Float64Array for allReduce's option values");
      const bool max = args.Enum("op", {"sum", "max"}) == 1;
      auto arr = v.As<Napi::Float64Array>();
      auto values = std::make_shared<std::vector<double>>(arr.Data(), arr.Data() + arr.ElementLength());
      return PromiseWorker::Run(
          env,
          [=] {
            at::Tensor t = at::from_blob(values->data(), {static_cast<int64_t>(values->size())}, at::kDouble);
            comm->AllReduce(t, max);  // in place, in *values
          },
          [values](Napi::Env env) -> Napi::Value {
            auto out = Napi::Float64Array::New(env, values->size());
            std::memcpy(out.Data(), values->data(), values->size() * sizeof(double));
            return out;
          },
          {info.This().As<Napi::Object>()});
    });
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    auto comm = Get(info.Env());
    return PromiseWorker::Run(info.Env(), [comm] { comm->Barrier(); }, nullptr, {info.This().As<Napi::Object>()});
  }

  // Drops this handle; the group closes when queued work that holds it has finished.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    comm_.reset();
    return info.Env().Undefined();
  }
  Napi::Value Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), Get(info.Env())->rank()); }
  Napi::Value WorldSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), Get(info.Env())->world());
  }

  friend std::shared_ptr<Comm> UnwrapComm(const Napi::Value& v);
};

Napi::FunctionReference* ProcessGroupWrap::ctor_ = nullptr;

std::shared_ptr<Comm> UnwrapComm(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ProcessGroupWrap::ctor_->Value()))
    throw JsError(v.Env(), "Expected a process group", kInvalidArgument);
  return Napi::ObjectWrap<ProcessGroupWrap>::Unwrap(v.As<Napi::Object>())->Get(v.Env());
}

void InitDistributed(Napi::Env env, Napi::Object exports) { ProcessGroupWrap::Init(env, exports); }

}  // namespace torchlm
