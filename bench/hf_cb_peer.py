# transformers' continuous batching (generate_batch) on PyTorch 2, the serving bench's Python peer: N prompts of P
# tokens, T new tokens each, greedy, on the bench's weights. Prints one JSON line: output tokens/s over the call.
# Usage: hf_cb_peer.py WEIGHTS_DIR THREADS N P T
import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM, GenerationConfig

weights, threads, n, p, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
# GPT-2 on the CPU: paged attention in eager mode (what transformers' continuous batching takes there)
model = AutoModelForCausalLM.from_pretrained(weights, attn_implementation="paged|eager", dtype=torch.float32).eval()


def prompt(seed):
    s, out = seed, []
    for _ in range(p):
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(s % 50000)
    return out


config = GenerationConfig(max_new_tokens=t, do_sample=False, eos_token_id=None, pad_token_id=0)
inputs = [prompt(i + 1) for i in range(n)]
with torch.inference_mode():
    model.generate_batch(inputs[:1], generation_config=GenerationConfig(max_new_tokens=2, do_sample=False))
    start = time.perf_counter()
    out = model.generate_batch(inputs, generation_config=config)
    seconds = time.perf_counter() - start
tokens = sum(len(o.generated_tokens) for o in out.values())
print(json.dumps({"requests": n, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}))
