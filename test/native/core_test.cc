// The core's kernels against libtorch's own arithmetic, linked against the core library alone (no Node): CI builds it
// with -DTORCHLM_CORE_ONLY=ON and runs it. Prints "N passed, N failed" and exits non-zero on a failure.
#include "core/kernels/matvec.h"
#include "core/kernels/quant.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace {

int passed = 0, failed = 0;

void Check(const std::string& name, const std::function<bool(std::string&)>& test) {
  std::string why;
  bool ok = false;
  try {
    ok = test(why);
  } catch (const std::exception& e) {
    why = e.what();
  }
  std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name.c_str(), why.empty() ? "" : ": ", why.c_str());
  (ok ? passed : failed)++;
}

// The largest |a - b| relative to the largest |b|.
double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

bool Close(const at::Tensor& a, const at::Tensor& b, double tol, std::string& why) {
  const double e = RelativeError(a, b);
  why = "relative error " + std::to_string(e) + " (tolerance " + std::to_string(tol) + ")";
  return e <= tol;
}

}  // namespace

int main() {
  using namespace torchlm;
  at::manual_seed(0);
  c10::InferenceMode guard;

  for (const int64_t K : {768, 800}) {  // 800: the inputs padded to whole groups of 128
    const int64_t N = 200;
    const at::Tensor w = at::randn({N, K}), x = at::randn({1, K}), b = at::randn({N});
    for (const int bits : {8, 4}) {
      const std::string shape = "[" + std::to_string(N) + ", " + std::to_string(K) + "]";
      Check("q" + std::to_string(bits) + " weights " + shape + " dequantize near the float ones",
            [&](std::string& why) {
              const QWeight q = QuantizeWeight(w, bits);
              return Close(DequantizeWeight(q), w, bits == 8 ? 0.01 : 0.2, why);
            });
      Check("q" + std::to_string(bits) + " x q8 " + Q8Kernel() + " linear " + shape + " equals the dequantized matmul",
            [&](std::string& why) {
              const QWeight q = QuantizeWeight(w, bits);
              const at::Tensor reference = at::addmm(b, x, DequantizeWeight(q).t());
              // the activations are quantized to int8 per block: about 1% of a dot product's size
              return Close(QLinear(x, q, b), reference, 0.02, why);
            });
    }
    Check("f32 matvec [" + std::to_string(K) + ", 300] equals addmm", [&](std::string& why) {
      const at::Tensor wkn = at::randn({K, 300}), bias = at::randn({300});
      const at::Tensor y = MatVecKN(x.view({K}), wkn, bias);
      if (!y.defined()) {
        why = "the fast path did not apply";
        return false;
      }
      return Close(y.view({1, 300}), at::addmm(bias, x, wkn), 1e-5, why);
    });
  }

  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
