"""The chat-template reference of test/chat_template.test.ts, from transformers' own apply_chat_template.

make OUT: trains a small byte-level BPE tokenizer per template with the `tokenizers` library (the template's control
tokens as special tokens; Llama 3's BOS added by its post-processor), saves each with transformers beside the real
template (test/fixtures/chat_templates), and prints, for each conversation, the text and ids transformers renders.
render DIR CASES: renders the cases (a JSON file) with the tokenizer saved in DIR, to check what torchlm saved.
"""

import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "test", "fixtures", "chat_templates")

# SmolLM2's template is ChatML with a default system prompt (it is not among llama.cpp's fixtures).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN = CHATML + ["<tool_call>", "</tool_call>", "<think>", "</think>"]
LLAMA3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
          "<|eom_id|>", "<|python_tag|>"]

# Qwen2's own pipeline (its tokenizer.json's, which transformers 5's Qwen2Tokenizer rebuilds whatever the file says):
# NFC, then its split pattern (digits one by one), then bytes.
QWEN_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

SPECS = {
    "qwen2.5": dict(file="Qwen-Qwen2.5-7B-Instruct.jinja", special=QWEN, eos="<|im_end|>", pad="<|endoftext|>",
                    cls="Qwen2Tokenizer"),
    "qwen3": dict(file="Qwen-Qwen3-0.6B.jinja", special=QWEN, eos="<|im_end|>", pad="<|endoftext|>",
                  cls="Qwen2Tokenizer"),
    "llama3.2": dict(file="meta-llama-Llama-3.2-3B-Instruct.jinja", special=LLAMA3, bos="<|begin_of_text|>",
                     eos="<|eot_id|>", pad="<|end_of_text|>", cls="PreTrainedTokenizerFast"),
    "smollm3": dict(file="HuggingFaceTB-SmolLM3-3B.jinja", special=CHATML, eos="<|im_end|>", pad="<|endoftext|>",
                    cls="PreTrainedTokenizerFast"),
    "smollm2": dict(template=SMOLLM2, special=CHATML, bos="<|im_start|>", eos="<|im_end|>", pad="<|endoftext|>",
                    cls="GPT2Tokenizer"),
    # tokenizer_config.json's add_bos_token / add_eos_token, which transformers 5 leaves to tokenizer.json's own
    # post-processor for a PreTrainedTokenizerFast (TokenizersBackend): they add nothing here
    "bos-eos-flags": dict(template=SMOLLM2, special=["<s>", "</s>"] + CHATML, bos="<s>", eos="</s>",
                          pad="<|endoftext|>", cls="PreTrainedTokenizerFast",
                          flags={"add_bos_token": True, "add_eos_token": True}),
}

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the weather like in Paris today? It is sunny, 21 degrees.",
    "You are a helpful assistant. Answer briefly and politely.",
    "Les élèves étudient l'informatique à Zürich; naïve café, déjà vu.",
    "東京は日本の首都です。北京是中国的首都。",
    "Emoji too: 🙂🚀 and numbers 3.14159, 2026-12-06.",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
] * 20

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}


def cases(name):
    """The conversations every template renders (and what each template reads beyond them)."""
    date = {"date_string": "06 Dec 2026"} if name == "llama3.2" else {}
    out = [
        dict(name="system and user", messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}],
             options=dict(add_generation_prompt=True, **date)),
        dict(name="several turns, no system prompt", messages=[
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": "Hi there. How can I help?"},
            {"role": "user", "content": "Tell me a joke."}],
             options=dict(add_generation_prompt=True, **date)),
        dict(name="non-ASCII text, no generation prompt", messages=[
            {"role": "user", "content": "Les élèves à Zürich: 東京は日本の首都です 🙂🚀"},
            {"role": "assistant", "content": "Très bien ! 北京是中国的首都。"}],
             options=dict(add_generation_prompt=False, **date)),
        dict(name="a template variable", messages=[
            {"role": "user", "content": "Think about 3.14159."}],
             options=dict(add_generation_prompt=True, enable_thinking=False,
                          **({"date_string": "01 Jan 2025"} if name == "llama3.2" else {}))),
        dict(name="continue the final message", messages=[
            {"role": "user", "content": "Write a haiku."},
            {"role": "assistant", "content": "The quick brown fox "}],
             options=dict(continue_final_message=True, **date)),
    ]
    if name not in ("smollm2", "bos-eos-flags"):  # SmolLM2's template has no tools
        out.append(dict(name="tools, a tool call and its result", messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "" if name != "llama3.2" else None, "tool_calls": [
                {"type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
            {"role": "tool", "content": '{"temperature": 21, "sky": "sunny"}'}],
            options=dict(add_generation_prompt=True, tools=[WEATHER_TOOL], **date)))
    return out


def render(tok, case):
    # transformers 5 drops keys whose value is None: so must the JSON the test reads (null there)
    messages = case["messages"]
    options = dict(case["options"])
    text = tok.apply_chat_template(messages, tokenize=False, **options)
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=False, **options)
    return {"text": text, "ids": list(ids)}


def make(out):
    results = {}
    for name, spec in SPECS.items():
        template = spec.get("template") or open(os.path.join(TEMPLATES, spec["file"]), encoding="utf8").read()
        core = Tokenizer(models.BPE())
        if spec["cls"] == "Qwen2Tokenizer":
            core.normalizer = normalizers.NFC()
            core.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        else:
            core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=spec["special"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        core.train_from_iterator(CORPUS, trainer=trainer)
        if spec.get("bos") and name == "llama3.2":
            bos = spec["bos"]
            core.post_processor = processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, core.token_to_id(bos))])
        else:
            core.post_processor = processors.ByteLevel(trim_offsets=False)
        named = {k: spec[k] for k in ("bos", "eos", "pad") if spec.get(k)}
        tok = PreTrainedTokenizerFast(
            tokenizer_object=core, **{f"{k}_token": v for k, v in named.items()},
            extra_special_tokens=[t for t in spec["special"] if t not in named.values()],
            model_max_length=2048)
        tok.chat_template = template
        d = os.path.join(out, name)
        tok.save_pretrained(d)
        # the class the hub's files name, so that AutoTokenizer picks as it would on them
        cfg_path = os.path.join(d, "tokenizer_config.json")
        cfg = json.load(open(cfg_path))
        cfg["tokenizer_class"] = spec["cls"]
        cfg.update(spec.get("flags", {}))
        json.dump(cfg, open(cfg_path, "w"), indent=2)
        tok = AutoTokenizer.from_pretrained(d)
        rendered = [dict(case, **render(tok, case)) for case in cases(name)]
        batch_options = dict(rendered[0]["options"], padding=True)
        batch = tok.apply_chat_template([c["messages"] for c in rendered[:2]], tokenize=True, **batch_options)
        results[name] = {
            "dir": d,
            "cases": rendered,
            "batch": {"options": batch_options, "input_ids": batch["input_ids"],
                      "attention_mask": batch["attention_mask"]},
            "encode": {"text": "Hello world", "with": tok.encode("Hello world"),
                       "without": tok.encode("Hello world", add_special_tokens=False)},
            "length": len(tok),
            "special_tokens_map": tok.special_tokens_map,
            "all_special_tokens": sorted(tok.all_special_tokens),
        }
    print(json.dumps(results, ensure_ascii=False))


def render_saved(d, cases_file):
    tok = AutoTokenizer.from_pretrained(d)
    print(json.dumps([render(tok, c) for c in json.load(open(cases_file, encoding="utf8"))], ensure_ascii=False))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        render_saved(sys.argv[2], sys.argv[3])
