"""ffc update: user edits survive a rebuild (three-way merge against the pristine copies in .ffc/base/),
conflicts are marked, listed and make the exit status 3, and nothing the user wrote is lost, also when
a copy is missing, the lock is damaged, or the update itself is killed half-way."""

import json
import os

import pytest

from ffc.compiler import writer
from ffc.compiler.update import update_run

from ._runs import STAGES, ffc, lock_versions, write_spec

EDIT_ANCHOR = "    setup_logging()\n"  # in every recipe's main(), far from the training arguments
MY_LINE = "    print('my own line')\n"


def _built(demo, tmp_path, capsys, stage="sft"):
    spec = write_spec(demo, tmp_path, stage)
    run = tmp_path / "runs" / "a"
    assert ffc(capsys, "build", spec, "-o", run)[0] == 0
    return spec, run


def _edit(run, old, new, name="train.py"):
    text = (run / name).read_text()
    assert old in text
    (run / name).write_text(text.replace(old, new, 1))


def _change_lr(spec, value):
    spec.write_text(spec.read_text().replace("learning_rate: 1.0e-3", f"learning_rate: {value}"))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_edits_merge_cleanly_with_a_spec_change(demo, tmp_path, capsys, monkeypatch, stage):
    lock_versions(monkeypatch)
    spec, run = _built(demo, tmp_path, capsys, stage)
    _edit(run, EDIT_ANCHOR, EDIT_ANCHOR + MY_LINE)
    (run / "notes.txt").write_text("mine")
    _change_lr(spec, "3.0e-3")
    code, out, _ = ffc(capsys, "update", run)
    assert code == 0, out
    assert "merged    train.py" in out and "CONFLICT" not in out
    train = (run / "train.py").read_text()
    assert MY_LINE in train and "learning_rate=0.003" in train and "<<<<<<<" not in train
    assert (run / "notes.txt").read_text() == "mine"
    assert "learning_rate=0.003" in (run / ".ffc/base/train.py").read_text()  # the new pristine copy
    code, out, _ = ffc(capsys, "check", run, "--json")
    assert [(f["kind"], f["name"]) for f in json.loads(out)["findings"]] == [("edited", "train.py")]


def test_conflicting_edit_is_marked_listed_and_kept(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec, run = _built(demo, tmp_path, capsys, "dpo")
    _edit(run, "learning_rate=0.001,", "learning_rate=0.002,  # mine")
    _change_lr(spec, "3.0e-3")
    code, out, _ = ffc(capsys, "update", run)
    assert code == 3
    assert "CONFLICT  train.py: 1 conflict" in out
    train = (run / "train.py").read_text()
    assert "<<<<<<< yours: train.py\n        learning_rate=0.002,  # mine\n=======\n" in train
    assert "        learning_rate=0.003,\n>>>>>>> ffc's new build: train.py\n" in train
    # A plain build does not overwrite the unresolved file; after resolving it, update is clean again.
    code, _, err = ffc(capsys, "build", spec, "-o", run)
    assert code == 1 and "edited since the last build" in err and "ffc update" in err
    start, end = train.index("<<<<<<<"), train.index(">>>>>>>")
    end = train.index("\n", end) + 1
    (run / "train.py").write_text(train[:start] + "        learning_rate=0.003,\n" + train[end:])
    code, out, _ = ffc(capsys, "update", run)
    assert code == 0 and "merged" not in out and "CONFLICT" not in out
    assert ffc(capsys, "check", run)[0] == 0


def test_unedited_run_is_rebuilt_and_deleted_files_restored(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec, run = _built(demo, tmp_path, capsys, "kto")
    (run / "launch.sh").unlink()
    _change_lr(spec, "2.0e-3")
    code, out, _ = ffc(capsys, "update", run)
    assert code == 0 and "merged" not in out
    assert (run / "launch.sh").is_file()
    assert ffc(capsys, "check", run)[0] == 0


def test_missing_pristine_copy_keeps_yours(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec, run = _built(demo, tmp_path, capsys, "sft")
    _edit(run, EDIT_ANCHOR, EDIT_ANCHOR + MY_LINE)
    mine = (run / "train.py").read_bytes()
    (run / ".ffc/base/train.py").unlink()
    _change_lr(spec, "3.0e-3")
    code, out, _ = ffc(capsys, "update", run)
    assert code == 3 and "no pristine copy" in out
    assert (run / "train.py").read_bytes() == mine
    assert "learning_rate=0.003" in (run / ".ffc/base/train.py").read_text()


def test_damaged_lock_needs_the_spec_and_is_saved(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec, run = _built(demo, tmp_path, capsys, "pt")
    (run / "ffc.lock.json").write_text("{ damaged")
    code, _, err = ffc(capsys, "update", run)
    assert code == 1 and "pass --spec SPEC" in err and "Traceback" not in err
    code, out, _ = ffc(capsys, "update", run, "--spec", spec)
    assert code == 0 and "saved     ffc.lock.json.yours" in out
    assert (run / "ffc.lock.json.yours").read_text() == "{ damaged"
    assert json.loads((run / "ffc.lock.json").read_text())["spec"]["method"]["stage"] == "pt"
    spec.rename(tmp_path / "moved.yaml")
    code, _, err = ffc(capsys, "update", run)
    assert code == 1 and "is not there: pass --spec SPEC" in err
    (run / ".ffc-manifest.json").unlink()
    code, _, err = ffc(capsys, "update", run, "--spec", tmp_path / "moved.yaml")
    assert code == 1 and "ffc did not build it" in err


def test_overrides_are_kept_unless_replaced(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec = write_spec(demo, tmp_path, "sft")
    run = tmp_path / "run"
    ffc(capsys, "build", spec, "-o", run, "--set", "training.max_steps=7")
    assert ffc(capsys, "update", run)[0] == 0
    assert "max_steps=7," in (run / "train.py").read_text()
    assert ffc(capsys, "update", run, "--set", "training.max_steps=9")[0] == 0
    assert "max_steps=9," in (run / "train.py").read_text()
    assert json.loads((run / "ffc.lock.json").read_text())["overrides"] == ["training.max_steps=9"]


def _update_stopped_at(run, at, monkeypatch) -> bool:
    """Run ffc update on ``run``, stopped just before its ``at``-th file operation; False if it finished."""
    count = [0]
    with monkeypatch.context() as patch:
        for module, name in ((os, "replace"), (os, "rename"), (os, "unlink"), (writer, "_write_file")):
            real = getattr(module, name)

            def operation(*args, _real=real, **kwargs):
                if count[0] >= at:
                    raise Killed
                count[0] += 1
                return _real(*args, **kwargs)

            patch.setattr(module, name, operation)
        try:
            update_run(run)
            return False
        except Killed:
            return True


class Killed(BaseException):
    pass


def test_update_killed_at_each_operation_then_run_again(demo, tmp_path, capsys, monkeypatch):
    """A kill anywhere in an update's writing leaves a run that the next update completes: the user's
    edit and the spec change both end up in train.py, with no conflict markers (in the run's files and
    in the pristine copies written after them)."""

    lock_versions(monkeypatch)
    spec, run = _built(demo, tmp_path, capsys, "sft")
    at, killed_somewhere = 0, True
    while killed_somewhere:
        # Back to the build's spec, a fresh build with the user's edit, then the spec change to update to.
        spec.write_text(spec.read_text().replace("learning_rate: 3.0e-3", "learning_rate: 1.0e-3"))
        ffc(capsys, "build", spec, "-o", run, "--force")
        _edit(run, EDIT_ANCHOR, EDIT_ANCHOR + MY_LINE)
        spec.write_text(spec.read_text().replace("learning_rate: 1.0e-3", "learning_rate: 3.0e-3"))
        killed_somewhere = _update_stopped_at(run, at, monkeypatch)
        result = update_run(run)
        assert not result.conflicts, (at, result.conflicts)
        train = (run / "train.py").read_text()
        assert MY_LINE in train and "learning_rate=0.003" in train and "<<<<<<<" not in train, at
        at += 7  # every 7th operation: test_writer.py kills the writer at each one already
    assert at > 30


def test_vendored_run_stays_vendored_and_diff_ignores_the_copies(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec = write_spec(demo, tmp_path, "sft")
    run = tmp_path / "runs" / "a"
    ffc(capsys, "build", spec, "-o", run, "--vendor")
    _edit(run, EDIT_ANCHOR, EDIT_ANCHOR + MY_LINE)
    _change_lr(spec, "3.0e-3")
    assert ffc(capsys, "update", run)[0] == 0
    assert (run / "ffc/runtime/provenance.py").is_file() and (run / ".ffc/base/ffc/runtime/provenance.py").is_file()
    assert MY_LINE in (run / "train.py").read_text()
    ffc(capsys, "build", spec, "-o", tmp_path / "runs" / "b", "--vendor")
    code, out, _ = ffc(capsys, "diff", run, tmp_path / "runs" / "b")
    assert code == 0 and "my own line" in out and ".ffc/" not in out


def test_a_spec_that_no_longer_validates_changes_nothing(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec, run = _built(demo, tmp_path, capsys, "orpo")
    _edit(run, EDIT_ANCHOR, EDIT_ANCHOR + MY_LINE)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    _change_lr(spec, "-1")
    code, _, err = ffc(capsys, "update", run)
    assert code == 1 and "training.learning_rate" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_an_ffc_upgrade_with_the_same_spec_is_merged_too(demo, tmp_path, capsys, monkeypatch):
    """A new ffc that generates different code (simulated: a changed template line) reaches edited runs."""
    from ffc.compiler import build

    lock_versions(monkeypatch)
    spec, run = _built(demo, tmp_path, capsys, "simpo")
    _edit(run, EDIT_ANCHOR, EDIT_ANCHOR + MY_LINE)
    real = build.build_files

    def upgraded(*args, **kwargs):
        resolved, files = real(*args, **kwargs)
        files["train.py"] = files["train.py"].replace(b"def main() -> None:", b"def main() -> None:  # new ffc")
        return resolved, files

    monkeypatch.setattr(build, "build_files", upgraded)
    code, out, _ = ffc(capsys, "update", run)
    assert code == 0 and "merged    train.py" in out
    train = (run / "train.py").read_text()
    assert MY_LINE in train and "def main() -> None:  # new ffc" in train


def test_unresolved_markers_are_never_nested(demo, tmp_path, capsys, monkeypatch):
    """An update with conflicts, stopped at any point of its writing and run again (or simply run again
    before the conflicts are resolved), refuses to merge over the old markers and changes nothing; once
    they are resolved, it completes with one level of markers at most."""

    lock_versions(monkeypatch)
    spec, run = _built(demo, tmp_path, capsys, "dpo")
    _edit(run, "learning_rate=0.001,", "learning_rate=0.002,  # mine")
    _change_lr(spec, "3.0e-3")
    assert ffc(capsys, "update", run)[0] == 3
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _, err = ffc(capsys, "update", run)
    assert code == 1 and "train.py" in err and "conflict markers of an earlier `ffc update`" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    refused, at, killed_somewhere = 0, 0, True
    while killed_somewhere:
        spec.write_text(spec.read_text().replace("learning_rate: 3.0e-3", "learning_rate: 1.0e-3"))
        ffc(capsys, "build", spec, "-o", run, "--force")
        _edit(run, "learning_rate=0.001,", "learning_rate=0.002,  # mine")
        _change_lr(spec, "3.0e-3")
        killed_somewhere = _update_stopped_at(run, at, monkeypatch)
        code, out, err = ffc(capsys, "update", run)
        train = (run / "train.py").read_text()
        assert train.count("<<<<<<<") <= 1 and train.count(">>>>>>>") <= 1, (at, out, err)
        if code == 1:  # the markers were written before the stop: resolve them, then update completes
            assert "conflict markers of an earlier" in err, (at, err)
            refused += 1
            start, end = train.index("<<<<<<<"), train.index(">>>>>>>")
            end = train.index("\n", end) + 1
            (run / "train.py").write_text(train[:start] + "        learning_rate=0.002,  # mine\n" + train[end:])
            code, out, err = ffc(capsys, "update", run)
        assert code in (0, 3), (at, out, err)
        train = (run / "train.py").read_text()
        assert train.count("<<<<<<<") <= 1 and "learning_rate=0.002,  # mine" in train, (at, train)
        at += 5
    assert refused, "no stop fell after the markers were written: the test no longer covers them"
