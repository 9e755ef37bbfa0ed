// Data-parallel communication on PyTorch's own engine: c10d's TCPStore rendezvous and ProcessGroupGloo.
#pragma once

#include "core/common.h"

#include <memory>

namespace torchlm {

// One process group. Every call blocks until all ranks take part, so they run on the compute thread,
// in the same order on every rank.
class Comm {
 public:
  struct Impl;
  // Whether this build has c10d's Gloo (its headers were there at build time).
  static bool Available();
  // Rank 0 serves the store at addr:port; the others connect to it. Times out after timeout_ms.
  // Gloo binds this rank to the network interface ifname, or (ifname empty) to the local address local_addr.
  static std::shared_ptr<Comm> Connect(const std::string& addr, int port, int rank, int world, int64_t timeout_ms,
                                       const std::string& ifname, const std::string& local_addr);
  int rank() const { return rank_; }
  int world() const { return world_; }
  // Averages the tensors over the ranks in place, in flat buckets of at most bucket_bytes (as DDP does).
  void AllReduceMean(const std::vector<at::Tensor>& tensors, size_t bucket_bytes);
  // Sums (or takes the max of) a small tensor over the ranks, in place.
  void AllReduce(at::Tensor t, bool max);
  // Copies root's tensors to every rank, in place.
  void Broadcast(const std::vector<at::Tensor>& tensors, int root, size_t bucket_bytes);
  void Barrier();

 private:
  std::shared_ptr<Impl> impl_;
  int rank_ = 0, world_ = 1;
};

}  // namespace torchlm
