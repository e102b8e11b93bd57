"""logging.offline: W&B, MLflow, SwanLab and Trackio keep their runs under the run's output directory.

The four packages (pyproject's `trackers` extra) are not installed in ffc's default test environment: there
the tests check the generated configuration and the variables it sets, and the end-to-end test (each tracker
writes its run under output/) runs where the extra is installed (`pip install -e .[trackers]`)."""

import importlib.util
import os
import subprocess
import sys

import pytest

from ffc.compiler.build import build_files
from ffc.compiler.loader import load_spec
from ffc.runtime.trackers import LOCAL_SETTINGS, keep_trackers_local

from .conftest import MINIMAL_SPEC

ALL = ["wandb", "mlflow", "swanlab", "trackio"]


def test_local_settings_point_under_the_output_directory(tmp_path, monkeypatch):
    for settings in LOCAL_SETTINGS.values():
        for name in settings:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_DIR", "/mine")  # the user's own setting wins
    done = keep_trackers_local(tmp_path / "output", ALL)
    out = (tmp_path / "output").resolve()
    assert os.environ["WANDB_MODE"] == "offline" and os.environ["WANDB_DIR"] == "/mine" and "WANDB_DIR" not in done
    assert os.environ["MLFLOW_TRACKING_URI"] == f"{out.as_uri()}/mlruns" and os.environ["MLFLOW_ALLOW_FILE_STORE"]
    assert os.environ["SWANLAB_MODE"] == "offline" and os.environ["SWANLAB_LOG_DIR"] == f"{out}/swanlog"
    assert os.environ["TRACKIO_DIR"] == f"{out}/trackio"


@pytest.mark.parametrize(
    "overrides,called",
    [
        (["logging.report_to=wandb,mlflow,swanlab,trackio,tensorboard", "logging.offline=true"], ALL),
        (["logging.report_to=wandb,tensorboard", "logging.offline=true"], ["wandb"]),
        (["logging.report_to=tensorboard", "logging.offline=true"], None),
        (["logging.report_to=wandb,mlflow"], None),
    ],
)
def test_train_py_keeps_the_named_trackers_local(write_spec, tmp_path, overrides, called):
    _, files = build_files(load_spec(write_spec(MINIMAL_SPEC), overrides), tmp_path / "run")
    train = files["train.py"].decode()
    if called is None:
        assert "keep_trackers_local" not in train
    else:
        call = f"keep_trackers_local(OUTPUT_DIR,{called!r})".replace("'", '"').replace(" ", "")
        assert call in "".join(train.split())


@pytest.mark.slow
@pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ALL),
    reason="the trackers extra (wandb, mlflow-skinny, swanlab, trackio) is not installed: pip install -e .[trackers]",
)
def test_each_tracker_writes_its_run_under_the_output_directory(demo, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
name: trackers
model: {{model_name_or_path: {demo / "tiny-model"}}}
data: {{dataset: [demo_alpaca], dataset_dir: {demo / "data"}, template: chatml}}
training: {{max_steps: 3, per_device_train_batch_size: 2, logging_steps: 1}}
logging: {{report_to: [wandb, mlflow, swanlab, trackio], offline: true}}
"""
    )
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_", "SWANLAB_", "TRACKIO_"))}
    done = subprocess.run(
        [sys.executable, "train.py"], cwd=run, env={**env, "WANDB_SILENT": "true"}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = run / "output"
    assert list((out / "wandb").glob("offline-run-*/*.wandb"))
    assert [p for p in (out / "mlruns").rglob("metrics/loss")][0].read_text().count("\n") == 3
    assert list((out / "swanlog").glob("run-*"))
    assert (out / "trackio" / "huggingface.db").stat().st_size > 0
