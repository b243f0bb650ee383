"""The official OpenAI Python client against `sintra-rt serve --http` (issue #17).

Usage: python3 openai_client.py BASE_URL MODEL > results.json
Each scenario's outcome goes into one JSON object on stdout; the Rust test checks it.
"""
import json
import sys
import threading

import openai

base, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
out = {}

out["models"] = [m.id for m in client.models.list().data]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def chat(messages, **kw):
    r = client.chat.completions.create(model=model, messages=messages, **kw)
    c = r.choices[0]
    return {"text": c.message.content, "finish": c.finish_reason, "usage": r.usage.model_dump(), "object": r.object}


def chat_stream(messages, **kw):
    pieces, finish, usage, roles = [], None, None, []
    for ch in client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}, **kw
    ):
        if ch.usage:
            usage = ch.usage.model_dump()
        for c in ch.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            if c.delta.content:
                pieces.append(c.delta.content)
            finish = c.finish_reason or finish
    return {"text": "".join(pieces), "finish": finish, "usage": usage, "chunks": len(pieces), "roles": roles}


def complete(prompt, **kw):
    r = client.completions.create(model=model, prompt=prompt, **kw)
    c = r.choices[0]
    return {"text": c.text, "finish": c.finish_reason, "usage": r.usage.model_dump()}


def complete_stream(prompt, **kw):
    pieces, finish = [], None
    for ch in client.completions.create(model=model, prompt=prompt, stream=True, **kw):
        for c in ch.choices:
            pieces.append(c.text)
            finish = c.finish_reason or finish
    return {"text": "".join(pieces), "finish": finish, "chunks": len(pieces)}


out["chat"] = chat(QUESTION, max_tokens=24, temperature=0)
out["chat_stream"] = chat_stream(QUESTION, max_tokens=24, temperature=0)
out["completion"] = complete("The capital of France is", max_tokens=16, temperature=0)
out["completion_stream"] = complete_stream("The capital of France is", max_tokens=16, temperature=0)
out["stop"] = complete("1, 2, 3, 4,", max_tokens=40, temperature=0, stop=[" 7", "\n\n"])
out["seeded"] = [
    complete("Once upon a time", max_tokens=12, temperature=0.9, top_p=0.95, seed=s)["text"] for s in (11, 11, 12)
]

CAT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
        "color": {"type": "string", "enum": ["black", "white", "ginger", "grey"]},
    },
    "required": ["name", "age", "color"],
    "additionalProperties": False,
}
out["json_schema"] = [
    chat(
        [{"role": "user", "content": "Describe a cat as JSON with its name, age and color."}],
        max_tokens=120,
        temperature=t,
        seed=5,
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": CAT, "strict": True}},
    )
    for t in (0, 0.8)
]
out["json_object"] = chat(
    [{"role": "user", "content": "Give me a JSON object about Paris."}],
    max_tokens=400,
    temperature=0,
    response_format={"type": "json_object"},
)

# Eight clients at once: each must get what it gets alone.
prompts = [f"Write the number {i} in words:" for i in range(8)]
alone = [complete(p, max_tokens=10, temperature=0)["text"] for p in prompts]
together = [None] * 8


def ask(i):
    together[i] = complete(prompts[i], max_tokens=10, temperature=0)["text"]


threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
out["concurrent"] = {"alone": alone, "together": together}

errors = {}
try:
    client.chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=4)
except openai.APIStatusError as e:
    errors["unknown_model"] = {"status": e.status_code, "body": e.body}
try:
    client.chat.completions.create(model=model, messages=QUESTION, max_tokens=4, temperature=5)
except openai.APIStatusError as e:
    errors["bad_temperature"] = {"status": e.status_code, "body": e.body}
try:
    client.chat.completions.create(model=model, messages=[], max_tokens=4)
except openai.APIStatusError as e:
    errors["no_messages"] = {"status": e.status_code, "body": e.body}
try:
    client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=4,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "a+"}}},
    )
except openai.APIStatusError as e:
    errors["unsupported_schema"] = {"status": e.status_code, "body": e.body}
out["errors"] = errors

json.dump(out, sys.stdout)
