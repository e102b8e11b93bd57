"""chat.py in a terminal session, and the vLLM variant of the generated scripts."""

import ast
import subprocess
import sys

from ffc.compiler.build import build_files
from ffc.compiler.loader import load_spec

from .conftest import MINIMAL_SPEC


def test_chat_streams_clears_and_exits(demo, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {{model_name_or_path: {demo / 'tiny-model'}}}\n"
        f"data: {{dataset: [demo_alpaca], dataset_dir: {demo / 'data'}, template: chatml}}\n"
        f"inference: {{model_path: {demo / 'tiny-model'}, temperature: 0, max_new_tokens: 6}}\n"
    )
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True)
    session = "What is 2 plus 3?\nAnd 4 plus 4?\n/clear\nHi\n/exit\n"
    result = subprocess.run(
        [sys.executable, "chat.py"], cwd=run, input=session, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Assistant: ") == 3 and "History cleared." in result.stdout


def test_vllm_backend_generates_its_code_path(write_spec, tmp_path):
    _, files = build_files(load_spec(write_spec(MINIMAL_SPEC), ["inference.infer_backend=vllm"]), tmp_path / "run")
    for name in ("chat.py", "serve.py"):
        code = files[name].decode()
        ast.parse(code)
        assert "VLLMEngine(" in code and "HFEngine" not in code and "lora_rank=8" in code, name
    assert "HFEngine(" in files["eval.py"].decode()  # scoring needs logits: transformers
    _, plain = build_files(load_spec(write_spec(MINIMAL_SPEC)), tmp_path / "run2")
    assert "vllm" not in plain["chat.py"].decode().lower()
