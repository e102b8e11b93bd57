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


def test_a_callback_beside_the_spec_is_copied_into_the_run_and_sees_every_step(demo, tmp_path):
    spec = write_spec(demo, tmp_path, steps=3)
    spec.write_text(spec.read_text().replace("training:\n", "training:\n  callbacks: [recorder:StepRecorder]\n", 1))
    (tmp_path / "recorder.py").write_text(CALLBACK)  # beside the spec: copied like method.reward_funcs
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True)
    train = (run / "train.py").read_text()
    assert "from recorder import StepRecorder  # training.callbacks" in train and "StepRecorder()]" in train
    assert (run / "recorder.py").read_text() == CALLBACK and "`recorder.py`" in (run / "README.md").read_text()
    lock = json.loads((run / "ffc.lock.json").read_text())
    assert "callbacks:recorder.py" in json.dumps(lock)
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


def test_a_callback_file_must_define_the_class_and_not_take_a_generated_name(demo, tmp_path):
    spec = write_spec(demo, tmp_path)
    text = spec.read_text()
    (tmp_path / "recorder.py").write_text(CALLBACK)
    spec.write_text(text.replace("training:\n", "training:\n  callbacks: [recorder:Missing]\n", 1))
    with pytest.raises(SpecError, match="recorder.py defines no class Missing"):
        _build(spec, tmp_path / "run")
    (tmp_path / "export.py").write_text(CALLBACK)
    spec.write_text(text.replace("training:\n", "training:\n  callbacks: [export:StepRecorder]\n", 1))
    with pytest.raises(SpecError, match="export.py is a file ffc generates"):
        _build(spec, tmp_path / "run")
    # An installed module (no file beside the spec) is imported from the environment, not copied.
    spec.write_text(text.replace("training:\n", "training:\n  callbacks: [transformers:PrinterCallback]\n", 1))
    files = _build(spec, tmp_path / "run")
    assert "transformers.py" not in files and "PrinterCallback()]" in files["train.py"].decode()


def _build(spec, run):
    from ffc.compiler.build import build_files

    return build_files(load_spec(spec), run)[1]
