"""serve.py: the OpenAI-compatible API, tested with the official openai client against a live server."""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import free_port

KEY = "test-key-123"



@pytest.fixture(scope="module")
def server(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    spec = root / "spec.yaml"
    spec.write_text(
        f"""\
name: served
model: {{model_name_or_path: {demo / 'tiny-model'}}}
data: {{dataset: [demo_alpaca], dataset_dir: {demo / 'data'}, template: chatml}}
inference: {{model_path: {demo / 'tiny-model'}, temperature: 0, max_new_tokens: 24}}
serve: {{api_key_env: FFC_TEST_KEY, max_request_bytes: 4096}}
"""
    )
    run = root / "run"
    subprocess.run([sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True)
    port = free_port()
    env = dict(os.environ, FFC_TEST_KEY=KEY, HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        [sys.executable, "serve.py", "--port", str(port)], cwd=run, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
        if process.poll() is not None:
            pytest.fail(process.stdout.read().decode()[-3000:])
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=120)


HELLO = [{"role": "user", "content": "What is 2 plus 3?"}]


def test_models(client):
    assert [m.id for m in client.models.list().data] == ["served"]


def test_completion_with_usage(client, demo):
    from transformers import AutoTokenizer

    from ffc.runtime.chat.templates import TEMPLATES

    done = client.chat.completions.create(model="served", messages=HELLO)
    choice = done.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-model")
    prompt = TEMPLATES["chatml"].render(HELLO, add_generation_prompt=True).text
    assert done.usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert 0 < done.usage.completion_tokens <= 24
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_streaming_matches_whole_response(client, server):
    whole = client.chat.completions.create(model="served", messages=HELLO).choices[0].message.content
    chunks = list(client.chat.completions.create(model="served", messages=HELLO, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens > 0
    raw = httpx.post(f"{server}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                     json={"model": "served", "messages": HELLO, "stream": True}, timeout=120)  # fmt: skip
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_stop_sequences_and_length(client):
    whole = client.chat.completions.create(model="served", messages=HELLO).choices[0].message.content
    assert len(whole) > 6
    stop = whole[3:6]
    cut = client.chat.completions.create(model="served", messages=HELLO, stop=[stop]).choices[0]
    assert cut.message.content == whole[: whole.index(stop)] and cut.finish_reason == "stop"
    short = client.chat.completions.create(model="served", messages=HELLO, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3


def test_concurrent_requests(client):
    def ask(i):
        return client.chat.completions.create(model="served", messages=HELLO, max_tokens=8).choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(6)))
    assert len(set(answers)) == 1  # greedy: the same answer however the requests interleave


def test_errors_are_4xx_and_the_server_keeps_serving(client, server):
    import openai

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = f"{server}/v1/chat/completions"
    assert httpx.post(url, headers=headers, content=b"{not json").status_code == 400
    assert httpx.post(url, headers=headers, json={"model": "served", "messages": []}).status_code == 400
    bad_order = httpx.post(url, headers=headers, json={"model": "served", "messages": [{"role": "assistant", "content": "hi"}]})
    assert bad_order.status_code == 400 and "messages" in bad_order.json()["error"]["message"]
    huge = httpx.post(url, headers=headers, json={"model": "served", "messages": [{"role": "user", "content": "x" * 10000}]})
    assert huge.status_code == 413
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="served", messages=HELLO, temperature=5)
    assert client.chat.completions.create(model="served", messages=HELLO).choices[0].message.content is not None


def test_tool_calls_are_returned_in_openai_form():
    """A model that answers in its template's tool-call format gets tool_calls, streamed or not."""
    from fastapi.testclient import TestClient

    from ffc.runtime.chat.templates import TEMPLATES
    from ffc.runtime.inference import Completion, GenerationOptions, parse_tool_calls
    from ffc.runtime.server import create_app

    class Engine:
        template = TEMPLATES["qwen"]
        defaults = GenerationOptions(temperature=0)

        def generate(self, messages, options, system=None, tools=None):
            self.seen = (messages, tools)
            text, calls = parse_tool_calls(self.template, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
            return Completion(text, 10, 5, "tool_calls", calls)

    engine = Engine()
    api = TestClient(create_app(engine, "m"))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
    ]
    body = api.post("/v1/chat/completions", json={"model": "m", "messages": history, "tools": tools}).json()
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert [m["role"] for m in engine.seen[0]] == ["user", "function", "observation"]
    stream = api.post("/v1/chat/completions", json={"model": "m", "messages": history[:1], "tools": tools, "stream": True}).text
    events = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {")]
    assert any(e["choices"] and e["choices"][0]["delta"].get("tool_calls") for e in events)
    assert stream.rstrip().endswith("data: [DONE]")
