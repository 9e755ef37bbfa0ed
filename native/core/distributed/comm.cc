#include "core/distributed/comm.h"

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
#include <thread>

namespace torchlm {

bool Comm::Available() { return TORCHLM_HAVE_GLOO != 0; }

#if TORCHLM_HAVE_GLOO

struct Comm::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

static std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

// Every rank says which rank of how many it was started as before any waits for the others, so that a job whose
// launchers disagree (--nnodes, --nproc-per-node, --node-rank) ends on every rank at once, naming the disagreement,
// instead of waiting out the timeout for ranks that will never come.
static void Rendezvous(c10d::Store& store, int rank, int world, std::chrono::milliseconds timeout) {
  const std::string abort_key = "torchlm/abort";
  auto abort = [&](const std::string& why) {
    store.set(abort_key, Bytes(why));
    throw UserError(why);
  };
  if (rank == 0) store.set("torchlm/world", Bytes(std::to_string(world)));
  if (rank != 0) {
    const auto w = store.get("torchlm/world");
    const std::string theirs(w.begin(), w.end());
    if (theirs != std::to_string(world))
      abort("rank " + std::to_string(rank) + " was started with a world size of " + std::to_string(world) +
            " and rank 0 with " + theirs +
            ": every node's torchlm launch needs the same --nnodes and --nproc-per-node");
  }
  if (store.add("torchlm/rank/" + std::to_string(rank), 1) > 1)
    abort("two processes were started as rank " + std::to_string(rank) +
          ": each node's torchlm launch needs its own --node-rank, and every node the same --nproc-per-node");
  store.add("torchlm/arrived", 1);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const auto poll = std::chrono::milliseconds(50);
  try {
    while (true) {
      if (store.check({abort_key})) {
        const auto why = store.get(abort_key);
        // the master holds the store: it stays a few polls so that every waiting rank reads the reason first
        if (rank == 0) std::this_thread::sleep_for(4 * poll);
        throw UserError(std::string(why.begin(), why.end()));
      }
      const int64_t arrived = store.add("torchlm/arrived", 0);
      if (arrived >= world) return;
      if (std::chrono::steady_clock::now() > deadline)
        throw UserError(std::to_string(arrived) + " of " + std::to_string(world) +
                        " ranks joined within the timeout (" + std::to_string(timeout.count() / 1000) +
                        " s): the others were not started or cannot reach the master");
      std::this_thread::sleep_for(poll);
    }
  } catch (const c10::DistNetworkError& e) {
    throw UserError("rank 0 (the master) went away while rank " + std::to_string(rank) +
                    " waited for the others to join: " + e.what_without_backtrace());
  }
}

std::shared_ptr<Comm> Comm::Connect(const std::string& addr, int port, int rank, int world, int64_t timeout_ms,
                                    const std::string& ifname, const std::string& local_addr) {
  auto timeout = std::chrono::milliseconds(timeout_ms);
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = rank == 0;
  so.numWorkers = static_cast<size_t>(world);
  so.waitWorkers = false;  // Rendezvous waits, and can tell why ranks are missing
  so.timeout = timeout;
  auto c = std::make_shared<Comm>();
  c->impl_ = std::make_shared<Impl>();
  c->impl_->store = c10::make_intrusive<c10d::TCPStore>(addr, so);
  Rendezvous(*c->impl_->store, rank, world, timeout);
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  // lib/distributed.ts picks them: GLOO_SOCKET_IFNAME, else the address that reaches the master
  if (!ifname.empty())
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(local_addr));
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
  struct Pending {
    std::vector<at::Tensor> group, buf;
    c10::intrusive_ptr<c10d::Work> work;
  };
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
  return UserError(
      "this torchlm build has no distributed support: libtorch's Gloo headers were missing at build time "
      "(install libgloo-dev, then run `npm run build:native`)");
}
std::shared_ptr<Comm> Comm::Connect(const std::string&, int, int, int, int64_t, const std::string&,
                                    const std::string&) {
  throw NoGloo();
}
void Comm::AllReduceMean(const std::vector<at::Tensor>&, size_t) { throw NoGloo(); }
void Comm::AllReduce(at::Tensor, bool) { throw NoGloo(); }
void Comm::Broadcast(const std::vector<at::Tensor>&, int, size_t) { throw NoGloo(); }
void Comm::Barrier() { throw NoGloo(); }

#endif

}  // namespace torchlm
