# OpenAI's Python client against a torchlm serve: a completion, the same streamed, and a refused request.
# Usage: openai-client.py BASE_URL API_KEY MODEL PROMPT MAX_TOKENS; prints one JSON line.
import json
import sys

import openai

base_url, api_key, model, prompt, max_tokens = sys.argv[1:6]
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
