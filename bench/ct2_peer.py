#!/usr/bin/env python3
"""CTranslate2 (PyPI) as a peer of `npm run bench`: the same weights converted with its transformers converter, greedy
decoding at batch 1 and 8, int8 and float32, 2 threads.

argv: WEIGHTS_DIR THREADS OUT_DIR. Converts once per compute type into OUT_DIR, prints {"ready": true, ...}, then answers
one command per stdin line with the seconds one run took (the harness interleaves them with torchlm's runs):
  decode1 TYPE | decode8 TYPE   greedy, 8 prompt tokens + 128 new ones (no stop before), TYPE int8 or float32
"""
import json
import os
import sys
import time

import ctranslate2
import transformers

from hf_peer import rnd_ids  # the harness's prompts, as the transformers peer makes them


def main():
    src, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    proto = sys.stdout
    sys.stdout = sys.stderr
    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(src)
    gens = {}
    for ct in ("int8", "float32"):
        d = os.path.join(out, f"ct2-{ct}")
        if not os.path.exists(os.path.join(d, "model.bin")):
            ctranslate2.converters.TransformersConverter(src).convert(d, quantization=ct, force=True)
        gens[ct] = ctranslate2.Generator(d, device="cpu", compute_type=ct, intra_threads=threads, inter_threads=1)
    print(json.dumps({"ready": True, "ctranslate2": ctranslate2.__version__}), file=proto, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] in ("decode1", "decode8"):
            prompts = rnd_ids(1, 8, 2) if cmd[0] == "decode1" else rnd_ids(8, 8, 3)
            tokens = [tok.convert_ids_to_tokens(p) for p in prompts]
            t = time.perf_counter()
            res = gens[cmd[1]].generate_batch(tokens, max_length=128, min_length=128, sampling_topk=1, include_prompt_in_result=False)
            seconds = time.perf_counter() - t
            out_ids = tok.convert_tokens_to_ids(res[0].sequences[0])
            print(json.dumps({"seconds": seconds, "tokens": out_ids, "new": len(res[0].sequences[0])}), file=proto, flush=True)
        else:
            print(json.dumps({"error": f"unknown command {cmd[0]}"}), file=proto, flush=True)


if __name__ == "__main__":
    main()
