{
  "target_defaults": {
    "include_dirs": [
      "native",
      "<!@(node scripts/find-libtorch.mjs --include)"
    ],
    "cflags!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
    "cflags_cc": [
      "-std=c++20", "-fexceptions", "-frtti", "-O2", "-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
      "-D_GLIBCXX_USE_CXX11_ABI=1", "-fopenmp", "<!@(node scripts/native-build.mjs warnings)"
    ],
    "ldflags": ["-fopenmp"]
  },
  "targets": [
    {
      "target_name": "torchlm_core",
      "type": "static_library",
      "sources": ["<!@(node scripts/native-build.mjs sources core)"],
      "include_dirs": ["<!@(node scripts/native-build.mjs gloo-include)"],
      "defines": ["<!@(node scripts/native-build.mjs defines)"]
    },
    {
      "target_name": "torchlm_binding",
      "type": "static_library",
      "sources": ["<!@(node scripts/native-build.mjs sources binding)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"]
    },
    {
      "target_name": "torchlm",
      "sources": ["<!@(node scripts/native-build.mjs sources module)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "dependencies": ["torchlm_binding", "torchlm_core"],
      "libraries": [
        "-L<!(node scripts/find-libtorch.mjs --lib)",
        "-Wl,-rpath,<!(node scripts/find-libtorch.mjs --lib)",
        "-ltorch", "-ltorch_cpu", "-lc10", "-ldl"
      ]
    },
    {
      "target_name": "torchlm_testing",
      "sources": ["<!@(node scripts/native-build.mjs sources testing)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "dependencies": ["torchlm_binding", "torchlm_core"],
      "libraries": [
        "-L<!(node scripts/find-libtorch.mjs --lib)",
        "-Wl,-rpath,<!(node scripts/find-libtorch.mjs --lib)",
        "-ltorch", "-ltorch_cpu", "-lc10", "-ldl"
      ]
    }
  ]
}
