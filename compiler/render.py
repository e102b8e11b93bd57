"""Render the run directory's files from Jinja templates.

Values reach generated code only as literals: every ``{{ ... }}`` must go through a filter made for
the place it lands: ``|py`` (a Python literal), ``|json``, ``|yaml``, ``|sh`` (a shell word),
``|comment`` (a ``#`` comment), ``|doc`` (docstring text), ``|md``/``|md_code`` (the README). The
environment's ``finalize`` refuses anything else, so no spec string can become code.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ._version import __version__

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


class Code(Markup):
    """Text that a literal filter produced: safe to place in generated code.

    It is a ``Markup`` so that the environment (autoescape on) passes it, and the
    output of macros, unchanged; any other value is refused by ``_refuse``."""


def _refuse(value: Any) -> str:
    if isinstance(value, Markup):  # Code, or the rendered text of a macro or call block
        return value
    raise jinja2.TemplateError(
        f"template bug: {value!r} would be interpolated raw; pass it through |py, |json, |yaml or |comment"
    )


def py_literal(value: Any, indent: int = 0) -> str:
    """A Python literal that evaluates back to ``value`` (ast.literal_eval-safe), deterministic."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write the non-finite number {value!r} into code")
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    pad, inner = "    " * indent, "    " * (indent + 1)
    if isinstance(value, (list, tuple)):
        items = [py_literal(v, indent + 1) for v in value]
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        if isinstance(value, tuple) and len(items) == 1:
            items[0] += ","
        flat = open_ + ", ".join(items) + close
        if len(flat) <= 80 and "\n" not in flat:
            return flat
        return open_ + "\n" + "".join(f"{inner}{item},\n" for item in items) + pad + close
    if isinstance(value, dict):
        items = [f"{py_literal(k)}: {py_literal(v, indent + 1)}" for k, v in value.items()]
        flat = "{" + ", ".join(items) + "}"
        if len(flat) <= 80 and "\n" not in flat:
            return flat
        return "{\n" + "".join(f"{inner}{item},\n" for item in items) + pad + "}"
    raise TypeError(f"no literal form for {type(value).__name__}")


def _py(value: Any, indent: int = 0) -> Code:
    return Code(py_literal(value, indent))


def _json(value: Any, indent: int | None = None) -> Code:
    return Code(json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False))


def _yaml(value: Any) -> Code:
    # JSON scalars and flow collections are valid YAML, and unambiguous.
    return Code(json.dumps(value, ensure_ascii=False, allow_nan=False))


def _one_line(value: Any) -> str:
    """Free text as one line of printable characters: newlines (Unicode line separators too), control
    and bidirectional-override characters go, so the text cannot leave or visually reorder its line."""
    if isinstance(value, Markup):
        value = value.unescape()
    text = " ".join(str(value).split())
    return "".join(ch for ch in text if ch.isprintable())


def _comment(value: Any) -> Code:
    """Free text inside a ``#`` comment (Python, shell, YAML, requirements)."""
    return Code(_one_line(value))


def _doc(value: Any) -> Code:
    """Free text inside a triple-quoted docstring: backslashes and quotes escaped, so it can neither close
    the string nor start an escape sequence (``C:\\Users`` reads back as written in ``__doc__``)."""
    return Code(_one_line(value).replace("\\", "\\\\").replace('"', '\\"'))


def _md(value: Any) -> Code:
    """Free text in a Markdown table cell of the run's README: markup characters escaped."""
    return Code(re.sub(r"([\\`*_{}\[\]()#+!|<>~])", r"\\\1", _one_line(value)))


def _md_code(value: Any) -> Code:
    """A value shown as inline code in a Markdown table: fenced with more backticks than it contains,
    pipes escaped (tables split cells before code spans are read)."""
    text = _one_line(value).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Code(f"{fence}{pad}{text}{pad}{fence}")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_refuse,
    )
    env.filters.update(py=_py, json=_json, yaml=_yaml, comment=_comment, doc=_doc, md=_md, md_code=_md_code)
    del env.filters["safe"]  # the one way around the literal filters: closed
    return env


def header(prefix: str, spec_sha256: str) -> str:
    """The provenance line every generated file starts with (no timestamps: builds are reproducible)."""
    return f"{prefix} Generated by ffc {__version__} from spec sha256:{spec_sha256[:16]}. Rebuild with `ffc build`."


RUFF_CONFIG = TEMPLATE_DIR / "ruff.toml"


class FormatError(Exception):
    """Generated Python that ruff could not format: a bug in a file template, never the user's."""


def format_python(files: dict[str, str]) -> dict[str, str]:
    """Generated Python laid out the way a person writes it: sorted, grouped imports and ruff's
    formatting, with the settings ffc ships (templates/ruff.toml), whatever the user's environment.
    Templates compose optional sections; this is what keeps the result tidy. Lint rules other than
    import order are not fixed here: tests hold the templates to them (tests/test_generated_code.py)."""
    import subprocess
    import tempfile

    from ruff.__main__ import find_ruff_bin

    ruff = find_ruff_bin()
    with tempfile.TemporaryDirectory(prefix="ffc-format-") as tmp:
        root = Path(tmp)
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8")
        common = ["--config", str(RUFF_CONFIG), "--no-cache"]
        for command in (["check", "--fix-only", "--select", "I", *common], ["format", *common]):
            done = subprocess.run([ruff, *command, "."], cwd=root, capture_output=True, text=True)
            if done.returncode != 0:
                raise FormatError(
                    f"ruff {command[0]} failed on generated code: {done.stderr.strip() or done.stdout.strip()}"
                )
        return {name: (root / name).read_text(encoding="utf-8") for name in files}
