"""Helpers for the tests of ffc check, update, sweep and compare: run directories of several stages
built from a spec beside a private copy of the demo data, and the CLI run in-process."""

import shutil
from pathlib import Path

from ffc.compiler import cli

CHATML = "  template: chatml\n"
STAGES = {  # stage -> (dataset, template line, method lines)
    "sft": ("demo_alpaca", CHATML, ""),
    "pt": ("demo_text", "", ""),
    "rm": ("demo_pairs", CHATML, ""),
    "dpo": ("demo_pairs", CHATML, ""),
    "kto": ("demo_kto", CHATML, ""),
    "orpo": ("demo_pairs", CHATML, ""),
    "simpo": ("demo_pairs", CHATML, ""),
    "ppo": ("demo_alpaca", CHATML, "  reward_funcs: rewards.py\n"),
    "grpo": ("demo_alpaca", CHATML, "  reward_funcs: rewards.py\n  num_generations: 2\n"),
}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SPEC = """\
name: {stage}
model:
  model_name_or_path: {model}
method:
  stage: {stage}
  finetuning_type: lora
{method}data:
  dataset: [{dataset}]
  dataset_dir: data
{template}  cutoff_len: 64
training:
  max_steps: {steps}
  learning_rate: 1.0e-3
  per_device_train_batch_size: 2
  logging_steps: 1
  save_strategy: "no"
logging:
  report_to: [none]
"""


def write_spec(demo, folder, stage="sft", steps=2, name="spec.yaml"):
    """A spec in ``folder`` with relative data (a copy the test may change) and the shared tiny model."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "data").exists():
        shutil.copytree(demo / "data", folder / "data")
    dataset, template, method = STAGES[stage]
    if method:
        shutil.copy(EXAMPLES / "rewards.py", folder / "rewards.py")
    spec = folder / name
    text = SPEC.format(
        stage=stage, model=demo / "tiny-model", dataset=dataset, template=template, method=method, steps=steps
    )
    spec.write_text(text)
    return spec


def ffc(capsys, *argv):
    """Run ``ffc ARGV`` in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        cli.main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def lock_versions(monkeypatch):
    """Make this environment's installed versions those the lock pins (the venv may differ, e.g. tensorboard)."""
    from ffc.compiler.resolve import TESTED_VERSIONS
    from ffc.runtime import provenance

    monkeypatch.setattr(
        provenance, "installed_versions", lambda names=provenance.LIBRARIES: {n: TESTED_VERSIONS.get(n) for n in names}
    )
