"""training.callbacks: the user's TrainerCallback classes, named 'module:Class', imported by train.py."""

import json
import subprocess
import sys

import pytest

from ffc.compiler.loader import SpecError, load_spec

from ._runs import write_spec

CALLBACK = """\
import json
from pathlib import Path

from transformers import TrainerCallback


class StepRecorder(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        with open(Path(args.output_dir) / "steps_seen.jsonl", "a") as f:
            f.write(json.dumps(state.global_step) + "\\n")
"""


def test_a_callback_in_the_run_directory_sees_every_step(demo, tmp_path):
    spec = write_spec(demo, tmp_path, steps=3)
    spec.write_text(spec.read_text().replace("training:\n", "training:\n  callbacks: [recorder:StepRecorder]\n", 1))
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True)
    train = (run / "train.py").read_text()
    assert "from recorder import StepRecorder  # training.callbacks" in train and "StepRecorder()]" in train
    (run / "recorder.py").write_text(CALLBACK)  # a module beside train.py is importable from it
    done = subprocess.run([sys.executable, "train.py"], cwd=run, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [json.loads(line) for line in (run / "output" / "steps_seen.jsonl").read_text().splitlines()]
    assert seen == [1, 2, 3]


@pytest.mark.parametrize(
    "value,message",
    [
        ("'os; rm -rf /:X'", "is not 'module:Class'"),
        ("'my-callbacks:Stop'", "is not 'module:Class'"),
        ("'mod:class'", "is not 'module:Class'"),
    ],
)
def test_callbacks_must_be_import_strings(write_spec, value, message):
    from .conftest import MINIMAL_SPEC

    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(MINIMAL_SPEC), [f"training.callbacks=[{value}]"])
