"""Training callbacks: a JSON-lines log a UI can follow, the loss plot, and finding the checkpoint to resume."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class JsonlLogCallback(TrainerCallback):
    """Appends one JSON object per log step to ``path``: step, totals, losses, lr, progress, ETA."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.start = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keep_log_until(self.path, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or logs is None:
            return
        elapsed = time.time() - (self.start or time.time())
        done = state.global_step / state.max_steps if state.max_steps else 0.0
        record = {
            "current_steps": state.global_step,
            "total_steps": state.max_steps,
            "epoch": round(state.epoch or 0.0, 4),
            "percentage": round(100 * done, 2),
            "elapsed_time": round(elapsed, 1),
            "remaining_time": round(elapsed / done - elapsed, 1) if done > 0 else None,
            **{k: v for k, v in logs.items() if isinstance(v, (int, float))},
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def keep_log_until(path: Path, step: int) -> None:
    """Start the log over, or (resuming from the checkpoint of ``step``) keep the lines up to that step:
    the steps after it run again and are logged again, so every step appears once in the log."""
    kept = []
    if step and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short when the process was killed
                continue
            if record.get("current_steps", 0) <= step and "train_runtime" not in record:
                kept.append(line + "\n")
    path.write_text("".join(kept), encoding="utf-8")


def latest_checkpoint(output_dir: str | Path) -> Optional[str]:
    """The newest complete ``checkpoint-N`` in ``output_dir``, or None. A checkpoint is complete once the
    Trainer has written its trainer_state.json, the last file it saves; one being written when the
    process died is skipped (and left in place: it is the user's to delete)."""
    candidates = []
    for path in Path(output_dir).glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if suffix.isdigit() and path.is_dir():
            candidates.append((int(suffix), path))
    for _, path in sorted(candidates, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("skipping %s: it was not completely written", path)
            continue
        log.info("resuming from %s", path)
        return str(path)
    log.info("no complete checkpoint in %s: starting from the beginning", output_dir)
    return None


def _smooth(values: list[float], weight: float = 0.8) -> list[float]:
    out, last = [], values[0]
    for value in values:
        last = weight * last + (1 - weight) * value
        out.append(last)
    return out


def plot_loss(output_dir: str | Path, keys: tuple[str, ...] = ("loss", "eval_loss")) -> list[Path]:
    """Write ``training_<key>.png`` for each key logged in trainer_state.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    written = []
    for key in keys:
        points = [(h["step"], h[key]) for h in history if key in h]
        if not points:
            continue
        steps, values = zip(*points)
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot(steps, values, color="#1f77b4", alpha=0.35, label="original")
        if len(values) > 2:
            ax.plot(steps, _smooth(list(values)), color="#1f77b4", label="smoothed")
        ax.set(xlabel="step", ylabel=key, title=f"{key} of {output_dir.name}")
        ax.legend()
        path = output_dir / f"training_{key.replace('/', '_')}.png"
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
