"""serve.py: the OpenAI-compatible API, tested with the official openai client against a live server."""

import json
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

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
model: {{model_name_or_path: {demo / "tiny-model"}}}
data: {{dataset: [demo_alpaca], dataset_dir: {demo / "data"}, template: chatml}}
inference: {{model_path: {demo / "tiny-model"}, temperature: 0, max_new_tokens: 24}}
serve: {{api_key_env: FFC_TEST_KEY, max_request_bytes: 4096}}
"""
    )
    run = root / "run"
    subprocess.run([sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True)
    port = free_port()
    env = dict(os.environ, FFC_TEST_KEY=KEY, HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        [sys.executable, "serve.py", "--port", str(port)],
        cwd=run,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
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
    chunks = list(
        client.chat.completions.create(
            model="served", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
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
    bad_order = httpx.post(
        url, headers=headers, json={"model": "served", "messages": [{"role": "assistant", "content": "hi"}]}
    )
    assert bad_order.status_code == 400 and "messages" in bad_order.json()["error"]["message"]
    huge = httpx.post(
        url, headers=headers, json={"model": "served", "messages": [{"role": "user", "content": "x" * 10000}]}
    )
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
        context_length = None

        def prompt_ids(self, messages, system=None, tools=None):
            self.seen = (messages, tools)
            return list(range(10))

        def stream(self, messages, options, system=None, tools=None, **generate_args):
            raw = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
            text, calls = parse_tool_calls(self.template, raw)
            self.last = Completion(text, 10, 5, "tool_calls", calls)
            yield raw

    engine = Engine()
    api = TestClient(create_app(engine, "m"))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
    ]
    body = api.post("/v1/chat/completions", json={"model": "m", "messages": history, "tools": tools}).json()
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert [m["role"] for m in engine.seen[0]] == ["user", "function", "observation"]
    stream = api.post(
        "/v1/chat/completions", json={"model": "m", "messages": history[:1], "tools": tools, "stream": True}
    ).text
    events = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {")]
    assert any(e["choices"] and e["choices"][0]["delta"].get("tool_calls") for e in events)
    assert stream.rstrip().endswith("data: [DONE]")


# -- robustness: cancellation, limits, queueing, malformed requests ---------------------------------------------

# The tiny model's greedy answer to this runs past 2,000 tokens; its first words come at once, the rest (bytes
# without a space) only at the end, as TextIteratorStreamer holds text back until a word is complete.
RAMBLE = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def engine(demo):
    from ffc.runtime.chat.templates import TEMPLATES
    from ffc.runtime.inference import GenerationOptions, HFEngine, load_model

    model, tokenizer = load_model(str(demo / "tiny-model"))
    return HFEngine(model, tokenizer, TEMPLATES["chatml"], GenerationOptions(temperature=0, max_new_tokens=16))


class Watched:
    """The real engine with every token slowed to at least ``delay`` s (so a fast machine cannot finish before
    the test interrupts), reporting each finished generation and whether ``should_stop`` ended it."""

    def __init__(self, engine, delay: float = 0.005):
        self.engine, self.delay = engine, delay
        self.finished: queue.Queue = queue.Queue()

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, *args, should_stop=None, **kwargs):
        interrupted = []

        def stop() -> bool:
            time.sleep(self.delay)
            if should_stop is not None and should_stop():
                interrupted.append(True)
            return bool(interrupted)

        yield from self.engine.stream(*args, should_stop=stop, **kwargs)
        self.last = self.engine.last
        self.finished.put((self.last, bool(interrupted)))


class Gate:
    """An engine whose every answer waits for ``release`` and ignores ``should_stop`` (like vLLM's one-piece
    generation): it holds the model for as long as a test needs. ``order`` lists the prompts it answered."""

    context_length = None

    def __init__(self):
        from ffc.runtime.chat.templates import TEMPLATES
        from ffc.runtime.inference import GenerationOptions

        self.template, self.defaults = TEMPLATES["chatml"], GenerationOptions()
        self.release, self.started, self.order = threading.Event(), threading.Event(), []

    def prompt_ids(self, messages, system=None, tools=None):
        return [0]

    def stream(self, messages, options=None, system=None, tools=None, **generate_args):
        from ffc.runtime.inference import Completion

        self.order.append(messages[-1]["content"])
        self.started.set()
        self.release.wait(30)
        self.last = Completion("ok", 1, 1, "stop")
        yield "ok"


@contextmanager
def live(app):
    """``app`` served by uvicorn on a free port of 127.0.0.1 in this process (real sockets: real disconnects)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        app.state.scheduler.close()
        server.should_exit = True
        thread.join(15)


def _post(url, timeout=30, **body):
    return httpx.post(url, json={"model": "m", "messages": RAMBLE, **body}, timeout=timeout)


def _sse(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


def test_a_stream_abandoned_mid_answer_stops_its_generation(engine):
    from ffc.runtime.server import create_app

    watched = Watched(engine)
    with live(create_app(watched, "m")) as url:
        body = {"model": "m", "messages": RAMBLE, "stream": True, "max_tokens": 1500}
        with httpx.stream("POST", url, json=body, timeout=30) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break  # the answer has begun: the client goes away
        done, interrupted = watched.finished.get(timeout=10)
        assert interrupted and done.finish_reason == "length" and done.completion_tokens < 1500
        began = time.monotonic()
        assert _post(url, max_tokens=4).json()["usage"]["completion_tokens"] == 4
        assert time.monotonic() - began < 5


def test_a_client_giving_up_on_a_whole_answer_stops_its_generation(engine):
    from ffc.runtime.server import create_app

    watched = Watched(engine)
    with live(create_app(watched, "m")) as url:
        with pytest.raises(httpx.ReadTimeout):
            _post(url, timeout=httpx.Timeout(30, read=0.5), max_tokens=1500)
        done, interrupted = watched.finished.get(timeout=10)
        assert interrupted and done.completion_tokens < 1500


def test_b_max_tokens_is_capped_by_the_server_limit_and_the_context(engine):
    from fastapi.testclient import TestClient

    from ffc.runtime.server import create_app

    api = TestClient(create_app(engine, "m", max_new_tokens_limit=7))
    capped = api.post("/v1/chat/completions", json={"model": "m", "messages": RAMBLE, "max_tokens": 100000}).json()
    assert capped["usage"]["completion_tokens"] == 7 and capped["choices"][0]["finish_reason"] == "length"
    # A prompt near the end of the 2,048-token context leaves room for the rest only.
    count = lambda words: len(engine.prompt_ids([{"role": "user", "content": "word " * words}]))  # noqa: E731
    per_word = (count(100) - count(0)) / 100
    long = [{"role": "user", "content": "word " * int((engine.context_length - 30 - count(0)) / per_word)}]
    prompt_tokens = len(engine.prompt_ids(long))
    assert engine.context_length - 60 < prompt_tokens < engine.context_length
    usage = (
        TestClient(create_app(engine, "m"))
        .post("/v1/chat/completions", json={"model": "m", "messages": long, "max_tokens": 100000})
        .json()["usage"]
    )
    assert usage["prompt_tokens"] == prompt_tokens and usage["total_tokens"] <= engine.context_length


def test_b_every_request_has_a_time_limit(engine):
    from ffc.runtime.server import create_app

    watched = Watched(engine)
    with live(create_app(watched, "m", request_timeout=1.0)) as url:
        began = time.monotonic()
        whole = _post(url, max_tokens=1500).json()
        assert time.monotonic() - began < 4
        assert whole["choices"][0]["finish_reason"] == "length" and whole["usage"]["completion_tokens"] < 1500
        streamed = _post(url, max_tokens=1500, stream=True)
        assert [e["choices"][0]["finish_reason"] for e in _sse(streamed) if e["choices"]][-1] == "length"
        assert streamed.text.rstrip().endswith("data: [DONE]")

    gate = Gate()  # a generation that cannot be interrupted holds the model: the next request must not wait for ever
    with live(create_app(gate, "m", request_timeout=1.0)) as url:
        try:
            with ThreadPoolExecutor(1) as pool:
                first = pool.submit(_post, url)
                assert gate.started.wait(10)
                began = time.monotonic()
                waited = _post(url)
                assert waited.status_code == 503 and time.monotonic() - began < 4
                assert waited.json()["error"]["code"] == "queue_timeout" and int(waited.headers["retry-after"]) >= 1
                gate.release.set()
                assert first.result().status_code == 200
        finally:
            gate.release.set()


ENDLESS = """
import sys, time
from ffc.runtime.chat.templates import TEMPLATES
from ffc.runtime.inference import Completion, GenerationOptions
from ffc.runtime.server import create_app, serve

class Endless:  # one word every 10 ms until told to stop
    template, defaults, context_length = TEMPLATES["chatml"], GenerationOptions(), None
    def prompt_ids(self, messages, system=None, tools=None):
        return [0]
    def stream(self, messages, options=None, system=None, tools=None, *, prompt=None, should_stop=None):
        words = 0
        while not should_stop():
            words += 1
            time.sleep(0.01)
            yield "word "
        self.last = Completion("word " * words, 1, words, "length")

serve(create_app(Endless(), "m"), "127.0.0.1", int(sys.argv[1]))
"""


def test_b_sigterm_stops_the_server_within_seconds(tmp_path):
    """A generation that would never end is told to stop: its client gets the answer so far, a queued request
    gets 503, and the process exits."""
    import signal

    (tmp_path / "endless.py").write_text(ENDLESS)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "endless.py", str(port)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        with (
            ThreadPoolExecutor(1) as pool,
            httpx.stream("POST", url, json={"model": "m", "messages": RAMBLE, "stream": True}, timeout=30) as stream,
        ):
            lines = stream.iter_lines()
            while not next(lines).startswith('data: {"id"'):
                pass  # the generation is running
            next(lines)
            queued = pool.submit(_post, url)
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            began = time.monotonic()
            rest = [line for line in lines if line]
            assert rest[-1] == "data: [DONE]" and json.loads(rest[-2][6:])["choices"][0]["finish_reason"] == "length"
            assert queued.result().json()["error"]["code"] == "shutting_down"
        process.wait(timeout=10)
        assert time.monotonic() - began < 5
    finally:
        if process.poll() is None:
            process.kill()
        print(process.stdout.read().decode()[-3000:])


def test_c_requests_wait_in_a_bounded_first_come_queue():
    from ffc.runtime.server import create_app

    gate = Gate()
    app = create_app(gate, "m", max_queued_requests=2)
    with live(app) as url, ThreadPoolExecutor(3) as pool:
        try:
            ask = lambda name: _post(url, messages=[{"role": "user", "content": name}])  # noqa: E731
            answers = [pool.submit(ask, "first")]
            assert gate.started.wait(10)
            for name in ("second", "third"):
                answers.append(pool.submit(ask, name))
                deadline = time.monotonic() + 10
                while app.state.scheduler.queue.qsize() < len(answers) - 1:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            refused = ask("fourth")
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_full"
            assert int(refused.headers["retry-after"]) >= 1
            gate.release.set()
            assert [a.result().status_code for a in answers] == [200, 200, 200]
            assert gate.order == ["first", "second", "third"]
        finally:
            gate.release.set()


def test_c_a_prompt_over_the_context_is_refused_with_its_token_counts(engine):
    from fastapi.testclient import TestClient

    from ffc.runtime.server import create_app

    api = TestClient(create_app(engine, "m", max_request_bytes=200_000))
    began = time.monotonic()
    huge = api.post(
        "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "word " * 20_000}]}
    )
    assert huge.status_code == 400 and time.monotonic() - began < 5
    error = huge.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert (
        "2048" in error["message"]
        and str(len(engine.prompt_ids([{"role": "user", "content": "word " * 20_000}]))) in error["message"]
    )


MALFORMED = [  # (body, the param the error names)
    (b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}', "messages[0].content"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "\\udfff": 1}', "\\udfff"),
    (
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}',
        "tools",
    ),
    (
        b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}',
        "messages[0].content",
    ),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "sparkle"}]}]}', "messages[0].content"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [5]}]}', "messages[0].content"),
    (b'{"model": "m", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
    (b'{"model": "m", "messages": [{"role": "user", "content": {"text": "hi"}}]}', "messages[0].content"),
    (b'{"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}', "messages[0].role"),
    (
        b'{"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{no"}}]}]}',
        "messages",
    ),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": 5}', "stop"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens"),
    (b'{"model": "m", "messages": "hi"}', "messages"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
    (b"[1, 2]", None),
    (b'{"model": "m", "messages": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}", None),
    (b"\xff\xfe\xfa", None),
]


@pytest.mark.parametrize("body, param", MALFORMED)
def test_d_malformed_requests_get_openai_shaped_400s(engine, body, param):
    from fastapi.testclient import TestClient

    from ffc.runtime.server import create_app

    api = TestClient(create_app(engine, "m", max_request_bytes=200_000), raise_server_exceptions=False)
    answer = api.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and ": " in error["message"]  # what is wrong: what to do


def test_d_text_parts_are_read_and_other_errors_are_shaped(engine):
    from fastapi.testclient import TestClient

    from ffc.runtime.server import create_app

    api = TestClient(create_app(engine, "m"), raise_server_exceptions=False)
    parts = [{"type": "text", "text": "What is 2 "}, {"type": "text", "text": "plus 3?"}]
    as_parts = api.post(
        "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": parts}], "max_tokens": 5}
    )
    as_text = api.post("/v1/chat/completions", json={"model": "m", "messages": HELLO, "max_tokens": 5})
    assert as_parts.status_code == 200 and as_parts.json()["choices"] == as_text.json()["choices"]
    for answer, status in ((api.get("/v1/nothing"), 404), (api.get("/v1/chat/completions"), 405)):
        assert answer.status_code == status and set(answer.json()["error"]) == {"message", "type", "param", "code"}


def test_web_chat_page_is_served_without_the_key_and_talks_to_the_api(engine):
    """GET /chat (LLaMA-Factory's webchat) is a static page on the same server; the API behind it keeps its key."""
    from fastapi.testclient import TestClient

    from ffc.runtime.server import create_app

    api = TestClient(create_app(engine, "m", api_key="sekret"))
    page = api.get("/chat")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert 'fetch("v1/chat/completions"' in page.text and "innerHTML" not in page.text
    assert "model: modelId" in page.text  # the API requires the model id the page reads from /v1/models
    assert api.get("/", follow_redirects=False).headers["location"] == "/chat"
    assert api.get("/v1/models").status_code == 401  # only the page is open
    assert api.post("/chat", json={}).status_code in (401, 405)
    reply = api.post(
        "/v1/chat/completions",
        headers={"Authorization": "Bearer sekret"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 4},
    )
    assert reply.status_code == 200 and reply.text.rstrip().endswith("data: [DONE]"), reply.text
