#!/usr/bin/env python3
"""llama.cpp (PyPI's llama-cpp-python, which compiles it from source) as a peer of `npm run bench`: the same weights
converted to GGUF with the converter in llama.cpp's own sources (convert_hf_to_gguf.py, from the sdist of the installed
llama-cpp-python) and quantized with llama.cpp's own llama_model_quantize; greedy decoding at batch 1, 2 threads.

argv: WEIGHTS_DIR THREADS OUT_DIR. Converts once into OUT_DIR/gguf-{f32,f16,bf16,q8_0,q4_0}.gguf, prints {"ready": true,
...}, then answers one command per stdin line with the seconds one run took (the harness interleaves them with
torchlm's runs):
  decode1 TYPE   greedy, 8 prompt tokens + 128 new ones (no stop before), TYPE f32, f16, bf16, q8_0 or q4_0
"""
import ctypes
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import llama_cpp

from hf_peer import rnd_ids  # the harness's prompts, as the transformers peer makes them

HERE = os.path.dirname(os.path.abspath(__file__))  # bench/: its .peers and the converter's wrapper
FTYPES = {"f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16, "bf16": llama_cpp.LLAMA_FTYPE_MOSTLY_BF16, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0}


def converter(peers):
    """llama.cpp's convert_hf_to_gguf.py with its gguf-py, from the sdist of the installed llama-cpp-python."""
    version = llama_cpp.__version__
    root = os.path.join(peers, f"llama.cpp-{version}")
    script = os.path.join(root, "convert_hf_to_gguf.py")
    if not os.path.exists(script):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                            f"llama-cpp-python=={version}", "-d", tmp], check=True, stdout=sys.stderr)
            (sdist,) = glob.glob(os.path.join(tmp, "*.tar.gz"))
            with tarfile.open(sdist) as tf:
                prefix = f"{os.path.basename(sdist)[:-7]}/vendor/llama.cpp/"
                wanted = [m for m in tf.getmembers() if m.name.startswith(prefix) and
                          (m.name[len(prefix):] == "convert_hf_to_gguf.py" or m.name[len(prefix):].split("/")[0] in ("conversion", "gguf-py"))]
                for m in wanted:
                    m.name = m.name[len(prefix):]
                tf.extractall(root + ".part", members=wanted, filter="data")
        os.replace(root + ".part", root)
    return root


def byte_level_vocab(stage, vocab_size):
    """A byte-level BPE tokenizer of exactly vocab_size tokens (the 256 bytes, merges of a token and a byte, and last
    <|endoftext|>, which transformers' Qwen2 tokenizer would add past the end if it were missing) for weights that have
    none: llama.cpp's converter writes a model's vocabulary into the GGUF file, and llama.cpp checks it against the
    embedding's rows. Decoding speed does not depend on which vocabulary it is."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    merges, frontier = [], chars
    while len(vocab) < vocab_size - 1:
        grown = []
        for a in frontier:
            for b in chars:
                if len(vocab) == vocab_size - 1:
                    break
                if a + b not in vocab:
                    vocab[a + b] = len(vocab)
                    merges.append((a, b))
                    grown.append(a + b)
        frontier = grown
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(os.path.join(stage, "tokenizer.json"))
    with open(os.path.join(stage, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast"}, f)


def convert(src, out, threads):
    """GGUF files of the weights: f32 by the converter, the others by llama_model_quantize from it."""
    os.makedirs(out, exist_ok=True)
    paths = {t: os.path.join(out, f"gguf-{t}.gguf") for t in ("f32", *FTYPES)}
    if not os.path.exists(paths["f32"]):
        root = converter(os.path.join(HERE, ".peers"))
        with tempfile.TemporaryDirectory() as stage:
            for f in os.listdir(src):
                if f != "config.json" and os.path.isfile(os.path.join(src, f)):
                    os.symlink(os.path.abspath(os.path.join(src, f)), os.path.join(stage, f))
            with open(os.path.join(src, "config.json")) as f:
                config = json.load(f)
            # the converter reads GPT-2's context length as n_ctx, which configs written by transformers 5 leave out
            if config["model_type"] == "gpt2":
                config.setdefault("n_ctx", config["n_positions"])
            with open(os.path.join(stage, "config.json"), "w") as f:
                json.dump(config, f)
            made_vocab = not os.path.exists(os.path.join(src, "tokenizer.json"))
            if made_vocab:
                byte_level_vocab(stage, config["vocab_size"])
            env = {**os.environ, "PYTHONPATH": os.path.join(root, "gguf-py")}
            args = [stage, "--outtype", "f32", "--outfile", paths["f32"] + ".part"]
            script = ([os.path.join(HERE, "gguf_convert.py"), root] if made_vocab
                      else [os.path.join(root, "convert_hf_to_gguf.py")])
            # the converter logs every tensor: only a failure's last lines are shown
            r = subprocess.run([sys.executable, *script, *args], env=env, stdout=sys.stderr, stderr=subprocess.PIPE,
                               text=True)
            if r.returncode != 0:
                raise RuntimeError("convert_hf_to_gguf.py failed:\n" + "\n".join(r.stderr.splitlines()[-15:]))
        os.replace(paths["f32"] + ".part", paths["f32"])
    for t, ftype in FTYPES.items():
        if os.path.exists(paths[t]):
            continue
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.nthread = threads
        rc = llama_cpp.llama_model_quantize(paths["f32"].encode(), (paths[t] + ".part").encode(), ctypes.byref(params))
        if rc != 0:
            raise RuntimeError(f"llama_model_quantize to {t} failed ({rc})")
        os.replace(paths[t] + ".part", paths[t])
    return paths


def tg128(bench, path, threads):
    """Seconds for 128 generated tokens as llama-bench times them (tg128, one run)."""
    out = subprocess.run([bench, "-m", path, "-p", "0", "-n", "128", "-r", "1", "-t", str(threads), "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    (row,) = [r for r in json.loads(out) if r["n_gen"] == 128]
    return 128 / (row["samples_ts"][0] if row.get("samples_ts") else row["avg_ts"])


def main():
    src, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    proto = sys.stdout
    sys.stdout = sys.stderr
    paths = convert(src, out, threads)
    models = {t: llama_cpp.Llama(model_path=p, n_ctx=256, n_batch=64, n_threads=threads, n_threads_batch=threads, verbose=False)
              for t, p in paths.items()}
    sizes = {t: os.path.getsize(p) for t, p in paths.items()}
    # llama.cpp's own timer where bench/build-llama-server.sh built it: llama-cpp-python's Python loop costs llama.cpp
    # speed that its native tools do not lose; the tokens still come from llama-cpp-python
    bench = os.path.join(HERE, ".peers", "llama.cpp-build", "bin", "llama-bench")
    bench = bench if os.path.exists(bench) else None
    tokens_of = {}
    print(json.dumps({"ready": True, "llama_cpp_python": llama_cpp.__version__, "gguf_bytes": sizes,
                      "timer": "llama-bench tg128" if bench else "llama-cpp-python"}), file=proto, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "decode1":
            llm = models[cmd[1]]
            if bench and cmd[1] in tokens_of:
                # the tokens were taken once; each round's time is llama-bench's
                print(json.dumps({"seconds": tg128(bench, paths[cmd[1]], threads), "tokens": tokens_of[cmd[1]]}),
                      file=proto, flush=True)
                continue
            prompt = rnd_ids(1, 8, 2, llm.n_vocab())[0].tolist()
            tokens = []
            t = time.perf_counter()
            # greedy (top_k 1, no repetition penalty); generate() does not stop at the end-of-text token
            for tok in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
                tokens.append(tok)
                if len(tokens) == 128:
                    break
            seconds = time.perf_counter() - t
            tokens_of[cmd[1]] = tokens
            if bench:
                seconds = tg128(bench, paths[cmd[1]], threads)
            print(json.dumps({"seconds": seconds, "tokens": tokens}), file=proto, flush=True)
        else:
            print(json.dumps({"error": f"unknown command {cmd[0]}"}), file=proto, flush=True)


if __name__ == "__main__":
    main()
