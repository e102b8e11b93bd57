"""Load a spec file: YAML -> command-line overrides -> pydantic validation -> cross-field rules.

Every problem is reported with the place the user has to edit: ``file:line:column``
of the key in the spec, or the ``--set`` option that supplied the value.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from ffc.schemas import Spec, check


@dataclass
class Issue:
    where: str  # "spec.yaml:3:5" or "--set training.lr=1"
    path: str  # dotted key, e.g. "training.learning_rate"
    message: str

    def __str__(self) -> str:
        key = f"{self.path}: " if self.path else ""
        return f"{self.where}: {key}{self.message}"


class SpecError(Exception):
    """One or more problems in a spec, each with its place."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


@dataclass
class LoadedSpec:
    spec: Spec
    path: Path
    text: str  # the file exactly as written
    overrides: list[str] = field(default_factory=list)
    positions: Any = field(default=None, repr=False, compare=False)

    def where(self, path: tuple) -> str:
        """``file:line:col`` (or the --set option) of a key path, for errors found after loading."""
        return self.positions.where(path) if self.positions else str(self.path)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def sha256(self) -> str:
        """Hash of what determines the run: the file's bytes and the overrides, in order."""
        digest = hashlib.sha256(self.text.encode("utf-8"))
        for override in self.overrides:
            digest.update(b"\0--set\0" + override.encode("utf-8"))
        return digest.hexdigest()


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _plain(node: Any) -> Any:
    """ruamel's position-carrying containers -> plain dicts and lists for pydantic."""
    if isinstance(node, dict):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    if type(node).__module__.startswith("ruamel"):
        # ScalarFloat, ScalarBoolean, TaggedScalar...: reduce to the builtin value.
        for kind in (bool, int, float, str):
            if isinstance(node, kind):
                return kind(node)
    return node


def _parse_scalar(text: str) -> Any:
    """A --set value is YAML: 1e-5 is a float, true a bool, [a, b] a list, anything else a string."""
    try:
        value = YAML(typ="safe").load(text)
    except Exception:  # not YAML at all: the text itself is the value
        return text
    # YAML 1.2 reads "1e-5" as a string (no dot); people mean the number.
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            return value
    return value


class _Positions:
    """Finds the line and column of a key path in the parsed YAML document."""

    def __init__(self, doc: Any, filename: str, overrides: dict[tuple, str]):
        self.doc = doc
        self.filename = filename
        self.overrides = overrides

    def where(self, path: tuple) -> str:
        for length in range(len(path), 0, -1):
            if path[:length] in self.overrides:
                return f"--set {self.overrides[path[:length]]}"
        node, line, col = self.doc, 0, 0
        for key in path:
            if isinstance(node, CommentedMap) and key in node:
                line, col = node.lc.key(key)
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
                line, col = node.lc.item(key)
                node = node[key]
            else:
                break
        return f"{self.filename}:{line + 1}:{col + 1}"


def _model_at(path: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the keys at ``path`` (for did-you-mean suggestions)."""
    model: Any = Spec
    for key in path:
        info = getattr(model, "model_fields", {}).get(key)
        if info is None:
            return None
        model = info.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _describe(error: dict) -> str:
    kind, message = error["type"], error["msg"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        owner = _model_at(tuple(loc[:-1]))
        known = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    got = error.get("input")
    if kind not in ("missing",) and not isinstance(got, (dict, list)):
        message += f" (got {got!r})"
    return message


def _set_path(doc: dict, dotted: str, value: Any) -> tuple:
    keys = tuple(dotted.split("."))
    node = doc
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise SpecError([Issue(f"--set {dotted}", ".".join(keys), f"{key!r} is not a section")])
        node = child
    node[keys[-1]] = value
    return keys


def load_spec(path: str | Path, overrides: list[str] | None = None) -> LoadedSpec:
    path = Path(path)
    overrides = list(overrides or [])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Issue(str(path), "", "spec file not found")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([Issue(str(path), "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    try:
        doc = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise SpecError([Issue(where, "", f"invalid YAML: {exc.problem or exc.context}")]) from None
    except Exception as exc:  # ruamel raises a few non-marked errors (duplicate keys report through here)
        raise SpecError([Issue(str(path), "", f"invalid YAML: {exc}")]) from None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise SpecError([Issue(f"{path}:1:1", "", "a spec is a mapping of sections (model:, data:, ...)")])

    data = _plain(doc)
    overridden: dict[tuple, str] = {}
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        if not sep or not dotted.strip():
            raise SpecError([Issue(f"--set {item}", "", "expected KEY=VALUE, e.g. training.learning_rate=1e-5")])
        keys = _set_path(data, dotted.strip(), _parse_scalar(raw))
        overridden[keys] = item
    positions = _Positions(doc, str(path), overridden)

    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        issues = [
            Issue(positions.where(tuple(err["loc"])), ".".join(map(str, err["loc"])), _describe(err))
            for err in exc.errors()
        ]
        raise SpecError(issues) from None

    problems = check(spec)
    if problems:
        raise SpecError(
            [Issue(positions.where(p.path), ".".join(map(str, p.path)), p.message) for p in problems]
        )
    return LoadedSpec(spec=spec, path=path, text=text, overrides=overrides, positions=positions)
