#!/usr/bin/env python3
"""Exports the benchmark's GPT-2 weights to ONNX in the layout transformers.js loads (onnx/model.onnx with
input_ids, attention_mask, position_ids and past_key_values.N.key/value in; logits and present.N.key/value
out), with torch.onnx.export's TorchScript exporter (dynamo=False: no onnxscript needed). Usage: export_onnx.py WEIGHTS_DIR OUT_DIR"""
import json
import os
import shutil
import sys
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from reference import read_safetensors  # noqa: E402


class GPT2WithPast(torch.nn.Module):
    def __init__(self, w, cfg):
        super().__init__()
        self.cfg = cfg
        for k, v in w.items():
            self.register_buffer(k.replace(".", "_"), v.float().contiguous())

    def p(self, name):
        return getattr(self, name.replace(".", "_"))

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cfg = self.cfg
        E, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
        D = E // H
        B, T = input_ids.shape
        P = past[0].shape[2]
        x = F.embedding(input_ids, self.p("wte.weight")) + F.embedding(position_ids, self.p("wpe.weight"))
        q_pos = torch.arange(T).unsqueeze(1) + P
        k_pos = torch.arange(P + T).unsqueeze(0)
        allowed = (k_pos <= q_pos).unsqueeze(0).unsqueeze(0) & attention_mask.bool().unsqueeze(1).unsqueeze(2)
        bias = torch.where(allowed, torch.tensor(0.0), torch.tensor(torch.finfo(torch.float32).min))
        presents = []
        for i in range(L):
            pre = f"h.{i}."
            h = F.layer_norm(x, (E,), self.p(pre + "ln_1.weight"), self.p(pre + "ln_1.bias"), cfg.get("layer_norm_epsilon", 1e-5))
            qkv = h @ self.p(pre + "attn.c_attn.weight") + self.p(pre + "attn.c_attn.bias")
            q, k, v = [t.reshape(B, T, H, D).transpose(1, 2) for t in qkv.split(E, dim=2)]
            k = torch.cat([past[2 * i], k], dim=2)
            v = torch.cat([past[2 * i + 1], v], dim=2)
            presents += [k, v]
            att = (q @ k.transpose(-1, -2)) / (D ** 0.5) + bias
            y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, E)
            x = x + y @ self.p(pre + "attn.c_proj.weight") + self.p(pre + "attn.c_proj.bias")
            h = F.layer_norm(x, (E,), self.p(pre + "ln_2.weight"), self.p(pre + "ln_2.bias"), cfg.get("layer_norm_epsilon", 1e-5))
            h = F.gelu(h @ self.p(pre + "mlp.c_fc.weight") + self.p(pre + "mlp.c_fc.bias"), approximate="tanh")
            x = x + h @ self.p(pre + "mlp.c_proj.weight") + self.p(pre + "mlp.c_proj.bias")
        x = F.layer_norm(x, (E,), self.p("ln_f.weight"), self.p("ln_f.bias"), cfg.get("layer_norm_epsilon", 1e-5))
        return (x @ self.p("wte.weight").t(), *presents)


def main():
    warnings.filterwarnings("ignore")  # the tracer's notes on Python constants
    src, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    w, _ = read_safetensors(os.path.join(src, "model.safetensors"))
    w = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}
    model = GPT2WithPast(w, cfg).eval()
    E, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    B, T, P = 1, 3, 2
    past = [torch.zeros(B, H, P, E // H) for _ in range(2 * L)]
    args = (torch.ones(B, T, dtype=torch.long), torch.ones(B, P + T, dtype=torch.long), torch.arange(P, P + T).unsqueeze(0), *past)
    names_past = [f"past_key_values.{i}.{kv}" for i in range(L) for kv in ("key", "value")]
    names_present = [f"present.{i}.{kv}" for i in range(L) for kv in ("key", "value")]
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"}, "position_ids": {0: "batch", 1: "seq"},
            "logits": {0: "batch", 1: "seq"}}
    axes.update({n: {0: "batch", 2: "past"} for n in names_past})
    axes.update({n: {0: "batch", 2: "total"} for n in names_present})
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    tmp = os.path.join(out, "onnx", "model.onnx.tmp")
    with torch.no_grad():
        torch.onnx.export(model, args, tmp, input_names=["input_ids", "attention_mask", "position_ids", *names_past],
                          output_names=["logits", *names_present], dynamic_axes=axes, opset_version=14, do_constant_folding=False,
                          dynamo=False)
    os.replace(tmp, os.path.join(out, "onnx", "model.onnx"))
    cfg_out = dict(cfg, model_type="gpt2", architectures=["GPT2LMHeadModel"], use_cache=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg_out, f, indent=2)
    gen = os.path.join(src, "generation_config.json")
    if os.path.exists(gen):
        shutil.copy(gen, os.path.join(out, "generation_config.json"))


if __name__ == "__main__":
    main()
