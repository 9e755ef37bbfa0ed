{
  "targets": [
    {
      "target_name": "torchlm",
      "sources": [
        "native/addon.cc",
        "native/allocator.cc",
        "native/checkpoint.cc",
        "native/decode.cc",
        "native/device.cc",
        "native/distributed.cc",
        "native/gemm.cc",
        "native/generation.cc",
        "native/gpt2.cc",
        "native/lm_loss.cc",
        "native/lora.cc",
        "native/loss.cc",
        "native/matvec.cc",
        "native/rows.cc",
        "native/model.cc",
        "native/optimizer.cc",
        "native/probes.cc",
        "native/quant.cc",
        "native/safetensors.cc",
        "native/tensor.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/find-libtorch.mjs --include)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "USE_C10D_GLOO", "TORCHLM_HAVE_GLOO=1"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-frtti", "-O2", "-D_GLIBCXX_USE_CXX11_ABI=1", "-Wno-unused-parameter", "-Wno-sign-compare", "-fopenmp"],
      "ldflags": ["-fopenmp"],
      "libraries": [
        "-L<!(node scripts/find-libtorch.mjs --lib)",
        "-Wl,-rpath,<!(node scripts/find-libtorch.mjs --lib)",
        "-ltorch", "-ltorch_cpu", "-lc10", "-ldl"
      ]
    }
  ]
}
