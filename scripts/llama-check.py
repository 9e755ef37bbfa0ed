#!/usr/bin/env python3
"""The independent reference for torchlm's Llama family (test/llama.test.ts): transformers' own LlamaForCausalLM,
Qwen2ForCausalLM and Qwen3ForCausalLM on PyTorch 2, made from a config with random weights.

    llama-check.py reference --config JSON --out DIR --ids JSON --padded JSON --mask JSON [--seed N] [--steps N]
        everything test/llama.test.ts compares, from one process: a model of the config's model_type with transformers'
        random initialisation saved with save_pretrained (safetensors) in DIR, and sharded by 100 KB in DIR/sharded;
        DIR/logits.safetensors with "logits"
        (ids), "padded" (the left-padded batch under its mask) and "bf16" (ids, the model in bfloat16), in float32;
        and prints {"params", "greedy", "beams", "padded_greedy", "steps"}: greedy and 3-beam search of 8 tokens on
        ids, greedy on the padded batch, and the train mode's rows
    llama-check.py logits --model DIR --ids JSON [--mask JSON] --out FILE [--dtype float32|bfloat16]
        FILE (safetensors) gets "logits" [B, T, V] in float32
    llama-check.py generate --model DIR --ids JSON --max-new N [--beams K] [--mask JSON]
        prints {"sequences": [[...]]} of greedy (or beam) search, as generate's defaults otherwise
    llama-check.py train --model DIR --ids JSON --steps N --lr LR
        N steps of torch.optim.AdamW (weight decay 0) + clip_grad_norm_(1.0) on the LM loss of ids; prints the losses and
        gradient norms
"""
import argparse
import json

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM


def load(path, dtype="float32"):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), attn_implementation="eager")
    return model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["reference", "logits", "generate", "train"])
    ap.add_argument("--padded")
    ap.add_argument("--config")
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model")
    ap.add_argument("--ids")
    ap.add_argument("--mask")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-new", type=int, default=8)
    ap.add_argument("--beams", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)

    if a.mode == "reference":
        values = json.loads(a.config)
        config = AutoConfig.for_model(values.pop("model_type"), **values)
        made = AutoModelForCausalLM.from_config(config)
        made.save_pretrained(a.out)
        made.save_pretrained(f"{a.out}/sharded", max_shard_size="100KB")  # model.safetensors.index.json + shards
        model = load(a.out)
        ids = torch.tensor(json.loads(a.ids))
        padded, mask = torch.tensor(json.loads(a.padded)), torch.tensor(json.loads(a.mask))
        out = {"params": sum(p.numel() for p in model.parameters())}
        with torch.no_grad():
            tensors = {"logits": model(input_ids=ids).logits, "padded": model(input_ids=padded, attention_mask=mask).logits}
            out["greedy"] = generate(model, ids, None, a.max_new, 1)
            out["beams"] = generate(model, ids, None, a.max_new, 3)
            out["padded_greedy"] = generate(model, padded, mask, a.max_new, 1)
            tensors["bf16"] = load(a.out, "bfloat16")(input_ids=ids).logits
        save_file({k: v.float().contiguous() for k, v in tensors.items()}, f"{a.out}/logits.safetensors")
        out["steps"] = train(model, ids, a.steps, a.lr)
        print(json.dumps(out))
        return

    model = load(a.model, a.dtype)
    ids = torch.tensor(json.loads(a.ids))
    mask = torch.tensor(json.loads(a.mask)) if a.mask else None
    if a.mode == "logits":
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask)
        save_file({"logits": out.logits.float().contiguous()}, a.out)
        print(json.dumps({"ok": True}))
    elif a.mode == "generate":
        with torch.no_grad():
            print(json.dumps({"sequences": generate(model, ids, mask, a.max_new, a.beams)}))
    else:
        print(json.dumps({"steps": train(model, ids, a.steps, a.lr)}))


def generate(model, ids, mask, max_new, beams):
    """Exactly max_new tokens (no eos), greedy or beam search."""
    seq = model.generate(input_ids=ids, attention_mask=mask if mask is not None else torch.ones_like(ids),
                         max_new_tokens=max_new, min_new_tokens=max_new, do_sample=False, num_beams=beams,
                         eos_token_id=None, pad_token_id=0)
    return seq.tolist()


def train(model, ids, steps, lr):
    """Steps of AdamW (weight decay 0) and clip_grad_norm_(1.0) on the LM loss of ids: loss and norm of each."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rows = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        rows.append({"loss": loss.item(), "grad_norm": norm.item()})
    model.eval()
    return rows


if __name__ == "__main__":
    main()
