# OpenAI's Python client against a torchlm serve: a completion, the same streamed, and a refused request; with
# `chat` first, the same through /v1/chat/completions with PROMPT as the user's message.
# Usage: openai-client.py [chat] BASE_URL API_KEY MODEL PROMPT MAX_TOKENS; prints one JSON line.
import json
import sys

import openai

args = sys.argv[1:]
if args[0] == "chat":
    base_url, api_key, model, prompt, max_tokens = args[1:6]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    messages = [{"role": "user", "content": prompt}]
    done = client.chat.completions.create(model=model, messages=messages, max_tokens=int(max_tokens), temperature=0)
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model=model, messages=messages, max_tokens=int(max_tokens), temperature=0, stream=True
        )
        if c.choices
    )
    try:
        client.chat.completions.create(model=model, messages=[{"role": "wizard", "content": prompt}])
        refused = None
    except openai.BadRequestError as e:
        refused = {"status": e.status_code, "body": e.body}
    print(json.dumps({"text": done.choices[0].message.content, "role": done.choices[0].message.role,
                      "finish_reason": done.choices[0].finish_reason, "usage": done.usage.model_dump(),
                      "streamed": streamed, "refused": refused}))
    sys.exit(0)

base_url, api_key, model, prompt, max_tokens = args[0:5]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
done = client.completions.create(model=model, prompt=prompt, max_tokens=int(max_tokens), temperature=0)
streamed = "".join(
    c.choices[0].text
    for c in client.completions.create(
        model=model, prompt=prompt, max_tokens=int(max_tokens), temperature=0, stream=True
    )
    if c.choices
)
try:
    client.completions.create(model=model, prompt=prompt, max_tokens=0)
    refused = None
except openai.BadRequestError as e:
    refused = {"status": e.status_code, "body": e.body}
print(
    json.dumps(
        {
            "text": done.choices[0].text,
            "finish_reason": done.choices[0].finish_reason,
            "usage": done.usage.model_dump(),
            "streamed": streamed,
            "refused": refused,
        }
    )
)
