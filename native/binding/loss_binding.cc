#include "binding/bindings.h"
// CrossEntropyLoss with torch semantics.

#include "binding/options.h"
#include "binding/tensor_wrap.h"

namespace torchlm {

// crossEntropy({ input [N, C] | [N, C, d1...], target, ignore_index, reduction: "mean" | "sum" | "none",
//                label_smoothing }) -> Tensor
static Napi::Value JsCrossEntropy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "crossEntropy");
    at::Tensor input = args.Tensor("input");
    at::Tensor target = args.Tensor("target");
    int64_t ignore = args.Int("ignore_index");
    static constexpr int64_t kReductions[] = {at::Reduction::Mean, at::Reduction::Sum, at::Reduction::None};
    int64_t reduction = kReductions[args.Enum("reduction", {"mean", "sum", "none"})];
    double smoothing = args.Num("label_smoothing");
    if (!at::isFloatingType(input.scalar_type()))
      throw UserError("Expected a floating input for CrossEntropyLoss but received " + DtypeName(input.scalar_type()));
    if (input.dim() < 1) throw UserError("Expected input of shape [N, C] or [N, C, d1, ...] for CrossEntropyLoss");
    const bool probs = at::isFloatingType(target.scalar_type());
    if (!probs) {
      // Class indices: target has the input's shape without the class dimension.
      std::vector<int64_t> want = input.sizes().vec();
      if (input.dim() >= 2)
        want.erase(want.begin() + 1);
      else
        want.clear();
      if (target.sizes() != at::IntArrayRef(want)) {
        std::string s = "[";
        for (size_t i = 0; i < want.size(); i++) s += (i ? ", " : "") + std::to_string(want[i]);
        throw UserError("Expected target of shape " + s + "] for input of shape with classes in dimension 1");
      }
      const int64_t C = input.dim() >= 2 ? input.size(1) : input.size(0);
      at::Tensor valid = target.ne(ignore);
      if (valid.any().item<bool>()) {
        at::Tensor t = target.masked_select(valid);
        if (t.min().item<int64_t>() < 0 || t.max().item<int64_t>() >= C)
          throw UserError("Target class out of range: expected values in [0, " + std::to_string(C) +
                          ") or ignore_index " + std::to_string(ignore));
      }
      target = target.to(at::kLong);
    }
    return TensorWrap::New(env, at::cross_entropy_loss(input, target, {}, reduction, ignore, smoothing));
  });
}

void InitLoss(Napi::Env env, Napi::Object exports) {
  exports.Set("crossEntropy", Napi::Function::New(env, JsCrossEntropy));
}

}  // namespace torchlm
