"""The unmodified official openai SDK against semroute's HTTP face (started by tests/openai_sdk.rs).

Checks chat (JSON and streamed, with usage), tool calls through OpenAI and Anthropic targets, response_format, embeddings, the models list, the decision
headers, and that every error status arrives as the SDK's matching exception class. Exits non-zero on
the first failure. Needs SEMROUTE_BASE_URL (e.g. http://127.0.0.1:PORT/v1).
"""

import concurrent.futures
import json
import os
import sys

import openai

base_url = os.environ["SEMROUTE_BASE_URL"]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


# Chat, JSON, through the local mock model (the route is still decided and reported in headers).
raw = client.chat.completions.with_raw_response.create(
    model="mock-echo", messages=[{"role": "user", "content": "write a haiku about routers"}]
)
r = raw.parse()
check(r.choices[0].message.content == "[mock echo] write a haiku about routers", "chat content")
check(r.choices[0].finish_reason == "stop", "finish_reason")
check(r.usage.completion_tokens == 7 and r.usage.total_tokens == r.usage.prompt_tokens + 7, "usage")
check(r.model == "echo", "model is the upstream model that answered")
check(raw.headers.get("x-semroute-model") == "mock-echo", "x-semroute-model header")
check(raw.headers.get("x-semroute-route") not in (None, ""), "x-semroute-route header")
check(raw.headers.get("x-request-id"), "x-request-id header")

# System/developer messages, content parts, parameters the router forwards.
r = client.chat.completions.create(
    model="mock-echo",
    messages=[
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
    ],
    max_completion_tokens=3,
    temperature=0.2,
    seed=7,
    response_format={"type": "json_object"},
)
check(r.choices[0].message.content == "[mock echo] one", "max_completion_tokens cuts the answer")
check(r.choices[0].finish_reason == "length", "finish_reason length")

# Streaming with usage.
stream = client.chat.completions.create(
    model="mock-echo",
    messages=[{"role": "user", "content": "stream me please"}],
    stream=True,
    stream_options={"include_usage": True},
)
text, finish, usage, roles = "", None, None, []
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.role:
            roles.append(c.delta.role)
        text += c.delta.content or ""
        finish = c.finish_reason or finish
check(roles == ["assistant"], "role first, once")
check(text == "[mock echo] stream me please", "streamed text")
check(finish == "stop", "streamed finish_reason")
check(usage is not None and usage.completion_tokens == 5, "usage chunk")

# Tool calls round-trip through an OpenAI-compatible and an Anthropic target (fake providers started by the
# test that call the first tool offered and answer with the tool's result), JSON and streamed.
tools = [{
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
for model in ("tools-oa", "tools-an"):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(model=model, messages=msgs, tools=tools, tool_choice="auto")
    calls = r.choices[0].message.tool_calls or []
    check(r.choices[0].finish_reason == "tool_calls" and len(calls) == 1, f"{model}: a tool call")
    check(calls[0].function.name == "weather" and json.loads(calls[0].function.arguments)["city"] == "Paris",
          f"{model}: the call's name and arguments")
    msgs.append(r.choices[0].message.model_dump(exclude_none=True))
    msgs.append({"role": "tool", "tool_call_id": calls[0].id, "content": "18 C and sunny"})
    r = client.chat.completions.create(model=model, messages=msgs, tools=tools)
    check(r.choices[0].message.content == "the tool said: 18 C and sunny", f"{model}: the tool result goes back")

    stream = client.chat.completions.create(model=model, messages=msgs[:1], tools=tools, stream=True)
    ids, names, args, finish = [], [], "", None
    for chunk in stream:
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                check(tc.index == 0, f"{model}: streamed call index")
                if tc.id:
                    ids.append(tc.id)
                if tc.function and tc.function.name:
                    names.append(tc.function.name)
                args += (tc.function.arguments or "") if tc.function else ""
            finish = c.finish_reason or finish
    check(len(ids) == 1 and names == ["weather"] and json.loads(args)["city"] == "Paris",
          f"{model}: streamed tool-call deltas")
    check(finish == "tool_calls", f"{model}: streamed finish_reason tool_calls")

# JSON mode on an Anthropic target (translated into a forced tool call): the content is JSON.
r = client.chat.completions.create(
    model="tools-an",
    messages=[{"role": "user", "content": "the city as JSON"}],
    response_format={"type": "json_object"},
)
check(json.loads(r.choices[0].message.content)["city"] == "Paris", "Anthropic JSON mode")

# Embeddings: one text and a batch, float and base64 (the SDK decodes base64 itself).
e = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello there", "how are you"])
check(len(e.data) == 2 and len(e.data[0].embedding) == 384, "embeddings shape")
norm = sum(x * x for x in e.data[0].embedding) ** 0.5
check(abs(norm - 1.0) < 1e-3, "embeddings are unit vectors")
check(e.usage.prompt_tokens > 0, "embeddings usage")
e64 = client.embeddings.create(model="all-MiniLM-L6-v2", input="hello there", encoding_format="base64")
check(e64.data[0].embedding == e.data[0].embedding or isinstance(e64.data[0].embedding, (str, list)), "base64")

# Models.
ids = [m.id for m in client.models.list()]
check("auto" in ids and "code" in ids and "mock-echo" in ids, "models list: alias, routes, models")

# Errors as the SDK's exception classes.
try:
    client.chat.completions.create(model="auto", messages=[{"role": "wizard", "content": "hi"}])
    check(False, "400 raised")
except openai.BadRequestError as ex:
    check(ex.status_code == 400 and "wizard" in str(ex), "400 -> BadRequestError")
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    check(False, "404 raised")
except openai.NotFoundError as ex:
    check(ex.status_code == 404, "404 -> NotFoundError")
try:
    # A real provider with no key configured: every target fails.
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    check(False, "503 raised")
except openai.InternalServerError as ex:
    check(ex.status_code == 503 and "OPENAI_API_KEY" in str(ex), "503 -> InternalServerError")

# Overload: the test server's model queue holds one job; a burst of embeddings is partly refused.
def embed_burst(_):
    try:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=["a fairly long sentence to embed " * 20] * 8)
        return "ok"
    except openai.RateLimitError as ex:
        return "429" if ex.status_code == 429 and ex.response.headers.get("retry-after") else "bad"

with concurrent.futures.ThreadPoolExecutor(16) as pool:
    outcomes = list(pool.map(embed_burst, range(48)))
check("429" in outcomes and "bad" not in outcomes, "429 with Retry-After -> RateLimitError")
print("all openai SDK checks passed")
