// NativeAdamW: the optimizer, its loss scaler and process group, and the fused training step for JavaScript.
#include "binding/bindings.h"
#include "binding/model_wrap.h"
#include "binding/options.h"
#include "binding/process_group_wrap.h"
#include "binding/promise_worker.h"
#include "binding/tensor_wrap.h"
#include "core/train/adamw.h"
#include "core/train/train_step.h"

#include <cmath>
#include <memory>

namespace torchlm {

class AdamWWrap : public Napi::ObjectWrap<AdamWWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeAdamW",
                                   {
                                       InstanceMethod("step", &AdamWWrap::JsStep),
                                       InstanceMethod("zeroGrad", &AdamWWrap::JsZeroGrad),
                                       InstanceMethod("clipGradNorm", &AdamWWrap::JsClip),
                                       InstanceMethod("state", &AdamWWrap::JsState),
                                       InstanceMethod("checkState", &AdamWWrap::JsCheckState),
                                       InstanceMethod("loadState", &AdamWWrap::JsLoadState),
                                       InstanceMethod("trainStep", &AdamWWrap::JsTrainStep),
                                       InstanceMethod("backward", &AdamWWrap::JsBackward),
                                       InstanceMethod("finishStep", &AdamWWrap::JsFinishStep),
                                       InstanceMethod("setProcessGroup", &AdamWWrap::JsSetProcessGroup),
                                   });
    exports.Set("NativeAdamW", f);
  }

  // new NativeAdamW({ groups: [{ params: Tensor[], weight_decay }], beta1, beta2, eps })
  explicit AdamWWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AdamWWrap>(info) {
    Napi::Env env = info.Env();
    Guard(env, [&] {
      const Options args(info[0], "NativeAdamW");
      std::vector<ParamGroup> groups;
      Napi::Value gs = args.Get("groups");
      if (!gs.IsArray()) throw UserError("Expected an array of parameter groups for NativeAdamW's option groups");
      auto arr = gs.As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        const Options o(arr.Get(i), "NativeAdamW's parameter group");
        ParamGroup g;
        g.weight_decay = o.Num("weight_decay");
        Napi::Value ps = o.Get("params");
        if (!ps.IsArray()) throw UserError("Expected an array of Tensors for a parameter group's params");
        for (uint32_t j = 0; j < ps.As<Napi::Array>().Length(); j++)
          g.params.push_back(TensorWrap::FromJs(ps.As<Napi::Array>().Get(j), "params"));
        groups.push_back(std::move(g));
      }
      opt_ = std::make_shared<AdamW>(std::move(groups), args.Num("beta1"), args.Num("beta2"), args.Num("eps"));
      return 0;
    });
  }

  static Amp ParseAmp(const Options& o) { return static_cast<Amp>(o.Enum("amp", {"none", "bfloat16", "float16"})); }

 private:
  std::shared_ptr<AdamW> opt_;
  std::shared_ptr<GradScaler> scaler_ = std::make_shared<GradScaler>();
  bool fp16_ = false;
  std::shared_ptr<Comm> comm_;
  // A non-finite loss in the current accumulation window (only tracked in a process group).
  std::shared_ptr<bool> nonfinite_ = std::make_shared<bool>(false);

  // setProcessGroup(pg | null): average gradients over its ranks before each update.
  Napi::Value JsSetProcessGroup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    comm_ = info[0].IsNull() || info[0].IsUndefined() ? nullptr : UnwrapComm(info[0]);
    return env.Undefined();
  }

  // The loss scaler while training in float16, else null.
  std::shared_ptr<GradScaler> Scaler() const { return fp16_ ? scaler_ : nullptr; }

  // backward({ loss, scale, amp }) -> Promise<number>: backward of loss * scale (times the loss scale under
  // float16) on a worker thread; resolves to the loss value. For compute_loss overrides.
  Napi::Value JsBackward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      const Options args(info[0], "backward");
      at::Tensor loss = args.Tensor("loss");
      double scale = args.Num("scale");
      fp16_ = ParseAmp(args) == Amp::kFP16;
      if (!loss.requires_grad())
        throw UserError(
            "the loss does not require grad: compute_loss must return a loss computed from the model's forward in "
            "training mode");
      if (loss.numel() != 1) throw UserError("the loss must be a scalar tensor");
      auto value = std::make_shared<double>(0);
      auto scaler = Scaler();
      auto nonfinite = nonfinite_;
      bool dist = comm_ != nullptr;
      return PromiseWorker::Run(
          env,
          [=] {
            *value = loss.item<double>();
            if (dist && !std::isfinite(*value)) *nonfinite = true;
            ScaledBackward(loss, scale, scaler.get());
          },
          [value](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *value); },
          {info.This().As<Napi::Object>(), args.Object("loss")});
    });
  }

  // finishStep({ lr, max_grad_norm }) -> Promise<number>: clip, update, zero; resolves to the norm before clipping.
  Napi::Value JsFinishStep(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&] { return FinishStepCall(info); });
  }
  Napi::Value FinishStepCall(const Napi::CallbackInfo& info) {
    const Options args(info[0], "finishStep");
    const double lr = args.Num("lr"), mx = args.Num("max_grad_norm");
    auto opt = opt_;
    auto scaler = Scaler();
    auto norm = std::make_shared<double>(0);
    auto comm = comm_;
    auto nonfinite = nonfinite_;
    return PromiseWorker::Run(
        info.Env(),
        [=] {
          *norm = FinishStep(*opt, scaler.get(), lr, mx, comm.get(), *nonfinite);
          *nonfinite = false;
        },
        [norm](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *norm); },
        {info.This().As<Napi::Object>()});
  }

  // step({ lr }) -> Promise<void>
  Napi::Value JsStep(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&] {
      const double lr = Options(info[0], "step").Num("lr");
      auto opt = opt_;
      return PromiseWorker::Run(info.Env(), [opt, lr] { opt->Step(lr); }, nullptr, {info.This().As<Napi::Object>()});
    });
  }
  Napi::Value JsZeroGrad(const Napi::CallbackInfo& info) {
    opt_->ZeroGrad();
    return info.Env().Undefined();
  }
  // clipGradNorm({ max_norm }) -> Promise<number>
  Napi::Value JsClip(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&] {
      const double mx = Options(info[0], "clipGradNorm").Num("max_norm");
      auto opt = opt_;
      auto norm = std::make_shared<double>(0);
      return PromiseWorker::Run(
          info.Env(), [=] { *norm = opt->ClipGradNorm(mx); },
          [norm](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *norm); },
          {info.This().As<Napi::Object>()});
    });
  }
  Napi::Value JsState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return TensorWrap::NamedToJs(env, opt_->State());
  }
  Napi::Value JsCheckState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      auto state = TensorWrap::NamedFromJs(info[0], "checkState's state");
      auto opt = opt_;
      return PromiseWorker::Run(env, [opt, state] { opt->CheckState(state); }, nullptr,
                                {info.This().As<Napi::Object>()});
    });
  }
  Napi::Value JsLoadState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      auto state = TensorWrap::NamedFromJs(info[0], "loadState's state");
      auto opt = opt_;
      return PromiseWorker::Run(env, [opt, state] { opt->LoadState(state); }, nullptr,
                                {info.This().As<Napi::Object>()});
    });
  }

  // trainStep({ model, input_ids, attention_mask: Tensor | null, labels, loss_scale,
  //             update: { lr, max_grad_norm } | null, amp: "none" | "bfloat16" | "float16" }) -> Promise<{ loss,
  //             grad_norm? }>.
  // Forward, loss, backward; with `update` (the accumulation window closes) also clip, update and zero the
  // gradients: no JavaScript per operation.
  Napi::Value JsTrainStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      const Options args(info[0], "trainStep");
      auto model = ModelWrap::UnwrapModel(args.Get("model"))->Get(env);
      at::Tensor ids = args.Tensor("input_ids");
      at::Tensor mask = args.TensorOrNull("attention_mask");
      at::Tensor labels = args.Tensor("labels");
      double scale = args.Num("loss_scale");
      bool do_step = !args.IsNull("update");
      StepUpdate update;
      if (do_step) {
        const Options u = args.Nested("update");
        update.lr = u.Num("lr");
        update.max_grad_norm = u.Num("max_grad_norm");
      }
      Amp amp = ParseAmp(args);
      fp16_ = amp == Amp::kFP16;
      if (ids.dim() != 2 || labels.sizes() != ids.sizes())
        throw UserError("Expected input_ids and labels of the same shape [batch, sequence]");
      if (ids.size(1) > model->max_positions())
        throw UserError("sequence length is longer than the model's positions (" +
                        std::to_string(model->max_positions()) + ")");
      auto out = std::make_shared<StepResult>();
      auto opt = opt_;
      auto scaler = Scaler();
      auto comm = comm_;
      auto nonfinite = nonfinite_;
      return PromiseWorker::Run(
          env,
          [=] {
            *out = TrainStep(*model, *opt, scaler.get(), comm.get(), *nonfinite, ids, mask, labels, scale, amp,
                             do_step ? &update : nullptr);
          },
          [out](Napi::Env env) -> Napi::Value {
            auto o = Napi::Object::New(env);
            o.Set("loss", out->loss);
            if (out->norm >= 0 || std::isnan(out->norm)) o.Set("grad_norm", out->norm);
            return o;
          },
          {info.This().As<Napi::Object>(), args.Object("model")});
    });
  }
};

void InitOptimizer(Napi::Env env, Napi::Object exports) { AdamWWrap::Init(env, exports); }

}  // namespace torchlm
