// Gradient checkpointing as PyTorch's reentrant torch.utils.checkpoint does it: the block runs without autograd, a
// backward node of ours keeps its input, and at backward the block runs again with autograd and the random and
// autocast state of the first run, and hands on the gradients of that second graph.
#include "core/train/gradient_checkpointing.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>

#include <memory>
#include <mutex>

namespace torchlm {

namespace {

// What the recomputation repeats: the generator's state (the dropout masks) and autocast's.
struct Replay {
  at::Generator gen;
  at::Tensor rng;
  at::DeviceType device = at::kCPU;
  bool autocast = false;
  at::ScalarType autocast_dtype = at::kFloat;

  static Replay Capture(at::Device device) {
    Replay r;
    r.gen = at::globalContext().defaultGenerator(device);
    {
      std::lock_guard<std::mutex> lock(r.gen.mutex());
      r.rng = r.gen.get_state();
    }
    r.device = device.type();
    r.autocast = at::autocast::is_autocast_enabled(r.device);
    r.autocast_dtype = at::autocast::get_autocast_dtype(r.device);
    return r;
  }
};

// The captured state in place while alive; the current one back after.
class ReplayGuard {
 public:
  explicit ReplayGuard(const Replay& r) : r_(r), gen_(r.gen) {
    {
      std::lock_guard<std::mutex> lock(gen_.mutex());
      rng_now_ = gen_.get_state();
      gen_.set_state(r_.rng);
    }
    autocast_now_ = at::autocast::is_autocast_enabled(r_.device);
    dtype_now_ = at::autocast::get_autocast_dtype(r_.device);
    at::autocast::set_autocast_enabled(r_.device, r_.autocast);
    at::autocast::set_autocast_dtype(r_.device, r_.autocast_dtype);
  }
  ~ReplayGuard() {
    if (r_.autocast) at::autocast::clear_cache();  // the weights' casts made for the replay
    at::autocast::set_autocast_enabled(r_.device, autocast_now_);
    at::autocast::set_autocast_dtype(r_.device, dtype_now_);
    std::lock_guard<std::mutex> lock(gen_.mutex());
    gen_.set_state(rng_now_);
  }

 private:
  const Replay& r_;
  at::Generator gen_;  // a handle on the same generator
  at::Tensor rng_now_;
  bool autocast_now_;
  at::ScalarType dtype_now_;
};

// The backward of one checkpointed block. Its next edges: the block's input, then its parameters.
struct CheckpointBackward : public torch::autograd::Node {
  std::shared_ptr<CausalLM> model;  // kept alive by the graph, as the tensors it saves are
  int64_t layer = 0;
  at::ScalarType compute = at::kFloat;
  BlockInputs in;
  Replay replay;
  torch::autograd::SavedVariable input;

  std::string name() const override { return "torchlm::CheckpointBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    at::Tensor x = input.unpack().detach().requires_grad_(true);
    // frozen parameters (LoRA's base weights) get no gradient: autograd refuses to differentiate them
    const std::vector<at::Tensor> params = model->LayerParameters(layer);
    std::vector<at::Tensor> inputs = {x};
    std::vector<size_t> slots = {0};
    for (size_t k = 0; k < params.size(); k++)
      if (params[k].requires_grad()) {
        inputs.push_back(params[k]);
        slots.push_back(k + 1);
      }
    at::Tensor y;
    {
      ReplayGuard guard(replay);
      c10::AutoGradMode on(true);
      y = model->Block(layer, x, in, nullptr, compute);
    }
    auto got = torch::autograd::grad({y}, inputs, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
    torch::autograd::variable_list out(params.size() + 1);
    for (size_t k = 0; k < slots.size(); k++) out[slots[k]] = got[k];
    return out;
  }

  void release_variables() override {
    input.reset_data();
    in = BlockInputs();
  }
};

}  // namespace

at::Tensor CheckpointedBlock(CausalLM& model, int64_t i, const at::Tensor& x, const BlockInputs& in,
                             at::ScalarType compute) {
  const std::vector<at::Tensor> params = model.LayerParameters(i);
  bool needs_grad = x.requires_grad();
  for (const auto& p : params) needs_grad = needs_grad || p.requires_grad();
  Replay replay = Replay::Capture(x.device());
  at::Tensor y;
  {
    at::NoGradGuard no_grad;
    y = model.Block(i, x, in, nullptr, compute);
  }
  if (!needs_grad) return y;
  auto node = c10::make_intrusive<CheckpointBackward>();
  node->model = model.shared_from_this();
  node->layer = i;
  node->compute = compute;
  node->in = in;
  node->replay = std::move(replay);
  node->input = torch::autograd::SavedVariable(x, /*is_output=*/false);
  torch::autograd::edge_list edges = torch::autograd::collect_next_edges(x);
  for (const auto& p : params) edges.push_back(torch::autograd::impl::gradient_edge(p));
  node->set_next_edges(std::move(edges));
  torch::autograd::set_history(y, node);
  return y;
}

}  // namespace torchlm
