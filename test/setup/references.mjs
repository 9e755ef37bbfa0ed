// jest globalSetup: the parity suites' references, computed in this run from the pinned PyTorch and transformers.
import { computeReferences } from "../../scripts/references.mjs";

export default async function setup() {
  computeReferences();
}
