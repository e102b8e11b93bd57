"""logging.offline: W&B, MLflow, SwanLab and Trackio keep their runs under the run's output directory.

None of the four packages is installed in ffc's test environment (pyproject's `trackers` extra), so these
tests check the generated configuration and the variables it sets, not a tracker writing a run."""

import os

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
    assert os.environ["MLFLOW_TRACKING_URI"] == f"{out.as_uri()}/mlruns"
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
