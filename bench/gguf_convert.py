#!/usr/bin/env python3
"""llama.cpp's convert_hf_to_gguf.py, for weights whose tokenizer the bench made (bench/llama_peer.py): a byte-level
BPE vocabulary, since no model's own can be downloaded here. The converter names a BPE vocabulary's pre-tokenizer by
the hash of its tokens for a test string, and refuses a vocabulary it has never seen; this one splits text with GPT-2's
byte-level pre-tokenizer, so the converter is told "gpt-2". Everything else is the converter's own.

argv: ROOT (the llama.cpp sources: convert_hf_to_gguf.py, conversion/, gguf-py/), then the converter's arguments.
"""
import os
import runpy
import sys

root = sys.argv[1]
sys.path[:0] = [root, os.path.join(root, "gguf-py")]
from conversion.base import TextModel  # noqa: E402

TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = [os.path.join(root, "convert_hf_to_gguf.py"), *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
