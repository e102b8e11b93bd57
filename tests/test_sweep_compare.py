"""ffc sweep builds one checked run per grid point with quoted launch scripts and a table; a bad point
writes nothing. ffc compare lists the settings that differ and the final metrics, survives runs that
are untrained or damaged, and draws the curves only when asked (matplotlib is not imported otherwise)."""

import json
import os
import subprocess
import sys

import pytest

from ffc.compiler import compare as comparing
from ffc.compiler.sweep import SweepError, parse_grid, points

from ._runs import ffc, lock_versions, write_spec


def test_grid_parsing_and_names():
    grid = parse_grid(["training.learning_rate=1e-4, 3e-4", "method.lora_target=[q_proj,v_proj],all"])
    assert grid == [("training.learning_rate", ["1e-4", "3e-4"]), ("method.lora_target", ["[q_proj,v_proj]", "all"])]
    names = [p.name for p in points(grid)]
    assert names[0] == "learning_rate-1e-4_lora_target-q_proj_v_proj" and len(set(names)) == 4
    # Values that differ only in characters a folder name cannot hold still get distinct folders.
    assert [p.name for p in points([("logging.run_name", ["a b", "a/b"])])] == ["run_name-a_b", "run_name-a_b_2"]
    for bad in (["nokey"], ["training.learning_rate="], ["a=1,,2"], ["a=1,1"], ["a=1", "a=2"], []):
        with pytest.raises(SweepError):
            parse_grid(bad)


def test_sweep_builds_every_point_with_its_table_and_scripts(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec = write_spec(demo, tmp_path, "dpo")
    out = tmp_path / "sweeps" / "lr"
    hostile = "x'$(touch pwned)`id`;\"y"
    code, stdout, err = ffc(
        capsys, "sweep", spec, "--grid", "training.learning_rate=1e-3,2e-3", "--grid", f"logging.run_name=a,{hostile}",
        "-o", out, "--set", "training.max_steps=3",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads((out / "sweep.json").read_text())
    names = [run["name"] for run in record["runs"]]
    assert len(names) == 4 and all((out / name / "train.py").is_file() for name in names)
    assert names[0] == "learning_rate-1e-3_run_name-a"
    for run in record["runs"]:
        lock = json.loads((out / run["name"] / "ffc.lock.json").read_text())
        assert lock["overrides"] == ["training.max_steps=3", *run["overrides"]]
        assert lock["spec"]["training"]["max_steps"] == 3
        assert ffc(capsys, "check", out / run["name"])[0] == 0  # each run is as built, with its overrides
    table = (out / "sweep.md").read_text()
    assert table.count("\n| `learning_rate-") == 4 and "`2e-3`" in table
    for script in ("run_all.sh", "sweep.sbatch"):
        assert subprocess.run(["bash", "-n", str(out / script)]).returncode == 0
    sbatch = (out / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-3\n" in sbatch and "pwned" not in sbatch.split("RUNS=")[0]

    # run_all.sh runs each run's launch.sh in turn, passes its arguments on, and counts failures.
    for i, name in enumerate(names):
        (out / name / "launch.sh").write_text(f'echo "$@" > ran.txt\nexit {1 if i == 1 else 0}\n')
    done = subprocess.run(["bash", str(out / "run_all.sh"), "--resume"], capture_output=True, text=True)
    assert done.returncode == 1 and "1 of 4 runs failed" in done.stdout
    assert all((out / name / "ran.txt").read_text() == "--resume\n" for name in names)
    assert not list(tmp_path.rglob("pwned"))


def test_a_bad_point_writes_nothing(demo, tmp_path, capsys):
    spec = write_spec(demo, tmp_path, "sft")
    out = tmp_path / "sweep"
    code, _, err = ffc(capsys, "sweep", spec, "--grid", "training.learning_rate=1e-3,-1", "-o", out)
    assert code == 1 and "run learning_rate--1 (training.learning_rate=-1)" in err and "Traceback" not in err
    assert not out.exists()
    code, _, err = ffc(capsys, "sweep", spec, "--grid", "learning_rate", "-o", out)
    assert code == 1 and "KEY=VALUE1,VALUE2" in err


def test_points_with_different_resources_get_no_job_array(demo, tmp_path, capsys):
    spec = write_spec(demo, tmp_path, "sft")
    out = tmp_path / "sweep"
    code, stdout, _ = ffc(
        capsys, "sweep", spec, "--grid", "distributed.num_processes=2,4", "-o", out,
        "--set", "distributed.backend=ddp", "--set", "distributed.num_machines=1",
    )  # fmt: skip
    assert code == 0
    assert "no sweep.sbatch" in stdout and not (out / "sweep.sbatch").exists()


def _fake_training(run, losses, eval_loss=None):
    output = run / "output"
    output.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"current_steps": i + 1, "loss": loss}) for i, loss in enumerate(losses)]
    if eval_loss is not None:
        lines.append(json.dumps({"current_steps": len(losses), "eval_loss": eval_loss}))
    (output / "trainer_log.jsonl").write_text("\n".join(lines) + "\n")
    (output / "train_results.json").write_text(
        json.dumps({"train_loss": sum(losses) / len(losses), "train_runtime": 1.5})
    )


def test_compare_settings_metrics_and_partial_runs(demo, tmp_path, capsys):
    spec = write_spec(demo, tmp_path, "sft")
    out = tmp_path / "sweep"
    ffc(capsys, "sweep", spec, "--grid", "training.learning_rate=1e-3,2e-3,3e-3", "-o", out)
    a, b, c = sorted(p for p in out.iterdir() if p.is_dir())
    _fake_training(a, [3.0, 2.5, 2.0], eval_loss=2.2)
    _fake_training(b, [3.0, 2.0, 1.0])
    (b / "output" / "trainer_log.jsonl").write_text((b / "output" / "trainer_log.jsonl").read_text() + "{cut")
    (c / "ffc.lock.json").write_text("{")  # damaged, and never trained
    code, table, _ = ffc(capsys, "compare", a, b, c)
    assert code == 0
    rows = table.splitlines()
    assert rows[0] == "| run | `training.learning_rate` | steps | final_loss | train_loss | eval_loss | runtime_s |"
    assert rows[2] == "| `learning_rate-1e-3` | 0.001 | 3 | 2 | 2.5 | 2.2 | 1.5 |"
    assert rows[3].startswith("| `learning_rate-2e-3` | 0.002 | 3 | 1 | 2 | — |")
    assert rows[4].startswith("| `learning_rate-3e-3` | ? | — |")
    assert "line 4 unreadable" in table and "ffc.lock.json damaged" in table and "not trained yet" in table
    data = json.loads(ffc(capsys, "compare", a, b, "--json")[1])
    assert data["settings"] == {"training.learning_rate": {a.name: 0.001, b.name: 0.002}}
    assert data["metrics"][a.name]["final_loss"] == 2.0
    code, _, err = ffc(capsys, "compare", a, tmp_path / "nowhere")
    assert code == 1 and "not a run directory" in err


def test_compare_plot_overlays_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    runs = []
    for name, losses in (("x", [3.0, 2.0]), ("y", [3.0, 2.5, 1.5])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ffc.lock.json").write_text(json.dumps({"spec": {"training": {"seed": len(losses)}}}))
        _fake_training(tmp_path / name, losses, eval_loss=2.0)
        runs.append(tmp_path / name)
    png = tmp_path / "compare.png"
    code, out, _ = ffc(capsys, "compare", *runs, "-o", png)
    assert code == 0 and "wrote" in out and "(4 curves)" in out
    assert png.read_bytes().startswith(b"\x89PNG")
    assert comparing.plot(comparing.compare_runs(runs), tmp_path / "eval.png", key="nothing") == 0


def test_cli_import_does_not_load_matplotlib():
    code = "import sys; import ffc.compiler.cli, ffc.compiler.compare; print('matplotlib' in sys.modules)"
    env = dict(os.environ, MPLBACKEND="Agg")
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip() == "False"
    )


def test_compare_leaves_out_settings_that_only_restate_the_run_name(tmp_path):
    runs = []
    for name, lr in (("a", 0.001), ("b", 0.002)):
        spec = {"name": name, "logging": {"run_name": name}, "serve": {"model_name": name}, "training": {"lr": lr}}
        (tmp_path / name).mkdir()
        (tmp_path / name / "ffc.lock.json").write_text(json.dumps({"spec": spec}))
        runs.append(tmp_path / name)
    assert comparing.compare_runs(runs).differing == ["training.lr"]
    # A name that is not the folder's, or a run_name of its own, is a real difference and stays.
    lock = json.loads((runs[1] / "ffc.lock.json").read_text())
    lock["spec"].update(name="other", logging={"run_name": "mine"})
    (runs[1] / "ffc.lock.json").write_text(json.dumps(lock))
    assert comparing.compare_runs(runs).differing == ["logging.run_name", "name", "serve.model_name", "training.lr"]
