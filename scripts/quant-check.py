#!/usr/bin/env python3
"""An independent reference for torchlm's q8 (test/quant.test.ts): transformers' GPT-2 with its Conv1D layers and
tied LM head computed from weights quantized as q8 describes it (symmetric int8 per block of 32 inputs, scale
max|w| / 127, round half to even), in float64.

    quant-check.py --model DIR --ids JSON --out FILE

FILE (safetensors) gets two [B, T, V] logits tensors:
  weights   only the weights quantized (what torchlm computes for more than 16 rows at once)
  x8        the activations entering each linear quantized per block of 32 as well (its decoding kernels)
"""
import argparse
import json

import torch
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

B = 32


def quantize(w_nk):
    """int8 values and per-block scales of w [N, K] along K."""
    N, K = w_nk.shape
    blocks = w_nk.double().reshape(N, K // B, B)
    s = blocks.abs().amax(-1) / 127.0
    q = torch.round(blocks / s.clamp_min(1e-30).unsqueeze(-1)).clamp(-127, 127)
    return q, s


def linear(x, w_nk, bias, quant_x):
    """x [..., K] @ W^T (+ bias) with W quantized; x too with quant_x."""
    q, s = quantize(w_nk)
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


def logits(model, ids, quant_x):
    def conv_forward(self, x):
        return linear(x, self.weight.t(), self.bias, quant_x).to(x.dtype)

    original = Conv1D.forward
    Conv1D.forward = conv_forward
    try:
        with torch.no_grad():
            h = model.transformer(input_ids=ids).last_hidden_state
            return linear(h, model.transformer.wte.weight, None, quant_x).float().contiguous()
    finally:
        Conv1D.forward = original


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    model = GPT2LMHeadModel.from_pretrained(a.model).eval()
    ids = torch.tensor(json.loads(a.ids))
    save_file({"weights": logits(model, ids, False), "x8": logits(model, ids, True)}, a.out)
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
