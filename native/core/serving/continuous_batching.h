// Continuous batching (transformers' ContinuousBatchingManager, llama.cpp server's slots): requests join and leave a
// running batch at every step. The KV cache is a fixed number of slots, each as long as the longest request allowed,
// so its memory is known when the engine starts; a request waits in the queue until a slot frees. Each step decodes
// one token of every running request in one batched pass, then prefills one chunk of a joining request's prompt, so
// a long prompt delays the running requests by a chunk at a time, never by the whole prompt.
#pragma once

#include "core/common.h"
#include "core/model/generate.h"
#include "core/model/causal_lm.h"
#include "core/model/logits_process.h"

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace torchlm {

// Set by the caller (lib/continuous_batching.ts owns the defaults and checks).
struct ContinuousBatchingConfig {
  int64_t max_batch_size = 0;      // slots: requests decoding at once
  int64_t max_context_length = 0;  // each slot's capacity: prompt + new tokens
  int64_t max_batch_tokens = 0;    // tokens a step computes: the decoding rows, then a prefill chunk of the rest
};

struct BatchRequest {
  int64_t id = 0;
  std::vector<int64_t> prompt;
  GenerateConfig config;  // greedy or sampling (num_beams 1), its own seed, processors, eos and max_new_tokens
  int64_t logprobs = -1;  // -1: none; n >= 0: each token's log-probability and the n likeliest alternatives
};

// What a step reports of one request: a new token, or its end.
struct BatchEvent {
  enum Kind { kToken, kFinished };
  int64_t id = 0;
  Kind kind = kToken;
  int64_t token = -1;
  float logprob = 0;
  std::vector<std::pair<int64_t, float>> top_logprobs;
  // kFinished: "stop" (an end-of-sequence token), "length" (max_new_tokens or the slot's end), "cancelled", "error"
  std::string finish_reason;
  std::string error;
};

// Receives each step's events, on the compute thread.
using BatchEventSink = std::function<void(std::vector<BatchEvent>)>;

class ContinuousBatching : public std::enable_shared_from_this<ContinuousBatching> {
 public:
  // On the compute thread: allocates the cache. Each step is a task of its own on the compute thread, so that other
  // calls (a generate, a training step) queue between steps.
  ContinuousBatching(std::shared_ptr<CausalLM> model, ContinuousBatchingConfig config, BatchEventSink sink);

  // From any thread. A request's prompt and max_new_tokens must fit a slot (the caller checks first).
  void Add(BatchRequest request);
  void Cancel(int64_t id);
  // On the compute thread: every request ends as "cancelled"; later Adds throw.
  void Stop();

  struct Counts {
    int64_t running, waiting;
  };
  // From any thread: requests holding a slot, and those queued for one (as of the last step, plus those added since).
  Counts counts() const;
  bool stopped() const { return stopped_.load(); }

 private:
  struct Sequence {
    BatchRequest request;
    std::vector<std::vector<int64_t>> tokens;  // one row: prompt, then the tokens generated so far
    Processors process;
    c10::optional<at::Generator> gen;
    int64_t slot = -1, cached = 0, generated = 0;
    bool prefilled() const { return cached >= static_cast<int64_t>(request.prompt.size()); }
  };

  void Schedule();  // with mu_ held
  // A request's end: its event, and one request fewer in counts().
  void Report(std::vector<BatchEvent>& events, BatchEvent finished);
  void RunStep();
  void Step(std::vector<BatchEvent>& events);
  void Intake(std::vector<BatchEvent>& events);
  using Ended = std::vector<std::pair<Sequence*, std::string>>;
  void Decode(const std::vector<Sequence*>& rows, std::vector<BatchEvent>& events, Ended& ended);
  // Up to `chunk` more prompt tokens into the sequence's slot; the first new token once the prompt is in.
  void Prefill(Sequence& seq, int64_t chunk, std::vector<BatchEvent>& events, Ended& ended);
  // Reports a sequence's next token, chosen from its logits row [1, V]; why it ended, or "" if it goes on.
  std::string Choose(Sequence& seq, const at::Tensor& logits, std::vector<BatchEvent>& events);
  // Frees the sequence's slot and reports its end.
  void Finish(Sequence* seq, const std::string& reason, const std::string& error, std::vector<BatchEvent>& events);

  std::shared_ptr<CausalLM> model_;
  const ContinuousBatchingConfig config_;
  BatchEventSink sink_;
  KVCache cache_;

  // shared with other threads
  mutable std::mutex mu_;
  std::deque<BatchRequest> incoming_;
  std::unordered_set<int64_t> cancels_;
  bool scheduled_ = false;
  std::atomic<bool> stopped_{false};
  std::atomic<int64_t> running_count_{0};
  std::atomic<int64_t> pending_count_{0};  // added and not yet reported finished

  // the compute thread's own
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<int64_t> free_slots_;
};

}  // namespace torchlm
