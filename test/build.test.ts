import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dirname ?? process.cwd(), "..");

test("binding.gyp and CMakeLists.txt build the same native sources, and all of them", () => {
  const cmake = readFileSync(join(root, "CMakeLists.txt"), "utf8");
  const block = /set\(TORCHLM_SOURCES([^)]*)\)/.exec(cmake)![1]!;
  const fromCmake = block.split(/\s+/).filter(Boolean).sort();
  const gyp = JSON.parse(readFileSync(join(root, "binding.gyp"), "utf8"));
  const fromGyp = [...gyp.targets[0].sources].sort();
  expect(fromGyp).toEqual(fromCmake);
  const onDisk = readdirSync(join(root, "native")).filter((f) => f.endsWith(".cc")).map((f) => `native/${f}`).sort();
  expect(fromCmake).toEqual(onDisk);
});
