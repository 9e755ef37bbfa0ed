// Child process of test/fuzz.test.ts: mutates a valid safetensors file and config.json N times and loads each.
// Every load must succeed or reject with an Error; a crash or hang kills this process, which the parent reports.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
const [, , distIndex, dir, nArg] = process.argv;
const { GPT2LMHeadModel } = await import(distIndex);
const N = Number(nArg);
const good = readFileSync(join(dir, "model.safetensors"));
const goodConfig = readFileSync(join(dir, "config.json"), "utf8");
const hlen = Number(good.readBigUInt64LE(0));
let s = 12345;
const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
const ri = (n) => Math.floor(rnd() * n);
const work = join(dir, "fuzz");
mkdirSync(work, { recursive: true });
function mutateHeader(h) {
  const keys = Object.keys(h).filter((k) => k !== "__metadata__");
  const k = keys[ri(keys.length)];
  const e = h[k];
  switch (ri(9)) {
    case 0:
      e.shape = e.shape.map((d) => (rnd() < 0.5 ? -d - 1 : d));
      break;
    case 1:
      e.shape = [2 ** 40, 2 ** 40];
      break;
    case 2:
      e.data_offsets = [ri(good.length * 2), ri(good.length * 2)];
      break;
    case 3:
      e.data_offsets = h[keys[ri(keys.length)]].data_offsets;
      break;
    case 4:
      e.dtype = ["F32", "F16", "BF16", "I64", "Q8", "", 7][ri(7)];
      break;
    case 5:
      delete h[k];
      break;
    case 6:
      e.shape = [ri(100)];
      break;
    case 7:
      h[k] = "nonsense";
      break;
    case 8:
      e.data_offsets = [0, 1e300];
      break;
  }
  return h;
}
const stats = { loaded: 0, rejected: 0, other: 0 };
for (let i = 0; i < N; i++) {
  let bytes = Buffer.from(good);
  let config = goodConfig;
  const kind = ri(6);
  if (kind === 0)
    for (let f = 0; f < 1 + ri(8); f++) bytes[ri(bytes.length)] ^= 1 << ri(8); // bit flips
  else if (kind === 1)
    bytes = bytes.subarray(0, ri(bytes.length)); // truncation
  else if (kind === 2)
    bytes.writeBigUInt64LE(BigInt(ri(2 ** 31)) * BigInt(1 + ri(3)), 0); // lying header length
  else if (kind === 3) {
    // JSON edits
    const h = mutateHeader(JSON.parse(good.subarray(8, 8 + hlen).toString()));
    let text = JSON.stringify(h);
    if (rnd() < 0.1) text = text.replace('"wte.weight"', '"wte.weight":{},"wte.weight"'); // duplicate key
    // broken UTF-8 / JSON
    if (rnd() < 0.1) text = text.slice(0, ri(text.length)) + "\xff\xfe" + text.slice(ri(text.length));
    const hb = Buffer.from(text, rnd() < 0.1 ? "latin1" : "utf8");
    const lb = Buffer.alloc(8);
    lb.writeBigUInt64LE(BigInt(hb.length));
    bytes = Buffer.concat([lb, hb, good.subarray(8 + hlen)]);
  } else if (kind === 4) {
    // absurd configs
    const c = JSON.parse(goodConfig);
    const key = ["n_embd", "n_layer", "n_head", "vocab_size", "n_positions", "n_inner", "layer_norm_epsilon"][ri(7)];
    c[key] = [0, -1, 1e12, 2 ** 53, 3.5, "x", null][ri(7)];
    config = JSON.stringify(c);
  } else config = goodConfig.slice(0, ri(goodConfig.length)); // broken config
  writeFileSync(join(work, "model.safetensors"), bytes);
  writeFileSync(join(work, "config.json"), config);
  try {
    const m = await GPT2LMHeadModel.from_pretrained(work);
    await m.forward({ input_ids: [[1, 2, 3]] }).catch(() => undefined);
    await m.dispose();
    stats.loaded++;
  } catch (e) {
    if (e instanceof Error && e.message) stats.rejected++;
    else stats.other++;
  }
}
console.log(JSON.stringify(stats));
