"""A run directory stands alone: in a fresh virtual environment with torch and exactly its
requirements.txt installed (ffc pinned there, from a wheel of this checkout as the package index would
serve it), `accelerate launch` trains it."""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_fresh_environment_with_requirements_txt_trains_the_run(demo, tmp_path):
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model:\n  model_name_or_path: {demo / 'tiny-model'}\n"
        f"data:\n  dataset: [demo_alpaca]\n  dataset_dir: {demo / 'data'}\n  template: chatml\n  cutoff_len: 96\n"
        "training:\n  max_steps: 3\n  per_device_train_batch_size: 4\n  gradient_accumulation_steps: 1\n  save_strategy: 'no'\n"
    )
    run = tmp_path / "run"
    subprocess.run(
        [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True, capture_output=True
    )
    requirements = (run / "requirements.txt").read_text()
    assert "ffc==" in requirements

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # torch first, the CPU build the project pins (as scripts/install.sh does), then the run's own list.
    for args in (["torch==2.13.0"], ["--find-links", str(wheels), "-r", str(run / "requirements.txt")]):
        done = subprocess.run(pip + args, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", PATH=f"{env_dir / 'bin'}:{env['PATH']}")
    # The installed ffc, not this checkout: run from the run directory with a clean path.
    where = subprocess.run(
        [python, "-c", "import ffc.runtime, sys; print(ffc.runtime.__file__)"],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
    )
    assert str(env_dir) in where.stdout, where.stdout + where.stderr
    done = subprocess.run(
        [str(env_dir / "bin" / "accelerate"), "launch", "--config_file", "accelerate_config.yaml", "train.py"],
        cwd=run, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    log = [json.loads(line) for line in (run / "output" / "trainer_log.jsonl").read_text().splitlines()]
    assert max(entry["current_steps"] for entry in log) == 3
