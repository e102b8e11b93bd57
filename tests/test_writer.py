"""The run-directory writer survives being killed: at every file operation of a build, a crash leaves a
directory the next build completes without --force, with no staging folder left and no user file touched."""

import json
import os
import shutil

import pytest

from ffc.compiler import writer
from ffc.compiler.writer import JOURNAL, MANIFEST, WriteError, write_run

OLD = {
    "train.py": b"#!/usr/bin/env python\nprint('old')\n",
    "README.md": b"# old\n",
    "gone.txt": b"only in the old build\n",
    "same.txt": b"unchanged\n",
    "ffc/runtime/a.py": b"A = 1\n",
}
NEW = {
    "train.py": b"#!/usr/bin/env python\nprint('new')\n",
    "README.md": b"# new\n",
    "added.txt": b"only in the new build\n",
    "same.txt": b"unchanged\n",
    "ffc/runtime/a.py": b"A = 2\n",
    "ffc/runtime/b.py": b"B = 2\n",
}
THIRD = {"train.py": b"print('third')\n", "README.md": b"# third\n", "ffc/runtime/a.py": b"A = 3\n"}
USER = {"notes.txt": b"mine", "output/ckpt.bin": b"weights", "gone.txt.bak": b"my copy"}

# Everything the writer does to the file system goes through these: a crash can happen at any of them.
OPERATIONS = [
    (os, "replace"),
    (os, "rename"),
    (os, "unlink"),
    (os, "mkdir"),
    (os, "rmdir"),
    (os, "chmod"),
    (writer, "_write_file"),
]


class Killed(BaseException):
    """Not an Exception: nothing in the writer may catch it, as nothing runs after a SIGKILL."""


class Faults:
    """Count file operations; from operation ``at`` on, every one fails, as in a process that was killed
    (so cleanup code after the crash cannot do what a killed process could not)."""

    def __init__(self, monkeypatch, at=None):
        self.count, self.at, self.dead, self.log = 0, at, False, []
        for module, name in OPERATIONS:
            monkeypatch.setattr(module, name, self._wrap(name, getattr(module, name)))

    def _wrap(self, name, real):
        def operation(*args, **kwargs):
            if self.dead or self.count == self.at:
                self.dead = True
                raise Killed
            self.count += 1
            self.log.append(name)
            return real(*args, **kwargs)

        return operation


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _user_files(run):
    for name, data in USER.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(data)


def _assert_built(run, files):
    tree = _tree(run)
    assert json.loads(tree.pop(MANIFEST))["files"] == {name: writer._sha(data) for name, data in files.items()}
    assert tree == {**files, **USER}, sorted(set(tree) ^ set({**files, **USER}))
    assert os.access(run / "train.py", os.X_OK) == files["train.py"].startswith(b"#!")
    leftovers = [p.name for p in run.parent.iterdir() if p != run]
    assert not leftovers, f"staging folders left: {leftovers}"


def _operations(monkeypatch, run, files, before=None):
    """How many file operations writing ``files`` over ``before`` takes."""
    if before is not None:
        write_run(run, before)
    with monkeypatch.context() as patch:
        faults = Faults(patch)
        write_run(run, files)
    shutil.rmtree(run.parent)
    return faults.count


def _crash(monkeypatch, run, files, at):
    """Write ``files``, killed at operation ``at``; True if it was (the build may finish before)."""
    with monkeypatch.context() as patch:
        Faults(patch, at)
        try:
            write_run(run, files)
        except Killed:
            return True
    return False


def test_crash_at_each_operation_of_an_update_then_rebuild(tmp_path, monkeypatch):
    run = tmp_path / "out" / "run"
    total = _operations(monkeypatch, run, NEW, before=OLD)
    assert total > 10
    for at in range(total):
        write_run(run, OLD)
        _user_files(run)
        assert _crash(monkeypatch, run, NEW, at)
        assert _tree(run)["notes.txt"] == b"mine"
        changed = write_run(run, NEW)  # no --force needed: the half-done update is ffc's own
        _assert_built(run, NEW)
        assert "notes.txt" not in changed and not (run / JOURNAL).exists()
        shutil.rmtree(run.parent)


def test_crash_then_build_the_old_spec_again(tmp_path, monkeypatch):
    run = tmp_path / "out" / "run"
    total = _operations(monkeypatch, run, NEW, before=OLD)
    for at in range(0, total, 3):
        write_run(run, OLD)
        _user_files(run)
        assert _crash(monkeypatch, run, NEW, at)
        write_run(run, OLD)
        _assert_built(run, OLD)
        shutil.rmtree(run.parent)


def test_two_crashes_in_a_row_then_rebuild(tmp_path, monkeypatch):
    """A build killed while it completes a killed build: the first build's files stay ffc's."""
    run = tmp_path / "out" / "run"
    total = _operations(monkeypatch, run, NEW, before=OLD)
    for first in range(2, total, 4):
        for second in range(1, total, 5):
            write_run(run, OLD)
            _user_files(run)
            assert _crash(monkeypatch, run, NEW, first)
            _crash(monkeypatch, run, THIRD, second)
            write_run(run, THIRD)
            _assert_built(run, THIRD)
            shutil.rmtree(run.parent)


def test_crash_at_each_operation_of_a_new_directory(tmp_path, monkeypatch):
    run = tmp_path / "out" / "run"
    total = _operations(monkeypatch, run, NEW)
    for at in range(total):
        run.parent.mkdir(parents=True, exist_ok=True)
        assert _crash(monkeypatch, run, NEW, at)
        assert write_run(run, NEW)
        _user_files(run)
        _assert_built(run, NEW)
        shutil.rmtree(run.parent)


def test_an_edit_after_a_crash_is_still_protected(tmp_path, monkeypatch):
    run = tmp_path / "out" / "run"
    total = _operations(monkeypatch, run, NEW, before=OLD)
    write_run(run, OLD)
    _user_files(run)
    assert _crash(monkeypatch, run, NEW, total // 2)
    (run / "README.md").write_bytes(b"# my edit\n")
    with pytest.raises(WriteError, match=r"README\.md \(edited since the last build\)"):
        write_run(run, NEW)
    assert (run / "README.md").read_bytes() == b"# my edit\n"
    write_run(run, NEW, force=True)
    _assert_built(run, NEW)


def test_a_link_in_place_of_a_generated_file_is_an_edit(tmp_path):
    run = tmp_path / "out" / "run"
    write_run(run, OLD)
    (tmp_path / "mine.md").write_bytes(b"# mine\n")
    (run / "README.md").unlink()
    (run / "README.md").symlink_to(tmp_path / "mine.md")
    with pytest.raises(WriteError, match=r"README\.md \(edited"):
        write_run(run, NEW)
    assert (run / "README.md").is_symlink() and (tmp_path / "mine.md").read_bytes() == b"# mine\n"


def test_stale_staging_folders_go_but_not_a_running_build_s_or_the_user_s(tmp_path):
    run = tmp_path / "run"
    write_run(run, OLD)
    stale = tmp_path / f".run{writer.STAGING}abc123"
    stale.mkdir()
    (stale / "train.py").write_bytes(b"half")
    old_style = tmp_path / ".run.k2j4h5g6"  # what an ffc before the journal left
    old_style.mkdir()
    (old_style / "README.md").write_bytes(NEW["README.md"])
    (old_style / MANIFEST).write_text(json.dumps({"generated_by": "ffc", "files": {"README.md": "x", "train.py": "y"}}))
    lookalike = tmp_path / ".run.backup12"  # the user's: it holds a file no manifest lists
    lookalike.mkdir()
    (lookalike / MANIFEST).write_text(json.dumps({"generated_by": "ffc", "files": {}}))
    (lookalike / "notes.txt").write_bytes(b"mine")
    with writer._Staging(run) as running:  # another build, still writing
        write_run(run, NEW)
        assert running.path.is_dir()
    assert not stale.exists() and not old_style.exists()
    assert (lookalike / "notes.txt").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.backup12", "run"]


def test_damaged_manifest_needs_force(tmp_path):
    run = tmp_path / "run"
    write_run(run, OLD)
    (run / MANIFEST).write_text("{not json")
    with pytest.raises(WriteError, match="is damaged"):
        write_run(run, NEW)
    write_run(run, NEW, force=True)
    assert (run / "train.py").read_bytes() == NEW["train.py"]


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "a/../../outside.txt", ""])
def test_a_manifest_naming_files_outside_the_run_is_refused(tmp_path, name):
    run = tmp_path / "run"
    write_run(run, OLD)
    (tmp_path / "outside.txt").write_bytes(b"keep")
    (run / MANIFEST).write_text(json.dumps({"generated_by": "ffc", "files": {name: writer._sha(b"keep")}}))
    with pytest.raises(WriteError, match="is damaged"):
        write_run(run, NEW)
    assert (tmp_path / "outside.txt").read_bytes() == b"keep"


def test_no_change_writes_nothing(tmp_path, monkeypatch):
    run = tmp_path / "run"
    write_run(run, OLD)
    with monkeypatch.context() as patch:
        faults = Faults(patch)
        assert write_run(run, OLD) == []
    assert faults.log == ["mkdir"]  # of the parent, which exists
