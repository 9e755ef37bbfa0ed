#include "binding/model_wrap.h"

#include "binding/generation_config_helper.h"

#include "binding/bindings.h"
#include "binding/options.h"
#include "binding/safetensors_binding.h"
#include "core/model/generate.h"
#include "core/model/gpt2/gpt2.h"
#include "core/model/llama/llama.h"

#include "core/io/safetensors.h"
#include "binding/tensor_wrap.h"
#include "binding/promise_worker.h"

#include <map>

namespace torchlm {

Napi::FunctionReference* ModelWrap::ctor_ = nullptr;

void ModelWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "NativeModel",
                                 {
                                     StaticMethod("load", &ModelWrap::Load),
                                     StaticMethod("create", &ModelWrap::Create),
                                     InstanceMethod("forward", &ModelWrap::Forward),
                                     InstanceMethod("generate", &ModelWrap::Generate),
                                     InstanceMethod("setTraining", &ModelWrap::SetTraining),
                                     InstanceMethod("setGradientCheckpointing", &ModelWrap::SetGradientCheckpointing),
                                     InstanceMethod("to", &ModelWrap::To),
                                     InstanceMethod("parameters", &ModelWrap::Parameters),
                                     InstanceMethod("numParameters", &ModelWrap::NumParameters),
                                     InstanceMethod("zeroGrad", &ModelWrap::ZeroGrad),
                                     InstanceMethod("save", &ModelWrap::Save),
                                     InstanceMethod("loadWeights", &ModelWrap::LoadWeights),
                                     InstanceMethod("dispose", &ModelWrap::Dispose),
                                     InstanceMethod("addLora", &ModelWrap::AddLora),
                                     InstanceMethod("loraParameters", &ModelWrap::LoraParameters),
                                     InstanceMethod("copyLora", &ModelWrap::CopyLora),
                                     InstanceMethod("removeLora", &ModelWrap::RemoveLora),
                                     InstanceAccessor("quantization", &ModelWrap::Quantization, nullptr),
                                     InstanceAccessor("device", &ModelWrap::Device, nullptr),
                                     InstanceAccessor("dtype", &ModelWrap::Dtype, nullptr),
                                 });
  ctor_ = new Napi::FunctionReference(Napi::Persistent(f));
  exports.Set("NativeModel", f);
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw JsError(info.Env(), "NativeModel cannot be constructed directly: use from_pretrained()", kInvalidArgument);
  model_ = *info[0].As<Napi::External<std::shared_ptr<CausalLM>>>().Data();
}

Napi::Object ModelWrap::New(Napi::Env env, std::shared_ptr<CausalLM> model) {
  return ctor_->New({Napi::External<std::shared_ptr<CausalLM>>::New(env, &model)});
}

ModelWrap* ModelWrap::UnwrapModel(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor_->Value()))
    throw JsError(v.Env(), "Expected a model", kInvalidArgument);
  return Napi::ObjectWrap<ModelWrap>::Unwrap(v.As<Napi::Object>());
}

std::shared_ptr<CausalLM> ModelWrap::Get(Napi::Env env) const {
  if (!model_) throw JsError(env, "Model is disposed: it cannot be used after dispose()", kDisposed);
  return model_;
}

static GPT2Config ParseGPT2Config(const Options& o) {
  GPT2Config c;
  c.vocab_size = o.Int("vocab_size");
  c.n_positions = o.Int("n_positions");
  c.n_embd = o.Int("n_embd");
  c.n_layer = o.Int("n_layer");
  c.n_head = o.Int("n_head");
  c.n_inner = o.IsNull("n_inner") ? 0 : o.Int("n_inner");
  c.layer_norm_epsilon = o.Num("layer_norm_epsilon");
  c.embd_pdrop = o.Num("embd_pdrop");
  c.attn_pdrop = o.Num("attn_pdrop");
  c.resid_pdrop = o.Num("resid_pdrop");
  c.activation = static_cast<Activation>(o.Enum("activation", {"gelu_tanh", "gelu", "relu"}));
  c.scale_attn_weights = o.Bool("scale_attn_weights");
  c.scale_attn_by_inverse_layer_idx = o.Bool("scale_attn_by_inverse_layer_idx");
  return c;
}

static LlamaConfig ParseLlamaConfig(const Options& o) {
  LlamaConfig c;
  c.vocab_size = o.Int("vocab_size");
  c.max_position_embeddings = o.Int("max_position_embeddings");
  c.hidden_size = o.Int("hidden_size");
  c.intermediate_size = o.Int("intermediate_size");
  c.num_hidden_layers = o.Int("num_hidden_layers");
  c.num_attention_heads = o.Int("num_attention_heads");
  c.num_key_value_heads = o.Int("num_key_value_heads");
  c.head_dim = o.Int("head_dim");
  c.rms_norm_eps = o.Num("rms_norm_eps");
  c.attention_dropout = o.Num("attention_dropout");
  c.initializer_range = o.Num("initializer_range");
  c.qkv_bias = o.Bool("qkv_bias");
  c.o_bias = o.Bool("o_bias");
  c.mlp_bias = o.Bool("mlp_bias");
  c.qk_norm = o.Bool("qk_norm");
  c.tie_word_embeddings = o.Bool("tie_word_embeddings");
  const Options r = o.Nested("rope");
  c.rope.type = static_cast<RopeType>(r.Enum("rope_type", {"default", "linear", "llama3"}));
  c.rope.theta = r.Num("rope_theta");
  c.rope.factor = r.Num("factor");
  c.rope.low_freq_factor = r.Num("low_freq_factor");
  c.rope.high_freq_factor = r.Num("high_freq_factor");
  c.rope.original_max_position_embeddings = r.Int("original_max_position_embeddings");
  return c;
}

// The architecture a native config names, built from its fields.
static std::shared_ptr<CausalLM> MakeModel(const Options& o) {
  switch (o.Enum("architecture", {"gpt2", "llama"})) {
    case 0:
      return std::make_shared<GPT2>(ParseGPT2Config(o));
    default:
      return std::make_shared<Llama>(ParseLlamaConfig(o));
  }
}

// Tensors under their checkpoint names (what JavaScript sees, as Python's named_parameters() names them).
static NamedTensors CheckpointNamed(const CausalLM& model, const NamedTensors& tensors) {
  NamedTensors out;
  for (const auto& [name, t] : tensors) out.emplace_back(model.CheckpointName(name), t);
  return out;
}

// The config field that bounds a sequence, by its Hugging Face name.
static std::string PositionsName(const CausalLM& model) {
  return dynamic_cast<const GPT2*>(&model) ? "n_positions" : "max_position_embeddings";
}

static c10::optional<at::ScalarType> DtypeOrNull(const Options& o, const char* key) {
  if (o.IsNull(key)) return c10::nullopt;
  return ParseDtype(o.Str(key));
}

// One file of a checkpoint, and the entries wanted from it.
struct Shard {
  std::string path;
  uint64_t data_start = 0;
  std::vector<SafetensorsEntry> entries;
};

// load({ config, shards: [{ path, data_start, entries }], device, dtype: string | null, quantization: string | null
// (a q8 / q4 checkpoint), quantize: string | null (q8 / q4 a float checkpoint as it loads) }) -> Promise<NativeModel>.
// A sharded checkpoint (model.safetensors.index.json) is several shards; tensors keep their names whichever file holds
// them.
Napi::Value ModelWrap::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "NativeModel.load");
    auto model = MakeModel(args.Nested("config"));
    at::Device device = ParseDevice(args.Str("device"));
    c10::optional<at::ScalarType> dtype = DtypeOrNull(args, "dtype");
    const std::string quantization = args.IsNull("quantization") ? "" : args.Str("quantization");
    const std::string quantize = args.IsNull("quantize") ? "" : args.Str("quantize");
    const Napi::Value sv = args.Get("shards");
    if (!sv.IsArray() || sv.As<Napi::Array>().Length() == 0)
      throw UserError("Expected a non-empty array of shards for NativeModel.load's option shards");
    // Only the tensors the model uses are read: buffers and a tied lm_head are skipped (a quantized checkpoint's
    // lm_head is its own quantized copy, kept).
    std::vector<Shard> shards;
    for (uint32_t i = 0; i < sv.As<Napi::Array>().Length(); i++) {
      const Options o(sv.As<Napi::Array>().Get(i), "NativeModel.load's shard");
      Shard sh{o.Str("path"), static_cast<uint64_t>(o.Int("data_start")), {}};
      for (auto& e : ParseEntries(o.Get("entries")))
        if (!model->Skipped(e.name) || (e.name == "lm_head.weight" && !quantization.empty()))
          sh.entries.push_back(std::move(e));
      shards.push_back(std::move(sh));
    }
    return PromiseWorker::Run(
        env,
        [=] {
          c10::InferenceMode guard(false);
          // null: the file's float types become float32, as transformers loads without a torch_dtype
          const c10::optional<at::ScalarType> as =
              dtype.has_value() ? dtype : c10::optional<at::ScalarType>(at::kFloat);
          NamedTensors tensors;
          if (!quantize.empty()) {  // the quantized weights one at a time, each quantized before the next is read
            std::vector<std::pair<const Shard*, SafetensorsEntry>> later;
            for (const Shard& sh : shards) {
              std::vector<SafetensorsEntry> now;
              for (const auto& e : sh.entries)
                if (model->Quantizable(e.name))
                  later.emplace_back(&sh, e);
                else
                  now.push_back(e);
              for (auto& t : ReadSafetensors(sh.path, sh.data_start, now, at::kFloat, device))
                tensors.push_back(std::move(t));
            }
            std::vector<std::string> names;
            for (const auto& [sh, e] : later) names.push_back(e.name);
            model->LoadQuantizing(
                std::move(tensors), names,
                [&](size_t i) {
                  const auto& [sh, e] = later[i];
                  return ReadSafetensors(sh->path, sh->data_start, {e}, at::kFloat, device).at(0).second;
                },
                quantize);
            return;
          }
          for (const Shard& sh : shards)
            for (auto& t : ReadSafetensors(sh.path, sh.data_start, sh.entries, as, device))
              tensors.push_back(std::move(t));
          if (!quantization.empty()) {
            model->LoadQuantized(std::move(tensors), quantization);
            return;
          }
          model->Load(std::move(tensors));
          model->SetRequiresGrad(true);
        },
        [model](Napi::Env env) -> Napi::Value { return New(env, model); });
  });
}

// create({ config, device, dtype, seed: number | null }) -> Promise<NativeModel> with Hugging Face's random
// initialisation
Napi::Value ModelWrap::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "NativeModel.create");
    auto model = MakeModel(args.Nested("config"));
    at::Device device = ParseDevice(args.Str("device"));
    at::ScalarType dtype = ParseDtype(args.Str("dtype"));
    bool seeded = !args.IsNull("seed");
    int64_t seed = seeded ? args.Int("seed") : 0;
    return PromiseWorker::Run(
        env,
        [=] {
          if (seeded) at::manual_seed(static_cast<uint64_t>(seed));
          model->InitRandom(dtype, device);
          model->SetRequiresGrad(true);
        },
        [model](Napi::Env env) -> Napi::Value { return New(env, model); });
  });
}

// forward({ input_ids, attention_mask, position_ids, labels: Tensor | null, past_key_values: Tensor[] | null
//           (k0, v0, k1, v1, ...), use_cache, grad }) -> Promise<{ logits, loss?, past_key_values? }>
Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = Get(env);
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "forward");
    at::Tensor ids = args.Tensor("input_ids");
    at::Tensor mask = args.TensorOrNull("attention_mask");
    at::Tensor pos = args.TensorOrNull("position_ids");
    at::Tensor labels = args.TensorOrNull("labels");
    std::vector<at::Tensor> past;
    if (!args.IsNull("past_key_values")) {
      Napi::Value v = args.Get("past_key_values");
      if (!v.IsArray()) throw UserError("Expected an array of Tensors or null for forward's option past_key_values");
      auto arr = v.As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) past.push_back(TensorWrap::FromJs(arr.Get(i), "past_key_values"));
    }
    bool use_cache = args.Bool("use_cache");
    bool grad = args.Bool("grad");
    const int64_t n_layer = model->num_layers(), max_positions = model->max_positions();

    if (ids.dim() != 2)
      throw UserError("Expected input_ids of shape [batch, sequence] but received " + std::to_string(ids.dim()) +
                      " dimensions");
    if (at::isFloatingType(ids.scalar_type()) || ids.scalar_type() == at::kBool)
      throw UserError("Expected integer input_ids but received dtype " + DtypeName(ids.scalar_type()));
    if (!past.empty() && past.size() != static_cast<size_t>(2 * n_layer))
      throw UserError("Expected past_key_values with " + std::to_string(n_layer) + " [key, value] pairs");
    const int64_t B = ids.size(0), T = ids.size(1);
    if (T == 0) throw UserError("input_ids is empty");
    const int64_t P = past.empty() ? 0 : past[0].size(2);
    if (mask.defined() && (mask.dim() != 2 || mask.size(0) != B || mask.size(1) != P + T))
      throw UserError("Expected attention_mask of shape [" + std::to_string(B) + ", " + std::to_string(P + T) + "]");
    if (pos.defined() && (pos.dim() != 2 || pos.size(0) != B || pos.size(1) != T))
      throw UserError("Expected position_ids of shape [" + std::to_string(B) + ", " + std::to_string(T) + "]");
    if (labels.defined() && (labels.dim() != 2 || labels.size(0) != B || labels.size(1) != T))
      throw UserError("Expected labels of shape [" + std::to_string(B) + ", " + std::to_string(T) + "]");
    if (P + T > max_positions)
      throw UserError("sequence length " + std::to_string(P + T) + " is longer than " + PositionsName(*model) + " " +
                      std::to_string(max_positions));

    struct Out {
      at::Tensor logits, loss;
      std::vector<at::Tensor> past;
    };
    auto out = std::make_shared<Out>();
    return PromiseWorker::Run(
        env,
        [=] {
          CheckTokenIds(ids, model->vocab_size());  // here: on CUDA input the reduction waits for the GPU
          c10::AutoGradMode mode(grad);
          at::Device dev = model->device();
          at::Tensor x = ids.to(dev, at::kLong);
          at::Tensor m = mask.defined() ? mask.to(dev) : at::Tensor();
          at::Tensor p =
              pos.defined()
                  ? pos.to(dev, at::kLong)
                  : at::arange(P, P + T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0).expand({B, T});
          KVCache cache;
          KVCache* cp = nullptr;
          if (use_cache || !past.empty()) {
            cache = model->NewCache(B, P + T);
            for (int64_t i = 0; i < n_layer; i++) {
              if (P > 0) {
                cache.k[i].narrow(2, 0, P).copy_(past[2 * i]);
                cache.v[i].narrow(2, 0, P).copy_(past[2 * i + 1]);
              }
            }
            cache.length = P;
            cp = &cache;
          }
          at::Tensor h = model->Hidden(x, p, m, cp);
          out->logits = model->Logits(h);
          if (labels.defined()) out->loss = CausalLM::CausalLMLoss(out->logits, labels);
          if (use_cache)
            for (int64_t i = 0; i < n_layer; i++) {
              out->past.push_back(cache.k[i]);
              out->past.push_back(cache.v[i]);
            }
        },
        [out](Napi::Env env) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("logits", TensorWrap::New(env, out->logits));
          if (out->loss.defined()) o.Set("loss", TensorWrap::New(env, out->loss));
          if (!out->past.empty()) {
            auto arr = Napi::Array::New(env, out->past.size());
            for (size_t i = 0; i < out->past.size(); i++)
              arr.Set(static_cast<uint32_t>(i), TensorWrap::New(env, out->past[i]));
            o.Set("past_key_values", arr);
          }
          return o;
        },
        {info.This().As<Napi::Object>()});
  });
}

Napi::Value ModelWrap::SetTraining(const Napi::CallbackInfo& info) {
  if (!info[0].IsBoolean()) throw JsError(info.Env(), "Expected a boolean for setTraining's mode", kInvalidArgument);
  Get(info.Env())->training = info[0].As<Napi::Boolean>().Value();
  return info.Env().Undefined();
}

Napi::Value ModelWrap::SetGradientCheckpointing(const Napi::CallbackInfo& info) {
  if (!info[0].IsBoolean())
    throw JsError(info.Env(), "Expected a boolean for setGradientCheckpointing's on", kInvalidArgument);
  Get(info.Env())->gradient_checkpointing = info[0].As<Napi::Boolean>().Value();
  return info.Env().Undefined();
}

// to({ device: string | null, dtype: string | null }) -> Promise<void>
Napi::Value ModelWrap::To(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = Get(env);
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "to");
    c10::optional<at::Device> device;
    if (!args.IsNull("device")) device = ParseDevice(args.Str("device"));
    c10::optional<at::ScalarType> dtype = DtypeOrNull(args, "dtype");
    return PromiseWorker::Run(env,
                              [=] {
                                model->Apply([&](const at::Tensor& t) {
                                  at::Tensor r = t;
                                  if (device) r = r.to(*device);
                                  if (dtype) r = r.to(*dtype);
                                  return r;
                                });
                              },
                              nullptr, {info.This().As<Napi::Object>()});
  });
}

// parameters() -> [name, Tensor][] with Hugging Face's names (transformer. prefix); tensors share storage.
Napi::Value ModelWrap::Parameters(const Napi::CallbackInfo& info) {
  auto model = Get(info.Env());
  return TensorWrap::NamedToJs(info.Env(), CheckpointNamed(*model, model->Parameters()), "");
}

Napi::Value ModelWrap::NumParameters(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Get(info.Env())->NumParameters()));
}

Napi::Value ModelWrap::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DeviceName(Get(info.Env())->device()));
}
Napi::Value ModelWrap::Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DtypeName(Get(info.Env())->dtype()));
}

Napi::Value ModelWrap::ZeroGrad(const Napi::CallbackInfo& info) {
  auto model = Get(info.Env());
  for (const auto& [name, t] : model->Parameters())
    if (t.grad().defined()) t.mutable_grad() = at::Tensor();
  for (const auto& [name, t] : model->LoraParameters())
    if (t.grad().defined()) t.mutable_grad() = at::Tensor();
  return info.Env().Undefined();
}

// save({ path }) -> Promise<void>: Hugging Face's saved layout (GPT-2's "transformer." prefix, a tied lm_head omitted).
Napi::Value ModelWrap::Save(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = Get(env);
  return Guard(env, [&] {
    const std::string path = Options(info[0], "save").Str("path");
    return PromiseWorker::Run(env,
                              [=] {
                                WriteSafetensors(path, model->SavedTensors(), {{"format", "pt"}});
                              },
                              nullptr, {info.This().As<Napi::Object>()});
  });
}

// loadWeights({ path, data_start, entries }) -> Promise<void>: copies a checkpoint's tensors into this model's
// parameters in place (shapes checked), so optimizers holding them stay valid. For resuming training.
Napi::Value ModelWrap::LoadWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = Get(env);
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "loadWeights");
    const std::string path = args.Str("path");
    const auto start = static_cast<uint64_t>(args.Int("data_start"));
    auto entries = ParseEntries(args.Get("entries"));
    return PromiseWorker::Run(env,
                              [=] {
                                at::NoGradGuard ng;
                                auto tensors =
                                    ReadSafetensors(path, start, entries, c10::nullopt, at::Device(at::kCPU));
                                model->CopyWeights(std::move(tensors));
                              },
                              nullptr, {info.This().As<Napi::Object>()});
  });
}

// addLora({ modules: string[], r, scaling, dropout, trainable }) -> void: PEFT's LoRA on Conv1D layers
// ("h.0.attn.c_attn"); the base weights are frozen.
Napi::Value ModelWrap::AddLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = Get(env);
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "addLora");
    Napi::Value mv = args.Get("modules");
    if (!mv.IsArray()) throw UserError("Expected an array of module names for addLora's option modules");
    std::vector<std::string> modules;
    for (uint32_t i = 0; i < mv.As<Napi::Array>().Length(); i++) {
      Napi::Value m = mv.As<Napi::Array>().Get(i);
      if (!m.IsString()) throw UserError("Expected a module name for addLora's modules[" + std::to_string(i) + "]");
      modules.push_back(m.As<Napi::String>().Utf8Value());
    }
    const int64_t r = args.Int("r");
    const double scaling = args.Num("scaling"), dropout = args.Num("dropout");
    const bool trainable = args.Bool("trainable");
    if (!(dropout >= 0 && dropout < 1))
      throw UserError("Expected a number in [0, 1) for addLora's option dropout but received " +
                      std::to_string(dropout));
    // synchronous, as get_peft_model is: a few small tensors (the JavaScript layer refuses while calls are in flight)
    model->AddLora(modules, r, scaling, dropout, trainable);
    return env.Undefined();
  });
}

// loraParameters() -> [name, Tensor][]: "transformer.h.0.attn.c_attn.lora_A.weight", ...; tensors share storage.
Napi::Value ModelWrap::LoraParameters(const Napi::CallbackInfo& info) {
  auto model = Get(info.Env());
  return TensorWrap::NamedToJs(info.Env(), CheckpointNamed(*model, model->LoraParameters()), "");
}

// copyLora([name, Tensor][]) -> Promise<void>: every adapter's A and B copied in place (names as loraParameters()).
Napi::Value ModelWrap::CopyLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = Get(env);
  return Guard(env, [&]() -> Napi::Value {
    auto named = TensorWrap::NamedFromJs(info[0], "copyLora's tensors");
    for (auto& [name, t] : named) name = model->ModelName(name);
    return PromiseWorker::Run(env, [=] { model->CopyLora(named); }, nullptr, {info.This().As<Napi::Object>()});
  });
}

// removeLora({ merge }) -> Promise<void>: drops the adapters, folded into the base weights with merge.
Napi::Value ModelWrap::RemoveLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = Get(env);
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "removeLora");
    const bool merge = args.Bool("merge");
    return PromiseWorker::Run(env, [=] { model->RemoveLora(merge); }, nullptr, {info.This().As<Napi::Object>()});
  });
}

// "" for float weights, else the quantization ("q8" or "q4").
Napi::Value ModelWrap::Quantization(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Get(info.Env())->quantization());
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  model_.reset();
  return info.Env().Undefined();
}

// generate({ input_ids, attention_mask: Tensor | null, config: {...}, on_tokens: fn | null,
//            cancel: Int32Array(SharedArrayBuffer) | null }) -> Promise<Tensor>
Napi::Value ModelWrap::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = Get(env);
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "generate");
    at::Tensor ids = args.Tensor("input_ids");
    at::Tensor mask = args.TensorOrNull("attention_mask");
    const GenerateConfig c = ParseGenerateConfig(args.Nested("config"));

    const std::atomic<int32_t>* cancel = nullptr;
    std::vector<Napi::Object> keep = {info.This().As<Napi::Object>()};
    if (!args.IsNull("cancel")) {
      Napi::Value v = args.Get("cancel");
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
          v.As<Napi::TypedArray>().ElementLength() < 1)
        throw UserError("Expected an Int32Array or null for generate's option cancel");
      auto ta = v.As<Napi::Int32Array>();
      cancel = reinterpret_cast<const std::atomic<int32_t>*>(ta.Data());
      keep.push_back(ta);
    }
    // made last: nothing may throw after it, or the thread-safe function would hold the event loop open
    std::shared_ptr<Napi::ThreadSafeFunction> tsfn;
    if (!args.IsNull("on_tokens")) {
      if (!args.Get("on_tokens").IsFunction())
        throw UserError("Expected a function or null for generate's option on_tokens");
      tsfn = std::make_shared<Napi::ThreadSafeFunction>(
          Napi::ThreadSafeFunction::New(env, args.Get("on_tokens").As<Napi::Function>(), "torchlm-stream", 0, 1));
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
                const Napi::Array arr = Numbers(env, *t);
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

void InitModel(Napi::Env env, Napi::Object exports) { ModelWrap::Init(env, exports); }

}  // namespace torchlm
