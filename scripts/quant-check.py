#!/usr/bin/env python3
"""An independent reference for torchlm's q8 and q4 (test/quant.test.ts): transformers' GPT-2 with its Conv1D layers
and tied LM head, or a Llama-family model with its blocks' nn.Linear layers and its LM head (tied or not), computed from
weights quantized as each scheme describes it, in float64:
  q8  symmetric int8 per block of 32 inputs, scale max|w| / 127 stored as float16, w / scale rounded half to even
      (llama.cpp's q8_0);
  q4  per block of 32, d = m / -8 for the block's value m of largest magnitude (the first on a tie) stored as float16,
      u = floor(w / d + 8.5) clamped to 0..15, w ~ (u - 8) d (llama.cpp's q4_0); the tied LM head in q6, the same
      scheme on -32..31 (d = m / -32, u = floor(w / d + 32.5) clamped to 0..63, w ~ (u - 32) d); the LM head,
      tied or not, likewise.
The values are computed against the stored (float16) scale; the float16 is the one nearest the float32 nearest the
double, as torch's .float().half() gives.

    quant-check.py --model DIR --ids JSON --out FILE [--bits 8|4]

FILE (safetensors) gets [B, T, V] logits tensors:
  weights   only the weights quantized (what torchlm computes for more than 16 rows at once)
  x8        the activations entering each linear quantized per block of 32 as well (its decoding kernels)
  x8_kv16   x8 with each key and value rounded to bfloat16 before attention (a Llama-family prompt through the KV
            cache, which q8 / q4 keep in bfloat16)
"""
import argparse
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
from transformers.pytorch_utils import Conv1D

B = 32


def quantize(w_nk, bits):
    """Integer values and per-block scales of w [N, K] along K."""
    N, K = w_nk.shape
    blocks = w_nk.double().reshape(N, K // B, B)
    if bits in (4, 6):
        half = 8.0 if bits == 4 else 32.0
        m = torch.gather(blocks, -1, blocks.abs().argmax(-1, keepdim=True)).squeeze(-1)
        d = (m / -half).float().half().double()
        inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
        u = torch.floor(blocks * inv.unsqueeze(-1) + half + 0.5).clamp(0, 2 * half - 1)
        return u - half, d
    s = (blocks.abs().amax(-1) / 127.0).float().half().double()
    q = torch.round(blocks / s.clamp_min(1e-30).unsqueeze(-1)).clamp(-127, 127)
    return q, s


def linear(x, w_nk, bias, quant_x, bits):
    """x [..., K] @ W^T (+ bias) with W quantized to `bits`; x to int8 too with quant_x."""
    q, s = quantize(w_nk, bits)
    N, K = w_nk.shape
    xb = x.double().reshape(-1, K // B, B)
    if quant_x:
        sx = xb.abs().amax(-1) / 127.0  # [M, nb]
        xq = torch.round(xb / sx.clamp_min(1e-300).unsqueeze(-1))
        y = torch.einsum("mbi,nbi,nb,mb->mn", xq, q, s, sx)
    else:
        y = torch.einsum("mbi,nbi,nb->mn", xb, q, s)
    if bias is not None:
        y = y + bias.double()
    return y.reshape(*x.shape[:-1], N)


def logits(model, ids, quant_x, bits, kv16=False):
    head_bits = 6 if bits == 4 else 8
    if model.config.model_type == "gpt2":
        layer, base, weight = Conv1D, model.transformer, lambda m: m.weight.t()
    else:  # the blocks' linear layers; the head is computed below
        layer, base, weight = torch.nn.Linear, model.model, lambda m: m.weight

    def forward(self, x):
        return linear(x, weight(self), self.bias, quant_x, bits).to(x.dtype)

    original = layer.forward
    layer.forward = forward
    # the modeling file's eager attention, called with keys and values (rotated, as the cache holds them) rounded
    modeling = sys.modules[type(base.layers[0].self_attn).__module__] if kv16 else None
    eager = modeling.eager_attention_forward if kv16 else None
    if kv16:
        def rounded(module, query, key, value, *args, **kwargs):
            as16 = lambda t: t.to(torch.bfloat16).to(t.dtype)
            return eager(module, query, as16(key), as16(value), *args, **kwargs)
        modeling.eager_attention_forward = rounded
    try:
        with torch.no_grad():
            h = base(input_ids=ids).last_hidden_state
            return linear(h, model.get_output_embeddings().weight, None, quant_x, head_bits).float().contiguous()
    finally:
        layer.forward = original
        if kv16:
            modeling.eager_attention_forward = eager


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bits", type=int, choices=[8, 4], default=8)
    a = ap.parse_args()
    model = AutoModelForCausalLM.from_pretrained(a.model, attn_implementation="eager").eval()
    ids = torch.tensor(json.loads(a.ids))
    out = {"weights": logits(model, ids, False, a.bits), "x8": logits(model, ids, True, a.bits)}
    if model.config.model_type != "gpt2":
        out["x8_kv16"] = logits(model, ids, True, a.bits, kv16=True)
    save_file(out, a.out)
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
