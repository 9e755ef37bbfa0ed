#include "core/serving/continuous_batching.h"

#include "core/runtime/compute_thread.h"
#include "core/runtime/device.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

namespace torchlm {

namespace {

at::Tensor LongTensor(const std::vector<int64_t>& v, std::vector<int64_t> shape, at::Device device) {
  return at::from_blob(const_cast<int64_t*>(v.data()), shape, at::kLong).clone().to(device);
}

}  // namespace

ContinuousBatching::ContinuousBatching(std::shared_ptr<CausalLM> model, ContinuousBatchingConfig config,
                                       BatchEventSink sink)
    : model_(std::move(model)), config_(config), sink_(std::move(sink)) {
  if (config_.max_batch_size < 1 || config_.max_context_length < 2 ||
      config_.max_context_length > model_->max_positions() || config_.max_batch_tokens <= config_.max_batch_size)
    throw UserError(
        "continuous batching needs max_batch_size >= 1, max_context_length in 2..n_positions and "
        "max_batch_tokens > max_batch_size");
  cache_ = model_->NewCache(config_.max_batch_size, config_.max_context_length);
  for (int64_t s = config_.max_batch_size - 1; s >= 0; s--) free_slots_.push_back(s);
}

void ContinuousBatching::Add(BatchRequest request) {
  const int64_t P = static_cast<int64_t>(request.prompt.size());
  if (P < 1 || P + request.config.max_new_tokens > config_.max_context_length || request.config.num_beams != 1)
    throw UserError(
        "a request needs a prompt of at least one token, prompt + max_new_tokens within "
        "max_context_length " +
        std::to_string(config_.max_context_length) + ", and num_beams 1");
  for (int64_t t : request.prompt)
    if (t < 0 || t >= model_->vocab_size())
      throw UserError("token id " + std::to_string(t) + " is outside the vocabulary [0, " +
                      std::to_string(model_->vocab_size()) + ")");
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_) throw UserError("the continuous batching manager is stopped");
  incoming_.push_back(std::move(request));
  pending_count_++;
  Schedule();
}

void ContinuousBatching::Cancel(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_) return;
  cancels_.insert(id);
  Schedule();
}

ContinuousBatching::Counts ContinuousBatching::counts() const {
  // the total is exact at any time; where a step has not finished, a request it admitted may still count as waiting
  const int64_t pending = pending_count_.load(), running = std::min(running_count_.load(), pending);
  return {running, pending - running};
}

void ContinuousBatching::Report(std::vector<BatchEvent>& events, BatchEvent finished) {
  events.push_back(std::move(finished));
  pending_count_--;
}

void ContinuousBatching::Schedule() {
  if (scheduled_) return;
  scheduled_ = true;
  ComputeThread::Get().Post([self = shared_from_this()] { self->RunStep(); });
}

void ContinuousBatching::RunStep() {
  std::vector<BatchEvent> events;
  if (!stopped_) {
    try {
      ApplyThreadSettings();
      Step(events);
    } catch (const std::exception& e) {
      // a failure of the step (not of one request's input, checked at Add) ends every request it held
      while (!running_.empty()) Finish(running_.back().get(), "error", e.what(), events);
      for (auto& seq : waiting_) Report(events, {seq->request.id, BatchEvent::kFinished, -1, 0, {}, "error", e.what()});
      waiting_.clear();
    }
  }
  running_count_ = static_cast<int64_t>(running_.size());
  if (!events.empty()) sink_(std::move(events));
  std::lock_guard<std::mutex> lock(mu_);
  scheduled_ = false;
  if (!stopped_ && (!running_.empty() || !waiting_.empty() || !incoming_.empty() || !cancels_.empty())) Schedule();
}

void ContinuousBatching::Stop() {
  std::deque<BatchRequest> incoming;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    incoming.swap(incoming_);
    cancels_.clear();
  }
  std::vector<BatchEvent> events;
  while (!running_.empty()) Finish(running_.back().get(), "cancelled", "", events);
  for (auto& seq : waiting_) Report(events, {seq->request.id, BatchEvent::kFinished, -1, 0, {}, "cancelled", ""});
  for (auto& r : incoming) Report(events, {r.id, BatchEvent::kFinished, -1, 0, {}, "cancelled", ""});
  waiting_.clear();
  running_count_ = 0;
  cache_ = KVCache();  // the slots' memory goes now, not when JavaScript collects the manager
  if (!events.empty()) sink_(std::move(events));
}

void ContinuousBatching::Intake(std::vector<BatchEvent>& events) {
  std::deque<BatchRequest> incoming;
  std::unordered_set<int64_t> cancels;
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming.swap(incoming_);
    cancels.swap(cancels_);
  }
  for (auto& r : incoming) {
    auto seq = std::make_unique<Sequence>();
    seq->tokens = {r.prompt};
    seq->process = BuildProcessors(r.config, r.config.do_sample);
    if (r.config.has_seed) seq->gen = at::detail::createCPUGenerator(r.config.seed);
    seq->request = std::move(r);
    waiting_.push_back(std::move(seq));
  }
  for (int64_t id : cancels) {
    auto w = std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& s) { return s->request.id == id; });
    if (w != waiting_.end()) {
      Report(events, {id, BatchEvent::kFinished, -1, 0, {}, "cancelled", ""});
      waiting_.erase(w);
    }
    auto r = std::find_if(running_.begin(), running_.end(), [&](const auto& s) { return s->request.id == id; });
    if (r != running_.end()) Finish(r->get(), "cancelled", "", events);
  }
  while (!free_slots_.empty() && !waiting_.empty()) {
    waiting_.front()->slot = free_slots_.back();
    free_slots_.pop_back();
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

void ContinuousBatching::Step(std::vector<BatchEvent>& events) {
  c10::InferenceMode guard;
  EvalMode eval(*model_);
  Intake(events);
  std::vector<Sequence*> decoding;
  for (auto& s : running_)
    if (s->prefilled()) decoding.push_back(s.get());
  Ended ended;
  if (!decoding.empty()) Decode(decoding, events, ended);
  // what is left of the step's tokens goes to prompts, oldest request first
  int64_t budget = config_.max_batch_tokens - static_cast<int64_t>(decoding.size());
  for (auto& s : running_) {
    if (budget <= 0) break;
    if (s->prefilled()) continue;
    const int64_t chunk = std::min<int64_t>(budget, static_cast<int64_t>(s->request.prompt.size()) - s->cached);
    Prefill(*s, chunk, events, ended);
    budget -= chunk;
  }
  for (auto& [seq, reason] : ended) Finish(seq, reason, "", events);
}

void ContinuousBatching::Decode(const std::vector<Sequence*>& rows, std::vector<BatchEvent>& events, Ended& ended) {
  const int64_t N = static_cast<int64_t>(rows.size());
  std::vector<int64_t> ids, slots, lengths;
  for (const Sequence* s : rows) {
    ids.push_back(s->tokens[0].back());
    slots.push_back(s->slot);
    lengths.push_back(s->cached);
  }
  const at::Device dev = model_->device();
  // GPT-2's positions are the token's index: as many as the slot holds
  const at::Tensor x = LongTensor(ids, {N, 1}, dev), pos = LongTensor(lengths, {N, 1}, dev);
  at::Tensor h;
  if (N == 1) {
    // one row is generate()'s batch-1 step, fused decoder included
    KVCache one = cache_.Slot(slots[0], lengths[0]);
    h = model_->Hidden(x, pos, at::Tensor(), &one);
  } else {
    KVCache ragged;
    ragged.k = cache_.k;
    ragged.v = cache_.v;
    ragged.slots = slots;
    ragged.lengths = lengths;
    h = model_->Hidden(x, pos, at::Tensor(), &ragged);
  }
  const at::Tensor logits = model_->Logits(h.select(1, 0)).to(at::kFloat);
  for (int64_t b = 0; b < N; b++) {
    rows[b]->cached++;
    std::string reason = Choose(*rows[b], logits.narrow(0, b, 1), events);
    if (!reason.empty()) ended.emplace_back(rows[b], reason);
  }
}

void ContinuousBatching::Prefill(Sequence& seq, int64_t chunk, std::vector<BatchEvent>& events, Ended& ended) {
  const std::vector<int64_t> part(seq.request.prompt.begin() + seq.cached,
                                  seq.request.prompt.begin() + seq.cached + chunk);
  std::vector<int64_t> positions(chunk);
  for (int64_t t = 0; t < chunk; t++) positions[t] = seq.cached + t;
  const at::Device dev = model_->device();
  KVCache one = cache_.Slot(seq.slot, seq.cached);
  const at::Tensor h =
      model_->Hidden(LongTensor(part, {1, chunk}, dev), LongTensor(positions, {1, chunk}, dev), at::Tensor(), &one);
  seq.cached += chunk;
  if (!seq.prefilled()) return;
  const at::Tensor logits = model_->Logits(h.narrow(1, chunk - 1, 1).squeeze(1)).to(at::kFloat);
  std::string reason = Choose(seq, logits, events);
  if (!reason.empty()) ended.emplace_back(&seq, reason);
}

std::string ContinuousBatching::Choose(Sequence& seq, const at::Tensor& logits, std::vector<BatchEvent>& events) {
  const GenerateConfig& c = seq.request.config;
  at::Tensor scores = logits.clone();
  if (seq.process.needs_cpu || !scores.device().is_cpu()) scores = scores.to(at::kCPU);
  at::Tensor seen;
  if (seq.process.needs_seen)
    seen = LongTensor(seq.tokens[0], {1, static_cast<int64_t>(seq.tokens[0].size())}, scores.device());
  seq.process(scores, torchlm::Step{seq.tokens, seen, static_cast<int64_t>(seq.request.prompt.size())});
  const int64_t next = ChooseNext(scores, c.do_sample, seq.gen).data_ptr<int64_t>()[0];
  BatchEvent ev{seq.request.id, BatchEvent::kToken, next, 0, {}, "", ""};
  if (seq.request.logprobs >= 0) {
    // the model's own distribution, before temperature and the other warpers (as OpenAI's logprobs are)
    const at::Tensor lp = logits.log_softmax(-1).to(at::kCPU).contiguous();
    ev.logprob = lp.data_ptr<float>()[next];
    if (seq.request.logprobs > 0) {
      auto top = lp.topk(std::min<int64_t>(seq.request.logprobs, lp.size(1)), -1);
      const at::Tensor tv = std::get<0>(top).contiguous(), ti = std::get<1>(top).contiguous();
      for (int64_t j = 0; j < tv.size(1); j++)
        ev.top_logprobs.emplace_back(ti.data_ptr<int64_t>()[j], tv.data_ptr<float>()[j]);
    }
  }
  events.push_back(std::move(ev));
  seq.tokens[0].push_back(next);
  seq.generated++;
  if (IsEos(next, c)) return "stop";
  if (seq.generated >= c.max_new_tokens || seq.cached >= config_.max_context_length) return "length";
  return "";
}

void ContinuousBatching::Finish(Sequence* seq, const std::string& reason, const std::string& error,
                                std::vector<BatchEvent>& events) {
  Report(events, {seq->request.id, BatchEvent::kFinished, -1, 0, {}, reason, error});
  auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& s) { return s.get() == seq; });
  if (it == running_.end()) return;
  free_slots_.push_back(seq->slot);
  running_.erase(it);
}

}  // namespace torchlm
