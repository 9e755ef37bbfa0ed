// jest globalTeardown: the run's temporary folder goes, unless TORCHLM_KEEP_TMP asks to keep it (to look at a failure).
import { rmSync } from "node:fs";
import { envFlag } from "../../scripts/python-env.mjs";

export default async function teardown() {
  const run = process.env.TORCHLM_TEST_TMP;
  if (!run) return;
  if (envFlag("TORCHLM_KEEP_TMP")) console.log(`torchlm: the test run's files are kept in ${run}`);
  else {
    try {
      rmSync(run, { recursive: true, force: true });
    } catch (e) {
      // a tmpfs a fault test left mounted: say so, and fail no test for it
      console.warn(`torchlm: could not remove ${run}: ${e.message}`);
    }
  }
}
