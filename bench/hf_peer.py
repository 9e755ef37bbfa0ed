#!/usr/bin/env python3
"""Hugging Face transformers on PyTorch 2 (attn_implementation="sdpa"): the peer `npm run bench` races.

argv: WEIGHTS_DIR THREADS [DTYPE]. Loads the model (AutoModelForCausalLM: GPT-2, or the Llama family's rows), in DTYPE
(float32 unless given), prints {"ready": true, ...}, then answers one command per stdin
line with the seconds one run took, so that the harness interleaves its runs with torchlm's:
  forward           16 x 64 under torch.inference_mode()
  decode1 | decode8 greedy generate (its KV cache), 8 + 128 tokens, batch 1 or 8; the new tokens too
  train B T [bf16]  Trainer steps at B x T (AdamW, weight decay 0.1, clipping 1.0; bf16 autocast with bf16):
                    the median step time
  lora B T          the same with peft's LoRA (r 8 on GPT-2's c_attn, c_proj, c_fc, or a Llama's seven linear layers)
                    on another copy of the weights
"""
import json
import os
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

def rnd_ids(B, T, seed, vocab=50257):
    """The harness's generator (bench.ts randIds): the same prompts and batches on both sides."""
    s = seed
    rows = []
    for _ in range(B):
        row = []
        for _ in range(T):
            s = (s * 1103515245 + 12345) % 2 ** 31
            row.append(int(s / 2 ** 31 * vocab))
        rows.append(row)
    return torch.tensor(rows)


class StepTimes(TrainerCallback):
    def __init__(self):
        self.times, self.t0 = [], 0.0

    def on_step_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.t0)


class Rows(torch.utils.data.Dataset):
    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main():
    src, threads = sys.argv[1], int(sys.argv[2])
    dtype = getattr(torch, sys.argv[3] if len(sys.argv) > 3 else "float32")
    # the protocol owns stdout; whatever transformers prints (the Trainer's summary) goes to stderr
    proto = sys.stdout
    sys.stdout = sys.stderr
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(src, attn_implementation="sdpa", dtype=dtype).eval()
    load_s = time.perf_counter() - t
    vocab = model.config.vocab_size
    eos = model.generation_config.eos_token_id
    pad = eos if isinstance(eos, int) else (eos[0] if eos else 0)
    trainee = lora = None
    print(json.dumps({"ready": True, "load_s": load_s, "transformers": transformers.__version__, "torch": torch.__version__,
                      "attn_implementation": model.config._attn_implementation}), file=proto, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "forward":
            ids = rnd_ids(16, 64, 1, vocab)
            with torch.inference_mode():
                t = time.perf_counter()
                model(input_ids=ids)
                out = {"seconds": time.perf_counter() - t}
        elif cmd[0] in ("decode1", "decode8"):
            prompt = rnd_ids(1, 8, 2, vocab) if cmd[0] == "decode1" else rnd_ids(8, 8, 3, vocab)
            with torch.inference_mode():
                t = time.perf_counter()
                o = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=128, do_sample=False, pad_token_id=pad)
                out = {"seconds": time.perf_counter() - t, "tokens": o[0, prompt.shape[1]:].tolist()}
        elif cmd[0] in ("train", "lora"):
            B, T, bf16 = int(cmd[1]), int(cmd[2]), "bf16" in cmd[3:]
            if cmd[0] == "lora":
                if lora is None:
                    from peft import LoraConfig, get_peft_model
                    gpt2 = model.config.model_type == "gpt2"
                    targets = ["c_attn", "c_proj", "c_fc"] if gpt2 else ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
                    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(src, attn_implementation="sdpa"),
                                          LoraConfig(r=8, lora_alpha=16, target_modules=targets, fan_in_fan_out=gpt2, task_type="CAUSAL_LM"))
                subject = lora
            else:
                if trainee is None:  # a copy, so that training never changes the weights the other commands use
                    trainee = AutoModelForCausalLM.from_pretrained(src, attn_implementation="sdpa")
                subject = trainee
            subject.train()
            steps = 3
            ids = rnd_ids(B * steps, T, 1, vocab)
            cb = StepTimes()
            args = TrainingArguments(output_dir=os.path.join(src, "hf-trainer"), per_device_train_batch_size=B, max_steps=steps,
                                     learning_rate=1e-4, weight_decay=0.1, max_grad_norm=1.0, logging_steps=1000, save_strategy="no",
                                     report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=42, bf16=bf16)
            Trainer(model=subject, args=args, train_dataset=Rows(ids), callbacks=[cb]).train()
            later = sorted(cb.times[1:])  # the first step also builds the optimizer state
            out = {"seconds": later[len(later) // 2]}
        else:
            out = {"error": f"unknown command {cmd[0]}"}
        print(json.dumps(out), file=proto, flush=True)


if __name__ == "__main__":
    main()
