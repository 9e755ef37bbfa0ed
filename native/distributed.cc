#include "distributed.h"

#include "model.h"
#include "worker.h"

#ifndef TORCHLM_HAVE_GLOO
#define TORCHLM_HAVE_GLOO 0
#endif

#if TORCHLM_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>

namespace torchlm {

#if TORCHLM_HAVE_GLOO

struct Comm::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

std::shared_ptr<Comm> Comm::Connect(const std::string& addr, int port, int rank, int world, int64_t timeout_ms) {
  auto timeout = std::chrono::milliseconds(timeout_ms);
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = rank == 0;
  so.numWorkers = static_cast<size_t>(world);
  so.waitWorkers = true;
  so.timeout = timeout;
  auto c = std::make_shared<Comm>();
  c->impl_ = std::make_shared<Impl>();
  c->impl_->store = c10::make_intrusive<c10d::TCPStore>(addr, so);
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  // Gloo binds each rank to one interface: GLOO_SOCKET_IFNAME as in PyTorch, loopback for a
  // single-machine job, else the address this host name resolves to.
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname && *ifname) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else if (addr == "127.0.0.1" || addr == "localhost") opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  opts->threads = 2;
  c->impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(c->impl_->store, rank, world, opts);
  c->rank_ = rank;
  c->world_ = world;
  return c;
}

// Consecutive tensors of one dtype and device, at most cap bytes each (a bigger tensor is a bucket alone).
static std::vector<std::vector<at::Tensor>> Buckets(const std::vector<at::Tensor>& ts, size_t cap) {
  std::vector<std::vector<at::Tensor>> out;
  size_t bytes = 0;
  for (const auto& t : ts) {
    size_t n = t.numel() * t.element_size();
    if (out.empty() || bytes + n > cap || out.back().front().scalar_type() != t.scalar_type() ||
        out.back().front().device() != t.device()) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(t);
    bytes += n;
  }
  return out;
}

static at::Tensor Flatten(const std::vector<at::Tensor>& group) {
  std::vector<at::Tensor> flat;
  for (const auto& t : group) flat.push_back(t.reshape({-1}));
  return at::cat(flat);
}

static void Unflatten(const at::Tensor& buf, const std::vector<at::Tensor>& group) {
  int64_t off = 0;
  for (const auto& t : group) {
    t.copy_(buf.narrow(0, off, t.numel()).view(t.sizes()));
    off += t.numel();
  }
}

void Comm::AllReduceMean(const std::vector<at::Tensor>& tensors, size_t bucket_bytes) {
  at::NoGradGuard ng;
  struct Pending { std::vector<at::Tensor> group, buf; c10::intrusive_ptr<c10d::Work> work; };
  std::vector<Pending> pending;
  // All buckets go out before the first wait, so Gloo's threads overlap them.
  for (auto& group : Buckets(tensors, bucket_bytes)) {
    Pending p{group, {Flatten(group)}, {}};
    p.work = impl_->pg->allreduce(p.buf);
    pending.push_back(std::move(p));
  }
  for (auto& p : pending) {
    p.work->wait();
    p.buf[0].div_(world_);
    Unflatten(p.buf[0], p.group);
  }
}

void Comm::AllReduce(at::Tensor t, bool max) {
  at::NoGradGuard ng;
  std::vector<at::Tensor> v{t};
  c10d::AllreduceOptions o;
  o.reduceOp = max ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
  impl_->pg->allreduce(v, o)->wait();
}

void Comm::Broadcast(const std::vector<at::Tensor>& tensors, int root, size_t bucket_bytes) {
  at::NoGradGuard ng;
  c10d::BroadcastOptions o;
  o.rootRank = root;
  for (auto& group : Buckets(tensors, bucket_bytes)) {
    std::vector<at::Tensor> buf{Flatten(group)};
    impl_->pg->broadcast(buf, o)->wait();
    Unflatten(buf[0], group);
  }
}

void Comm::Barrier() { impl_->pg->barrier()->wait(); }

#else  // no Gloo headers at build time

struct Comm::Impl {};
static UserError NoGloo() {
  return UserError("this torchlm build has no distributed support: libtorch's Gloo headers were missing at build time "
                   "(install libgloo-dev, then run `npm run build:native`)");
}
std::shared_ptr<Comm> Comm::Connect(const std::string&, int, int, int, int64_t) { throw NoGloo(); }
void Comm::AllReduceMean(const std::vector<at::Tensor>&, size_t) { throw NoGloo(); }
void Comm::AllReduce(at::Tensor, bool) { throw NoGloo(); }
void Comm::Broadcast(const std::vector<at::Tensor>&, int, size_t) { throw NoGloo(); }
void Comm::Barrier() { throw NoGloo(); }

#endif

// DDP's default bucket size.
static constexpr size_t kBucketBytes = 25u << 20;

class ProcessGroupWrap : public Napi::ObjectWrap<ProcessGroupWrap> {
 public:
  static Napi::FunctionReference* ctor_;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeProcessGroup", {
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
    exports.Set("distributedAvailable", Napi::Boolean::New(env, TORCHLM_HAVE_GLOO != 0));
  }

  explicit ProcessGroupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessGroupWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw JsError(info.Env(), "NativeProcessGroup cannot be constructed directly: use init_process_group()", kInvalidArgument);
    comm_ = *info[0].As<Napi::External<std::shared_ptr<Comm>>>().Data();
  }

  std::shared_ptr<Comm> Get(Napi::Env env) const {
    if (!comm_) throw JsError(env, "The process group is destroyed: it cannot be used after destroy_process_group()", kDisposed);
    return comm_;
  }

 private:
  std::shared_ptr<Comm> comm_;

  // connect(master_addr, master_port, rank, world_size, timeout_ms) -> Promise<NativeProcessGroup>
  static Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string addr = info[0].As<Napi::String>().Utf8Value();
    int port = info[1].As<Napi::Number>().Int32Value();
    int rank = info[2].As<Napi::Number>().Int32Value();
    int world = info[3].As<Napi::Number>().Int32Value();
    int64_t timeout = info[4].As<Napi::Number>().Int64Value();
    auto out = std::make_shared<std::shared_ptr<Comm>>();
    return PromiseWorker::Run(
        env, [=] { *out = Comm::Connect(addr, port, rank, world, timeout); },
        [out](Napi::Env env) -> Napi::Value { return ctor_->New({Napi::External<std::shared_ptr<Comm>>::New(env, out.get())}); });
  }

  // broadcastParameters(model, root) -> Promise<void>: every rank starts from root's weights.
  Napi::Value BroadcastParameters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto comm = Get(env);
    auto model = ModelWrap::UnwrapModel(info[0])->Get(env);
    int root = info[1].As<Napi::Number>().Int32Value();
    return PromiseWorker::Run(env, [=] {
      std::vector<at::Tensor> ps;
      for (const auto& [name, t] : model->Parameters()) ps.push_back(t.detach());
      for (const auto& [name, t] : model->LoraParameters()) ps.push_back(t.detach());
      comm->Broadcast(ps, root, kBucketBytes);
    }, nullptr, {info.This().As<Napi::Object>(), info[0].As<Napi::Object>()});
  }

  // allReduce(values: Float64Array, op: "sum" | "max") -> Promise<Float64Array>: small metrics.
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto comm = Get(env);
    auto arr = info[0].As<Napi::Float64Array>();
    bool max = info[1].As<Napi::String>().Utf8Value() == "max";
    auto t = std::make_shared<at::Tensor>(at::from_blob(arr.Data(), {static_cast<int64_t>(arr.ElementLength())}, at::kDouble).clone());
    return PromiseWorker::Run(env, [=] { comm->AllReduce(*t, max); }, [t](Napi::Env env) -> Napi::Value {
      auto out = Napi::Float64Array::New(env, t->numel());
      std::memcpy(out.Data(), t->data_ptr<double>(), t->numel() * sizeof(double));
      return out;
    }, {info.This().As<Napi::Object>()});
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
  Napi::Value WorldSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), Get(info.Env())->world()); }

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
