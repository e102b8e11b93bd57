"""model.adapter_name_or_path and stage none (LLaMA-Factory's chat / api / eval / export without training):
a run directory for a base model and existing adapters, chat on stdin, export merges the adapters; training
continues an existing adapter (or merges it and trains a new one with create_new_adapter)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ffc.compiler.loader import SpecError, load_spec

TRAIN = """\
name: {name}
model:
  model_name_or_path: {model}
{adapters}method:
  stage: sft
  finetuning_type: lora
{method}data:
  dataset: [demo_alpaca]
  dataset_dir: {data}
  template: chatml
  cutoff_len: 64
training:
  max_steps: 2
  learning_rate: {lr}
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 1
  logging_steps: 1
  save_strategy: "no"
  lr_scheduler_type: constant
logging:
  report_to: [none]
  plot_loss: false
"""
INFER = """\
model:
  model_name_or_path: {model}
  adapter_name_or_path: [{adapters}]
method:
  stage: none
data:
  template: chatml
inference:
  temperature: 0
  max_new_tokens: 4
export:
  export_dir: merged
  export_dtype: float32
"""
RUN_FILES = {
    "README.md", "chat.py", "chat_template.py", "eval.py", "export.py", "ffc.lock.json", "requirements.txt",
    "serve.py", "spec.yaml",
}  # fmt: skip


def _build(spec: Path, run: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _python(run: Path, *args: str, stdin: str = "", timeout: int = 600) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=run, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout


def _train(demo, folder: Path, name: str, adapters=(), method: str = "", lr: float = 1e-2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    listed = f"  adapter_name_or_path: [{', '.join(str(a) for a in adapters)}]\n" if adapters else ""
    spec = folder / f"{name}.yaml"
    spec.write_text(
        TRAIN.format(name=name, model=demo / "tiny-model", adapters=listed, method=method, data=demo / "data", lr=lr)
    )
    run = folder / name
    _build(spec, run)
    _python(run, "train.py")
    return run


def _lora_weights(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


@pytest.fixture(scope="module")
def first_adapter(demo, tmp_path_factory) -> Path:
    """A LoRA adapter from a short sft run (large steps, so that its B matrices are far from zero)."""
    return _train(demo, tmp_path_factory.mktemp("first"), "first") / "output"


def test_spec_without_training_builds_exactly_the_inference_files(demo, tmp_path, first_adapter):
    spec = tmp_path / "infer.yaml"
    spec.write_text(INFER.format(model=demo / "tiny-model", adapters=first_adapter))
    run = tmp_path / "run"
    _build(spec, run)
    assert {p.name for p in run.iterdir() if p.is_file() and not p.name.startswith(".")} == RUN_FILES
    readme = (run / "README.md").read_text()
    listed = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `")}
    assert listed == RUN_FILES | {".ffc-manifest.json"}
    assert "no training" in readme and "train.py" not in readme
    lock = json.loads((run / "ffc.lock.json").read_text())["spec"]
    assert lock["method"] == {"stage": "none"} and "training" not in lock or not lock["training"]
    chat = (run / "chat.py").read_text()
    assert f'ADAPTERS=[str(Path("{first_adapter}"))]' in "".join(chat.split())


def test_chat_and_export_merge_the_adapter(demo, tmp_path, first_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    spec = tmp_path / "infer.yaml"
    spec.write_text(INFER.format(model=demo / "tiny-model", adapters=first_adapter))
    run = tmp_path / "run"
    _build(spec, run)
    said = _python(run, "chat.py", stdin="Hello\n/exit\n")
    assert "Assistant: " in said

    _python(run, "export.py")
    merged = AutoModelForCausalLM.from_pretrained(run / "merged")
    base = AutoModelForCausalLM.from_pretrained(demo / "tiny-model")
    ids = [5, 17, 42, 99, 7]
    plain = _logits(base, ids)
    adapted = _logits(PeftModel.from_pretrained(base, str(first_adapter)), ids)
    assert (adapted - plain).abs().max() > 1e-3  # the adapter changes the model, so the comparison means something
    assert (_logits(merged, ids) - adapted).abs().max() < 1e-4


def test_training_continues_an_existing_adapter(demo, tmp_path, first_adapter):
    # A learning rate too small to move anything: the trained adapter is the one it started from.
    run = _train(demo, tmp_path, "continued", adapters=[first_adapter], lr=1e-9)
    train = (run / "train.py").read_text()
    assert "apply_adapters(model, ADAPTERS, train_last=True)" in train and "LoraConfig" not in train
    before, after = _lora_weights(first_adapter), _lora_weights(run / "output")
    assert before.keys() == after.keys()
    moved = max((after[k] - before[k]).abs().max().item() for k in before)
    assert moved < 1e-6 and max(v.abs().max().item() for k, v in before.items() if "lora_B" in k) > 1e-3
    # chat, serve, eval and export use the base with the trained adapter (the given one was trained further)
    assert 'ADAPTERS = [str(RUN_DIR / "output")]' in (run / "chat.py").read_text()


def test_create_new_adapter_merges_the_given_one_and_trains_another(demo, tmp_path, first_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = _train(demo, tmp_path, "stacked", adapters=[first_adapter], method="  create_new_adapter: true\n")
    train = (run / "train.py").read_text()
    assert "apply_adapters(model, ADAPTERS, train_last=False)" in train and "LoraConfig(" in train
    export = (run / "export.py").read_text()
    assert f'ADAPTERS=[str(Path("{first_adapter}")),str(RUN_DIR/"output")]' in "".join(export.split())
    _python(run, "export.py", "--dtype", "float32")
    base = AutoModelForCausalLM.from_pretrained(demo / "tiny-model")
    both = PeftModel.from_pretrained(base, str(first_adapter)).merge_and_unload()
    both = PeftModel.from_pretrained(both, str(run / "output")).merge_and_unload()
    ids = [3, 14, 15, 92, 65]
    merged = AutoModelForCausalLM.from_pretrained(run / "exported")
    assert (_logits(merged, ids) - _logits(both, ids)).abs().max() < 1e-4


@pytest.mark.parametrize(
    "extra,message",
    [
        ("method:\n  stage: sft\n  finetuning_type: full\n", "existing adapters continue LoRA training"),
        ("method:\n  stage: sft\n  use_dora: true\n", "use_dora sets up a new adapter"),
        ("method:\n  stage: sft\n  create_new_adapter: true\ninference:\n  infer_backend: vllm\n", "vLLM applies one"),
    ],
)
def test_adapter_rules(tmp_path, extra, message):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "model:\n  model_name_or_path: org/m\n  adapter_name_or_path: a\n"
        + extra
        + "data:\n  dataset: d\n  template: chatml\n"
    )
    with pytest.raises(SpecError, match=message):
        load_spec(spec)


def test_stage_none_refuses_training_data_and_training_stages_need_it(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "model:\n  model_name_or_path: org/m\nmethod:\n  stage: none\ndata:\n  dataset: d\n  template: chatml\n"
    )
    with pytest.raises(SpecError, match="stage none trains nothing"):
        load_spec(spec)
    spec.write_text("model:\n  model_name_or_path: org/m\ndata:\n  template: chatml\n")
    with pytest.raises(SpecError, match="stage sft trains on data.dataset.*stage: none"):
        load_spec(spec)


STUB = """\
import json, os


def snapshot_download(model_id, revision=None, cache_dir=None):
    with open(os.environ["STUB_RECORD"], "a") as f:
        f.write(json.dumps([model_id, revision, cache_dir]) + "\\n")
    return os.environ["STUB_MODEL"]
"""


def test_modelscope_models_are_downloaded_with_modelscope(demo, tmp_path):
    import os

    spec = tmp_path / "ms.yaml"
    spec.write_text(
        INFER.format(model="AI-ModelScope/tiny", adapters="").replace(
            "  adapter_name_or_path: []\n", "  use_modelscope_hub: true\n"
        )
    )
    run = tmp_path / "run"
    _build(spec, run)
    # No network here: a stand-in for the modelscope package answers with the demo model's folder.
    (tmp_path / "stub" / "modelscope").mkdir(parents=True)
    (tmp_path / "stub" / "modelscope" / "__init__.py").write_text(STUB)
    record = tmp_path / "calls.jsonl"
    env = dict(
        os.environ,
        STUB_RECORD=str(record),
        STUB_MODEL=str(demo / "tiny-model"),
        PYTHONPATH=os.pathsep.join([str(tmp_path / "stub"), os.environ.get("PYTHONPATH", "")]),
    )
    done = subprocess.run(
        [sys.executable, "chat.py"], cwd=run, env=env, input="Hi\n", capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and "Assistant: " in done.stdout, done.stderr[-3000:]
    assert [json.loads(line) for line in record.read_text().splitlines()] == [["AI-ModelScope/tiny", "master", None]]
    # Without the package: one message saying what to install, no traceback.
    done = subprocess.run([sys.executable, "export.py"], cwd=run, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "pip install modelscope" in done.stderr and "Traceback" not in done.stderr
    # train.py loads the same way
    train_spec = tmp_path / "train.yaml"
    train_spec.write_text(
        TRAIN.format(
            name="t",
            model="AI-ModelScope/tiny",
            adapters="  use_modelscope_hub: true\n",
            method="",
            data=demo / "data",
            lr=1e-3,
        )  # fmt: skip
    )
    _build(train_spec, tmp_path / "train")
    train = (tmp_path / "train" / "train.py").read_text()
    assert 'MODEL = download_model("modelscope", "AI-ModelScope/tiny", revision="main", cache_dir=None)' in train


def test_the_ui_does_not_start_training_for_stage_none(demo, tmp_path):
    from ffc.ui.jobs import Workspace

    spec = tmp_path / "infer.yaml"
    spec.write_text(INFER.format(model=demo / "tiny-model", adapters=""))
    workspace = Workspace(tmp_path)
    _build(spec, workspace.run_dir("infer"))
    with pytest.raises(ValueError, match="trains nothing"):
        workspace.start_training("infer")


def test_modelers_models_are_downloaded_with_openmind(monkeypatch, tmp_path):
    import types

    from ffc.runtime.hubs import download_model

    calls = []
    hub = types.ModuleType("openmind.utils.hub")
    hub.snapshot_download = lambda model_id, revision, cache_dir: calls.append((model_id, revision, cache_dir)) or "/m"
    for name, module in (("openmind", types.ModuleType("openmind")), ("openmind.utils", types.ModuleType("u"))):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "openmind.utils.hub", hub)
    assert download_model("openmind", "PyTorch-NPU/tiny", "main", None) == "/m"
    assert calls == [("PyTorch-NPU/tiny", "main", None)]
    spec = tmp_path / "s.yaml"
    spec.write_text(
        INFER.format(model="PyTorch-NPU/tiny", adapters="").replace(
            "  adapter_name_or_path: []\n", "  use_openmind_hub: true\n"
        )
    )
    _build(spec, tmp_path / "run")
    assert 'download_model("openmind", "PyTorch-NPU/tiny"' in (tmp_path / "run" / "export.py").read_text()
