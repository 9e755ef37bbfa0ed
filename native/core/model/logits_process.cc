#include "core/model/logits_process.h"

#include <algorithm>
#include <limits>

namespace torchlm {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr float kNegInfF = -std::numeric_limits<float>::infinity();

// ---- the processors, as Hugging Face names them ----

void RepetitionPenalty(double penalty, at::Tensor& scores, const Step& step) {
  at::Tensor s = scores.gather(1, step.seen);
  s = at::where(s < 0, s * penalty, s / penalty);
  scores.scatter_(1, step.seen, s);
}

void NoRepeatNGram(int64_t n, at::Tensor& scores, const Step& step) {
  const int64_t cur_len = step.len();
  if (cur_len + 1 < n) return;
  auto acc = scores.accessor<float, 2>();
  for (int64_t b = 0; b < scores.size(0); b++) {
    const auto& r = step.rows[b];
    for (int64_t s = 0; s + n <= cur_len; s++) {
      bool match = true;
      for (int64_t k = 0; k < n - 1 && match; k++) match = r[s + k] == r[cur_len - n + 1 + k];
      if (match) acc[b][r[s + n - 1]] = kNegInfF;
    }
  }
}

void NoBadWords(const std::vector<std::vector<int64_t>>& words, at::Tensor& scores, const Step& step) {
  const int64_t V = scores.size(1), cur_len = step.len();
  auto acc = scores.accessor<float, 2>();
  for (int64_t b = 0; b < scores.size(0); b++) {
    const auto& r = step.rows[b];
    for (const auto& w : words) {
      const int64_t L = static_cast<int64_t>(w.size());
      if (L == 0 || w.back() < 0 || w.back() >= V) continue;
      bool match = L - 1 <= cur_len;
      for (int64_t k = 0; k < L - 1 && match; k++) match = r[cur_len - (L - 1) + k] == w[k];
      if (match) acc[b][w.back()] = kNegInfF;
    }
  }
}

// MinLengthLogitsProcessor and MinNewTokensLengthLogitsProcessor: no end of sequence before the minimum.
void MinLength(int64_t min_length, int64_t min_new_tokens, const std::vector<int64_t>& eos, at::Tensor& scores,
               const Step& step) {
  if (step.len() >= min_length && step.len() - step.prompt_len >= min_new_tokens) return;
  for (int64_t e : eos)
    if (e >= 0 && e < scores.size(1)) scores.select(1, e).fill_(kNegInf);
}

void Temperature(double t, at::Tensor& scores, const Step&) { scores.div_(t); }

void TopK(int64_t top_k, at::Tensor& scores, const Step&) {
  const int64_t k = std::min(top_k, scores.size(1));
  at::Tensor kth = std::get<0>(scores.topk(k, -1)).narrow(1, k - 1, 1);
  scores.masked_fill_(scores < kth, kNegInf);
}

void TopP(double top_p, at::Tensor& scores, const Step&) {
  auto sorted = scores.sort(-1, /*descending=*/false);
  at::Tensor sv = std::get<0>(sorted), si = std::get<1>(sorted);
  at::Tensor remove = sv.softmax(-1).cumsum(-1) <= (1.0 - top_p);
  remove.narrow(1, scores.size(1) - 1, 1).fill_(false);
  scores.masked_fill_(remove.scatter(1, si, remove), kNegInf);
}

// TopK then TopP, with TopP on the k survivors only: everything else is -inf and carries no probability, so the
// whole vocabulary need not be sorted. The same result as the two in turn.
void TopKThenTopP(int64_t top_k, double top_p, at::Tensor& scores, const Step&) {
  const int64_t k = std::min(top_k, scores.size(1));
  auto top = scores.topk(k, -1, /*largest=*/true, /*sorted=*/true);
  at::Tensor tv = std::get<0>(top), ti = std::get<1>(top);
  at::Tensor keep = scores >= tv.narrow(1, k - 1, 1);  // ties with the k-th value stay, as in Hugging Face
  at::Tensor asc = tv.flip(1);
  at::Tensor remove_asc = asc.softmax(-1).cumsum(-1) <= (1.0 - top_p);
  remove_asc.narrow(1, k - 1, 1).fill_(false);
  scores.masked_fill_(keep.logical_not(), kNegInf);
  scores.scatter_(1, ti.flip(1), asc.masked_fill(remove_asc, kNegInf));
}

void MinP(double min_p, at::Tensor& scores, const Step&) {
  at::Tensor probs = scores.softmax(-1);
  at::Tensor top = std::get<0>(probs.max(-1, true));
  scores.masked_fill_(probs < top * min_p, kNegInf);
}

void Typical(double mass, at::Tensor& scores, const Step&) {
  const int64_t V = scores.size(1);
  at::Tensor logp = scores.log_softmax(-1);
  at::Tensor ent = -(logp * logp.exp()).nansum(-1, true);
  auto sorted = ((-logp) - ent).abs().sort(-1, false);
  at::Tensor ss = std::get<0>(sorted), si = std::get<1>(sorted);
  at::Tensor cum = scores.gather(-1, si).softmax(-1).cumsum(-1);
  at::Tensor last = (cum < mass).sum(1).clamp_max(V - 1);
  at::Tensor remove = ss > ss.gather(1, last.view({-1, 1}));
  remove.narrow(1, 0, 1).fill_(false);
  scores.masked_fill_(remove.scatter(1, si, remove), kNegInf);
}

}  // namespace

Processors BuildProcessors(const GenerateConfig& c, bool warpers) {
  using namespace std::placeholders;
  Processors p;
  if (c.repetition_penalty != 1.0) {
    p.list.push_back(std::bind(RepetitionPenalty, c.repetition_penalty, _1, _2));
    p.needs_seen = true;
  }
  if (c.no_repeat_ngram_size > 0) {
    p.list.push_back(std::bind(NoRepeatNGram, c.no_repeat_ngram_size, _1, _2));
    p.needs_cpu = true;
  }
  if (!c.bad_words_ids.empty()) {
    p.list.push_back([words = c.bad_words_ids](at::Tensor& s, const Step& st) { NoBadWords(words, s, st); });
    p.needs_cpu = true;
  }
  if (c.min_length > 0 || c.min_new_tokens > 0)
    p.list.push_back(
        [c](at::Tensor& s, const Step& st) { MinLength(c.min_length, c.min_new_tokens, c.eos_token_ids, s, st); });
  if (!warpers) return p;
  if (c.temperature != 1.0) p.list.push_back(std::bind(Temperature, c.temperature, _1, _2));
  if (c.top_k > 0 && c.top_p < 1.0)
    p.list.push_back(std::bind(TopKThenTopP, c.top_k, c.top_p, _1, _2));
  else if (c.top_k > 0)
    p.list.push_back(std::bind(TopK, c.top_k, _1, _2));
  else if (c.top_p < 1.0)
    p.list.push_back(std::bind(TopP, c.top_p, _1, _2));
  if (c.min_p > 0.0) p.list.push_back(std::bind(MinP, c.min_p, _1, _2));
  if (c.typical_p < 1.0) p.list.push_back(std::bind(Typical, c.typical_p, _1, _2));
  return p;
}

at::Tensor ChooseNext(const at::Tensor& scores, bool do_sample, c10::optional<at::Generator>& gen) {
  at::Tensor next;
  if (do_sample) {
    at::Tensor probs = scores.softmax(-1);
    next = gen ? at::multinomial(probs.to(at::kCPU), 1, false, *gen).squeeze(1) : at::multinomial(probs, 1).squeeze(1);
  } else {
    next = scores.argmax(-1);
  }
  return next.to(at::kCPU).contiguous();
}

bool IsEos(int64_t t, const GenerateConfig& c) {
  return std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), t) != c.eos_token_ids.end();
}

}  // namespace torchlm
