"""What the UI's Preview and Build buttons do: the CLI's own load -> validate -> build -> write steps,
on a spec the form wrote. Errors come back as the CLI prints them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

from ffc.compiler.diff import diff_files, run_files
from ffc.compiler.loader import Issue, SpecError, load_spec
from ffc.compiler.writer import WriteError, write_run, write_text_atomic

from .jobs import OutsideWorkspace, Workspace
from .jobs import check_name as _check_name

# Spec paths the UI itself touches, which must lie in the workspace. Read when building and shown in the
# preview (relative to the spec file, i.e. the workspace): the dataset registry and its rows, the reward
# functions. Written by the scripts the UI starts (relative to the run directory). Models may be anywhere:
# only training and the scripts read them.
READ_WHEN_BUILDING = (("data", "dataset_dir"), ("method", "reward_funcs"))
WRITTEN_BY_THE_RUN = (("training", "output_dir"), ("eval", "output_dir"), ("export", "export_dir"))


@dataclass
class Outcome:
    yaml: str
    errors: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # generated file -> text
    diff: Optional[str] = None  # against the run directory on disk; None: not built before
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_name(name: str) -> Optional[str]:
    try:
        _check_name(name)
    except ValueError as exc:
        return str(exc)
    return None


def _outside_workspace(workspace: Workspace, loaded, run_dir: Path) -> list[Issue]:
    """Problems with spec paths that leave the workspace (see READ_WHEN_BUILDING, WRITTEN_BY_THE_RUN)."""
    issues = []
    for keys, base in [(k, loaded.base_dir) for k in READ_WHEN_BUILDING] + [(k, run_dir) for k in WRITTEN_BY_THE_RUN]:
        value = loaded.spec
        for key in keys:
            value = getattr(value, key, None)
        if value is None:
            continue
        try:
            workspace.inside(value, base=base)
        except OutsideWorkspace as exc:
            issues.append(Issue(loaded.where(keys), ".".join(keys), str(exc)))
    return issues


def _load(workspace: Workspace, name: str, yaml_text: str, keep: bool):
    """Load the spec from a file in the workspace (so relative paths mean what they will mean when saved)."""
    target = workspace.spec_path(name)
    path = target if keep else workspace.root / f".{name}.preview.yaml"
    write_text_atomic(path, yaml_text)
    try:
        loaded = load_spec(path)
        outside = _outside_workspace(workspace, loaded, workspace.run_dir(name))
        if outside:
            raise SpecError(outside)
        return loaded, None
    except SpecError as exc:
        # Name the file the user will have, not the scratch copy.
        return None, [str(issue).replace(str(path), target.name, 1) for issue in exc.issues]
    finally:
        if not keep:
            path.unlink(missing_ok=True)


def _checked(workspace: Workspace, name: str, yaml_text: str, keep: bool):
    """(outcome, loaded spec or None): the name and the spec checked as the CLI checks them."""
    outcome = Outcome(yaml_text)
    problem = check_name(name)
    if problem:
        outcome.errors.append(problem)
        return outcome, None
    loaded, errors = _load(workspace, name, yaml_text, keep=keep)
    outcome.errors = errors or []
    return outcome, loaded


def _compile(outcome: Outcome, loaded, run_dir: Path) -> Optional[dict[str, bytes]]:
    """The run directory's files, shown in ``outcome``; None (errors in ``outcome``) when the build fails."""
    from ffc.compiler.build import build_files

    try:
        resolved, files = build_files(loaded, run_dir)
    except SpecError as exc:
        outcome.errors = [str(issue) for issue in exc.issues]
        return None
    except OSError as exc:  # a path in the spec the build could not read
        outcome.errors = [f"{exc.filename or 'a file'}: {exc.strerror or exc}: check this path in the spec"]
        return None
    outcome.files = {k: v.decode("utf-8", "replace") for k, v in sorted(files.items())}
    if resolved.registry_note:
        outcome.messages.append(resolved.registry_note)
    return files


def preview(workspace: Workspace, name: str, yaml_text: str) -> Outcome:
    outcome, loaded = _checked(workspace, name, yaml_text, keep=False)
    if loaded is None:
        return outcome
    run_dir = workspace.run_dir(name)
    files = _compile(outcome, loaded, run_dir)
    if files is not None and run_dir.is_dir():
        outcome.diff = diff_files(run_files(run_dir), files)
    return outcome


def build(workspace: Workspace, name: str, yaml_text: str) -> Outcome:
    """Save the spec as <workspace>/<name>.yaml and build runs/<name>/ from it."""
    if check_name(name) is None and workspace.status(name) == "running":
        return Outcome(yaml_text, errors=[f"{name!r} is training: stop it before building over it"])
    outcome, loaded = _checked(workspace, name, yaml_text, keep=True)
    if loaded is None:
        return outcome
    run_dir = workspace.run_dir(name)
    files = _compile(outcome, loaded, run_dir)
    if files is None:
        return outcome
    try:
        changed = write_run(run_dir, files, base=True)  # .ffc/base/: what `ffc update` merges edits against
        changed = [n for n in changed if not n.startswith(".ffc")]
    except WriteError as exc:
        outcome.errors = [str(exc)]
        return outcome
    built = f"built {run_dir} ({len(files)} files, {len(changed)} changed) from {workspace.spec_path(name)}"
    outcome.messages.insert(0, built)
    outcome.diff = ""  # the directory now holds exactly these files
    return outcome


def load_source(path: str, workspace: Workspace) -> tuple[str, str]:
    """(run name, spec YAML) from a spec file or a run directory (its spec.yaml, else its lock) in the
    workspace; ValueError (OutsideWorkspace) for one outside it."""
    source = workspace.inside(path)
    if source.is_dir():
        if (source / "spec.yaml").is_file():
            text = (source / "spec.yaml").read_text(encoding="utf-8")
        elif (source / "ffc.lock.json").is_file():
            from .form import to_yaml

            text = to_yaml(json.loads((source / "ffc.lock.json").read_text(encoding="utf-8"))["spec"])
        else:
            raise ValueError(f"{source} is neither a spec file nor a run directory (no spec.yaml or ffc.lock.json)")
        return source.name, text
    if not source.is_file():
        raise ValueError(f"{source} not found")
    return source.stem, source.read_text(encoding="utf-8")


def dataset_names(dataset_dir: str, workspace: Workspace) -> list[str]:
    """Names registered in a dataset directory's dataset_info.json (empty when there is none);
    OutsideWorkspace for a directory outside the workspace, which the UI does not read."""
    from ffc.runtime.data.registry import RegistryError, read_registry

    folder = workspace.inside(dataset_dir or "")
    try:
        registry = read_registry(folder)
    except (OSError, RegistryError):
        return []
    return list(registry) if isinstance(registry, dict) else []


def dataset_rows(dataset_dir: str, name: str, workspace: Workspace, count: int = 3) -> str:
    """The first rows of a registered dataset file, as stored (JSON); only of files in the workspace."""
    from ffc.runtime.data.registry import RegistryError, data_files, resolve

    try:
        folder = workspace.inside(dataset_dir or "")
        (attr,) = resolve(folder, [name])
    except (OSError, RegistryError, OutsideWorkspace) as exc:
        return f"{name}: {exc}"
    if attr.source != "file":
        return f"{name} is a hub dataset ({attr.path}): its rows are read when training starts"
    try:  # an entry's file_name may itself point elsewhere
        workspace.inside(attr.path, base=folder)
        files = [workspace.inside(p) for p in data_files(folder, attr)]
    except OutsideWorkspace as exc:
        return f"{name}: {exc}"
    if not files or not files[0].is_file():
        return f"{name}: {files[0] if files else folder / attr.path} not found"
    path = files[0]
    if path.suffix not in (".json", ".jsonl"):
        return f"{path.name}: rows of {path.suffix} files are shown by the tokenised preview below"
    return f"{path} ({attr.formatting}):\n" + json.dumps(_read_rows(path, count), ensure_ascii=False, indent=1)


def _read_rows(path: Path, count: int) -> list:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line, _ in zip(f, range(count))]
    data = json.loads(path.read_text(encoding="utf-8"))
    return data[:count] if isinstance(data, list) else [data]


def _first_rows(folder: Path, attr, workspace: Workspace, count: int) -> list:
    """The first rows of a registered JSON/JSONL file in the workspace; none when it cannot be read."""
    from ffc.runtime.data.registry import data_files

    try:
        files = [workspace.inside(p) for p in data_files(folder, attr)]
        if files and files[0].suffix in (".json", ".jsonl"):
            return _read_rows(files[0], count)
    except (OSError, ValueError):  # OutsideWorkspace is a ValueError, as is bad JSON
        pass
    return []


class Media(NamedTuple):
    """One picture of the dataset preview: an image file, or a video (``video_file``: a file to decode; a video
    given as frame images is shown by its first frame, an image file)."""

    path: str
    caption: str
    video_file: bool = False


def dataset_media(dataset_dir: str, name: str, workspace: Workspace, count: int = 3) -> list[Media]:
    """The images and videos of a dataset's first rows, when its dataset_info.json entry names images or videos
    columns; only files in the workspace (a path outside it is left out, as is a missing one: the tokenised
    preview and the build say what is wrong with a row)."""
    from ffc.runtime.data.media import media_columns
    from ffc.runtime.data.registry import RegistryError, resolve

    try:
        folder = workspace.inside(dataset_dir or "")
        (attr,) = resolve(folder, [name])
    except (OSError, RegistryError, OutsideWorkspace):
        return []
    columns = {key: attr.column(key) for key in media_columns(attr)}
    if not columns or attr.source != "file":
        return []

    def local(path) -> Optional[str]:
        if not isinstance(path, str) or not path or not workspace.contains(path, base=folder):
            return None
        file = workspace.inside(path, base=folder)
        return str(file) if file.is_file() else None

    found = []
    for number, row in enumerate(_first_rows(folder, attr, workspace, count), start=1):
        where = f"{name} · row {number}"
        for key, column in columns.items():
            value = row.get(column) if isinstance(row, dict) else None
            for item in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
                frames = item if key == "videos" and isinstance(item, list) and item else None
                file = local(frames[0] if frames else item)
                if file is None:
                    continue
                if frames:
                    found.append(Media(file, f"{where} · video of {len(frames)} frames, first: {frames[0]}"))
                elif key == "videos":
                    found.append(Media(file, f"{where} · video {item} (first frame)", video_file=True))
                else:
                    found.append(Media(file, f"{where} · {item}"))
    return found


def first_frame(path: str):
    """A video file's first frame (a PIL image), None when PyAV is missing or cannot decode it (the build says
    why). The dataset preview shows videos by it rather than playing them: a browser plays few of the codecs
    PyAV (and so training) reads, like the MPEG-4 of ffc's demo clips, while this picture always shows, decoded
    by the reader training uses, at the cost of a gallery image."""
    from ffc.runtime.chat.vision import MediaError
    from ffc.runtime.data import video
    from ffc.runtime.errors import UserError

    try:
        return video.first_frame(path)
    except (MediaError, UserError):  # undecodable, or PyAV missing
        return None


def run_has_videos(workspace: Workspace, run: str) -> bool:
    """Whether a built run's datasets carry videos (its chat.py and serve.py then sample frames), decided as the
    build decides: from the run directory's dataset_info.json and the datasets its lock names."""
    from ffc.compiler.media_check import media_kinds_of

    if not run or check_name(run):
        return False
    folder = workspace.run_dir(run)
    try:
        registry = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
        data = json.loads((folder / "ffc.lock.json").read_text(encoding="utf-8"))["spec"]["data"]
        names = [*(data.get("dataset") or []), *(data.get("eval_dataset") or [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return isinstance(registry, dict) and "videos" in media_kinds_of(registry, names)


def tokenised_preview(workspace: Workspace, name: str, yaml_text: str, count: int = 3, timeout: float = 300) -> str:
    """The first samples as the model will see them: the spec is built into a scratch run directory and
    its own ``train.py --preview`` prints them (the runtime's data pipeline, not a copy of it)."""
    import subprocess

    outcome, loaded = _checked(workspace, name, yaml_text, keep=False)
    scratch = workspace.root / ".ffc-ui" / "preview" / name
    files = _compile(outcome, loaded, scratch) if loaded else None
    if files is None:
        return "\n".join(outcome.errors)
    try:
        write_run(scratch, files, force=True)
    except WriteError as exc:
        return str(exc)
    result = subprocess.run(
        [workspace.python, "train.py", "--preview", str(count)], cwd=scratch, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if result.returncode != 0:
        return (result.stdout + result.stderr)[-4000:]
    return result.stdout
