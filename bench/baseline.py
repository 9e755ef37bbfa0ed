#!/usr/bin/env python3
"""PyTorch-from-Python baseline for `npm run bench`: the same weights (read with the reference's own
safetensors reader), the same thread count, the same shapes. Prints one JSON object."""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from reference import read_safetensors, gpt2_forward, lm_loss  # noqa: E402


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def timed(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return median(out)


def decode_with_cache(w, cfg, ids, n):
    """Greedy decoding with a KV cache, as Hugging Face's generate does (cache grown by concatenation)."""
    E, H = cfg["n_embd"], cfg["n_head"]
    D = E // H
    B, T = ids.shape
    past = [None] * cfg["n_layer"]
    pos0 = 0
    x_ids = ids
    for step in range(n):
        T = x_ids.shape[1]
        pos = torch.arange(pos0, pos0 + T).unsqueeze(0)
        x = w["wte.weight"][x_ids] + w["wpe.weight"][pos]
        for i in range(cfg["n_layer"]):
            p = f"h.{i}."
            h = F.layer_norm(x, (E,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], 1e-5)
            q, k, v = torch.addmm(w[p + "attn.c_attn.bias"], h.view(-1, E), w[p + "attn.c_attn.weight"]).view(B, T, 3 * E).split(E, dim=2)
            q, k, v = [t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v)]
            if past[i] is not None:
                k = torch.cat([past[i][0], k], dim=2)
                v = torch.cat([past[i][1], v], dim=2)
            past[i] = (k, v)
            att = (q @ k.transpose(-1, -2)) / (D ** 0.5)
            if T > 1:
                att = att.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
            y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, E)
            x = x + torch.addmm(w[p + "attn.c_proj.bias"], y.view(-1, E), w[p + "attn.c_proj.weight"]).view(B, T, E)
            h = F.layer_norm(x, (E,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], 1e-5)
            h = F.gelu(torch.addmm(w[p + "mlp.c_fc.bias"], h.view(-1, E), w[p + "mlp.c_fc.weight"]), approximate="tanh")
            x = x + torch.addmm(w[p + "mlp.c_proj.bias"], h, w[p + "mlp.c_proj.weight"]).view(B, T, E)
        x = F.layer_norm(x[:, -1], (E,), w["ln_f.weight"], w["ln_f.bias"], 1e-5)
        nxt = (x @ w["wte.weight"].t()).argmax(-1, keepdim=True)
        pos0 += T
        x_ids = nxt


def status_bytes(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


def main():
    cfg_dir, threads = sys.argv[1], int(sys.argv[2])
    which = sys.argv[3].split(",") if len(sys.argv) > 3 else ["forward", "train", "decode1", "decode8"]
    torch.set_num_threads(threads)
    with open(os.path.join(cfg_dir, "config.json")) as f:
        cfg = json.load(f)
    baseline_rss = status_bytes("VmRSS")
    t = time.perf_counter()
    w, _ = read_safetensors(os.path.join(cfg_dir, "model.safetensors"))
    w = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}
    out = {"load_s": time.perf_counter() - t, "torch": torch.__version__, "threads": threads}
    g = torch.Generator().manual_seed(0)
    if which == ["rss"]:
        # a fresh process's peak memory for load + 32 greedy tokens, as the bench's rss-worker measures torchlm's
        with torch.no_grad():
            decode_with_cache(w, cfg, torch.randint(0, cfg["vocab_size"], (1, 8), generator=g), 32)
        weights = sum(v.numel() * 4 for v in w.values())
        out.update(baseline_rss_bytes=baseline_rss, max_rss_bytes=status_bytes("VmHWM"), weights_bytes=weights)
        print(json.dumps(out))
        return
    ids = torch.randint(0, cfg["vocab_size"], (16, 64), generator=g)
    if "forward" in which:
        with torch.no_grad():
            s = timed(lambda: gpt2_forward(w, cfg, ids), 1, 3)
        out["forward_tokens_per_s"] = 16 * 64 / s
    if "train" in which:
        params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
        opt = torch.optim.AdamW(list(params.values()), lr=1e-4, weight_decay=0.1)

        def step():
            loss = lm_loss(gpt2_forward(params, cfg, ids), ids)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        s = timed(step, 1, 2)
        out["train_tokens_per_s"] = 16 * 64 / s
        del params, opt
    prompt = torch.randint(0, cfg["vocab_size"], (1, 8), generator=g)
    with torch.no_grad():
        if "decode1" in which:
            s = timed(lambda: decode_with_cache(w, cfg, prompt, 128), 1, 3)
            out["decode_b1_tokens_per_s"] = 128 / s
        if "decode8" in which:
            p8 = torch.randint(0, cfg["vocab_size"], (8, 8), generator=g)
            s = timed(lambda: decode_with_cache(w, cfg, p8, 128), 1, 2)
            out["decode_b8_tokens_per_s"] = 8 * 128 / s
    print(json.dumps(out))


if __name__ == "__main__":
    main()
