"""Shared fixtures: isolated caches, the tiny demo model and data, free ports, paths to ../shared."""

import contextlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference" / "tokenizers"
DEMO_DATA = SHARED / "data" / "llamafactory-demo"

# Keep every cache inside a temp dir: tests must not touch the user's HF cache or reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    """A TCP port nobody listens on now (for servers the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(run: Path, *args: str):
    """A run's serve.py on a free port, up and answering /v1/models: yields its base URL; stopped after."""
    import subprocess
    import time

    import httpx

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "serve.py", "--port", str(port), *args],
        cwd=run, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{base}/v1/models").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def needs_shared(path: Path):
    return pytest.mark.skipif(
        not path.exists(), reason=f"{path} is absent: clone the project with ../shared beside it to run this test"
    )


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    for var in ("HF_HOME", "XDG_CACHE_HOME", "TORCH_EXTENSIONS_DIR", "HF_DATASETS_CACHE", "MPLCONFIGDIR"):
        os.environ.setdefault(var, str(cache / var.lower()))
    yield


@pytest.fixture(scope="session")
def python():
    return sys.executable


MINIMAL_SPEC = """\
name: t
model:
  model_name_or_path: ./model
method:
  stage: sft
  finetuning_type: lora
data:
  dataset: [demo_alpaca]
  dataset_dir: ./data
  template: chatml
  cutoff_len: 128
training:
  max_steps: 10
"""


@pytest.fixture
def write_spec(tmp_path):
    def write(text: str = MINIMAL_SPEC, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The tiny model and the demo data, built once per test session."""
    from ffc.devtools.demo import write_demo_data
    from ffc.devtools.tiny import make_tiny_model
    from ffc.devtools.vlm import make_tiny_llava, make_tiny_vlm, write_video_data, write_vision_data

    root = tmp_path_factory.mktemp("demo")
    make_tiny_model(root / "tiny-model")
    make_tiny_vlm(root / "tiny-vlm")
    make_tiny_llava(root / "tiny-llava")
    write_video_data(write_vision_data(write_demo_data(root / "data")))
    return root
