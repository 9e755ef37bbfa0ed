#include "core/model/generate.h"

#include "core/model/logits_process.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>

namespace torchlm {

namespace {

// The set-up greedy, sampling and beam search share: the prompt's rows expanded (num_return_sequences or beams),
// the cache for prompt + new tokens, the mask widened to that capacity, position ids derived from the mask.
struct Decoding {
  at::Tensor ids, pos, next_pos;           // on the model's device; next_pos: the position of each row's next token
  at::Tensor mask;                         // [B, cap], or undefined when unpadded
  KVCache cache;                           // empty without use_cache
  std::vector<std::vector<int64_t>> rows;  // each row's ids so far, on the CPU
  int64_t B, T, cap;
};

Decoding Prepare(CausalLM& model, const at::Tensor& ids0, const at::Tensor& mask0, int64_t expand,
                 int64_t max_new_tokens, bool cache) {
  at::Device dev = model.device();
  Decoding d;
  d.ids = ids0.to(dev, at::kLong).repeat_interleave(expand, 0);
  d.B = d.ids.size(0);
  d.T = d.ids.size(1);
  d.cap = d.T + max_new_tokens;
  if (mask0.defined()) {
    at::Tensor m = mask0.to(dev, at::kLong).repeat_interleave(expand, 0);
    d.pos = (m.cumsum(-1) - 1).clamp_min(0);
    d.mask = at::ones({d.B, d.cap}, m.options());
    d.mask.narrow(1, 0, d.T).copy_(m);
  } else {
    d.pos = at::arange(d.T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0).expand({d.B, d.T});
  }
  d.next_pos = d.pos.narrow(1, d.T - 1, 1) + 1;
  if (cache) d.cache = model.NewCache(d.B, d.cap);
  at::Tensor cpu = d.ids.to(at::kCPU).contiguous();
  auto acc = cpu.accessor<int64_t, 2>();
  d.rows.resize(static_cast<size_t>(d.B));
  for (int64_t b = 0; b < d.B; b++) d.rows[b].assign(&acc[b][0], &acc[b][0] + d.T);
  return d;
}

void CheckCancel(const std::atomic<int32_t>* cancel) {
  if (cancel && cancel->load() != 0) throw AbortedError("generation was aborted");
}

at::Tensor GreedyOrSample(CausalLM& model, const at::Tensor& ids0, const at::Tensor& mask0, const GenerateConfig& c,
                          const TokenSink& sink, const std::atomic<int32_t>* cancel) {
  Decoding d = Prepare(model, ids0, mask0, c.num_return_sequences, c.max_new_tokens, c.use_cache);
  const int64_t B = d.B, T = d.T;
  at::Device dev = model.device();
  const Processors process = BuildProcessors(c, c.do_sample);
  at::Tensor all = at::empty({B, d.cap}, at::TensorOptions().dtype(at::kLong).device(dev));
  all.narrow(1, 0, T).copy_(d.ids);
  c10::optional<at::Generator> gen;
  if (c.has_seed) gen = at::detail::createCPUGenerator(c.seed);

  at::Tensor x = d.ids, pos = d.pos;
  std::vector<uint8_t> finished(B, 0);
  int64_t len = T;
  for (int64_t step = 0; step < c.max_new_tokens; step++) {
    CheckCancel(cancel);
    at::Tensor m = d.mask.defined() ? d.mask.narrow(1, 0, len) : at::Tensor();
    at::Tensor h;
    if (c.use_cache) {
      h = model.Hidden(x, pos, m, &d.cache);
      d.cache.length = len;
    } else {
      // Full recompute of the whole sequence each step (use_cache: false).
      at::Tensor full_pos =
          m.defined() ? (m.cumsum(-1) - 1).clamp_min(0)
                      : at::arange(len, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0).expand({B, len});
      h = model.Hidden(all.narrow(1, 0, len), full_pos, m, nullptr);
    }
    at::Tensor scores = model.Logits(h.narrow(1, h.size(1) - 1, 1).squeeze(1)).to(at::kFloat);
    if (process.needs_cpu || !scores.device().is_cpu()) scores = scores.to(at::kCPU);
    at::Tensor seen = process.needs_seen ? all.narrow(1, 0, len).to(scores.device()) : at::Tensor();
    process(scores, Step{d.rows, seen, T});
    at::Tensor next = ChooseNext(scores, c.do_sample, gen);
    std::vector<int64_t> tokens(B);
    bool all_done = true;
    auto nacc = next.accessor<int64_t, 1>();
    for (int64_t b = 0; b < B; b++) {
      int64_t t = finished[b] ? c.pad_token_id : nacc[b];
      tokens[b] = t;
      d.rows[b].push_back(t);
      if (!finished[b] && IsEos(t, c)) finished[b] = 1;
      all_done = all_done && finished[b];
    }
    at::Tensor col = at::from_blob(tokens.data(), {B}, at::kLong).clone().to(dev);
    all.select(1, len).copy_(col);
    len++;
    if (sink) sink(tokens);
    if (all_done) break;
    x = col.unsqueeze(1);
    pos = d.next_pos;
    d.next_pos = d.next_pos + 1;
  }
  return all.narrow(1, 0, len).to(at::kCPU).clone();
}

// Hugging Face's BeamHypotheses.
struct Hypotheses {
  int64_t num_beams;
  double length_penalty;
  EarlyStopping early_stopping;
  int64_t max_length;
  std::vector<std::pair<double, std::vector<int64_t>>> beams;
  double worst = 1e9;

  void Add(std::vector<int64_t> hyp, double sum_logprobs, int64_t generated_len) {
    double score = sum_logprobs / std::pow(static_cast<double>(generated_len), length_penalty);
    if (static_cast<int64_t>(beams.size()) < num_beams || score > worst) {
      beams.emplace_back(score, std::move(hyp));
      if (static_cast<int64_t>(beams.size()) > num_beams) {
        size_t wi = 0;
        for (size_t i = 1; i < beams.size(); i++)
          if (beams[i].first < beams[wi].first) wi = i;
        beams.erase(beams.begin() + static_cast<std::ptrdiff_t>(wi));
        worst = beams[0].first;
        for (const auto& b : beams) worst = std::min(worst, b.first);
      } else {
        worst = std::min(score, worst);
      }
    }
  }

  bool IsDone(double best_sum_logprobs, int64_t cur_len, int64_t prompt_len) const {
    if (static_cast<int64_t>(beams.size()) < num_beams) return false;
    if (early_stopping == EarlyStopping::kAlways) return true;
    double highest;
    if (early_stopping == EarlyStopping::kHeuristic) {
      highest = best_sum_logprobs / std::pow(static_cast<double>(cur_len - prompt_len), length_penalty);
    } else {
      highest = length_penalty > 0
                    ? best_sum_logprobs / std::pow(static_cast<double>(max_length - prompt_len), length_penalty)
                    : best_sum_logprobs / std::pow(static_cast<double>(cur_len - prompt_len), length_penalty);
    }
    return worst >= highest;
  }
};

at::Tensor BeamSearch(CausalLM& model, const at::Tensor& ids0, const at::Tensor& mask0, const GenerateConfig& c,
                      const std::atomic<int32_t>* cancel) {
  const int64_t K = c.num_beams;
  Decoding d = Prepare(model, ids0, mask0, K, c.max_new_tokens, /*cache=*/true);
  const int64_t B0 = ids0.size(0), B = d.B, T = d.T, max_length = d.cap;
  at::Device dev = model.device();
  const Processors process = BuildProcessors(c, /*warpers=*/false);
  auto& rows = d.rows;
  std::vector<Hypotheses> hyps(B0, Hypotheses{K, c.length_penalty, c.early_stopping, max_length, {}, 1e9});
  std::vector<uint8_t> done(B0, 0);
  std::vector<double> beam_scores(B, 0.0);
  for (int64_t b = 0; b < B0; b++)
    for (int64_t k = 1; k < K; k++) beam_scores[b * K + k] = -1e9;

  at::Tensor x = d.ids, pos = d.pos;
  int64_t len = T;
  while (len < max_length) {
    CheckCancel(cancel);
    at::Tensor m = d.mask.defined() ? d.mask.narrow(1, 0, len) : at::Tensor();
    at::Tensor h = model.Hidden(x, pos, m, &d.cache);
    d.cache.length = len;
    at::Tensor scores =
        model.Logits(h.narrow(1, h.size(1) - 1, 1).squeeze(1)).to(at::kFloat).log_softmax(-1).to(at::kCPU);
    at::Tensor seen;
    if (process.needs_seen) {
      std::vector<int64_t> flat;
      for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
      seen = at::from_blob(flat.data(), {B, len}, at::kLong).clone();
    }
    process(scores, Step{rows, seen, T});
    const int64_t V = scores.size(1);
    scores = scores + at::tensor(beam_scores, at::kDouble).to(at::kFloat).unsqueeze(1);
    scores = scores.view({B0, K * V});
    auto top = scores.topk(std::max<int64_t>(2, 1 + static_cast<int64_t>(c.eos_token_ids.size())) * K, 1, true, true);
    at::Tensor tv = std::get<0>(top).contiguous(), ti = std::get<1>(top).contiguous();
    auto tva = tv.accessor<float, 2>();
    auto tia = ti.accessor<int64_t, 2>();
    const int64_t cur_len = len + 1;  // the length the scores were computed for, as Hugging Face counts it
    std::vector<double> new_scores(B, 0.0);
    std::vector<int64_t> new_tokens(B, c.pad_token_id), new_src(B, 0);
    for (int64_t b = 0; b < B0; b++) {
      if (done[b]) {
        for (int64_t k = 0; k < K; k++) {
          new_scores[b * K + k] = 0;
          new_tokens[b * K + k] = c.pad_token_id;
          new_src[b * K + k] = b * K;
        }
        continue;
      }
      int64_t bi = 0;
      for (int64_t r = 0; r < tv.size(1); r++) {
        const int64_t token = tia[b][r] % V, src = b * K + tia[b][r] / V;
        const double score = tva[b][r];
        if (IsEos(token, c)) {
          if (r >= K) continue;
          hyps[b].Add(rows[src], score, cur_len - T);
        } else {
          new_scores[b * K + bi] = score;
          new_tokens[b * K + bi] = token;
          new_src[b * K + bi] = src;
          bi++;
        }
        if (bi == K) break;
      }
      done[b] = done[b] || hyps[b].IsDone(tva[b][0], cur_len, T);
    }
    std::vector<std::vector<int64_t>> next_rows(B);
    for (int64_t i = 0; i < B; i++) {
      next_rows[i] = rows[new_src[i]];
      next_rows[i].push_back(new_tokens[i]);
    }
    rows.swap(next_rows);
    beam_scores = new_scores;
    at::Tensor src = at::from_blob(new_src.data(), {B}, at::kLong).clone().to(dev);
    for (int64_t l = 0; l < static_cast<int64_t>(d.cache.k.size()); l++) {
      d.cache.k[l].narrow(2, 0, len).copy_(d.cache.k[l].narrow(2, 0, len).index_select(0, src));
      d.cache.v[l].narrow(2, 0, len).copy_(d.cache.v[l].narrow(2, 0, len).index_select(0, src));
    }
    if (d.mask.defined()) d.mask = d.mask.index_select(0, src);
    d.next_pos = d.next_pos.index_select(0, src);
    x = at::from_blob(new_tokens.data(), {B, 1}, at::kLong).clone().to(dev);
    pos = d.next_pos;
    d.next_pos = d.next_pos + 1;
    len++;
    if (std::all_of(done.begin(), done.end(), [](uint8_t d) { return d != 0; })) break;
  }
  // Finalise: unfinished batches add their live beams; the best num_return_sequences per prompt.
  for (int64_t b = 0; b < B0; b++) {
    if (done[b]) continue;
    for (int64_t k = 0; k < K; k++)
      hyps[b].Add(rows[b * K + k], beam_scores[b * K + k], static_cast<int64_t>(rows[b * K + k].size()) - T);
  }
  std::vector<std::vector<int64_t>> best;
  for (int64_t b = 0; b < B0; b++) {
    auto beams = hyps[b].beams;
    std::stable_sort(beams.begin(), beams.end(), [](const auto& a, const auto& z) { return a.first < z.first; });
    for (int64_t j = 0; j < c.num_return_sequences; j++) {
      best.push_back(beams.back().second);
      beams.pop_back();
    }
  }
  int64_t longest = 0;
  for (const auto& s : best) longest = std::max<int64_t>(longest, static_cast<int64_t>(s.size()));
  const int64_t out_len = std::min(longest + (c.eos_token_ids.empty() ? 0 : 1), max_length);
  at::Tensor out = at::full({static_cast<int64_t>(best.size()), out_len}, c.pad_token_id, at::kLong);
  auto oa = out.accessor<int64_t, 2>();
  for (size_t i = 0; i < best.size(); i++) {
    const auto& s = best[i];
    for (size_t j = 0; j < s.size() && static_cast<int64_t>(j) < out_len; j++) oa[i][j] = s[j];
    if (static_cast<int64_t>(s.size()) < out_len && !c.eos_token_ids.empty()) oa[i][s.size()] = c.eos_token_ids[0];
  }
  return out;
}

}  // namespace

at::Tensor Generate(CausalLM& model, const at::Tensor& ids, const at::Tensor& mask, const GenerateConfig& cfg,
                    const TokenSink& sink, const std::atomic<int32_t>* cancel) {
  c10::InferenceMode guard;
  if (ids.dim() != 2 || ids.size(1) == 0)
    throw UserError("Expected input_ids of shape [batch, sequence] with at least one token");
  if (ids.size(1) + cfg.max_new_tokens > model.max_positions())
    throw UserError("prompt length " + std::to_string(ids.size(1)) + " + max_new_tokens " +
                    std::to_string(cfg.max_new_tokens) + " is longer than the model's positions " +
                    std::to_string(model.max_positions()));
  CheckTokenIds(ids, model.vocab_size());
  EvalMode eval(model);
  if (cfg.num_beams > 1) return BeamSearch(model, ids, mask, cfg, cancel);
  return GreedyOrSample(model, ids, mask, cfg, sink, cancel);
}

}  // namespace torchlm
