#!/usr/bin/env python3
"""Hugging Face transformers on the GPU machine, same shapes as bench/gpu-check.ts: greedy generate at batch 1
(8 + 128 tokens) and training tokens/s at 16 x 64 (fp16 autocast + GradScaler, AdamW, clipping) and 8 x 1024
(bf16 autocast). Prints one JSON object."""
import json
import time

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel


def timed(fn, warm, runs):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def main():
    torch.manual_seed(0)
    out = {"transformers": transformers.__version__, "torch": torch.__version__, "gpu": torch.cuda.get_device_name()}
    m = GPT2LMHeadModel(GPT2Config(resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)).cuda()
    N = sum(p.numel() for p in m.parameters())
    ids = lambda B, T: torch.randint(0, 50257, (B, T), device="cuda")
    m.eval()
    with torch.no_grad():
        out["forward_16x64_tokens_per_s"] = 1024 / timed(lambda: m(ids(16, 64)), 2, 5)
        p = ids(1, 8)
        out["decode_b1_greedy_tokens_per_s"] = 128 / timed(lambda: m.generate(p, max_new_tokens=128, min_new_tokens=128, do_sample=False, pad_token_id=50256), 1, 3)
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-5, weight_decay=0.1)
    scaler = torch.amp.GradScaler("cuda")

    def step(x, dtype, use_scaler):
        with torch.autocast("cuda", dtype=dtype):
            loss = m(input_ids=x, labels=x).loss
        if use_scaler:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
        opt.zero_grad(set_to_none=True)
    x16, x8 = ids(16, 64), ids(8, 1024)
    out["train_16x64_fp16_tokens_per_s"] = 1024 / timed(lambda: step(x16, torch.float16, True), 2, 5)
    out["train_8x1024_bf16_tokens_per_s"] = 8192 / timed(lambda: step(x8, torch.bfloat16, False), 2, 5)
    out["mfu_8x1024_bf16"] = out["train_8x1024_bf16_tokens_per_s"] * (6 * N + 12 * 12 * 1024 * 768) / 989e12
    print(json.dumps(out))


if __name__ == "__main__":
    main()
