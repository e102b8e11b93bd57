"""Generated run directories are held to the project's own standard, over the whole build matrix:
every stage x full/freeze/LoRA/QLoRA x none/ddp/deepspeed/fsdp that validates. They pass
``ruff check`` and ``ruff format --check`` with the project's configuration, have no empty sections
or dead aliases, and each README lists exactly the files of its directory."""

import ast
import re
import subprocess
from pathlib import Path

import pytest

from ffc.compiler.build import build_files
from ffc.compiler.loader import SpecError, load_spec
from ffc.compiler.writer import write_run
from ffc.schemas.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {"pt": "demo_text", "kto": "demo_kto", **{s: "demo_pairs" for s in ("rm", "dpo", "orpo", "simpo")}}
METHODS = {
    "lora": ["method.finetuning_type=lora"],
    "full": ["method.finetuning_type=full"],
    "freeze": ["method.finetuning_type=freeze"],
    "qlora": ["method.finetuning_type=lora", "model.quantization_bit=4"],
    "oft": ["method.finetuning_type=oft"],
}
BACKENDS = {
    "none": [],
    "ddp": ["distributed.backend=ddp", "distributed.num_processes=2"],
    "deepspeed": ["distributed.backend=deepspeed", "distributed.num_processes=2"],
    "fsdp": ["distributed.backend=fsdp", "distributed.num_processes=2"],
}


def _spec(tmp: Path, stage: str) -> Path:
    (tmp / "rewards.py").write_text(
        "def length(prompts, completions, **columns):\n    return [len(c) for c in completions]\n"
    )
    rewards = "\n  reward_funcs: rewards.py" if STAGES[stage].needs_reward else ""
    path = tmp / f"{stage}.yaml"
    path.write_text(
        f"""\
model:
  model_name_or_path: {ROOT / "demo" / "tiny-model"}
method:
  stage: {stage}{rewards}
data:
  dataset: [{DATASETS.get(stage, "demo_alpaca") if STAGES[stage].trains else ""}]
  dataset_dir: {ROOT / "demo" / "data"}
  template: {"null" if stage == "pt" else "chatml"}
  val_size: 0.1
training:
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 2
logging:
  report_to: [tensorboard]
"""
    )
    return path


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Build every combination once; returns ({label: run_dir}, {label: refusal})."""
    tmp = tmp_path_factory.mktemp("matrix")
    built, refused = {}, {}
    for stage in STAGES:
        spec = _spec(tmp, stage)
        for method, method_set in METHODS.items():
            for backend, backend_set in BACKENDS.items():
                label = f"{stage}-{method}-{backend}"
                try:
                    loaded = load_spec(spec, method_set + backend_set)
                    run = tmp / "runs" / label
                    write_run(run, build_files(loaded, run)[1])
                    built[label] = run
                except SpecError as exc:
                    refused[label] = str(exc)
        # The same stage without evaluation data or plots, and with a freeze run: other optional sections.
        for method in ("lora", "freeze"):
            label = f"{stage}-{method}-plain"
            loaded = load_spec(spec, METHODS[method] + ["data.val_size=0", "logging.plot_loss=false"])
            run = tmp / "runs" / label
            write_run(run, build_files(loaded, run)[1])
            built[label] = run
    return built, refused


def test_matrix_builds_what_it_should(matrix):
    built, refused = matrix
    # Refusals are build-time checks of incompatible options, each with its reason.
    assert all(label.endswith(("-fsdp", "-deepspeed")) and "qlora" in label for label in refused), refused
    assert len(built) >= len(STAGES) * 14, sorted(refused)


def _ruff(*args) -> subprocess.CompletedProcess:
    from ruff.__main__ import find_ruff_bin

    return subprocess.run([find_ruff_bin(), *args], capture_output=True, text=True, cwd=ROOT)


def test_generated_python_passes_ruff_check_and_format(matrix):
    built, _ = matrix
    dirs = [str(path) for path in built.values()]
    lint = _ruff("check", "--no-cache", "--output-format", "concise", *dirs)
    assert lint.returncode == 0, lint.stdout[-6000:]
    form = _ruff("format", "--check", "--no-cache", *dirs)
    assert form.returncode == 0, form.stdout[-3000:]


def _python_files(built):
    for label, run in built.items():
        for path in sorted(run.glob("*.py")):
            if path.name != "rewards.py":
                yield label, path


def test_no_empty_sections_or_dead_aliases(matrix):
    built, _ = matrix
    problems = []
    for label, path in _python_files(built):
        text = path.read_text()
        lines = text.splitlines()
        for i, line in enumerate(lines):
            # A section comment followed by another section comment or the end of its function is empty.
            if re.match(r"\s*# --- .* ---$", line):
                following = next((n for n in lines[i + 1 :] if n.strip()), "")
                if re.match(r"\s*# --- ", following) or not following.startswith(" "):
                    problems.append(f"{label}/{path.name}:{i + 1}: empty section {line.strip()!r}")
        for node in ast.walk(ast.parse(text)):
            # `a = b` with both plain names is a second name for one value: write b.
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and len(node.targets) == 1:
                if isinstance(node.targets[0], ast.Name):
                    problems.append(f"{label}/{path.name}:{node.lineno}: alias {node.targets[0].id} = {node.value.id}")
    assert not problems, "\n".join(problems[:40])


def test_readme_lists_every_file(matrix):
    built, _ = matrix
    for label, run in built.items():
        readme = (run / "README.md").read_text()
        listed = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
        present = {p.name for p in run.iterdir()}
        assert listed == present, f"{label}: listed {sorted(listed - present)}, unlisted {sorted(present - listed)}"


def test_spec_strings_reach_code_only_as_literals_in_every_stage(matrix):
    """The zero-spec-branch property: generated scripts test no spec value at run time."""
    built, _ = matrix
    for label, path in _python_files(built):
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert not names & {"spec", "config_dict", "SPEC"}, f"{label}/{path.name} reads a spec at run time"


def test_the_code_base_itself_passes_its_ruff_configuration():
    lint = _ruff("check", "--no-cache", "--output-format", "concise", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    form = _ruff("format", "--check", "--no-cache", ".")
    assert form.returncode == 0, form.stdout[-2000:]
