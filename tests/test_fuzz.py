"""Bad input never crashes or hangs ``ffc validate`` / ``ffc build``.

A seeded fuzzer mutates the example specs (wrong types, unknown and misspelled keys, deleted keys,
out-of-range numbers, hostile strings, huge and deep structures, YAML anchors and aliases, duplicate
keys, non-mapping documents, empty and binary files, --set options, dataset_info.json entries, files
replaced by folders) and runs the CLI in-process on each. Every case must either succeed with
parseable output (each generated .py passes ``ast.parse``) or exit non-zero with one ``error: ...``
message that names the place -- never a traceback, never more than a few seconds.

FFC_FUZZ_CASES=3000 runs more cases (default 400); FFC_FUZZ_SEED picks another sequence.
"""

import ast
import collections
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from ffc.compiler import cli

ROOT = Path(__file__).resolve().parent.parent
CASES = int(os.environ.get("FFC_FUZZ_CASES", "400"))
SEED = int(os.environ.get("FFC_FUZZ_SEED", "0"))
LIMIT_S = 5.0  # per command; a legitimate build takes ~0.3 s
# Files this test's author may not change: a crash whose innermost project frame is in one of them
# is reported (and the random test marked xfail) instead of failing the run.
NOT_OURS = ("compiler/build.py", "compiler/resolve.py", "compiler/render.py", "schemas/", "templates/")

HOSTILE = [
    "",
    " ",
    "a\0b",  # NUL
    "\ud800",  # lone surrogate
    "x\udcff.yaml",
    "{{ 7*7 }}{% raw %}",
    '\'"""\\n\\\\',
    "__import__('os').system('echo pwned') #",
    "line\nbreak\r\nand\u2028sep",
    "\x1b[31mred",
    "é漢字🙂",
    "../" * 40 + "etc/passwd",
    "/",
    "/dev/zero",
    "~",
    "x" * 300,  # a path component longer than file systems allow
    ("a/" * 2000) + "b",
    "x" * 70_000,
    "-rf",
    "--force",
    "$(touch /tmp/pwned)",
    "`id`",
    "a b;c|d&e",
    "NaN",
    "inf",
    "-Infinity",
    "1e999",
    "0x10",
    "2024-01-01",
    "null",
    "yes",
]
NUMBERS = [-1, 0, -0.0, 1, 2, 0.5, 1.5, 3, 4097, 1e-320, 1e308, 10**30, 2**63, -(2**63) - 1, 10**99, float("inf"),
           float("-inf"), float("nan"), True, 65536, 1 << 40]  # fmt: skip
OTHER_TYPES = [[], {}, "text", True, False, None, 3, -2.5, [1, "a"], {"x": 1}, [[[]]], {"a": {"b": {}}}]
TYPOS = [
    lambda k: k[:-1],
    lambda k: k + k[-1],
    lambda k: k[1:] + k[0],
    lambda k: k.upper(),
    lambda k: k + "s",
    lambda k: k.replace("_", "-"),
    lambda k: k.replace("_", ""),
    lambda k: " " + k,
    lambda k: k + "\u200b",
]


class Hang(BaseException):
    """Raised by the alarm: not an Exception, so no handler in ffc can swallow it."""


# ---------------------------------------------------------------- emitting YAML


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar; \u escapes included


def _key(key) -> str:
    return key if isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) else _scalar(key)


def _flow(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def emit(node, indent: int = 0) -> str:
    lines = []
    for key, value in node.items():
        if isinstance(value, dict) and value:
            lines.append(f"{' ' * indent}{_key(key)}:\n{emit(value, indent + 2)}")
        else:
            lines.append(f"{' ' * indent}{_key(key)}: {_flow(value)}\n")
    return "".join(lines)


# ---------------------------------------------------------------- mutations


def _paths(node, prefix=()):
    """Every key path of a plain document (mappings and lists)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


def _parent(doc, path):
    node = doc
    for key in path[:-1]:
        node = node[key]
    return node


def _set(doc, path, value):
    if path:
        _parent(doc, path)[path[-1]] = value


def mutate_doc(doc: dict, rng: random.Random) -> str:
    """Change ``doc`` in place in one way; returns what was done."""
    paths = list(_paths(doc)) or [("name",)]
    path = rng.choice(paths)
    kind = rng.choice(["type", "typo", "unknown", "delete", "number", "number", "string", "string", "huge", "deep"])
    if kind == "type":
        _set(doc, path, rng.choice(OTHER_TYPES))
    elif kind == "typo":
        map_paths = [p for p in paths if isinstance(_parent(doc, p), dict)]
        path = rng.choice(map_paths)
        parent = _parent(doc, path)
        parent[rng.choice(TYPOS)(str(path[-1])) or "x"] = parent.pop(path[-1])
    elif kind == "unknown":
        sections = [key for key, value in doc.items() if isinstance(value, dict)]
        target = doc[rng.choice(sections)] if sections and rng.random() < 0.7 else doc
        target[rng.choice(["extra", "lora_rnak", "learning-rate", "", "0", "a.b", "__class__", "\u00e9"])] = 1
    elif kind == "delete":
        del _parent(doc, path)[path[-1]]
    elif kind == "number":
        _set(doc, path, rng.choice(NUMBERS))
    elif kind == "string":
        _set(doc, path, rng.choice(HOSTILE))
    elif kind == "huge":
        _set(doc, path, rng.choice([[f"m{i}" for i in range(5000)], {f"k{i}": i for i in range(3000)}, "y" * 100_000]))
    elif kind == "deep":
        value = "leaf"
        for _ in range(rng.choice([5, 31, 40, 200])):
            value = [value] if rng.random() < 0.5 else {"k": value}
        _set(doc, path, value)
    return f"{kind} at {'.'.join(map(str, path))}"


BILLION_LAUGHS = "lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


def mutate_text(text: str, rng: random.Random) -> tuple[str | bytes, str]:
    """Mutations of the YAML text itself."""
    lines = text.splitlines(keepends=True)
    kind = rng.choice(
        ["laughs", "self_alias", "merge", "anchor_reuse", "undefined_alias", "duplicate", "non_mapping", "empty",
         "binary", "truncate", "flip", "tab", "crlf", "bom", "utf16", "latin1", "tags", "big_int", "deep_flow",
         "multi_doc", "control"]
    )  # fmt: skip
    if kind == "laughs":
        return text + BILLION_LAUGHS + "training_alias: *a9\n", kind
    if kind == "self_alias":
        return text + "x: &s [1, *s]\n", kind
    if kind == "merge":
        return text.replace(
            "training:\n", "defaults: &d {max_steps: 5, learning_rate: 1.0e-4}\ntraining:\n  <<: *d\n", 1
        ), kind
    if kind == "anchor_reuse":  # a valid alias: evaluate on the training datasets
        return re.sub(r"^(  dataset: )(\[.*\])$", r"\1&ds \2\n  eval_dataset: *ds", text, count=1, flags=re.M), kind
    if kind == "undefined_alias":
        return text + "name: *nowhere\n", kind
    if kind == "duplicate":
        keyed = [line for line in lines if re.match(r"\s*\w+:", line)]
        line = rng.choice(keyed)
        index = lines.index(line)
        return "".join(lines[: index + 1] + [line] + lines[index + 1 :]), kind
    if kind == "non_mapping":
        return rng.choice(
            ["- a\n- b\n", "just text\n", "42\n", "null\n", "~\n", "[]\n", "!!binary aGVsbG8=\n", '"\\0"\n']
        ), kind
    if kind == "empty":
        return rng.choice(["", "\n\n", "# only a comment\n", "---\n", "...\n", "   \t\n"]), kind
    if kind == "binary":
        return bytes(rng.randrange(256) for _ in range(rng.choice([1, 64, 4096]))), kind
    if kind == "truncate":
        return text[: rng.randrange(len(text))], kind
    if kind == "flip":
        data = bytearray(text.encode())
        for _ in range(rng.choice([1, 3, 10])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), kind
    if kind == "tab":
        return text.replace("  ", "\t", 1), kind
    if kind == "crlf":
        return text.replace("\n", "\r\n"), kind
    if kind == "bom":
        return "\ufeff" + text, kind
    if kind == "utf16":
        return text.encode("utf-16"), kind
    if kind == "latin1":
        return (text + "name: café\n").encode("latin-1", "replace"), kind
    if kind == "tags":
        tag = rng.choice(
            [
                "!!python/object:os.system",
                "!foo",
                "!!binary",
                "!!set",
                "!!omap",
                "!!timestamp",
                "!!int",
                "!!float",
                "!!str",
            ]
        )
        return re.sub(r"(max_steps|cutoff_len|name): ", rf"\1: {tag} ", text, count=1), kind
    if kind == "big_int":
        return re.sub(r"(cutoff_len|max_steps): \d+", lambda m: m.group(1) + ": " + "9" * 5000, text, count=1), kind
    if kind == "deep_flow":
        depth = rng.choice([33, 1000, 30_000])
        return text + "deep: " + "[" * depth + "]" * depth + "\n", kind
    if kind == "multi_doc":
        return text + "---\n" + text, kind
    return text.replace("name: ", "name: a\x01\x7f", 1), kind


REGISTRY_VALUES = [3, "x", None, [], ["demo_alpaca.json"], {"file_name": 3}, {"file_name": ["a"]},
                   {"file_name": "demo_alpaca.json", "columns": ["prompt"]}, {"file_name": "demo_alpaca.json", "columns": "x"},
                   {"file_name": "demo_alpaca.json", "columns": {"prompt": 3}}, {"file_name": "demo_alpaca.json", "columns": {"promt": "x"}},
                   {"file_name": "demo_alpaca.json", "formatting": ["alpaca"]}, {"file_name": "demo_alpaca.json", "formatting": "nope"},
                   {"file_name": "demo_alpaca.json", "ranking": "yes"}, {"file_name": "demo_alpaca.json", "tags": [1]},
                   {"file_name": "demo_alpaca.json", "num_samples": -1}, {"file_name": "demo_alpaca.json", "num_samples": 1e400},
                   {"file_name": "a\0b"}, {"file_name": "\ud800"}, {"file_name": "x" * 300}, {"file_name": ""},
                   {"file_name": "missing.json"}, {"file_name": "demo_alpaca.json", "split": {}}, {"hf_hub_url": 5},
                   {"file_name": "sub"}, {"file_name": "demo_alpaca.json", "folder": 1}, {"file_name": "nested_deep"},
                   {"file_name": "demo_alpaca.json", "extra": 1}, {}]  # fmt: skip


def mutate_registry(folder: Path, rng: random.Random) -> str:
    """Write a damaged dataset_info.json (or something else in its place) into ``folder``."""
    info = folder / "dataset_info.json"
    registry = json.loads(info.read_text())
    kind = rng.choice(["entry", "entry", "entry", "text", "top", "deep", "dir", "loop", "folder_entry"])
    if kind == "entry":
        name = rng.choice(list(registry))
        registry[name] = rng.choice(REGISTRY_VALUES)
        (folder / "sub").mkdir(exist_ok=True)
        info.write_text(json.dumps(registry, allow_nan=True))
        return f"entry {name}"
    info.unlink()
    if kind == "text":
        info.write_bytes(
            rng.choice([b"", b"{", b"\xff\xfe{}", b'{"a": 1,}', b"NaN", b'{"demo_alpaca": {"file_name": "a\\ud800"}}'])
        )
    elif kind == "top":
        info.write_text(json.dumps(rng.choice([[1, 2], "x", None, 5, [registry]])))
    elif kind == "deep":
        depth = rng.choice([500, 100_000])
        info.write_text('{"demo_alpaca": ' + "[" * depth + "]" * depth + "}")
    elif kind == "dir":
        info.mkdir()
    elif kind == "loop":
        info.symlink_to("dataset_info.json")
    else:
        (folder / "nested").mkdir()
        (folder / "nested" / "loop").symlink_to("..")
        (folder / "nested" / "part.json").write_text("[]")
        registry["demo_alpaca"] = {"file_name": "nested"}
        info.write_text(json.dumps(registry))
    return kind


SET_OPTIONS = ["training.learning_rate=inf", "training.learning_rate=nan", "training.learning_rate=1e999",
               "training.max_steps=" + "9" * 5000, "method.lora_rank=[1, 2]", "data.dataset=&a [*a, *a]", "name=",
               "=x", "x", "a..b=1", "name.x=1", "data.dataset.0=x", "training={}", "name=\udcff", "\udcff=1",
               "method.lora_target=" + ",".join(["q"] * 3000), "name=" + "[" * 5000, "model.model_name_or_path=" + "x" * 300,
               "name=" + "x" * 70_000, "data.cutoff_len=2024-01-01", "method.reward_funcs=.", "method.reward_funcs=../demo"]  # fmt: skip


# ---------------------------------------------------------------- running


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        shutil.copytree(ROOT / "examples", root / "examples")
        shutil.copytree(ROOT / "demo" / "data", root / "demo" / "data")
        (root / "demo" / "tiny-model").mkdir(parents=True)
        shutil.copy(ROOT / "demo" / "tiny-model" / "config.json", root / "demo" / "tiny-model")
        (root / "examples" / "rewards_dir").mkdir()
        (root / "examples" / "rewards_nul.py").write_bytes(b"def f(prompts, completions):\n    return [0\0]\n")
        (root / "examples" / "rewards_latin1.py").write_bytes("def f(p, c):\n    return ['é']\n".encode("latin-1"))
        (root / "examples" / "rewards_deep.py").write_text(
            "x = " + "(" * 5000 + ")" * 5000 + "\ndef f(p, c):\n    return []\n"
        )
        (root / "examples" / "rewards_none.py").write_text("x = 1\n")
        self.examples = sorted((root / "examples").glob("*.yaml"))

    def registry_copy(self, index: int) -> Path:
        folder = self.root / f"reg{index}"
        folder.mkdir()
        for path in (self.root / "demo" / "data").iterdir():
            if path.name == "dataset_info.json":
                shutil.copy(path, folder / path.name)
            else:
                (folder / path.name).symlink_to(path)
        return folder


def _on_alarm(signum, frame):
    raise Hang


def run_cli(args: list[str]) -> tuple[str, str, float]:
    """Run ``ffc ARGS`` in this process: (outcome, detail, seconds). Outcomes: ok, error, traceback,
    hang, unclean (a non-zero exit whose message is not one ``error:`` paragraph)."""
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(args)
                code = 0
            except SystemExit as exc:
                code = exc.code or 0
    except Hang:
        return "hang", f"over {LIMIT_S:g} s", time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - any exception escaping the CLI is what this test looks for
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if str(ROOT) in f.filename and ".venv" not in f.filename
        ]
        where = (
            f"{Path(frames[-1].filename).relative_to(ROOT)}:{frames[-1].lineno} {frames[-1].name}" if frames else "?"
        )
        return "traceback", f"{type(exc).__name__} at {where}: {str(exc)[:200]}", time.perf_counter() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - start
    if code == 0:
        return "ok", out.getvalue()[:200], seconds
    message = err.getvalue()
    if not message.startswith("error: ") or "Traceback" in message:
        return "unclean", message[:300], seconds
    return "error", message, seconds


def names_place(message: str, spec: Path, extra: tuple = ()) -> bool:
    """The message says where the problem is: the spec (file:line:col), a --set option, or a file."""
    return any(place in message for place in (spec.name, "--set", "dataset_info.json", *extra))


def check_run_dir(run: Path) -> str:
    """'' when every generated .py parses and every .json loads, else what does not."""
    for path in sorted(run.rglob("*")):
        try:
            if path.suffix == ".py":
                ast.parse(path.read_bytes(), filename=str(path))
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except (SyntaxError, ValueError) as exc:
            return f"{path.relative_to(run)}: {exc}"
    return ""


def make_case(ws: Workspace, index: int):
    """(spec path, --set options, what was done) of case ``index``; writes the spec file."""
    rng = random.Random(f"{SEED}:{index}")
    example = rng.choice(ws.examples)
    text = example.read_text()
    doc = YAML(typ="safe").load(text)
    overrides, done = [], []
    family = rng.choices(["doc", "text", "registry", "set", "file"], weights=[45, 25, 12, 10, 8])[0]
    content: str | bytes
    if family == "doc":
        for _ in range(rng.choice([1, 1, 2, 3])):
            done.append(mutate_doc(doc, rng))
        content = emit(doc)
    elif family == "text":
        content, kind = mutate_text(text, rng)
        done.append(kind)
    elif family == "registry":
        folder = ws.registry_copy(index)
        done.append("registry " + mutate_registry(folder, rng))
        doc["data"]["dataset_dir"] = f"../{folder.name}"
        content = emit(doc)
    elif family == "set":
        overrides = rng.sample(SET_OPTIONS, rng.choice([1, 2]))
        done.append("--set " + " ".join(o[:40] for o in overrides))
        content = text
    else:
        kind = rng.choice(["reward_funcs", "reward_funcs", "spec_dir", "spec_loop", "spec_missing", "output"])
        done.append(kind)
        content = text
        if kind == "reward_funcs":
            doc["method"]["stage"] = "grpo"
            doc["method"]["reward_funcs"] = rng.choice(
                [
                    "rewards_dir",
                    "rewards_nul.py",
                    "rewards_latin1.py",
                    "rewards_deep.py",
                    "rewards_none.py",
                    "missing.py",
                    ".",
                    "rewards.py/x",
                ]
            )
            doc["training"]["per_device_train_batch_size"] = 8
            content = emit(doc)
    spec = ws.root / "examples" / f"fuzz{index}.yaml"
    if family == "file" and done[-1] in ("spec_dir", "spec_loop", "spec_missing"):
        if done[-1] == "spec_dir":
            spec.mkdir()
        elif done[-1] == "spec_loop":
            spec.symlink_to(spec.name)
        return spec, overrides, done, rng
    if isinstance(content, bytes):
        spec.write_bytes(content)
    else:
        spec.write_text(content, encoding="utf-8", errors="surrogatepass")
    return spec, overrides, done, rng


def _is_ours(detail: str) -> bool:
    return not any(f" at {path}" in detail for path in NOT_OURS)


def test_fuzz_cli_never_crashes_or_hangs(tmp_path):
    ws = Workspace(tmp_path)
    counts: collections.Counter = collections.Counter()
    failures, known, slowest = [], [], (0.0, "")
    started = time.perf_counter()
    for index in range(CASES):
        spec, overrides, done, rng = make_case(ws, index)
        sets = [arg for option in overrides for arg in ("--set", option)]
        label = f"case {index} ({', '.join(done)})"
        outcome, detail, seconds = run_cli(["validate", str(spec), *sets])
        slowest = max(slowest, (seconds, label))
        command = "validate"
        # build only when validate passes (otherwise build stops at the same check), and now and then anyway
        if outcome == "ok" or rng.random() < 0.1:
            output = ws.root / "runs" / str(index)
            if "output" in done:
                output = rng.choice(
                    [spec, spec / "sub", ws.root / ("x" * 300) / "run", ws.root / "examples" / "rewards.py"]
                )
            command = "build"
            outcome, detail, seconds = run_cli(["build", str(spec), "-o", str(output), *sets])
            slowest = max(slowest, (seconds, label))
            if outcome == "ok":
                broken = check_run_dir(output)
                if broken:
                    outcome, detail = "unparseable", broken
            shutil.rmtree(ws.root / "runs", ignore_errors=True)
        if outcome == "error" and not names_place(detail, spec, (str(ws.root),)):
            outcome = "no place"
        counts[f"{'clean error' if outcome == 'error' else outcome} ({command})"] += 1
        if outcome not in ("ok", "error"):
            (failures if _is_ours(detail) else known).append(f"{label}: {command}: {outcome}: {detail[:300]}")
    summary = ", ".join(f"{kind}: {count}" for kind, count in sorted(counts.items()))
    print(f"\nfuzz: {CASES} cases (seed {SEED}) in {time.perf_counter() - started:.1f} s: {summary}")
    print(f"slowest command: {slowest[0]:.2f} s, {slowest[1]}")
    for line in known:
        print("known (not in files this test covers):", line)
    assert not failures, "\n".join(failures[:20])
    if known:
        pytest.xfail(
            f"{len(known)} crash(es) in compiler/resolve.py, build.py, render.py, schemas or templates: see the output"
        )


# ---------------------------------------------------------------- fixed cases


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path)


def _spec(ws: Workspace, text: str, name: str = "spec.yaml") -> Path:
    path = ws.root / "examples" / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def _clean_error(args, *places):
    outcome, detail, seconds = run_cli(args)
    assert outcome == "error", (outcome, detail)
    assert all(place in detail for place in places), detail
    assert seconds < LIMIT_S
    return detail


LORA = (ROOT / "examples" / "lora_sft.yaml").read_text()


@pytest.mark.parametrize(
    "text,message",
    [
        (LORA + BILLION_LAUGHS, "spec.yaml:34:12: lol4.0: the spec holds more than 10,000 values"),
        (LORA + "x: &s [1, *s]\n", "spec.yaml:30:11: x.1: the alias *s is inside the collection &s"),
        (LORA + "deep: " + "[" * 30_000 + "]" * 30_000 + "\n", "nested more than 32 levels deep"),
        (
            LORA.replace("cutoff_len: 256", "cutoff_len: " + "9" * 5000),
            "spec.yaml:15:15: data.cutoff_len: a number with 5000 digits",
        ),
        (
            LORA.replace("learning_rate: 5.0e-3", "learning_rate: .inf"),
            "spec.yaml:18:3: training.learning_rate: is infinite",
        ),
        (LORA.replace("learning_rate: 5.0e-3", 'learning_rate: "nan"'), "spec.yaml:18:3: training.learning_rate:"),
        (LORA.replace("name: lora_sft", 'name: "a\\0b"'), "spec.yaml:3:1: name: contains a NUL character"),
        (LORA.replace("name: lora_sft", 'name: "\\ud800"'), "spec.yaml:3:1: name: contains a lone surrogate"),
        (
            LORA.replace("template: chatml", "template: !!python/object:os.system chatml"),
            "spec.yaml:14:13: data.template: has the YAML tag !!python/object:os.system",
        ),
        (LORA + "name: again\n", "invalid YAML: found duplicate key"),
        ("- model\n- data\n", "the document is a list, but a spec is a mapping of sections"),
        ("", "the spec is empty"),
        (LORA + "---\n" + LORA, "a spec is one YAML document"),
    ],
)
def test_hostile_specs_give_one_message_with_the_place(ws, text, message):
    spec = _spec(ws, text)
    for command in (["validate", str(spec)], ["build", str(spec), "-o", str(ws.root / "run")]):
        assert message in _clean_error(command)
    assert not (ws.root / "run").exists()


def test_binary_and_non_utf8_specs(ws):
    spec = ws.root / "examples" / "spec.yaml"
    spec.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    _clean_error(["validate", str(spec)], "is not a text file (a NUL byte at byte 8)")
    spec.write_bytes(LORA.encode() + "name: café\n".encode("latin-1"))
    _clean_error(["validate", str(spec)], "spec.yaml:30: not UTF-8 text")
    spec.write_bytes(b"x" * (200 * 1024))
    _clean_error(["validate", str(spec)], "is larger than 128 KB")


def test_directories_and_links_as_the_spec(ws):
    folder = ws.root / "examples" / "folder.yaml"
    folder.mkdir()
    _clean_error(["validate", str(folder)], "folder.yaml: is a directory")
    loop = ws.root / "examples" / "loop.yaml"
    loop.symlink_to(loop.name)
    _clean_error(
        ["build", str(loop), "-o", str(ws.root / "run")],
        "loop.yaml: cannot open the spec file (Too many levels of symbolic links)",
    )
    _clean_error(
        ["validate", str(ws.root / ("x" * 300) / "spec.yaml")], "cannot open the spec file (File name too long)"
    )


def test_hostile_set_options(ws):
    spec = ws.root / "examples" / "lora_sft.yaml"
    _clean_error(
        ["validate", str(spec), "--set", "training.learning_rate=inf"],
        "--set training.learning_rate=inf: training.learning_rate: is inf",
    )
    _clean_error(["validate", str(spec), "--set", "data.dataset=&a [*a]"], "the alias *a is inside the collection &a")
    _clean_error(
        ["validate", str(spec), "--set", "training.max_steps=" + "9" * 5000],
        "(5019 characters)",
        "a number with 5000 digits",
    )
    _clean_error(
        ["validate", str(spec), "--set", "name=\udcff"], "--set 'name=\\udcff': name: contains a lone surrogate"
    )


@pytest.mark.parametrize(
    "entry,message",
    [
        (3, "dataset 'demo_alpaca': an entry must be an object with file_name or hf_hub_url, not a number (3)"),
        ({"file_name": ["a.json"]}, "dataset 'demo_alpaca': file_name must be text, not a list"),
        ({"file_name": "demo_alpaca.json", "columns": ["prompt"]}, "dataset 'demo_alpaca': columns must be an object"),
        (
            {"file_name": "demo_alpaca.json", "columns": {"prompt": 1}},
            "dataset 'demo_alpaca': columns.prompt must be text",
        ),
        ({"file_name": "demo_alpaca.json", "ranking": "no"}, "dataset 'demo_alpaca': ranking must be true or false"),
        ({"file_name": "x" * 300}, "dataset 'demo_alpaca': file_name"),
    ],
)
def test_malformed_registry_entries(ws, entry, message):
    folder = ws.registry_copy(0)
    registry = json.loads((folder / "dataset_info.json").read_text())
    registry["demo_alpaca"] = entry
    (folder / "dataset_info.json").write_text(json.dumps(registry))
    spec = _spec(ws, LORA.replace("../demo/data", "../reg0"))
    detail = _clean_error(["build", str(spec), "-o", str(ws.root / "run")], "dataset_info.json", message)
    assert "spec.yaml:12:3: data.dataset:" in detail or "file_name" in message


@pytest.mark.parametrize("kind", ["dir", "loop", "deep", "list"])
def test_registry_file_replaced(ws, kind):
    folder = ws.registry_copy(0)
    info = folder / "dataset_info.json"
    info.unlink()
    if kind == "dir":
        info.mkdir()
    elif kind == "loop":
        info.symlink_to(info.name)
    elif kind == "deep":
        info.write_text('{"demo_alpaca": ' + "[" * 100_000 + "]" * 100_000 + "}")
    else:
        info.write_text("[1, 2]")
    spec = _spec(ws, LORA.replace("../demo/data", "../reg0"))
    message = {"dir": "is a directory", "loop": "Too many levels of symbolic links", "deep": "nested too deeply",
               "list": "the top level is a list"}[kind]  # fmt: skip
    _clean_error(["validate", str(spec)], "reg0/dataset_info.json", message)


def test_reward_functions_path_is_a_directory(ws):
    """The refusal names the spec's line and the key."""
    spec = _spec(ws, (ROOT / "examples" / "grpo.yaml").read_text().replace("rewards.py", "rewards_dir"))
    _clean_error(["validate", str(spec)], "rewards_dir", "is a directory", "method.reward_funcs")


def test_reward_functions_file_with_a_nul_byte(ws):
    spec = _spec(ws, (ROOT / "examples" / "grpo.yaml").read_text().replace("rewards.py", "rewards_nul.py"))
    _clean_error(["validate", str(spec)], "rewards_nul.py")


def test_build_output_that_cannot_be_a_directory(ws):
    spec = ws.root / "examples" / "lora_sft.yaml"
    _clean_error(["build", str(spec), "-o", str(spec)], "exists and is not a directory")
    _clean_error(["build", str(spec), "-o", str(spec / "run")], "lora_sft.yaml")
    _clean_error(["build", str(spec), "-o", str(ws.root / ("x" * 300) / "run")], "File name too long")


def _ffc(args, cwd, timeout=20):
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ffc.compiler", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    return done, time.perf_counter() - start


def test_fifo_spec_and_registry_do_not_hang(ws):
    """Opening a FIFO blocks until a writer comes: run in a subprocess, so that a regression times out
    instead of hanging the test session."""
    fifo = ws.root / "examples" / "fifo.yaml"
    os.mkfifo(fifo)
    done, seconds = _ffc(["validate", str(fifo)], ws.root)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "is a FIFO" in done.stderr, done.stderr
    folder = ws.registry_copy(0)
    (folder / "dataset_info.json").unlink()
    os.mkfifo(folder / "dataset_info.json")
    spec = _spec(ws, LORA.replace("../demo/data", "../reg0"))
    done, seconds = _ffc(["build", str(spec), "-o", str(ws.root / "run")], ws.root)
    assert done.returncode == 1 and "dataset_info.json: is a FIFO" in done.stderr, done.stderr
    assert seconds < 10


def test_billion_laughs_is_refused_quickly_in_a_fresh_process(ws):
    spec = _spec(ws, LORA + BILLION_LAUGHS)
    done, seconds = _ffc(["build", str(spec), "-o", str(ws.root / "run")], ws.root)
    assert done.returncode == 1 and "more than 10,000 values" in done.stderr and "Traceback" not in done.stderr
    assert seconds < 10


def test_reward_functions_fifo_does_not_hang(ws):
    os.mkfifo(ws.root / "examples" / "rewards_fifo.py")
    spec = _spec(ws, (ROOT / "examples" / "grpo.yaml").read_text().replace("rewards.py", "rewards_fifo.py"))
    try:
        done, _ = _ffc(["validate", str(spec)], ws.root, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("ffc validate hung on a FIFO given as method.reward_funcs")
    assert done.returncode == 1 and done.stderr.startswith("error: ")
