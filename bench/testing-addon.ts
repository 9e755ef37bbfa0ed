// The tests and the bench run the testing addon, torchlm_testing.node: the shipped addon's code and exports plus the
// probes (bench/probes.ts). Imported before the library loads its addon, it sets TORCHLM_BINARY to it, unless a build
// of
// its own was named already (scripts/cuda-build.sh, scripts/sanitize.sh). Child processes inherit the choice.
import { join } from "node:path";
import { packageRoot } from "../lib/package_root.js";

process.env.TORCHLM_BINARY ??= join(packageRoot(), "build", "Release", "torchlm_testing.node");
