#!/usr/bin/env python3
"""PyTorch reference for torchlm's parity tests (plain PyTorch 2, no transformers needed).

Builds the tiny GPT-2 of the tests from a seed with the same counter-hash generator as
test/helpers/tiny.ts, runs an independent GPT-2 written here with torch.nn.functional, and writes
golden files: `npm test` writes them to .cache/references/ in each run (scripts/references.mjs), with the
pinned torch of .venv-test; `npm run fixtures` refreshes the copy in test/fixtures/ that the GPU check reads.
With --models DIR it also writes the weights as safetensors (hub and saved layouts, F32/F16/BF16).

    .venv-test/bin/python scripts/reference.py --out .cache/references
    .venv-test/bin/python scripts/reference.py --models /tmp/tiny
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


ST_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    """A reader independent of torchlm's: header JSON, then the bytes at data_offsets."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        raw = bytearray(data[b:en])
        dt = ST_TORCH[e["dtype"]]
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dt)
        out[name] = t.reshape(e["shape"]).float()
    return out, header.get("__metadata__")


def check_saved(d, ids):
    """Logits and loss of a directory saved by torchlm, computed here (used by test/hub.test.ts)."""
    w, meta = read_safetensors(os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    keys = sorted(w)
    w = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}
    ids = torch.tensor(ids)
    logits = gpt2_forward(w, cfg, ids)
    cols, picked = pick(logits)
    print(json.dumps({"keys": keys, "metadata": meta, "logits": picked, "loss": lm_loss(logits, ids).item()}))


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


def scheduler_tables():
    """Hugging Face's schedule formulas (transformers.optimization), through torch's LambdaLR."""
    W, T, lr = 3, 12, 1e-3

    def warm(s):
        return s / max(1, W)

    def cosine(s, cycles=0.5):
        if s < W:
            return warm(s)
        p = (s - W) / max(1, T - W)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * p)))

    def restarts(s, cycles=1):
        if s < W:
            return warm(s)
        p = (s - W) / max(1, T - W)
        if p >= 1.0:
            return 0.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * p) % 1.0))))

    def poly(s, lr_end=1e-7, power=1.0):
        if s < W:
            return warm(s)
        if s > T:
            return lr_end / lr
        return ((lr - lr_end) * (1 - (s - W) / (T - W)) ** power + lr_end) / lr

    def inv_sqrt(s):
        ts = W or 10000
        if s < W:
            return warm(s)
        return 1.0 / math.sqrt((s + ts - W) / ts)

    lambdas = {
        "linear": lambda s: warm(s) if s < W else max(0.0, (T - s) / max(1, T - W)),
        "cosine": cosine, "cosine_with_restarts": restarts, "polynomial": poly,
        "constant": lambda s: 1.0, "constant_with_warmup": lambda s: warm(s) if s < W else 1.0, "inverse_sqrt": inv_sqrt,
    }
    out = {"warmup": W, "total": T, "lr": lr, "tables": {}}
    for name, fn in lambdas.items():
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        rows = []
        for _ in range(T + 2):
            rows.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        out["tables"][name] = rows
    return out


SUM_KEYS = ["wte.weight", "wpe.weight", "h.0.attn.c_attn.weight", "h.0.ln_1.weight", "h.1.mlp.c_proj.bias", "ln_f.bias"]



# ---- generation references (no KV cache: every step recomputes the whole sequence) -----------------
def apply_processors(scores, rows, prompt_len, g):
    """Hugging Face's logits processors, in its order: repetition penalty, no-repeat n-gram, bad words, min length."""
    cur_len = len(rows[0])
    if g.get("repetition_penalty", 1.0) != 1.0:
        p = g["repetition_penalty"]
        ids = torch.tensor(rows)
        s = torch.gather(scores, 1, ids)
        s = torch.where(s < 0, s * p, s / p)
        scores = scores.scatter(1, ids, s)
    n = g.get("no_repeat_ngram_size", 0)
    if n and cur_len + 1 >= n:
        for b, r in enumerate(rows):
            prefix = tuple(r[cur_len - n + 1:])
            for i in range(cur_len - n + 1):
                if tuple(r[i:i + n - 1]) == prefix:
                    scores[b, r[i + n - 1]] = -float("inf")
    for w in g.get("bad_words_ids") or []:
        for b, r in enumerate(rows):
            if len(w) == 1 or (len(w) - 1 <= cur_len and r[cur_len - len(w) + 1:] == w[:-1]):
                scores[b, w[-1]] = -float("inf")
    eos = g.get("eos_token_id", [])
    if cur_len - prompt_len < g.get("min_new_tokens", 0):
        for e in eos:
            scores[:, e] = -float("inf")
    return scores


def warp(scores, g):
    """Temperature, top-k, top-p, in Hugging Face's order."""
    scores = scores / g.get("temperature", 1.0)
    k = g.get("top_k", 0)
    if k:
        kth = torch.topk(scores, k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    top_p = g.get("top_p", 1.0)
    if top_p < 1.0:
        sv, si = torch.sort(scores, descending=False)
        cum = sv.softmax(-1).cumsum(-1)
        remove = cum <= (1 - top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, si, remove), -float("inf"))
    return scores


def greedy_ref(w, cfg, rows, mask, g, max_new):
    """Greedy decoding of a (left-padded) batch; finished rows take the pad id."""
    rows = [list(r) for r in rows]
    mask = [list(m) for m in mask] if mask is not None else [[1] * len(r) for r in rows]
    prompt_len = len(rows[0])
    eos, pad = g.get("eos_token_id", []), g.get("pad_token_id", 0)
    done = [False] * len(rows)
    for _ in range(max_new):
        ids = torch.tensor(rows)
        m = torch.tensor(mask)
        pos = (m.cumsum(-1) - 1).clamp(min=0)
        scores = gpt2_forward(w, cfg, ids, m, pos)[:, -1].float()
        scores = apply_processors(scores, rows, prompt_len, g)
        nxt = scores.argmax(-1).tolist()
        for b in range(len(rows)):
            t = pad if done[b] else nxt[b]
            rows[b].append(t)
            mask[b].append(1)
            if not done[b] and t in eos:
                done[b] = True
        if all(done):
            break
    return rows


def beam_ref(w, cfg, prompt, g, max_new):
    """Hugging Face's beam search (BeamSearchScorer semantics) for one prompt."""
    K, lp, early = g["num_beams"], g.get("length_penalty", 1.0), g.get("early_stopping", False)
    eos, pad = g.get("eos_token_id", []), g.get("pad_token_id", 0)
    T = len(prompt)
    max_length = T + max_new
    beams = [list(prompt) for _ in range(K)]
    scores_b = [0.0] + [-1e9] * (K - 1)
    hyps, worst = [], 1e9
    done = False

    def add(seq, s, gen_len):
        nonlocal worst
        score = s / (gen_len ** lp)
        if len(hyps) < K or score > worst:
            hyps.append((score, seq))
            if len(hyps) > K:
                hyps.sort(key=lambda x: x[0])
                hyps.pop(0)
                worst = hyps[0][0]
            else:
                worst = min(score, worst)

    def is_done(best, cur_len):
        if len(hyps) < K:
            return False
        if early is True:
            return True
        return worst >= best / ((cur_len - T) ** lp)

    while len(beams[0]) < max_length:
        logp = torch.log_softmax(gpt2_forward(w, cfg, torch.tensor(beams))[:, -1].float(), -1)
        logp = apply_processors(logp, beams, T, g)
        V = logp.size(-1)
        total = (logp + torch.tensor(scores_b).unsqueeze(1)).view(-1)
        tv, ti = torch.topk(total, max(2, 1 + len(eos)) * K)
        cur_len = len(beams[0]) + 1
        nb, ns = [], []
        for rank, (v, i) in enumerate(zip(tv.tolist(), ti.tolist())):
            src, tok = i // V, i % V
            if tok in eos:
                if rank >= K:
                    continue
                add(list(beams[src]), v, cur_len - T)
            else:
                nb.append(beams[src] + [tok])
                ns.append(v)
            if len(nb) == K:
                break
        done = done or is_done(tv[0].item(), cur_len)
        beams, scores_b = nb, ns
        if done:
            break
    if not done:
        for b, s in zip(beams, scores_b):
            add(list(b), s, len(b) - T)
    best = sorted(hyps, key=lambda x: x[0])
    out = []
    for _ in range(g.get("num_return_sequences", 1)):
        out.append(best.pop()[1])
    L = min(max(len(s) for s in out) + (1 if eos else 0), max_length)
    res = []
    for s in out:
        r = s[:L] + [pad] * (L - len(s))
        if len(s) < L and eos:
            r[len(s)] = eos[0]
        res.append(r)
    return res


def generation_goldens(w, cfg):
    prompt = [464, 3290, 318]
    greedy = greedy_ref(w, cfg, [prompt], None, {}, 20)[0]
    eos_tok = greedy[len(prompt) + 4]  # a token greedy makes: as eos it stops the row early
    cases = []
    def case(name, g, max_new, prompts=None, mask=None, kind="greedy"):
        g = dict(g)
        g.setdefault("eos_token_id", [])
        g.setdefault("pad_token_id", 50256)
        if kind == "greedy":
            ids = greedy_ref(w, cfg, prompts or [prompt], mask, g, max_new)
        else:
            ids = beam_ref(w, cfg, (prompts or [prompt])[0], g, max_new)
        cases.append({"name": name, "options": g, "max_new_tokens": max_new, "prompts": prompts or [prompt], "attention_mask": mask, "ids": ids})
    case("repetition_penalty", {"repetition_penalty": 1.3}, 20)
    case("repetition_penalty_below_one", {"repetition_penalty": 0.7}, 12)
    case("no_repeat_ngram_size", {"no_repeat_ngram_size": 2}, 20)
    case("bad_words_ids", {"bad_words_ids": [[greedy[3]], [greedy[5], greedy[6]]]}, 12)
    case("eos_stops", {"eos_token_id": [eos_tok], "pad_token_id": 50256}, 20)
    case("min_new_tokens", {"eos_token_id": [eos_tok], "min_new_tokens": 8}, 12)
    pad = 50256
    case("left_padded_batch", {"eos_token_id": [eos_tok]}, 10, prompts=[[pad, pad] + prompt, [40, 1842, 7588, 13, 632]], mask=[[0, 0, 1, 1, 1], [1] * 5])
    case("beam3", {"num_beams": 3}, 12, kind="beam")
    case("beam3_lp", {"num_beams": 3, "length_penalty": 0.5, "eos_token_id": [eos_tok]}, 12, kind="beam")
    case("beam4_early", {"num_beams": 4, "early_stopping": True, "eos_token_id": [eos_tok], "num_return_sequences": 2}, 12, kind="beam")
    case("beam4_ngram", {"num_beams": 4, "no_repeat_ngram_size": 2, "num_return_sequences": 3}, 10, kind="beam")

    # The first sampled token's distribution after the warpers (for a statistical test).
    sample = {"prompt": prompt, "temperature": 0.02, "top_k": 20, "top_p": 0.6}
    logits = gpt2_forward(w, cfg, torch.tensor([prompt]))[:, -1].float()
    probs = warp(logits, sample).softmax(-1)[0]
    # the same warpers in the wrong order (top-p before temperature), which the test must tell apart
    wrong = logits.clone()
    sv, si = torch.sort(wrong, descending=False)
    cum = sv.softmax(-1).cumsum(-1)
    remove = cum <= 1 - sample["top_p"]
    remove[..., -1:] = False
    wrong = wrong.masked_fill(remove.scatter(1, si, remove), -float("inf"))
    wrong = warp(wrong, {"temperature": 0.02, "top_k": 20}).softmax(-1)[0]
    nz = torch.nonzero((probs > 0) | (wrong > 0)).view(-1)
    sample["support"] = nz.tolist()
    sample["probs"] = probs[nz].tolist()
    sample["wrong_order_probs"] = wrong[nz].tolist()
    return {"cases": cases, "sampling": sample}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", help="also write the tiny model's safetensors under this folder")
    ap.add_argument("--check-saved", help="print logits and loss of a saved directory as JSON, then stop")
    ap.add_argument("--ids", help="input ids for --check-saved, as JSON")
    ap.add_argument("--out", default=FIXTURES, help="the folder golden-tiny.json is written to")
    args = ap.parse_args()
    if args.check_saved:
        return check_saved(args.check_saved, json.loads(args.ids))
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
        "generation": generation_goldens(w, cfg),
        "schedulers": scheduler_tables(),
        "adamw": {"lr": 1e-3, "weight_decay": 0.1, "max_grad_norm": 1.0, "steps": train},
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "golden-tiny.json")
    with open(path, "w") as f:
        json.dump(golden, f)
    print(f"wrote {path} ({os.path.getsize(path)} bytes); loss {loss.item():.6f}")


if __name__ == "__main__":
    sys.exit(main())
