"""The UI's workspace: spec files, the run directories built from them, and the processes started in them.

The UI holds no training logic: it writes specs, calls the compiler, starts the run directory's own
scripts (launch.sh, eval.py, export.py, serve.py) as separate processes, and reads what they write
(their output, trainer_log.jsonl, all_results.json).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ffc.compiler.writer import MANIFEST, write_text_atomic

STATUS_FILE = ".ffc-ui.json"  # in a run directory: how the UI's last processes there ended
LOG_DIR = "logs"  # in a run directory: one log per kind of process the UI started
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a run name: no separators, no leading dot, so never a path
# Options of the run's scripts that name a place the script writes (argparse also takes their unambiguous prefixes).
WRITTEN_BY_OPTION = {"export": ("--export-dir",)}


class OutsideWorkspace(ValueError):
    """A path the UI was asked to read or write that is not in its workspace."""


def check_name(name) -> str:
    """``name`` when it can name a spec file and a run directory, else ValueError."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(
            f"run name {name!r}: use letters, digits, '.', '_' or '-' (it names the spec file and the run directory)"
        )
    return name


def _option_values(options: tuple, args: list[str]) -> list[str]:
    """The values given to ``options`` (or prefixes of them, as argparse accepts) in ``args``."""
    values = []
    for i, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if len(name) > 2 and name.startswith("--") and any(option.startswith(name) for option in options):
            if equals:
                values.append(value)
            elif i + 1 < len(args):
                values.append(args[i + 1])
    return values


@dataclass
class Job:
    run: str
    kind: str  # train | eval | export | serve
    command: list[str]
    cwd: Path
    log_path: Path
    process: subprocess.Popen
    started: float = field(default_factory=time.time)
    stop_requested: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll()

    @property
    def state(self) -> str:
        """running, stopped (by the UI), finished, or failed (exit N)."""
        code = self.returncode
        if code is None:
            return "running"
        return "stopped" if self.stop_requested else ("finished" if code == 0 else f"failed (exit {code})")

    def stop(self, grace: float = 10.0) -> None:
        """Stop the process and everything it started (launchers start worker processes)."""
        if not self.alive:
            return
        self.stop_requested = True
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log; progress bars redraw with carriage returns, so only their last state is kept."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    out = [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(line for line in out[-lines:])


def read_progress(log_path: Optional[Path]) -> dict:
    """Progress of a training run from its trainer_log.jsonl: steps, percentage, ETA and the loss curve."""
    points, last = [], {}
    try:
        lines = log_path.read_text(encoding="utf-8").splitlines() if log_path else []
    except OSError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        last = record
        if "loss" in record:
            points.append((record.get("current_steps", 0), record["loss"]))
    return {
        "step": last.get("current_steps", 0),
        "total": last.get("total_steps", 0),
        "percentage": last.get("percentage", 0.0),
        "elapsed": last.get("elapsed_time"),
        "remaining": last.get("remaining_time"),
        "loss": points,
    }


class Workspace:
    """Specs as ``<root>/<name>.yaml``, run directories as ``<root>/runs/<name>/``."""

    def __init__(self, root: Path, python: str = sys.executable):
        self.root = root.resolve()
        self.runs_dir = self.root / "runs"
        self.python = python
        self.jobs: dict[tuple[str, str], Job] = {}
        self._lock = threading.Lock()

    def spec_path(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.yaml"

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / check_name(name)  # names come from API callers too: never "../x" or "/x"

    def inside(self, path, base: Optional[Path] = None) -> Path:
        """``path`` (relative to ``base``, by default the workspace) as an absolute path in the workspace,
        else OutsideWorkspace. Whoever reaches the UI's port can call its handlers with any text, so the UI
        reads and writes only here. Links in the workspace count as part of it: the UI creates none, so
        they are its owner's way to lend it a model or a data set kept elsewhere; but ``..`` may not climb
        out through one."""
        given = Path(os.path.expanduser(str(path)))
        full = given if given.is_absolute() else (base or self.root) / given
        try:
            real = full.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL byte
            raise OutsideWorkspace(f"{path}: {exc}") from None
        if real.is_relative_to(self.root):
            return real
        if ".." not in full.parts and full.is_relative_to(self.root):  # through a link the owner placed here
            return full
        raise OutsideWorkspace(
            f"{path}: outside the workspace {self.root}; the UI reads and writes only inside it "
            "(to use a folder kept elsewhere, link it into the workspace)"
        )

    def contains(self, path, base: Optional[Path] = None) -> bool:
        try:
            self.inside(path, base)
        except OutsideWorkspace:
            return False
        return True

    # -- runs --------------------------------------------------------------------------------------------

    def run_names(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if NAME.fullmatch(p.name) and (p / MANIFEST).is_file())

    def lock_value(self, name: str, keys: tuple, default: str) -> str:
        """A setting of the run as its lock file records it (e.g. ("training", "output_dir"))."""
        try:
            node = json.loads((self.run_dir(name) / "ffc.lock.json").read_text(encoding="utf-8"))["spec"]
            for key in keys:
                node = node[key]
        except (OSError, ValueError, KeyError, TypeError):
            return default
        return default if node is None else str(node)

    def run_path(self, name: str, keys: tuple, default: str) -> Path:
        """A folder the run's lock names (e.g. ("training", "output_dir")), relative to the run directory;
        OutsideWorkspace when it leaves the workspace (a run built elsewhere): the UI does not read it."""
        return self.inside(self.lock_value(name, keys, default), base=self.run_dir(name))

    def output_dir(self, name: str) -> Path:
        """The run's training output directory (OutsideWorkspace when the lock puts it outside)."""
        return self.run_path(name, ("training", "output_dir"), "output")

    def progress(self, name: str) -> dict:
        """``read_progress`` of the run's trainer_log.jsonl; nothing when its output is outside the workspace."""
        try:
            return read_progress(self.output_dir(name) / "trainer_log.jsonl")
        except OutsideWorkspace:
            return read_progress(None)

    def status(self, name: str) -> str:
        job = self.jobs.get((name, "train"))
        if job and job.alive:
            return "running"
        if job:
            self._record(job)
        recorded = self._recorded(name).get("train")
        if recorded:
            return recorded
        try:
            return "finished" if (self.output_dir(name) / "all_results.json").is_file() else "built"
        except OutsideWorkspace:
            return "built"

    def runs_table(self) -> list[list]:
        """[name, status, step / total, last loss, last change] per run, newest first."""
        rows = []
        for name in self.run_names():
            progress = self.progress(name)
            loss = progress["loss"][-1][1] if progress["loss"] else None
            folders = [self.run_dir(name)]
            try:
                folders.append(self.output_dir(name))
            except OutsideWorkspace:
                pass
            changed = max(p.stat().st_mtime for p in folders if p.exists())
            steps = f"{progress['step']} / {progress['total']}" if progress["total"] else ""
            rows.append([name, self.status(name), steps, "" if loss is None else round(loss, 4), changed])
        rows.sort(key=lambda row: row[-1], reverse=True)
        return [row[:-1] + [time.strftime("%Y-%m-%d %H:%M", time.localtime(row[-1]))] for row in rows]

    # -- processes ---------------------------------------------------------------------------------------

    def start(self, name: str, kind: str, command: list[str]) -> Job:
        """Start ``command`` in the run directory as its own process group, output to logs/<kind>.log."""
        run = self.run_dir(name)
        if not (run / MANIFEST).is_file():
            raise ValueError(f"{name!r} is not built yet: press Build first")
        with self._lock:
            current = self.jobs.get((name, kind))
            if current and current.alive:
                raise ValueError(f"{kind} of {name!r} is already running")
            log_path = run / LOG_DIR / f"{kind}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            # The scripts run with the interpreter (and its environment's tools, e.g. accelerate) that runs the UI.
            env["PATH"] = str(Path(self.python).parent) + os.pathsep + env.get("PATH", "")
            env["PYTHONUNBUFFERED"] = "1"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    command, cwd=run, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, start_new_session=True,
                )  # fmt: skip
            job = Job(name, kind, command, run, log_path, process)
            self.jobs[(name, kind)] = job
            self._write_recorded(name, kind, "running")
            return job

    def start_training(self, name: str, resume: bool = False) -> Job:
        run = self.run_dir(name)
        if (run / MANIFEST).is_file() and not (run / "launch.sh").is_file():
            raise ValueError("this run trains nothing (stage none): chat with, serve, evaluate or export its model")
        # --resume: train.py continues from the newest complete checkpoint in its output directory.
        return self.start(name, "train", ["bash", "launch.sh", *(["--resume"] if resume else [])])

    def start_script(self, name: str, kind: str, args: list[str] = ()) -> Job:
        script = self.run_dir(name) / f"{kind}.py"
        if not script.is_file():
            raise ValueError(f"this run has no {kind}.py (its stage does not produce one)")
        for value in _option_values(WRITTEN_BY_OPTION.get(kind, ()), list(args)):
            self.inside(value, base=self.run_dir(name))  # the script runs in the run directory
        return self.start(name, kind, [self.python, f"{kind}.py", *args])

    def stop(self, name: str, kind: str = "train") -> bool:
        job = self.jobs.get((name, kind))
        if not job or not job.alive:
            return False
        job.stop()
        self._record(job)
        return True

    def job(self, name: str, kind: str) -> Optional[Job]:
        job = self.jobs.get((name, kind))
        if job and not job.alive:
            self._record(job)
        return job

    def log_tail(self, name: str, kind: str, lines: int = 40) -> str:
        return tail(self.run_dir(name) / LOG_DIR / f"{kind}.log", lines)

    def shutdown(self) -> None:
        for job in list(self.jobs.values()):
            job.stop(grace=5)

    # -- what became of processes, kept across UI restarts -------------------------------------------------

    def _record(self, job: Job) -> None:
        if not job.alive:
            self._write_recorded(job.run, job.kind, job.state)

    def _recorded(self, name: str) -> dict:
        try:
            data = json.loads((self.run_dir(name) / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        status = data if isinstance(data, dict) else {}
        if status.get("train") == "running" and (name, "train") not in self.jobs:
            status["train"] = "interrupted"  # the UI that started it ended first
        return status

    def _write_recorded(self, name: str, kind: str, state: str) -> None:
        path = self.run_dir(name) / STATUS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        data[kind] = state
        write_text_atomic(path, json.dumps(data, indent=1))
