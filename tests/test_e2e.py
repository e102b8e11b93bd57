"""Build -> accelerate launch train.py on the tiny model -> the loss goes down -> the result reloads and generates."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SPEC = """\
name: e2e
model:
  model_name_or_path: {model}
method:
  stage: {stage}
  finetuning_type: {method}
data:
  dataset: [{dataset}]
  dataset_dir: {data}
{template}  cutoff_len: 128
training:
  max_steps: 30
  learning_rate: {lr}
  per_device_train_batch_size: 8
  gradient_accumulation_steps: 1
  logging_steps: 5
  save_strategy: "no"
  lr_scheduler_type: constant
logging:
  report_to: [none]
"""


def _accelerate() -> list[str]:
    exe = Path(sys.executable).with_name("accelerate")
    return [str(exe)] if exe.exists() else [shutil.which("accelerate") or "accelerate"]


def run_training(demo, tmp_path, *, method="lora", stage="sft", overrides=(), lr=5e-3):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.format(
            model=demo / "tiny-model",
            data=demo / "data",
            stage=stage,
            method=method,
            dataset="demo_text" if stage == "pt" else "demo_alpaca, demo_sharegpt",
            template="" if stage == "pt" else "  template: chatml\n",
            lr=lr,
        )
    )
    run = tmp_path / "run"
    args = [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)]
    for item in overrides:
        args += ["--set", item]
    subprocess.run(args, check=True, capture_output=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    result = subprocess.run(
        _accelerate() + ["launch", "--config_file", "accelerate_config.yaml", "train.py"],
        cwd=run, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    log = [json.loads(line) for line in (run / "output" / "trainer_log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    return run, losses


def _generate(model, tokenizer):
    import torch

    prompt = "<|im_start|>user\nWhat is 2 plus 3?<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


@pytest.mark.parametrize(
    "method,overrides,lr",
    [
        ("full", [], 2e-3),
        ("freeze", ["method.freeze_trainable_layers=1", "method.freeze_extra_modules=lm_head"], 5e-3),
        ("lora", ["method.lora_rank=16"], 1e-2),
        ("lora", ["model.quantization_bit=4"], 1e-2),
    ],
    ids=["full", "freeze", "lora", "qlora"],
)
def test_sft_trains_and_reloads(demo, tmp_path, method, overrides, lr):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, losses = run_training(demo, tmp_path, method=method, overrides=overrides, lr=lr)
    assert len(losses) >= 5
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.1, losses
    output = run / "output"
    assert (output / "training_loss.png").stat().st_size > 1000
    tokenizer = AutoTokenizer.from_pretrained(output)
    from ffc.runtime.chat.templates import TEMPLATES

    chat = [{"role": "user", "content": "What is 2 plus 3?"}]
    assert tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == (
        TEMPLATES["chatml"].render(chat, add_generation_prompt=True).text
    )
    if method == "lora":
        from peft import PeftModel

        assert (output / "adapter_model.safetensors").exists()
        base = AutoModelForCausalLM.from_pretrained(demo / "tiny-model")
        model = PeftModel.from_pretrained(base, output).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(output).eval()
    _generate(model, tokenizer)


def test_pretraining_with_packing(demo, tmp_path):
    run, losses = run_training(demo, tmp_path, method="full", stage="pt", lr=2e-3)
    assert "pack_dataset(train_data" in (run / "train.py").read_text()
    assert losses[-1] < losses[0] - 0.1, losses


def build_lora_sft(demo, tmp_path, *options):
    spec, run = tmp_path / "spec.yaml", tmp_path / "run"
    spec.write_text(
        SPEC.format(model=demo / "tiny-model", data=demo / "data", stage="sft", method="lora",
                    dataset="demo_alpaca", template="  template: chatml\n", lr=1e-3)
    )  # fmt: skip
    subprocess.run([sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run), *options], check=True)
    return run


def test_preview_shows_trained_spans(demo, tmp_path):
    spec_run = build_lora_sft(demo, tmp_path)
    result = subprocess.run(
        [sys.executable, "train.py", "--preview", "2"], cwd=spec_run, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "===== sample 2:" in result.stdout and "«" in result.stdout and "samples: 600, kept: 600" in result.stdout
    assert not (spec_run / "output").exists()  # nothing trained


def test_vendored_run_works_without_ffc_installed(demo, tmp_path):
    """A --vendor run directory runs in an environment that has the libraries but not ffc."""
    import site
    import sysconfig

    run = build_lora_sft(demo, tmp_path, "--vendor")
    env_dir = tmp_path / "no-ffc"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    target = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # A plain path entry: the libraries become importable, but the .pth hook of ffc's editable install does not run.
    libraries = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (target / "libraries.pth").write_text("\n".join(dict.fromkeys(libraries)) + "\n")
    check = subprocess.run([str(python), "-c", "import ffc.runtime"], capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode != 0, "ffc must not be importable in this environment"
    result = subprocess.run([str(python), "train.py", "--preview", "1"], cwd=run, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "===== sample 1:" in result.stdout


def test_resume_from_last_checkpoint(demo, tmp_path):
    """Train 20 steps with checkpoints, rebuild with resume_from_checkpoint: last and 30 steps: training continues."""
    run, _ = run_training(
        demo, tmp_path, overrides=["training.max_steps=20", "training.save_strategy=steps", "training.save_steps=10"]
    )
    assert (run / "output" / "checkpoint-20").is_dir()
    run, _ = run_training(demo, tmp_path, overrides=["training.max_steps=30", "training.resume_from_checkpoint=last"])
    state = json.loads((run / "output" / "trainer_state.json").read_text())
    assert state["global_step"] == 30
    lines = [json.loads(line) for line in (run / "output" / "trainer_log.jsonl").read_text().splitlines()]
    steps = [entry["current_steps"] for entry in lines if "loss" in entry]
    assert steps == [5, 10, 15, 20, 25, 30]  # the first run's lines are kept, the second continues


def test_resume_after_kill_skips_a_half_written_checkpoint_and_logs_each_step_once(demo, tmp_path):
    """Killed after a checkpoint, then `python train.py --resume` with no rebuild: a checkpoint folder left
    half-written is skipped, the losses after the checkpoint equal an uninterrupted run's, and the trainer
    log holds every step once."""
    import signal
    import time

    overrides = [
        "training.max_steps=60",
        "training.save_strategy=steps",
        "training.save_steps=10",
        "training.logging_steps=1",
    ]
    (tmp_path / "reference").mkdir()
    reference_run, reference = run_training(demo, tmp_path / "reference", overrides=overrides)
    run = tmp_path / "run"
    (tmp_path / "run").mkdir()
    spec = (tmp_path / "reference" / "spec.yaml").read_text()
    (tmp_path / "spec.yaml").write_text(spec)
    args = [sys.executable, "-m", "ffc.compiler", "build", str(tmp_path / "spec.yaml"), "-o", str(run), "--force"]
    for item in overrides:
        args += ["--set", item]
    subprocess.run(args, check=True, capture_output=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        [sys.executable, "train.py"], cwd=run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not (run / "output" / "checkpoint-10" / "trainer_state.json").exists() and time.time() < deadline:
        assert process.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (run / "output" / "checkpoint-99").mkdir()  # as if killed while writing a later checkpoint
    resumed = subprocess.run(
        [sys.executable, "train.py", "--resume"], cwd=run, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "skipping" in resumed.stderr and "checkpoint-99" in resumed.stderr
    log = [json.loads(line) for line in (run / "output" / "trainer_log.jsonl").read_text().splitlines()]
    steps = [entry["current_steps"] for entry in log if "loss" in entry]
    assert steps == list(range(1, 61)), steps
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert losses == pytest.approx(reference, rel=1e-4)


def test_entry_points_report_user_errors_as_one_message_and_preview_every_stage(demo, tmp_path):
    """A bad row stops train.py with `error: FILE: row N: ...` and status 2, no traceback; --preview works
    for preference data too."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "bad.json").write_text(
        json.dumps([{"instruction": "hi", "output": "ok"}, {"instruction": "x", "output": 42}])
    )
    (data / "dataset_info.json").write_text(json.dumps({"bad": {"file_name": "bad.json"}}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model:\n  model_name_or_path: {demo / 'tiny-model'}\ndata:\n  dataset: [bad]\n  dataset_dir: data\n  template: chatml\n"
    )
    run = tmp_path / "run"
    subprocess.run(
        [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True, capture_output=True
    )
    done = subprocess.run(
        [sys.executable, "train.py", "--preview", "1"], cwd=run, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "error: " in done.stderr and "bad.json: row 2:" in done.stderr
    spec.write_text(
        f"model:\n  model_name_or_path: {demo / 'tiny-model'}\nmethod:\n  stage: dpo\n"
        f"data:\n  dataset: [demo_pairs]\n  dataset_dir: {demo / 'data'}\n  template: chatml\n"
    )
    subprocess.run(
        [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(tmp_path / "dpo")],
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [sys.executable, "train.py", "--preview", "1"],
        cwd=tmp_path / "dpo",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chosen" in done.stdout and "rejected" in done.stdout
