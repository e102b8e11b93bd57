"""Experiment trackers that keep their runs on this machine (``logging.offline``).

transformers' callbacks for W&B, MLflow, SwanLab and Trackio read their mode and storage from
environment variables when the Trainer starts; this sets those the user has not set, so that a run
without network (or without an account) still records everything, under the run's output directory.
"""

from __future__ import annotations

import os
from pathlib import Path

# tracker -> {environment variable: value}; "{out}" is the run's output directory.
LOCAL_SETTINGS = {
    # offline: runs are written under WANDB_DIR/wandb/offline-run-*; `wandb sync` uploads them later
    "wandb": {"WANDB_MODE": "offline", "WANDB_DIR": "{out}"},
    # a file store: `mlflow ui --backend-store-uri OUTPUT/mlruns` shows it. MLflow 3.x refuses file stores
    # unless allowed (it prefers SQLite, which mlflow-skinny cannot open: no SQLAlchemy)
    "mlflow": {"MLFLOW_TRACKING_URI": "{out_uri}/mlruns", "MLFLOW_ALLOW_FILE_STORE": "true"},
    # offline: logs under SWANLAB_LOG_DIR, `swanlab sync` uploads them later
    "swanlab": {"SWANLAB_MODE": "offline", "SWANLAB_LOG_DIR": "{out}/swanlog"},
    # Trackio is local by default (a SQLite database); TRACKIO_DIR puts it beside the run, not in HF_HOME
    "trackio": {"TRACKIO_DIR": "{out}/trackio"},
}


def keep_trackers_local(output_dir: Path, trackers: list[str]) -> dict[str, str]:
    """Set the local-mode variables of ``trackers`` (those already set are the user's choice and stay).
    Returns what was set."""
    out = Path(output_dir).resolve()
    done = {}
    for tracker in trackers:
        for name, value in LOCAL_SETTINGS[tracker].items():
            if name not in os.environ:
                os.environ[name] = done[name] = value.format(out=out, out_uri=out.as_uri())
    return done
