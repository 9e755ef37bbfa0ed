#!/usr/bin/env python3
"""References from Hugging Face transformers itself, on torchlm's tiny weights.

`npm test` runs this in each run with the pinned transformers of .venv-test (scripts/references.mjs):
    python scripts/hf-golden.py --vocab DIR --golden golden-tiny.json --out hf-golden.json --hf-checkpoint-out DIR
    python scripts/hf-golden.py --check-saved DIR --ids JSON     # a torchlm-saved directory, loaded by transformers
DIR for --vocab holds GPT-2's vocab.json and merges.txt; the tokenizer is built from them with the `tokenizers`
library (BPE, byte-level), independently of torchlm's. Each section is recorded independently: a failure is written
into the JSON as {"error": ...} rather than stopping the run.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from reference import TINY, tiny_weights, pick, greedy_ref  # noqa: E402

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    DataCollatorForLanguageModeling, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, Trainer, TrainingArguments, get_scheduler,
)

torch.manual_seed(0)
torch.use_deterministic_algorithms(True, warn_only=True)


def hf_model(cfg=TINY, weights=None):
    conf = GPT2Config(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    try:
        m = GPT2LMHeadModel(conf, attn_implementation="eager") if False else GPT2LMHeadModel(conf)
    except TypeError:
        m = GPT2LMHeadModel(conf)
    w = weights if weights is not None else tiny_weights(cfg)
    sd = {"transformer." + k: v for k, v in w.items()}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k.endswith(".attn.bias") or k.endswith("masked_bias") or k == "lm_head.weight")]
    assert not missing, missing
    m.tie_weights()
    return m.eval()


def gpt2_tokenizer(folder):
    """GPT-2's fast tokenizer from vocab.json + merges.txt, assembled with the tokenizers library."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    bpe = models.BPE.from_file(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))
    t = Tokenizer(bpe)
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")


def check_saved(d, ids):
    """A directory written by torchlm's save_pretrained, as transformers loads it: logits and loss as JSON."""
    m = GPT2LMHeadModel.from_pretrained(d).eval()
    x = torch.tensor(ids)
    with torch.no_grad():
        o = m(input_ids=x, labels=x)
    print(json.dumps({"logits": pick(o.logits)[1], "loss": o.loss.item(), "transformers_version": transformers.__version__}))


def section(out, name, fn):
    try:
        out[name] = fn()
        print(f"ok   {name}", flush=True)
    except Exception as e:  # record and go on: one run of this script must bring back as much as it can
        out[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        print(f"FAIL {name}: {e}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", help="a folder with GPT-2's vocab.json and merges.txt")
    ap.add_argument("--golden", help="golden-tiny.json of scripts/reference.py (inputs and generation cases)")
    ap.add_argument("--out")
    ap.add_argument("--hf-checkpoint-out", help="write a small checkpoint saved by transformers here")
    ap.add_argument("--check-saved", help="print the logits and loss transformers computes from this saved directory, then stop")
    ap.add_argument("--ids", help="input ids for --check-saved, as JSON")
    a = ap.parse_args()
    if a.check_saved:
        return check_saved(a.check_saved, json.loads(a.ids))
    if not (a.vocab and a.golden and a.out):
        ap.error("--vocab, --golden and --out are needed")
    golden = json.load(open(a.golden))
    tok = gpt2_tokenizer(a.vocab)
    model = hf_model()
    out = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
           "tokenizer_check": {"ids": tok("The cat is")["input_ids"], "eos_token_id": tok.eos_token_id, "natural": tok("Natural language processing is ")["input_ids"]}}
    ids = torch.tensor(golden["input_ids"])
    labels = torch.tensor(golden["labels"])

    def logits_and_loss():
        with torch.no_grad():
            o = model(input_ids=ids, labels=labels)
            p = golden["padded"]
            pi, pm, pp = torch.tensor(p["input_ids"]), torch.tensor(p["attention_mask"]), torch.tensor(p["position_ids"])
            o2 = model(input_ids=pi, attention_mask=pm, position_ids=pp)
            o3 = model(input_ids=pi, attention_mask=pm)
            l4 = model(input_ids=pi, attention_mask=pm, labels=torch.where(pm.bool(), pi, torch.tensor(-100))).loss
        return {"logits": pick(o.logits)[1], "loss": o.loss.item(), "padded_logits": pick(o2.logits)[1],
                "padded_logits_no_position_ids": pick(o3.logits)[1], "padded_loss_masked_labels": l4.item(), "columns": pick(o.logits)[0]}
    section(out, "forward", logits_and_loss)

    def generation():
        res = {}
        prompt = torch.tensor([golden["greedy"]["prompt"]])
        with torch.no_grad():
            res["greedy"] = model.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=50256).tolist()
            cases = []
            for c in golden["generation"]["cases"]:
                o = dict(c["options"])
                kw = {"max_new_tokens": c["max_new_tokens"], "do_sample": False, "pad_token_id": o.pop("pad_token_id", 50256)}
                eos = o.pop("eos_token_id", [])
                kw["eos_token_id"] = eos if eos else None
                kw.update(o)
                inp = torch.tensor(c["prompts"])
                am = torch.tensor(c["attention_mask"]) if c["attention_mask"] else None
                try:
                    g = model.generate(inp, attention_mask=am, **kw).tolist()
                    cases.append({"name": c["name"], "options": kw, "prompts": c["prompts"], "attention_mask": c["attention_mask"], "ids": g})
                except Exception as e:
                    cases.append({"name": c["name"], "error": str(e)})
            res["cases"] = cases
        return res
    section(out, "generation", generation)

    def pipe():
        from transformers import pipeline
        p = pipeline("text-generation", model=model, tokenizer=tok, device="cpu")
        r = p("The cat is", do_sample=False, max_new_tokens=10)
        r2 = p("The cat is", do_sample=False, max_new_tokens=10, return_full_text=False)
        return {"prompt": "The cat is", "max_new_tokens": 10, "full": r, "new_only": r2}
    section(out, "pipeline", pipe)

    def collator():
        res = []
        tok.pad_token = tok.eos_token
        feats = [{"input_ids": [5, 6, 7]}, {"input_ids": [8, 50256]}, {"input_ids": [9, 10, 11, 12, 13]}]
        for side in ("right", "left"):
            tok.padding_side = side
            for mult in (None, 4):
                c = DataCollatorForLanguageModeling(tok, mlm=False, pad_to_multiple_of=mult)
                b = c(feats)
                res.append({"padding_side": side, "pad_to_multiple_of": mult, "features": feats,
                            **{k: v.tolist() for k, v in b.items()}})
        tok.padding_side = "right"
        return res
    section(out, "collator", collator)

    def trainer_runs():
        from torch.utils.data import Dataset, SequentialSampler

        g = torch.Generator().manual_seed(5)
        rows = torch.randint(0, 50000, (16, 16), generator=g).tolist()  # no pad (= eos) tokens anywhere

        class DS(Dataset):
            def __len__(self):
                return len(rows)

            def __getitem__(self, i):
                return {"input_ids": rows[i]}

        class SeqTrainer(Trainer):
            def _get_train_sampler(self, *args, **kwargs):
                return SequentialSampler(self.train_dataset)

        tok.pad_token = tok.eos_token
        res = {"rows": rows, "runs": []}
        for sched in ("constant", "cosine"):
            m = hf_model()
            m.train()
            args = TrainingArguments(output_dir=os.path.join(tempfile.gettempdir(), f"hf-golden-{sched}"), per_device_train_batch_size=2, gradient_accumulation_steps=2,
                                     max_steps=5, learning_rate=1e-3, weight_decay=0.1, max_grad_norm=1.0, lr_scheduler_type=sched,
                                     logging_steps=1, save_strategy="no", report_to="none", seed=42, use_cpu=True, disable_tqdm=True,
                                     dataloader_drop_last=False)
            t = SeqTrainer(model=m, args=args, train_dataset=DS(), data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
            t.train()
            res["runs"].append({"lr_scheduler_type": sched, "log_history": t.state.log_history})
        tables = {}
        for name in ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"):
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.SGD([p], lr=1e-3)
            s = get_scheduler(name, opt, num_warmup_steps=3, num_training_steps=12)
            vals = []
            for _ in range(14):
                vals.append(s.get_last_lr()[0])
                opt.step()
                s.step()
            tables[name] = vals
        res["scheduler_tables"] = tables
        return res
    section(out, "trainer", trainer_runs)

    def hf_checkpoint():
        if not a.hf_checkpoint_out:
            return {"skipped": "no --hf-checkpoint-out"}
        small = dict(TINY, vocab_size=1000, n_positions=32, n_embd=32, n_head=2)
        m = hf_model(small)
        m.save_pretrained(a.hf_checkpoint_out)
        x = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16]])
        with torch.no_grad():
            o = m(input_ids=x, labels=x)
        return {"dir": os.path.basename(a.hf_checkpoint_out), "input_ids": x.tolist(), "logits_sum": o.logits.double().sum().item(),
                "logits_first_row": o.logits[0, 0].tolist(), "loss": o.loss.item(), "files": sorted(os.listdir(a.hf_checkpoint_out))}
    section(out, "hf_checkpoint", hf_checkpoint)

    with open(a.out, "w") as f:
        json.dump(out, f)
    print("wrote", a.out)


if __name__ == "__main__":
    sys.exit(main())
