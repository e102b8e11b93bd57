"""A bounded load test of a compiled serve.py on 127.0.0.1 (issue 19): valid requests from concurrent clients,
malformed ones, streams abandoned mid-answer and a huge max_tokens whose client gives up, then a normal
request, the server's memory, and SIGTERM. It prints one summary line: request counts by status, latency."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import free_port

KEY = "load-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
RAMBLE = [{"role": "user", "content": "hi"}]  # the tiny model's greedy answer runs past 2,000 tokens
MAX_BYTES = 150_000
MIX_SECONDS = 60  # requests not sent by then are counted as such: a broken server fails the test, not the clock


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def malformed() -> list[tuple[str, str, dict, bytes, int]]:
    """(method, path, extra headers, body, expected status): one of each kind the server must refuse."""

    def body(**fields) -> bytes:
        return json.dumps({"model": "served", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()

    json_type = {"Content-Type": "application/json"}
    return [
        ("GET", "/v1/models", {"Authorization": ""}, b"", 401),
        ("POST", "/v1/chat/completions", {"Authorization": "Bearer wrong"}, body(), 401),
        ("GET", "/v1/nothing", {}, b"", 404),
        ("GET", "/v1/chat/completions", {}, b"", 405),
        ("POST", "/v1/chat/completions", json_type, b"x" * (MAX_BYTES + 10_000), 413),
        ("POST", "/v1/chat/completions", json_type, b"{not json", 400),
        (
            "POST",
            "/v1/chat/completions",
            json_type,
            b'{"model": "served", "messages": [{"role": "user", "content": "\\ud800"}]}',
            400,
        ),
        ("POST", "/v1/chat/completions", json_type, body(tools=[{"type": "function", "function": {"name": "f"}}]), 400),
        (
            "POST",
            "/v1/chat/completions",
            json_type,
            body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]),
            400,
        ),
        ("POST", "/v1/chat/completions", json_type, body(messages=[{"role": "user", "content": 42}]), 400),
        (
            "POST",
            "/v1/chat/completions",
            json_type,
            body(messages=[{"role": "user", "content": [{"type": "hologram"}]}]),
            400,
        ),
        ("POST", "/v1/chat/completions", json_type, body(temperature=5), 400),
        ("POST", "/v1/chat/completions", json_type, body(n=2), 400),
        ("POST", "/v1/chat/completions", json_type, body(messages=[]), 400),
        ("POST", "/v1/chat/completions", json_type, body(messages=[{"role": "assistant", "content": "hi"}]), 400),
        (
            "POST",
            "/v1/chat/completions",
            json_type,
            body(messages=[{"role": "user", "content": "word " * 20_000}]),
            400,
        ),  # 100 KB
        (
            "POST",
            "/v1/chat/completions",
            json_type,
            b'{"model": "served", "messages": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
            400,
        ),
        ("POST", "/v1/chat/completions", json_type, b"[1, 2, 3]", 400),
        ("POST", "/v1/chat/completions", json_type, b'{"messages": [{"role": "user", "content": "hi"}]}', 400),
        (
            "POST",
            "/v1/chat/completions",
            json_type,
            body(messages=[{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}]}]),
            400,
        ),
    ]


@pytest.fixture(scope="module")
def served(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    spec = root / "spec.yaml"
    spec.write_text(
        f"""\
name: served
model: {{model_name_or_path: {demo / "tiny-model"}}}
data: {{dataset: [demo_alpaca], dataset_dir: {demo / "data"}, template: chatml}}
inference: {{model_path: {demo / "tiny-model"}, temperature: 0, max_new_tokens: 8}}
serve: {{api_key_env: FFC_TEST_KEY, max_request_bytes: {MAX_BYTES}, request_timeout: 30, max_queued_requests: 64}}
"""
    )
    run = root / "run"
    subprocess.run(
        [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True, capture_output=True
    )
    port = free_port()
    log = open(root / "serve.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "serve.py", "--port", str(port)],
        cwd=run,
        env=dict(os.environ, FFC_TEST_KEY=KEY),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/v1/models", headers=HEADERS, timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail((root / "serve.log").read_text()[-3000:])
        time.sleep(0.3)
    yield process, base
    if process.poll() is None:
        process.kill()
    log.close()


def test_bounded_load_then_sigterm(served, capsys):
    process, base = served
    url = f"{base}/v1/chat/completions"
    client = httpx.Client(headers=HEADERS, timeout=20, limits=httpx.Limits(max_connections=32))
    for _ in range(2):  # warm up before measuring memory
        assert client.post(url, json={"model": "served", "messages": RAMBLE, "max_tokens": 64}).status_code == 200
    rss_before = rss_mb(process.pid)
    statuses: Counter = Counter()
    counting = threading.Lock()
    latencies: list[float] = []
    bad_shapes: list[str] = []

    def count(key) -> None:
        with counting:
            statuses[key] += 1

    def valid(i: int) -> None:
        body = {
            "model": "served",
            "messages": [{"role": "user", "content": f"Question {i}: what is {i} plus 3?"}],
            "max_tokens": 8,
        }
        began = time.monotonic()
        if i % 4 == 0:
            with client.stream("POST", url, json={**body, "stream": True}) as response:
                lines = [line for line in response.iter_lines() if line]
                assert response.status_code != 200 or lines[-1] == "data: [DONE]"
        else:
            response = client.post(url, json=body)
        latencies.append(time.monotonic() - began)
        count(response.status_code)

    def bad(case) -> None:
        method, path, headers, content, expected = case
        response = client.request(method, f"{base}{path}", headers=headers, content=content or None)
        count(response.status_code)
        error = (
            response.json().get("error")
            if response.headers.get("content-type", "").startswith("application/json")
            else None
        )
        if response.status_code != expected or not (
            isinstance(error, dict) and set(error) == {"message", "type", "param", "code"} and error["message"]
        ):
            bad_shapes.append(f"{method} {path} {content[:60]!r}: {response.status_code} {response.text[:200]}")

    def abandoned(_) -> None:
        body = {"model": "served", "messages": RAMBLE, "max_tokens": 1500, "stream": True}
        with client.stream("POST", url, json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break  # the answer has begun: the client goes away
        count("abandoned")

    def gives_up(_) -> None:
        try:
            httpx.post(
                url,
                headers=HEADERS,
                json={"model": "served", "messages": RAMBLE, "max_tokens": 100_000},
                timeout=httpx.Timeout(30, read=1),
            )
            count("huge answered")
        except httpx.ReadTimeout:
            count("huge gave up")

    stop_at = time.monotonic() + MIX_SECONDS

    def send(task, argument) -> None:
        if time.monotonic() > stop_at:
            return count("not sent in time")
        try:
            task(argument)
        except httpx.HTTPError as exc:
            count(type(exc).__name__)

    tasks = (
        [(gives_up, 0)]
        + [(valid, i) for i in range(60)]
        + [(bad, case) for case in malformed() * 2]
        + [(abandoned, i) for i in range(10)]
    )
    head, rest = tasks[:1], tasks[1:]
    random.Random(19).shuffle(rest)  # the huge request first, so everything else arrives while it runs
    began = time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        for future in [pool.submit(send, task, argument) for task, argument in head + rest]:
            future.result()
    mix_seconds = time.monotonic() - began

    after = time.monotonic()
    try:
        answered = client.post(
            url, json={"model": "served", "messages": RAMBLE, "max_tokens": 8}, timeout=10
        ).status_code
    except httpx.HTTPError as exc:
        answered = type(exc).__name__
    follow_up = time.monotonic() - after
    rss_after = rss_mb(process.pid)

    # SIGTERM while a long answer streams: the server tells it to stop and exits.
    body = {"model": "served", "messages": RAMBLE, "max_tokens": 1500, "stream": True}
    with client.stream("POST", url, json=body) as response:
        lines = response.iter_lines()
        while not next(lines).startswith("data: {"):
            pass
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        tail = [line for line in lines if line]
    process.wait(timeout=15)
    exit_seconds = time.monotonic() - signalled
    client.close()

    latencies.sort()
    p50, p95 = (latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95) - 1]) if latencies else (-1, -1)
    counts = ", ".join(f"{key}: {value}" for key, value in sorted(statuses.items(), key=lambda item: str(item[0])))
    with capsys.disabled():
        print(
            f"\nserve load: {sum(statuses.values())} requests in {mix_seconds:.1f} s at 12 clients ({counts}); "
            f"valid latency p50 {p50:.2f} s, p95 {p95:.2f} s; next request {follow_up:.2f} s; "
            f"RSS {rss_before:.0f} -> {rss_after:.0f} MB; exit {exit_seconds:.2f} s after SIGTERM"
        )
    assert not [status for status in statuses if isinstance(status, int) and status >= 500], counts
    assert not bad_shapes, bad_shapes
    assert statuses[200] == 60 and statuses["abandoned"] == 10, counts  # and no client errors or unsent requests
    assert answered == 200 and follow_up < 5
    assert rss_after - rss_before < 250, "the server's memory grew under load"
    assert tail[-1] == "data: [DONE]"
    assert exit_seconds < 5
