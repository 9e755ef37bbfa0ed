#include "binding/tensor_wrap.h"

#include "binding/bindings.h"
#include "binding/options.h"

#include <cstring>

namespace torchlm {

Napi::FunctionReference* TensorWrap::ctor_ = nullptr;

std::vector<int64_t> ToInt64Vector(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw UserError(std::string("Expected an array of integers for ") + what);
  auto arr = v.As<Napi::Array>();
  std::vector<int64_t> out(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value e = arr.Get(i);
    if (!e.IsNumber()) throw UserError(std::string("Expected an array of integers for ") + what);
    double d = e.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d)))
      throw UserError(std::string("Expected an array of integers for ") + what);
    out[i] = static_cast<int64_t>(d);
  }
  return out;
}

void InitTensor(Napi::Env env, Napi::Object exports) { TensorWrap::Init(env, exports); }

void TensorWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f =
      DefineClass(env, "NativeTensor",
                  {
                      StaticMethod("fromBuffer", &TensorWrap::FromBuffer),
                      StaticMethod("cat", &TensorWrap::Cat),
                      InstanceAccessor("shape", &TensorWrap::Shape, nullptr),
                      InstanceAccessor("strides", &TensorWrap::Strides, nullptr),
                      InstanceAccessor("dtype", &TensorWrap::Dtype, nullptr),
                      InstanceAccessor("device", &TensorWrap::Device, nullptr),
                      InstanceAccessor("disposed", &TensorWrap::Disposed, nullptr),
                      InstanceAccessor("requires_grad", &TensorWrap::RequiresGrad, &TensorWrap::SetRequiresGrad),
                      InstanceAccessor("grad", &TensorWrap::Grad, nullptr),
                      InstanceMethod("data", &TensorWrap::Data),
                      InstanceMethod("item", &TensorWrap::Item),
                      InstanceMethod("to", &TensorWrap::To),
                      InstanceMethod("permute", &TensorWrap::Permute),
                      InstanceMethod("reshape", &TensorWrap::Reshape),
                      InstanceMethod("view", &TensorWrap::View),
                      InstanceMethod("slice", &TensorWrap::Slice),
                      InstanceMethod("contiguous", &TensorWrap::Contiguous),
                      InstanceMethod("argmax", &TensorWrap::Argmax),
                      InstanceMethod("softmax", &TensorWrap::Softmax),
                      InstanceMethod("log_softmax", &TensorWrap::LogSoftmax),
                      InstanceMethod("backward", &TensorWrap::Backward),
                      InstanceMethod("detach", &TensorWrap::Detach),
                      InstanceMethod("clone", &TensorWrap::Clone),
                      InstanceMethod("compare", &TensorWrap::Compare),
                      InstanceMethod("arith", &TensorWrap::Arith),
                      InstanceMethod("reduce", &TensorWrap::Reduce),
                      InstanceMethod("matmul", &TensorWrap::Matmul),
                      InstanceMethod("dispose", &TensorWrap::Dispose),
                  });
  ctor_ = new Napi::FunctionReference(Napi::Persistent(f));
  exports.Set("NativeTensor", f);
}

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw JsError(info.Env(), "NativeTensor cannot be constructed directly: use tensor()", kInvalidArgument);
  auto* t = info[0].As<Napi::External<at::Tensor>>().Data();
  tensor_ = std::move(*t);
  reported_ = tensor_.defined() && tensor_.device().is_cpu() ? static_cast<int64_t>(tensor_.nbytes()) : 0;
  if (reported_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), reported_);
}

TensorWrap::~TensorWrap() {
  if (reported_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_);
}

void TensorWrap::Reset(Napi::Env env) {
  if (reported_) Napi::MemoryManagement::AdjustExternalMemory(env, -reported_);
  reported_ = 0;
  tensor_ = at::Tensor();
  disposed_ = true;
}

Napi::Object TensorWrap::New(Napi::Env env, at::Tensor t) {
  at::Tensor tmp = std::move(t);
  return ctor_->New({Napi::External<at::Tensor>::New(env, &tmp)});
}

bool TensorWrap::IsTensor(const Napi::Value& v) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(ctor_->Value());
}

at::Tensor TensorWrap::FromJs(const Napi::Value& v, const char* what) {
  if (!IsTensor(v)) throw JsError(v.Env(), std::string("Expected a Tensor for ") + what, kInvalidArgument);
  return Napi::ObjectWrap<TensorWrap>::Unwrap(v.As<Napi::Object>())->Get(v.Env());
}

std::vector<std::pair<std::string, at::Tensor>> TensorWrap::NamedFromJs(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw UserError(std::string("Expected an array of [name, Tensor] pairs for ") + what);
  auto arr = v.As<Napi::Array>();
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value pair = arr.Get(i);
    if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2 || !pair.As<Napi::Array>().Get(0u).IsString())
      throw UserError(std::string("Expected a [name, Tensor] pair for ") + what + "[" + std::to_string(i) + "]");
    out.emplace_back(pair.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(),
                     FromJs(pair.As<Napi::Array>().Get(1u), what));
  }
  return out;
}

Napi::Array TensorWrap::NamedToJs(Napi::Env env, const std::vector<std::pair<std::string, at::Tensor>>& ts,
                                  const std::string& prefix) {
  auto arr = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); i++) {
    auto pair = Napi::Array::New(env, 2);
    pair.Set(0u, prefix + ts[i].first);
    pair.Set(1u, New(env, ts[i].second));
    arr.Set(static_cast<uint32_t>(i), pair);
  }
  return arr;
}

const at::Tensor& TensorWrap::Get(Napi::Env env) const {
  if (disposed_) throw JsError(env, "Tensor is disposed: it cannot be used after dispose()", kDisposed);
  return tensor_;
}

// fromBuffer({ data, shape, dtype, device })
Napi::Value TensorWrap::FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "tensor");
    if (!args.Get("data").IsTypedArray()) throw UserError("tensor's option data must be a typed array");
    auto ta = args.Get("data").As<Napi::TypedArray>();
    auto shape = args.Ints("shape");
    at::ScalarType target = ParseDtype(args.Str("dtype"));
    at::Device device = ParseDevice(args.Str("device"));
    at::ScalarType src;
    switch (ta.TypedArrayType()) {
      case napi_float32_array:
        src = at::kFloat;
        break;
      case napi_float64_array:
        src = at::kDouble;
        break;
      case napi_int32_array:
        src = at::kInt;
        break;
      case napi_bigint64_array:
        src = at::kLong;
        break;
      case napi_uint8_array:
        src = at::kByte;
        break;
      case napi_int8_array:
        src = at::kChar;
        break;
      case napi_int16_array:
        src = at::kShort;
        break;
      case napi_uint16_array:
        src = at::kHalf;
        break;  // raw half bits
      default:
        throw UserError("Unsupported typed array type for tensor data");
    }
    int64_t numel = 1;
    for (auto s : shape) {
      if (s < 0) throw UserError("Expected non-negative sizes for shape");
      numel *= s;
    }
    if (static_cast<size_t>(numel) != ta.ElementLength())
      throw UserError("Expected " + std::to_string(numel) + " values for shape but received " +
                      std::to_string(ta.ElementLength()));
    auto* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    at::Tensor t =
        at::from_blob(base, shape, at::TensorOptions().dtype(src)).to(target, /*non_blocking=*/false, /*copy=*/true);
    if (!device.is_cpu()) t = t.to(device);
    return New(env, t);
  });
}

Napi::Array Numbers(Napi::Env env, at::IntArrayRef v) {
  auto arr = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++)
    arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(v[i])));
  return arr;
}

Napi::Value TensorWrap::Shape(const Napi::CallbackInfo& info) { return Numbers(info.Env(), Get(info.Env()).sizes()); }

Napi::Value TensorWrap::Strides(const Napi::CallbackInfo& info) {
  return Numbers(info.Env(), Get(info.Env()).strides());
}

Napi::Value TensorWrap::Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DtypeName(Get(info.Env()).scalar_type()));
}

Napi::Value TensorWrap::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DeviceName(Get(info.Env()).device()));
}

Napi::Value TensorWrap::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

Napi::Value TensorWrap::RequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Get(info.Env()).requires_grad());
}

void TensorWrap::SetRequiresGrad(const Napi::CallbackInfo& info, const Napi::Value& v) {
  Guard(info.Env(), [&] {
    Get(info.Env()).requires_grad_(v.ToBoolean().Value());
    return 0;
  });
}

Napi::Value TensorWrap::Grad(const Napi::CallbackInfo& info) {
  const auto& g = Get(info.Env()).grad();
  if (!g.defined()) return info.Env().Null();
  return New(info.Env(), g.detach());
}

Napi::Value TensorWrap::Data(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    at::Tensor t = Get(env).detach().to(at::kCPU);
    at::ScalarType st = t.scalar_type();
    Napi::Value out;
    if (st == at::kLong) {
      t = t.contiguous();
      auto arr = Napi::BigInt64Array::New(env, t.numel());
      std::memcpy(arr.Data(), t.data_ptr(), t.nbytes());
      return arr;
    }
    if (st == at::kInt || st == at::kShort || st == at::kChar) {
      t = t.to(at::kInt).contiguous();
      auto arr = Napi::Int32Array::New(env, t.numel());
      std::memcpy(arr.Data(), t.data_ptr(), t.nbytes());
      return arr;
    }
    if (st == at::kByte || st == at::kBool) {
      t = t.to(at::kByte).contiguous();
      auto arr = Napi::Uint8Array::New(env, t.numel());
      std::memcpy(arr.Data(), t.data_ptr(), t.nbytes());
      return arr;
    }
    if (st == at::kDouble) {
      t = t.contiguous();
      auto arr = Napi::Float64Array::New(env, t.numel());
      std::memcpy(arr.Data(), t.data_ptr(), t.nbytes());
      return arr;
    }
    t = t.to(at::kFloat).contiguous();
    auto arr = Napi::Float32Array::New(env, t.numel());
    std::memcpy(arr.Data(), t.data_ptr(), t.nbytes());
    return arr;
  });
}

Napi::Value TensorWrap::Item(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const auto& t = Get(env);
    if (t.numel() != 1)
      throw UserError("item() needs a tensor with one element but it has " + std::to_string(t.numel()));
    if (t.scalar_type() == at::kBool) return Napi::Boolean::New(env, t.item<bool>());
    return Napi::Number::New(env, t.item<double>());
  });
}

// to({ device: string | null, dtype: string | null })
Napi::Value TensorWrap::To(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const Options args(info[0], "Tensor.to");
    at::Tensor t = Get(env);
    if (!args.IsNull("device")) t = t.to(ParseDevice(args.Str("device")));
    if (!args.IsNull("dtype")) t = t.to(ParseDtype(args.Str("dtype")));
    return New(env, t);
  });
}

Napi::Value TensorWrap::Permute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] { return New(env, Get(env).permute(Options(info[0], "permute").Ints("dims"))); });
}
Napi::Value TensorWrap::Reshape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] { return New(env, Get(env).reshape(Options(info[0], "reshape").Ints("shape"))); });
}
Napi::Value TensorWrap::View(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] { return New(env, Get(env).view(Options(info[0], "view").Ints("shape"))); });
}

// slice({ dim, start, end: number | null, step })
Napi::Value TensorWrap::Slice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] {
    const auto& t = Get(env);
    const Options args(info[0], "slice");
    c10::optional<int64_t> end;
    if (!args.IsNull("end")) end = args.Int("end");
    return New(env, t.slice(args.Int("dim"), args.Int("start"), end, args.Int("step")));
  });
}

Napi::Value TensorWrap::Contiguous(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] { return New(env, Get(env).contiguous()); });
}
Napi::Value TensorWrap::Argmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] {
    const Options args(info[0], "argmax");
    if (args.IsNull("dim")) return New(env, Get(env).argmax());
    return New(env, Get(env).argmax(args.Int("dim"), args.Bool("keepdim")));
  });
}
Napi::Value TensorWrap::Softmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] { return New(env, Get(env).softmax(Options(info[0], "softmax").Int("dim"))); });
}
Napi::Value TensorWrap::LogSoftmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] { return New(env, Get(env).log_softmax(Options(info[0], "log_softmax").Int("dim"))); });
}
Napi::Value TensorWrap::Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const auto& t = Get(env);
    const Options args(info[0], "backward");
    const at::Tensor gradient = args.TensorOrNull("gradient");
    if (!t.requires_grad())
      throw UserError(
          "backward() needs a tensor that requires grad: it was computed without autograd (eval mode, or from tensors "
          "that do not require grad)");
    if (gradient.defined())
      t.backward(gradient);
    else
      t.backward();
    return env.Undefined();
  });
}
Napi::Value TensorWrap::Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] { return New(env, Get(env).detach()); });
}
Napi::Value TensorWrap::Clone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] { return New(env, Get(env).clone()); });
}

static at::Tensor OtherOperand(const Napi::Value& v, const at::Tensor& self) {
  if (TensorWrap::IsTensor(v)) return TensorWrap::FromJs(v, "other");
  if (v.IsNumber())
    return at::scalar_tensor(v.As<Napi::Number>().DoubleValue(), self.options().dtype(at::kDouble))
        .to(self.scalar_type());
  throw UserError("Expected a Tensor or a number for other");
}

// compare({ op, other }): eq, ne, lt, le, gt, ge
Napi::Value TensorWrap::Compare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] {
    const auto& t = Get(env);
    const Options args(info[0], "compare");
    const int op = args.Enum("op", {"eq", "ne", "lt", "le", "gt", "ge"});
    at::Tensor o = OtherOperand(args.Get("other"), t);
    switch (op) {
      case 0:
        return New(env, t.eq(o));
      case 1:
        return New(env, t.ne(o));
      case 2:
        return New(env, t.lt(o));
      case 3:
        return New(env, t.le(o));
      case 4:
        return New(env, t.gt(o));
      default:
        return New(env, t.ge(o));
    }
  });
}

// arith({ op, other }): add, sub, mul, div
Napi::Value TensorWrap::Arith(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] {
    const auto& t = Get(env);
    const Options args(info[0], "arith");
    const int op = args.Enum("op", {"add", "sub", "mul", "div"});
    const Napi::Value other = args.Get("other");
    at::Tensor o = other.IsNumber() ? at::scalar_tensor(other.As<Napi::Number>().DoubleValue(), at::kDouble)
                                    : OtherOperand(other, t);
    switch (op) {
      case 0:
        return New(env, t.add(o));
      case 1:
        return New(env, t.sub(o));
      case 2:
        return New(env, t.mul(o));
      default:
        return New(env, t.div(o));
    }
  });
}

// reduce({ op, dim: number | null, keepdim }): sum, mean, max, min
Napi::Value TensorWrap::Reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] {
    const auto& t = Get(env);
    const Options args(info[0], "reduce");
    const int op = args.Enum("op", {"sum", "mean", "max", "min"});
    const bool has_dim = !args.IsNull("dim");
    const int64_t dim = has_dim ? args.Int("dim") : 0;
    const bool keep = args.Bool("keepdim");
    switch (op) {
      case 0:
        return New(env, has_dim ? t.sum(dim, keep) : t.sum());
      case 1:
        return New(env, has_dim ? t.mean(dim, keep) : t.mean());
      case 2:
        return New(env, has_dim ? std::get<0>(t.max(dim, keep)) : t.max());
      default:
        return New(env, has_dim ? std::get<0>(t.min(dim, keep)) : t.min());
    }
  });
}

Napi::Value TensorWrap::Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] { return New(env, Get(env).matmul(Options(info[0], "matmul").Tensor("other"))); });
}

// cat({ tensors, dim })
Napi::Value TensorWrap::Cat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&] {
    const Options args(info[0], "cat");
    if (!args.Get("tensors").IsArray()) throw UserError("cat's option tensors must be an array of Tensors");
    auto arr = args.Get("tensors").As<Napi::Array>();
    std::vector<at::Tensor> ts;
    for (uint32_t i = 0; i < arr.Length(); i++) ts.push_back(FromJs(arr.Get(i), "tensors"));
    return New(env, at::cat(ts, args.Int("dim")));
  });
}

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  if (!disposed_) Reset(info.Env());
  return info.Env().Undefined();
}

}  // namespace torchlm
