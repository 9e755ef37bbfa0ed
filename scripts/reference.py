#!/usr/bin/env python3
"""PyTorch reference for torchlm's parity tests (Debian's python3-torch; no transformers needed).

Builds the tiny GPT-2 of the tests from a seed with the same counter-hash generator as
test/helpers/tiny.ts, runs an independent GPT-2 written here with torch.nn.functional, and writes
small golden files to test/fixtures/. With --models DIR it also writes the weights as safetensors
(hub and saved layouts, F32/F16/BF16).

    /usr/bin/python3 scripts/reference.py            # goldens
    /usr/bin/python3 scripts/reference.py --models /tmp/tiny
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "test", "fixtures")

TINY = dict(
    model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=50257, n_positions=128, n_embd=64,
    n_layer=2, n_head=4, n_inner=None, activation_function="gelu_new", layer_norm_epsilon=1e-5,
    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=50256, eos_token_id=50256,
    initializer_range=0.02, scale_attn_weights=True, use_cache=True,
)
SEED = 1234


# ---- the shared generator (mirrors test/helpers/tiny.ts) -------------------------------------------
def hash_uniform(n, seed):
    """murmur3's 32-bit finaliser over (i + seed * 0x9E3779B9) mod 2^32 -> floats in [-1, 1)."""
    x = (np.arange(n, dtype=np.uint64) + np.uint64((seed * 0x9E3779B9) & 0xFFFFFFFF)) & np.uint64(0xFFFFFFFF)
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x85EBCA6B)
    x ^= x >> np.uint32(13)
    x *= np.uint32(0xC2B2AE35)
    x ^= x >> np.uint32(16)
    return (x >> np.uint32(8)).astype(np.float64) / 16777216.0 * 2.0 - 1.0


def expected(cfg):
    E, I = cfg["n_embd"], cfg["n_inner"] or 4 * cfg["n_embd"]
    out = [("wte.weight", [cfg["vocab_size"], E]), ("wpe.weight", [cfg["n_positions"], E])]
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        out += [(p + "ln_1.weight", [E]), (p + "ln_1.bias", [E]), (p + "attn.c_attn.weight", [E, 3 * E]),
                (p + "attn.c_attn.bias", [3 * E]), (p + "attn.c_proj.weight", [E, E]), (p + "attn.c_proj.bias", [E]),
                (p + "ln_2.weight", [E]), (p + "ln_2.bias", [E]), (p + "mlp.c_fc.weight", [E, I]),
                (p + "mlp.c_fc.bias", [I]), (p + "mlp.c_proj.weight", [I, E]), (p + "mlp.c_proj.bias", [E])]
    out += [("ln_f.weight", [E]), ("ln_f.bias", [E])]
    return out


def tiny_weights(cfg=TINY, seed=SEED):
    w = {}
    for idx, (name, shape) in enumerate(expected(cfg)):
        n = int(np.prod(shape))
        u = hash_uniform(n, seed + idx)
        if name.endswith(".bias"):
            v = u * 0.02
        elif ".ln_" in name or name.startswith("ln_"):
            v = 1.0 + u * 0.1
        else:
            v = u * 0.0346  # uniform with a standard deviation of about 0.02
        w[name] = torch.from_numpy(v.astype(np.float32).reshape(shape))
    return w


# ---- an independent GPT-2 ------------------------------------------------------------------------
def gpt2_forward(w, cfg, ids, attention_mask=None, position_ids=None):
    B, T = ids.shape
    E, H = cfg["n_embd"], cfg["n_head"]
    D = E // H
    if position_ids is None:
        position_ids = torch.arange(T).unsqueeze(0).expand(B, T)
    x = w["wte.weight"][ids] + w["wpe.weight"][position_ids]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allowed = causal.view(1, 1, T, T)
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool().view(B, 1, 1, T)
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        h = F.layer_norm(x, (E,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], cfg["layer_norm_epsilon"])
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(E, dim=2)
        q, k, v = [t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v)]
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        att = att.masked_fill(~allowed, torch.finfo(att.dtype).min)
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, E)
        x = x + (y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"])
        h = F.layer_norm(x, (E,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], cfg["layer_norm_epsilon"])
        h = F.gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + (h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"])
    x = F.layer_norm(x, (E,), w["ln_f.weight"], w["ln_f.bias"], cfg["layer_norm_epsilon"])
    return x @ w["wte.weight"].t()


def lm_loss(logits, labels):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=-100)


# ---- safetensors writer (for --models) ----------------------------------------------------------
ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_models(out, w):
    for layout in ("hub", "saved"):
        for dt in (torch.float32, torch.float16, torch.bfloat16):
            d = os.path.join(out, f"{layout}-{ST_DTYPES[dt].lower()}")
            os.makedirs(d, exist_ok=True)
            prefix = "" if layout == "hub" else "transformer."
            write_safetensors(os.path.join(d, "model.safetensors"), {prefix + k: v.to(dt) for k, v in w.items()}, {"format": "pt"})
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(TINY, f, indent=2)


# ---- goldens ---------------------------------------------------------------------------------------
def pick(logits):
    """A small, fixed view of [B, T, V] logits: the first 16 classes and 16 spread over the vocabulary."""
    V = logits.size(-1)
    cols = list(range(16)) + [int(c) for c in np.linspace(16, V - 1, 16)]
    return cols, logits[..., cols].tolist()


def greedy_no_cache(w, cfg, prompt, n):
    ids = torch.tensor([prompt])
    for _ in range(n):
        nxt = gpt2_forward(w, cfg, ids)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids[0].tolist()


def adamw_reference(w, cfg, ids, mask, labels, steps, lr, wd, clip, betas=(0.9, 0.999), eps=1e-8):
    params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
    decay = [p for k, p in params.items() if not (k.endswith(".bias") or "ln_" in k)]
    no_decay = [p for k, p in params.items() if (k.endswith(".bias") or "ln_" in k)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=betas, eps=eps)
    rows = []
    for _ in range(steps):
        loss = lm_loss(gpt2_forward(params, cfg, ids, mask), labels)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), clip)
        opt.step()
        opt.zero_grad()
        rows.append({"loss": loss.item(), "grad_norm": norm.item(),
                     "param_sums": {k: float(p.detach().double().sum()) for k, p in params.items() if k in SUM_KEYS}})
    return rows


SUM_KEYS = ["wte.weight", "wpe.weight", "h.0.attn.c_attn.weight", "h.0.ln_1.weight", "h.1.mlp.c_proj.bias", "ln_f.bias"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", help="also write the tiny model's safetensors under this folder")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = TINY
    w = tiny_weights()
    if args.models:
        write_models(args.models, w)

    ids = torch.tensor([[464, 3290, 318, 257, 1310, 286, 262, 4252], [40, 1842, 7588, 13, 632, 373, 257, 50256]])
    labels = ids.clone()
    labels[1, -2:] = -100
    logits = gpt2_forward(w, cfg, ids)
    loss = lm_loss(logits, labels)

    # gradients
    wg = {k: v.clone().requires_grad_(True) for k, v in w.items()}
    lg = lm_loss(gpt2_forward(wg, cfg, ids), labels)
    lg.backward()
    grads = {
        "ln_f.weight": wg["ln_f.weight"].grad.tolist(),
        "h.0.attn.c_attn.bias": wg["h.0.attn.c_attn.bias"].grad.tolist(),
        "h.1.mlp.c_proj.bias": wg["h.1.mlp.c_proj.bias"].grad.tolist(),
        "wpe.weight[0:2]": wg["wpe.weight"].grad[:2].tolist(),
    }
    grad_norms = {k: float(p.grad.double().norm()) for k, p in wg.items()}

    # left padding: row 0 is padded by 3 on the left
    pad = 50256
    short = [464, 3290, 318, 257, 1310]
    padded = torch.tensor([[pad, pad, pad] + short, ids[1].tolist()])
    pmask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [1] * 8])
    ppos = (pmask.cumsum(-1) - 1).clamp(min=0)
    plogits = gpt2_forward(w, cfg, padded, pmask, ppos)
    alone = gpt2_forward(w, cfg, torch.tensor([short]))

    cols, picked = pick(logits)
    _, ppicked = pick(plogits)
    _, apicked = pick(alone)
    low = {}
    for dt in (torch.float16, torch.bfloat16):
        wl = {k: v.to(dt).float() for k, v in w.items()}
        low[ST_DTYPES[dt]] = {"logits": pick(gpt2_forward(wl, cfg, ids))[1], "loss": lm_loss(gpt2_forward(wl, cfg, ids), labels).item()}

    # CrossEntropyLoss cases, inputs from the generator
    ce = []
    for case, (shape, reduction, smoothing) in enumerate([([6, 5], "mean", 0.0), ([6, 5], "sum", 0.0), ([6, 5], "none", 0.0),
                                                           ([3, 5, 4], "mean", 0.0), ([3, 5, 4], "none", 0.0), ([6, 5], "mean", 0.1)]):
        n = int(np.prod(shape))
        x = torch.from_numpy((hash_uniform(n, 900 + case) * 3).astype(np.float32).reshape(shape))
        tshape = [shape[0]] + shape[2:]
        t = torch.from_numpy(((hash_uniform(int(np.prod(tshape)), 950 + case) + 1) * 2.5).astype(np.int64).clip(0, 4).reshape(tshape))
        t.view(-1)[1] = -100
        out = F.cross_entropy(x, t, ignore_index=-100, reduction=reduction, label_smoothing=smoothing)
        ce.append({"input": x.tolist(), "target": t.tolist(), "reduction": reduction, "label_smoothing": smoothing, "output": out.tolist()})

    prompt = [464, 3290, 318]
    greedy = greedy_no_cache(w, cfg, prompt, 30)

    train = adamw_reference(w, cfg, ids, None, labels, steps=3, lr=1e-3, wd=0.1, clip=1.0)

    golden = {
        "config": cfg, "seed": SEED, "torch_version": torch.__version__,
        "param_sums": {k: float(v.double().sum()) for k, v in w.items()},
        "input_ids": ids.tolist(), "labels": labels.tolist(), "columns": cols, "logits": picked,
        "argmax": logits.argmax(-1).tolist(), "loss": loss.item(), "grads": grads, "grad_norms": grad_norms,
        "padded": {"input_ids": padded.tolist(), "attention_mask": pmask.tolist(), "position_ids": ppos.tolist(),
                   "logits": ppicked, "alone_logits": apicked},
        "low_precision": low, "cross_entropy": ce,
        "greedy": {"prompt": prompt, "max_new_tokens": 30, "ids": greedy},
        "adamw": {"lr": 1e-3, "weight_decay": 0.1, "max_grad_norm": 1.0, "steps": train},
    }
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.join(FIXTURES, "golden-tiny.json")
    with open(path, "w") as f:
        json.dump(golden, f)
    print(f"wrote {path} ({os.path.getsize(path)} bytes); loss {loss.item():.6f}")


if __name__ == "__main__":
    sys.exit(main())
