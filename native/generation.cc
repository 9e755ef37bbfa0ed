#include "generation.h"

#include "model.h"
#include "tensor.h"
#include "worker.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>

namespace torchlm {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Logits processors, in Hugging Face's order; `rows` holds every row's ids so far (prompt included).
void Process(at::Tensor& scores, const std::vector<std::vector<int64_t>>& rows, const at::Tensor& ids_so_far,
             int64_t prompt_len, const GenerateConfig& c) {
  const int64_t B = scores.size(0), V = scores.size(1);
  const int64_t cur_len = static_cast<int64_t>(rows[0].size());
  if (c.repetition_penalty != 1.0) {
    at::Tensor s = scores.gather(1, ids_so_far);
    s = at::where(s < 0, s * c.repetition_penalty, s / c.repetition_penalty);
    scores.scatter_(1, ids_so_far, s);
  }
  const int64_t n = c.no_repeat_ngram_size;
  if (n > 0 && cur_len + 1 >= n) {
    auto acc = scores.accessor<float, 2>();
    for (int64_t b = 0; b < B; b++) {
      const auto& r = rows[b];
      for (int64_t s = 0; s + n <= cur_len; s++) {
        bool match = true;
        for (int64_t k = 0; k < n - 1 && match; k++) match = r[s + k] == r[cur_len - n + 1 + k];
        if (match) acc[b][r[s + n - 1]] = -std::numeric_limits<float>::infinity();
      }
    }
  }
  if (!c.bad_words_ids.empty()) {
    auto acc = scores.accessor<float, 2>();
    for (int64_t b = 0; b < B; b++) {
      const auto& r = rows[b];
      for (const auto& w : c.bad_words_ids) {
        const int64_t L = static_cast<int64_t>(w.size());
        if (L == 0 || w.back() < 0 || w.back() >= V) continue;
        bool match = L - 1 <= cur_len;
        for (int64_t k = 0; k < L - 1 && match; k++) match = r[cur_len - (L - 1) + k] == w[k];
        if (match) acc[b][w.back()] = -std::numeric_limits<float>::infinity();
      }
    }
  }
  if (cur_len < c.min_length || cur_len - prompt_len < c.min_new_tokens) {
    for (int64_t e : c.eos_token_ids)
      if (e >= 0 && e < V) scores.select(1, e).fill_(kNegInf);
  }
}

// Sampling warpers, in Hugging Face's order: temperature, top-k, top-p, min-p, typical-p.
void Warp(at::Tensor& scores, const GenerateConfig& c) {
  const int64_t V = scores.size(1);
  if (c.temperature != 1.0) scores.div_(c.temperature);
  if (c.top_k > 0 && c.top_p < 1.0) {
    // Top-k then top-p on the k survivors only: everything else is -inf and carries no probability,
    // so sorting the whole vocabulary is not needed.
    int64_t k = std::min(c.top_k, V);
    auto top = scores.topk(k, -1, /*largest=*/true, /*sorted=*/true);
    at::Tensor tv = std::get<0>(top), ti = std::get<1>(top);
    at::Tensor kth = tv.narrow(1, k - 1, 1);
    at::Tensor keep = scores >= kth;  // ties with the k-th value stay, as in Hugging Face
    at::Tensor asc = tv.flip(1);
    at::Tensor cum = asc.softmax(-1).cumsum(-1);
    at::Tensor remove_asc = cum <= (1.0 - c.top_p);
    remove_asc.narrow(1, k - 1, 1).fill_(false);
    scores.masked_fill_(keep.logical_not(), kNegInf);
    scores.scatter_(1, ti.flip(1), asc.masked_fill(remove_asc, kNegInf));
  } else if (c.top_k > 0) {
    int64_t k = std::min(c.top_k, V);
    at::Tensor kth = std::get<0>(scores.topk(k, -1)).narrow(1, k - 1, 1);
    scores.masked_fill_(scores < kth, kNegInf);
  } else if (c.top_p < 1.0) {
    auto sorted = scores.sort(-1, /*descending=*/false);
    at::Tensor sv = std::get<0>(sorted), si = std::get<1>(sorted);
    at::Tensor cum = sv.softmax(-1).cumsum(-1);
    at::Tensor remove = cum <= (1.0 - c.top_p);
    remove.narrow(1, V - 1, 1).fill_(false);
    scores.masked_fill_(remove.scatter(1, si, remove), kNegInf);
  }
  if (c.min_p > 0.0) {
    at::Tensor probs = scores.softmax(-1);
    at::Tensor top = std::get<0>(probs.max(-1, true));
    scores.masked_fill_(probs < top * c.min_p, kNegInf);
  }
  if (c.typical_p < 1.0) {
    at::Tensor logp = scores.log_softmax(-1);
    at::Tensor p = logp.exp();
    at::Tensor ent = -(logp * p).nansum(-1, true);
    at::Tensor shifted = ((-logp) - ent).abs();
    auto sorted = shifted.sort(-1, false);
    at::Tensor ss = std::get<0>(sorted), si = std::get<1>(sorted);
    at::Tensor cum = scores.gather(-1, si).softmax(-1).cumsum(-1);
    at::Tensor last = (cum < c.typical_p).sum(1).clamp_max(V - 1);
    at::Tensor remove = ss > ss.gather(1, last.view({-1, 1}));
    remove.narrow(1, 0, 1).fill_(false);
    scores.masked_fill_(remove.scatter(1, si, remove), kNegInf);
  }
}

bool IsEos(int64_t t, const GenerateConfig& c) {
  return std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), t) != c.eos_token_ids.end();
}

struct Prepared {
  at::Tensor ids, mask, pos;  // on the model's device
  int64_t B, T;
};

// Expands rows (for num_return_sequences or beams) and derives position ids from the mask.
Prepared Prepare(GPT2& model, const at::Tensor& ids0, const at::Tensor& mask0, int64_t expand) {
  at::Device dev = model.device();
  Prepared p;
  p.ids = ids0.to(dev, at::kLong).repeat_interleave(expand, 0);
  p.B = p.ids.size(0);
  p.T = p.ids.size(1);
  if (mask0.defined()) {
    p.mask = mask0.to(dev, at::kLong).repeat_interleave(expand, 0);
    p.pos = (p.mask.cumsum(-1) - 1).clamp_min(0);
  } else {
    p.pos = at::arange(p.T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0).expand({p.B, p.T});
  }
  return p;
}

at::Tensor GreedyOrSample(GPT2& model, const at::Tensor& ids0, const at::Tensor& mask0, const GenerateConfig& c,
                          const TokenSink& sink, const std::atomic<int32_t>* cancel) {
  Prepared p = Prepare(model, ids0, mask0, c.num_return_sequences);
  const int64_t B = p.B, T = p.T, cap = T + c.max_new_tokens;
  at::Device dev = model.device();
  KVCache cache = c.use_cache ? model.NewCache(B, cap) : KVCache();
  at::Tensor mask;
  if (p.mask.defined()) {
    mask = at::ones({B, cap}, p.mask.options());
    mask.narrow(1, 0, T).copy_(p.mask);
  }
  at::Tensor all = at::empty({B, cap}, at::TensorOptions().dtype(at::kLong).device(dev));
  all.narrow(1, 0, T).copy_(p.ids);
  std::vector<std::vector<int64_t>> rows(B);
  {
    at::Tensor cpu = p.ids.to(at::kCPU).contiguous();
    auto acc = cpu.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; b++) rows[b].assign(&acc[b][0], &acc[b][0] + T);
  }
  c10::optional<at::Generator> gen;
  if (c.has_seed) gen = at::detail::createCPUGenerator(c.seed);
  const bool needs_rows = c.no_repeat_ngram_size > 0 || !c.bad_words_ids.empty();

  at::Tensor x = p.ids, pos = p.pos;
  at::Tensor next_pos = p.pos.narrow(1, T - 1, 1) + 1;
  std::vector<uint8_t> finished(B, 0);
  int64_t len = T;
  for (int64_t step = 0; step < c.max_new_tokens; step++) {
    if (cancel && cancel->load() != 0) throw UserError("generation was aborted");
    at::Tensor m = mask.defined() ? mask.narrow(1, 0, len) : at::Tensor();
    at::Tensor h;
    if (c.use_cache) {
      h = model.Hidden(x, pos, m, &cache);
      cache.length = len;
    } else {
      // Full recompute of the whole sequence each step (use_cache: false).
      at::Tensor full_pos = m.defined() ? (m.cumsum(-1) - 1).clamp_min(0)
                                        : at::arange(len, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0).expand({B, len});
      h = model.Hidden(all.narrow(1, 0, len), full_pos, m, nullptr);
    }
    at::Tensor scores = model.Logits(h.narrow(1, h.size(1) - 1, 1).squeeze(1)).to(at::kFloat);
    if (needs_rows || scores.device().is_cpu() == false) scores = scores.to(at::kCPU);
    at::Tensor seen = c.repetition_penalty != 1.0 ? all.narrow(1, 0, len).to(scores.device()) : at::Tensor();
    Process(scores, rows, seen, T, c);
    at::Tensor next;
    if (c.do_sample) {
      Warp(scores, c);
      at::Tensor probs = scores.softmax(-1);
      next = gen ? at::multinomial(probs.to(at::kCPU), 1, false, *gen).squeeze(1) : at::multinomial(probs, 1).squeeze(1);
    } else {
      next = scores.argmax(-1);
    }
    next = next.to(at::kCPU).contiguous();
    std::vector<int64_t> tokens(B);
    bool all_done = true;
    auto nacc = next.accessor<int64_t, 1>();
    for (int64_t b = 0; b < B; b++) {
      int64_t t = finished[b] ? c.pad_token_id : nacc[b];
      tokens[b] = t;
      rows[b].push_back(t);
      if (!finished[b] && IsEos(t, c)) finished[b] = 1;
      all_done = all_done && finished[b];
    }
    at::Tensor col = at::from_blob(tokens.data(), {B}, at::kLong).clone().to(dev);
    all.select(1, len).copy_(col);
    len++;
    if (sink) sink(tokens);
    if (all_done) break;
    x = col.unsqueeze(1);
    pos = next_pos;
    next_pos = next_pos + 1;
  }
  return all.narrow(1, 0, len).to(at::kCPU).clone();
}

// Hugging Face's BeamHypotheses.
struct Hypotheses {
  int64_t num_beams;
  double length_penalty;
  int early_stopping;
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
    if (early_stopping == 1) return true;
    double highest;
    if (early_stopping == 0) {
      highest = best_sum_logprobs / std::pow(static_cast<double>(cur_len - prompt_len), length_penalty);
    } else {
      highest = length_penalty > 0 ? best_sum_logprobs / std::pow(static_cast<double>(max_length - prompt_len), length_penalty)
                                   : best_sum_logprobs / std::pow(static_cast<double>(cur_len - prompt_len), length_penalty);
    }
    return worst >= highest;
  }
};

at::Tensor BeamSearch(GPT2& model, const at::Tensor& ids0, const at::Tensor& mask0, const GenerateConfig& c,
                      const std::atomic<int32_t>* cancel) {
  const int64_t K = c.num_beams;
  Prepared p = Prepare(model, ids0, mask0, K);
  const int64_t B0 = ids0.size(0), B = p.B, T = p.T, cap = T + c.max_new_tokens, max_length = cap;
  at::Device dev = model.device();
  KVCache cache = model.NewCache(B, cap);
  at::Tensor mask;
  if (p.mask.defined()) {
    mask = at::ones({B, cap}, p.mask.options());
    mask.narrow(1, 0, T).copy_(p.mask);
  }
  std::vector<std::vector<int64_t>> rows(B);
  {
    at::Tensor cpu = p.ids.to(at::kCPU).contiguous();
    auto acc = cpu.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; b++) rows[b].assign(&acc[b][0], &acc[b][0] + T);
  }
  std::vector<Hypotheses> hyps(B0, Hypotheses{K, c.length_penalty, c.early_stopping, max_length, {}, 1e9});
  std::vector<uint8_t> done(B0, 0);
  std::vector<double> beam_scores(B, 0.0);
  for (int64_t b = 0; b < B0; b++)
    for (int64_t k = 1; k < K; k++) beam_scores[b * K + k] = -1e9;

  at::Tensor x = p.ids, pos = p.pos;
  at::Tensor next_pos = p.pos.narrow(1, T - 1, 1) + 1;
  int64_t len = T;
  while (len < max_length) {
    if (cancel && cancel->load() != 0) throw UserError("generation was aborted");
    at::Tensor m = mask.defined() ? mask.narrow(1, 0, len) : at::Tensor();
    at::Tensor h = model.Hidden(x, pos, m, &cache);
    cache.length = len;
    at::Tensor scores = model.Logits(h.narrow(1, h.size(1) - 1, 1).squeeze(1)).to(at::kFloat).log_softmax(-1).to(at::kCPU);
    std::vector<int64_t> flat;
    for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
    at::Tensor seen = at::from_blob(flat.data(), {B, len}, at::kLong).clone();
    Process(scores, rows, seen, T, c);
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
        for (int64_t k = 0; k < K; k++) { new_scores[b * K + k] = 0; new_tokens[b * K + k] = c.pad_token_id; new_src[b * K + k] = b * K; }
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
    for (int64_t l = 0; l < static_cast<int64_t>(cache.k.size()); l++) {
      cache.k[l].narrow(2, 0, len).copy_(cache.k[l].narrow(2, 0, len).index_select(0, src));
      cache.v[l].narrow(2, 0, len).copy_(cache.v[l].narrow(2, 0, len).index_select(0, src));
    }
    if (mask.defined()) mask = mask.index_select(0, src);
    next_pos = next_pos.index_select(0, src);
    x = at::from_blob(new_tokens.data(), {B, 1}, at::kLong).clone().to(dev);
    pos = next_pos;
    next_pos = next_pos + 1;
    len++;
    if (std::all_of(done.begin(), done.end(), [](uint8_t d) { return d != 0; })) break;
  }
  // Finalise: unfinished batches add their live beams; the best num_return_sequences per prompt.
  for (int64_t b = 0; b < B0; b++) {
    if (done[b]) continue;
    for (int64_t k = 0; k < K; k++) hyps[b].Add(rows[b * K + k], beam_scores[b * K + k], static_cast<int64_t>(rows[b * K + k].size()) - T);
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

at::Tensor Generate(GPT2& model, const at::Tensor& ids, const at::Tensor& mask, const GenerateConfig& cfg,
                    const TokenSink& sink, const std::atomic<int32_t>* cancel) {
  c10::InferenceMode guard;
  bool was_training = model.training;
  model.training = false;  // no dropout while decoding
  struct Restore { GPT2& m; bool t; ~Restore() { m.training = t; } } restore{model, was_training};
  if (cfg.num_beams > 1) return BeamSearch(model, ids, mask, cfg, cancel);
  return GreedyOrSample(model, ids, mask, cfg, sink, cancel);
}

// ---- binding ---------------------------------------------------------------------------------------

static int64_t GetInt(const Napi::Object& o, const char* k, int64_t def) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : def;
}
static double GetNum(const Napi::Object& o, const char* k, double def) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : def;
}

// generate(input_ids, attention_mask | null, options, onTokens | null, cancel: Int32Array(SharedArrayBuffer) | null)
Napi::Value ModelWrap::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = Get(env);
  return Guard(env, [&]() -> Napi::Value {
    at::Tensor ids = TensorWrap::FromJs(info[0], "input_ids");
    at::Tensor mask = info[1].IsObject() ? TensorWrap::FromJs(info[1], "attention_mask") : at::Tensor();
    auto o = info[2].As<Napi::Object>();
    GenerateConfig c;
    c.max_new_tokens = GetInt(o, "max_new_tokens", 20);
    c.min_new_tokens = GetInt(o, "min_new_tokens", 0);
    c.min_length = GetInt(o, "min_length", 0);
    c.do_sample = o.Get("do_sample").ToBoolean().Value();
    c.temperature = GetNum(o, "temperature", 1.0);
    c.top_k = GetInt(o, "top_k", 0);
    c.top_p = GetNum(o, "top_p", 1.0);
    c.min_p = GetNum(o, "min_p", 0.0);
    c.typical_p = GetNum(o, "typical_p", 1.0);
    c.repetition_penalty = GetNum(o, "repetition_penalty", 1.0);
    c.no_repeat_ngram_size = GetInt(o, "no_repeat_ngram_size", 0);
    c.pad_token_id = GetInt(o, "pad_token_id", 0);
    c.num_beams = GetInt(o, "num_beams", 1);
    c.num_return_sequences = GetInt(o, "num_return_sequences", 1);
    c.length_penalty = GetNum(o, "length_penalty", 1.0);
    c.early_stopping = static_cast<int>(GetInt(o, "early_stopping", 0));
    c.use_cache = !o.Get("use_cache").IsBoolean() || o.Get("use_cache").As<Napi::Boolean>().Value();
    if (o.Get("seed").IsNumber()) {
      c.has_seed = true;
      c.seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().Int64Value());
    }
    c.eos_token_ids = ToInt64Vector(o.Get("eos_token_ids"), "eos_token_id");
    if (o.Get("bad_words_ids").IsArray()) {
      auto arr = o.Get("bad_words_ids").As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) c.bad_words_ids.push_back(ToInt64Vector(arr.Get(i), "bad_words_ids"));
    }
    const auto& mc = model->config();
    if (ids.dim() != 2 || ids.size(1) == 0) throw UserError("Expected input_ids of shape [batch, sequence] with at least one token");
    if (ids.size(1) + c.max_new_tokens > mc.n_positions)
      throw UserError("prompt length " + std::to_string(ids.size(1)) + " + max_new_tokens " + std::to_string(c.max_new_tokens) +
                      " is longer than n_positions " + std::to_string(mc.n_positions));
    if (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= mc.vocab_size)
      throw UserError("input_ids must be in [0, " + std::to_string(mc.vocab_size) + ")");

    std::shared_ptr<Napi::ThreadSafeFunction> tsfn;
    if (info[3].IsFunction())
      tsfn = std::make_shared<Napi::ThreadSafeFunction>(Napi::ThreadSafeFunction::New(env, info[3].As<Napi::Function>(), "torchlm-stream", 0, 1));
    const std::atomic<int32_t>* cancel = nullptr;
    std::vector<Napi::Object> keep = {info.This().As<Napi::Object>()};
    if (info[4].IsTypedArray()) {
      auto ta = info[4].As<Napi::Int32Array>();
      cancel = reinterpret_cast<const std::atomic<int32_t>*>(ta.Data());
      keep.push_back(ta);
    }
    auto out = std::make_shared<at::Tensor>();
    return PromiseWorker::Run(
        env,
        [=] {
          TokenSink sink;
          if (tsfn) {
            sink = [tsfn](const std::vector<int64_t>& tokens) {
              auto* copy = new std::vector<int64_t>(tokens);
              auto status = tsfn->NonBlockingCall(copy, [](Napi::Env env, Napi::Function fn, std::vector<int64_t>* t) {
                auto arr = Napi::Array::New(env, t->size());
                for (size_t i = 0; i < t->size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>((*t)[i])));
                delete t;
                fn.Call({arr});
              });
              if (status != napi_ok) delete copy;
            };
          }
          try {
            *out = torchlm::Generate(*model, ids, mask, c, sink, cancel);
          } catch (...) {
            if (tsfn) tsfn->Release();
            throw;
          }
          if (tsfn) tsfn->Release();
        },
        [out](Napi::Env env) -> Napi::Value { return TensorWrap::New(env, *out); }, keep);
  });
}

}  // namespace torchlm
