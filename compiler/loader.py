"""Load a spec file: YAML -> command-line overrides -> pydantic validation -> cross-field rules.

Every problem is reported with the place the user has to edit: ``file:line:column``
of the key in the spec, or the ``--set`` option that supplied the value.

Nothing in a spec file may crash or stall the loader: it reads only regular files of a
bounded size, walks the parser's events before a document is built (so nesting, aliases
that expand exponentially and numbers too long to convert are refused cheaply), and
refuses values no run can use (non-finite floats, NUL characters, lone surrogates, dates,
binary data) with the key's place.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, MappingStartEvent, ScalarEvent
from ruamel.yaml.reader import ReaderError

from ffc.schemas import Spec, check

# A real spec is a few KB with a handful of levels and ~100 values; these limits are far above
# that and far below what makes parsing slow (ruamel parses ~250 KB/s) or deep (recursion).
MAX_BYTES = 128 * 1024
MAX_DEPTH = 32
MAX_VALUES = 10_000  # after expanding aliases
MAX_DIGITS = 100  # Python refuses to convert ints over 4300 digits; no setting needs 100
MAX_SHOWN = 120  # characters of a rejected value quoted back in a message


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


def _shown(path: Any) -> str:
    """A file name as it can be printed: NUL bytes and undecodable bytes escaped."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 5]}...{text[-2:]} ({len(text)} characters)"


def _error(where: str, message: str, path: str = "") -> SpecError:
    return SpecError([Issue(where, path, message)])


class _InvalidYAML(SpecError):
    """The text is not YAML (as opposed to YAML the loader refuses)."""


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


def _read(path: Path, shown: str) -> str:
    """The spec's text; only a regular file is read (a FIFO or a device would block or never end)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # non-blocking: opening a FIFO returns at once instead of waiting for a writer
    except FileNotFoundError:
        raise _error(
            shown, "spec file not found: check the path (a relative path starts from the current directory)"
        ) from None
    except IsADirectoryError:
        raise _error(shown, "is a directory: give the spec's YAML file, e.g. examples/lora_sft.yaml") from None
    except ValueError:  # os functions refuse names with a NUL byte
        raise _error(shown, "a file name cannot contain a NUL byte: check the spec path") from None
    except OSError as exc:
        raise _error(
            shown, f"cannot open the spec file ({exc.strerror or exc}): check the path and its permissions"
        ) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise _error(shown, "is a directory: give the spec's YAML file, e.g. examples/lora_sft.yaml")
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise _error(shown, f"is {kind}, not a regular file: ffc reads a spec only from a file, save the YAML to one")
    with os.fdopen(fd, "rb") as file:
        try:
            data = file.read(MAX_BYTES + 1)
        except OSError as exc:
            raise _error(shown, f"cannot read the spec file ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise _error(
            shown,
            f"is larger than {MAX_BYTES // 1024} KB: a spec is a short YAML file of settings; is this the right file?",
        )
    nul = data.find(b"\0")
    if nul >= 0:
        raise _error(
            shown,
            f"is not a text file (a NUL byte at byte {nul}): a spec is YAML text saved as UTF-8; is this the right file?",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text ({exc.reason} at byte {exc.start}): re-save the file as UTF-8"
        raise _error(f"{shown}:{line}", message) from None


# Plain scalars YAML may read as numbers (also YAML 1.1's 1_000, 0x.., 0o.., 0b.., 1:30).
_NUMBER = re.compile(r"[-+]?(?:0[xob][0-9a-fA-F_]+|[0-9_:]*\.?[0-9_:]+(?:[eE][-+]?[0-9_]+)?)")
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
# Explicit tags that still give a plain value; any other (!!set, !!omap, !!python/..., !custom) is refused before
# ruamel constructs it (some of its constructors crash on a tag on the wrong kind of node).
_SCALAR_TAGS = ("!", "tag:yaml.org,2002:str", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", *_NUMBER_TAGS)
_COLLECTION_TAGS = {True: ("!", "tag:yaml.org,2002:map"), False: ("!", "tag:yaml.org,2002:seq")}
_SPECIAL_FLOATS = (".inf", "+.inf", "-.inf", ".nan")


class _Open:
    """A collection the event scan is inside."""

    __slots__ = ("is_map", "anchor", "values", "height", "count", "key")

    def __init__(self, is_map: bool, anchor: Any):
        self.is_map, self.anchor = is_map, anchor
        self.values, self.height, self.count, self.key = 1, 1, 0, "?"


def _scan(text: str, place: Callable[[int, int], str]) -> None:
    """Refuse, from the parser's events and before any document is built, what would make building it
    explode: nesting deeper than MAX_DEPTH, aliases that expand past MAX_VALUES values (a few lines of
    "billion laughs" expand to 10^9) or into the collection that holds them, and numbers too long to convert."""
    finished: dict[Any, tuple[int, int]] = {}  # anchor -> (values, height) of its node, as expanded
    open_anchors: set = set()
    stack: list[_Open] = []
    total = 0

    def fail(event: Any, message: str) -> SpecError:
        mark = event.start_mark
        keys = []
        for entry in stack:
            if entry.is_map:
                if entry.count % 2:  # inside a value: its key names it
                    keys.append(str(entry.key))
            else:
                keys.append(str(entry.count))
        return _error(place(mark.line, mark.column), message, ".".join(keys))

    def add(event: Any, values: int, height: int) -> None:
        nonlocal total
        total += values
        if total > MAX_VALUES:
            message = f"the spec holds more than {MAX_VALUES:,} values once its aliases (*name) are expanded"
            raise fail(event, message + ": a spec needs far fewer; write the values out, or alias smaller parts")
        if stack:
            parent = stack[-1]
            parent.values += values
            parent.height = max(parent.height, height + 1)

    def done(key: Any) -> None:
        if stack:
            parent = stack[-1]
            if parent.is_map and parent.count % 2 == 0:
                parent.key = key
            parent.count += 1

    for event in _yaml().parse(text):
        tag = getattr(event, "tag", None)
        tag = None if tag is None else str(getattr(tag, "value", tag))  # a str, or a Tag in newer ruamel
        if tag is not None:
            allowed = (
                _COLLECTION_TAGS[isinstance(event, MappingStartEvent)]
                if isinstance(event, CollectionStartEvent)
                else _SCALAR_TAGS
            )
            if tag not in allowed:
                shown = tag.replace("tag:yaml.org,2002:", "!!")
                raise fail(event, f"has the YAML tag {shown}, which specs do not use: remove the tag")
        if isinstance(event, CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise fail(
                    event, f"nested more than {MAX_DEPTH} levels deep: a spec's sections are a few levels at most"
                )
            stack.append(_Open(isinstance(event, MappingStartEvent), event.anchor))
            total += 1  # provisional (the whole is added at its end): a runaway collection is stopped while read
            if event.anchor is not None:
                open_anchors.add(event.anchor)
        elif isinstance(event, CollectionEndEvent):
            entry = stack.pop()
            if entry.anchor is not None:
                finished[entry.anchor] = (entry.values, entry.height)
                open_anchors.discard(entry.anchor)
            total -= entry.values  # counted again, whole, as the parent's child
            add(event, entry.values, entry.height)
            done("?")
        elif isinstance(event, ScalarEvent):
            if (event.style is None and tag is None) or tag in _NUMBER_TAGS:
                value = event.value
                digits = sum(c.isdigit() for c in value)
                if digits > MAX_DIGITS and _NUMBER.fullmatch(value):
                    message = f"a number with {digits} digits: no setting needs more than {MAX_DIGITS}"
                    raise fail(event, message + " (quote it if you mean text)")
                if tag in _NUMBER_TAGS and not (_NUMBER.fullmatch(value) or value.lower() in _SPECIAL_FLOATS):
                    message = f"{_short(value)} is tagged !!{tag.rsplit(':', 1)[-1]} but is not a number"
                    raise fail(event, message + ": remove the tag or fix the number")
            if event.anchor is not None:
                finished[event.anchor] = (1, 0)
            add(event, 1, 0)
            done(event.value)
        elif isinstance(event, AliasEvent):
            if event.anchor in open_anchors:
                message = f"the alias *{event.anchor} is inside the collection &{event.anchor} it names"
                raise fail(event, message + ", so it would never end: alias something outside it")
            values, height = finished.get(event.anchor, (1, 0))  # an undefined alias is the composer's to report
            if len(stack) + height > MAX_DEPTH:
                raise fail(event, f"the alias *{event.anchor} nests the spec more than {MAX_DEPTH} levels deep")
            add(event, values, height)
            done("?")


# What to do about ruamel's commonest complaints (matched in its message).
_YAML_HINTS = (
    ("duplicate key", "each key may appear once in a mapping: remove one of them"),
    ("'\\t'", "indent with spaces, not tabs"),
    ("undefined alias", "define the anchor (&name) before the alias (*name) that uses it"),
    ("mapping values are not allowed", "quote a value that holds ': ', or put the key on its own line"),
    ("could not find expected ':'", "each line of a mapping is 'key: value'; check the indentation and quotes"),
    ("expected <block end>", "check the indentation: keys of one section line up"),
    ("found unexpected end of stream", "close the quote or bracket opened before"),
    ("found unknown escape character", "in double quotes, write a backslash as \\\\ (or use single quotes)"),
)


def _parse(text: str, place: Callable[[int, int], str], shown: str) -> Any:
    """YAML text -> ruamel's document, or a SpecError at the place of the first problem."""
    try:
        _scan(text, place)
        return _yaml().load(text)
    except SpecError:
        raise
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = place(mark.line, mark.column) if mark else shown
        problem = str(exc.problem or exc.context or "unreadable")
        if "another document" in problem:
            problem = "a second document (---) follows the first: a spec is one YAML document; move the other into its own file"
        else:
            hint = next((h for clue, h in _YAML_HINTS if clue in problem), "fix the YAML at this place")
            problem += f"; {hint}"
        raise _InvalidYAML([Issue(where, "", f"invalid YAML: {problem}")]) from None
    except ReaderError as exc:  # control characters YAML does not allow, outside a quoted escape
        line = text.count("\n", 0, exc.position)
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1)
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        message = f"invalid YAML: the control character {character!r} is not allowed in YAML text; remove it"
        raise _InvalidYAML([Issue(place(line, column), "", message)]) from None
    except (YAMLError, ValueError, RecursionError) as exc:  # ruamel's unmarked errors
        raise _InvalidYAML([Issue(shown, "", f"invalid YAML: {exc}")]) from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text_problem(text: str) -> str:
    if "\0" in text:
        return "contains a NUL character (\\0), which no file name, setting or prompt can hold: remove it"
    surrogate = _SURROGATE.search(text)
    if surrogate:
        return (
            f"contains a lone surrogate (\\u{ord(surrogate.group()):04x}), half of a UTF-16 pair, which is not text: "
            "write the character itself, or its \\U00XXXXXX escape"
        )
    return ""


def _value_problem(value: Any) -> str:
    """Why a parsed value cannot be a spec value ('' when it can)."""
    if value is None or isinstance(value, (bool, dict, list)):
        return ""
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, int):
        return "" if abs(value) < 10**MAX_DIGITS else f"a number over {MAX_DIGITS} digits: no setting needs one"
    if isinstance(value, float):
        if math.isfinite(value):
            return ""
        what = "not a number (nan)" if math.isnan(value) else f"infinite ({value})"
        return f"is {what}: write a finite number (a number over 1.8e308 is read as infinite)"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f'YAML reads {value} as a date: quote it ("{value}") if you mean text'
    if isinstance(value, (bytes, bytearray)):
        return "is binary data (!!binary): a spec holds text; remove the tag"
    tag = getattr(value, "tag", None)
    tag = str(getattr(tag, "value", tag) or "").replace("tag:yaml.org,2002:", "!!")
    if tag:
        return f"has the YAML tag {tag}, which specs do not use: remove the tag"
    return f"is a {type(value).__name__.removeprefix('Commented').lower()}, which specs do not use: write a list or a mapping"


def _dotted(path: tuple) -> str:
    return ".".join(_shown(key) for key in path)


def _check_values(node: Any, path: tuple, where: Callable[[tuple], str], issues: list[Issue]) -> None:
    """Append an Issue (with the key's place) for every value and key no run can use."""
    if len(issues) >= 20:  # enough to act on
        return
    problem = _value_problem(node)
    if problem:
        issues.append(Issue(where(path), _dotted(path), problem))
    elif isinstance(node, dict):
        for key, value in node.items():
            key_path = path + (key,)
            if not (key is None or isinstance(key, (str, int, float))):
                issues.append(Issue(where(path), _dotted(path), f"a key must be a name, not {_short(key)}"))
            elif isinstance(key, str) and _text_problem(key):
                issues.append(Issue(where(key_path), _dotted(key_path), f"the key {_text_problem(key)}"))
            else:
                _check_values(value, key_path, where, issues)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_values(value, path + (index,), where, issues)


def _set_label(item: str) -> str:
    """How a --set option is named in messages: escaped, and shortened when long."""
    shown = _shown(item)
    return shown if len(shown) <= MAX_SHOWN else f"{shown[: MAX_SHOWN - 20]}... ({len(item)} characters)"


def _parse_scalar(text: str, item: str = "") -> Any:
    """A --set value is YAML: 1e-5 is a float, true a bool, [a, b] a list, anything else a string."""
    where = f"--set {_set_label(item or text)}"
    try:
        value = _plain(_parse(text, lambda line, column: where, where))
    except _InvalidYAML:  # not YAML at all: the text itself is the value
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
            try:
                if isinstance(node, CommentedMap) and key in node:
                    line, col = node.lc.key(key)
                    node = node[key]
                elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                    line, col = node.lc.item(key)
                    node = node[key]
                else:
                    break
            except (KeyError, TypeError):  # a key merged in with <<: has no place of its own: its mapping's
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


def _placed_hint(key: str, path: tuple) -> str:
    """Where a key that is unknown at ``path`` belongs: another section's option, or a LLaMA-Factory key
    that ffc spells differently, does not need or does not have."""
    from .importer import DROPPED, FIELD_SECTIONS, MISSING, RENAMED

    sections = [s for s in FIELD_SECTIONS.get(key, []) if tuple(s.split(".")) != path]
    if sections:
        return "it belongs in " + " or ".join(f"{s} (as {s}.{key})" for s in sections)
    if key in RENAMED:
        return f"LLaMA-Factory's {key} is {RENAMED[key]} in ffc"
    if key in DROPPED:
        return f"LLaMA-Factory's {key} has no effect in ffc: {DROPPED[key]}; remove it"
    if key in MISSING:
        return f"LLaMA-Factory's {key}: ffc has no {MISSING[key]}"
    return ""


# Keys at the top of a LLaMA-Factory config; a spec has them inside its sections.
_LF_MARKERS = ("model_name_or_path", "stage", "finetuning_type", "dataset", "do_train")


def _llamafactory_config(doc: CommentedMap, shown: str, path: Path) -> SpecError | None:
    """A flat LLaMA-Factory config given where a spec belongs: say how to translate it."""
    if "model" in doc or not any(key in doc for key in _LF_MARKERS):
        return None
    target = path.with_name(f"{path.stem}.ffc.yaml")
    return _error(
        f"{shown}:1:1",
        "this looks like a LLaMA-Factory config (flat keys such as model_name_or_path at the top level), "
        f"not an ffc spec: translate it with `ffc import {shown} -o {_shown(target)}` (add --lf-root DIR for the "
        "directory llamafactory-cli ran in), then use the spec it writes",
    )


def _describe(error: dict) -> str:
    kind, message = error["type"], error["msg"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        owner = _model_at(tuple(loc[:-1]))
        known = list(owner.model_fields) if owner else []
        placed = _placed_hint(str(loc[-1]), tuple(map(str, loc[:-1])))
        if placed:
            return f"unknown key here; {placed}"
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        if not close:  # a misspelt key of another section: name it with its section
            from .importer import FIELD_SECTIONS

            near = difflib.get_close_matches(str(loc[-1]), list(FIELD_SECTIONS), n=1, cutoff=0.75)
            close = [f"{FIELD_SECTIONS[near[0]][0]}.{near[0]}"] if near else []
        hint = f"; did you mean {close[0]!r}?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    got = error.get("input")
    if kind not in ("missing",) and not isinstance(got, (dict, list)):
        message += f" (got {_short(got)})"
    return message


def _non_finite(node: Any, path: tuple):
    """(path, value) of every infinite or NaN float in a validated spec."""
    if isinstance(node, float) and not math.isfinite(node):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _non_finite(value, path + (key,))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _non_finite(value, path + (index,))


def _set_path(doc: dict, dotted: str, value: Any) -> tuple:
    keys = tuple(dotted.split("."))
    node = doc
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise SpecError([Issue(f"--set {_set_label(dotted)}", _dotted(keys), f"{key!r} is not a section")])
        node = child
    node[keys[-1]] = value
    return keys


EMPTY = (
    "the spec is empty: a spec is a YAML mapping of sections (model:, method:, data:, training:); "
    "start from one of the examples, e.g. examples/lora_sft.yaml"
)


def load_spec(path: str | Path, overrides: list[str] | None = None) -> LoadedSpec:
    path = Path(path)
    overrides = list(overrides or [])
    shown = _shown(path)
    text = _read(path, shown)
    doc = _parse(text, lambda line, column: f"{shown}:{line + 1}:{column + 1}", shown)
    if doc is None:
        raise _error(shown, EMPTY)
    if not isinstance(doc, CommentedMap):
        what = "a list" if isinstance(doc, list) else f"the single value {_short(doc)}"
        raise _error(
            f"{shown}:1:1",
            f"the document is {what}, but a spec is a mapping of sections (model:, method:, data:, training:); "
            "start from one of the examples, e.g. examples/lora_sft.yaml",
        )
    flat = _llamafactory_config(doc, shown, path)
    if flat is not None:
        raise flat
    positions = _Positions(doc, shown, {})
    issues: list[Issue] = []
    _check_values(doc, (), positions.where, issues)
    if issues:
        raise SpecError(issues)

    data = _plain(doc)
    overridden: dict[tuple, str] = {}
    for item in overrides:
        label = f"--set {_set_label(item)}"
        dotted, sep, raw = item.partition("=")
        dotted = dotted.strip()
        if not sep or not dotted:
            raise _error(label, "expected KEY=VALUE, e.g. training.learning_rate=1e-5")
        if _text_problem(dotted):
            raise _error(label, f"the key {_text_problem(dotted)}")
        value = _parse_scalar(raw, item)
        _check_values(value, tuple(dotted.split(".")), lambda _: label, issues)
        if issues:
            raise SpecError(issues)
        overridden[_set_path(data, dotted, value)] = _set_label(item)
    positions = _Positions(doc, shown, overridden)

    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        issues = [
            Issue(positions.where(tuple(err["loc"])), ".".join(map(str, err["loc"])), _describe(err))
            for err in exc.errors()
        ]
        raise SpecError(issues) from None

    # pydantic reads the strings "inf" and "nan" as floats: no setting can use one.
    issues = [
        Issue(positions.where(p), _dotted(p), f"is {value}: write a finite number")
        for p, value in _non_finite(spec.model_dump(), ())
    ]
    if issues:
        raise SpecError(issues)

    problems = check(spec)
    if problems:
        raise SpecError([Issue(positions.where(p.path), ".".join(map(str, p.path)), p.message) for p in problems])
    return LoadedSpec(spec=spec, path=path, text=text, overrides=overrides, positions=positions)
