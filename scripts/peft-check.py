#!/usr/bin/env python3
"""Python's peft and transformers on the files torchlm reads and writes (test/peft.test.ts).

    peft-check.py load  --base DIR --adapter DIR --ids JSON --out FILE [--merged DIR]
        peft loads torchlm's adapter onto transformers' model from DIR (AutoModelForCausalLM: GPT-2 or Llama-family); writes the logits for ids (and, with --merged,
        those of the merged model torchlm saved, loaded by transformers alone) to FILE as safetensors.
    peft-check.py make  --base DIR --adapter-out DIR --ids JSON --out FILE --rows JSON --steps N
        get_peft_model (r 4 on --targets, by default GPT-2's c_attn, c_proj, c_fc; B drawn at random so that the
        adapter matters), saved to
        adapter-out; its logits for ids to FILE; then the saved adapter trained N steps with transformers' Trainer
        (in order, batch 2, AdamW 1e-3, weight decay 0.1, clipping 1.0). Prints the Trainer's log_history, PEFT's
        parameter names and its trainable and total counts.
"""
import argparse
import json
import os
import tempfile

import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset, SequentialSampler
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
from peft import LoraConfig, PeftModel, get_peft_model

torch.manual_seed(0)


def logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits.float().contiguous()


def load(a):
    ids = json.loads(a.ids)
    out = {"logits": logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(a.base), a.adapter), ids)}
    if a.merged:
        out["merged"] = logits(AutoModelForCausalLM.from_pretrained(a.merged), ids)
    save_file(out, a.out)
    print(json.dumps({"ok": True}))


def make(a):
    ids = json.loads(a.ids)
    base = AutoModelForCausalLM.from_pretrained(a.base)
    conv1d = base.config.model_type == "gpt2"  # Conv1D's [in, out] weights
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=json.loads(a.targets),
                                            fan_in_fan_out=conv1d, task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    model.save_pretrained(a.adapter_out)
    save_file({"logits": logits(model, ids)}, a.out)
    names = [n for n, _ in model.named_parameters()]
    trainable, total = model.get_nb_trainable_parameters()

    rows = json.loads(a.rows)

    class DS(Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return {"input_ids": rows[i], "labels": rows[i]}

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    def collate(feats):
        x = torch.tensor([f["input_ids"] for f in feats])
        return {"input_ids": x, "labels": x.clone()}

    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(a.base), a.adapter_out, is_trainable=True)
    trained.train()
    args = TrainingArguments(output_dir=os.path.join(tempfile.gettempdir(), "peft-check"), per_device_train_batch_size=2, max_steps=a.steps, learning_rate=1e-3,
                             weight_decay=0.1, max_grad_norm=1.0, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                             report_to="none", seed=42, use_cpu=True, disable_tqdm=True)
    t = InOrder(model=trained, args=args, train_dataset=DS(), data_collator=collate)
    t.train()
    print(json.dumps({"log_history": t.state.log_history, "names": names, "trainable": trainable, "total": total}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--merged")
    p = sub.add_parser("make")
    p.add_argument("--base", required=True)
    p.add_argument("--adapter-out", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rows", required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--targets", default='["c_attn", "c_proj", "c_fc"]')
    a = ap.parse_args()
    {"load": load, "make": make}[a.cmd](a)


if __name__ == "__main__":
    main()
