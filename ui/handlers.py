"""What the UI's buttons and timers do. Each handler calls the compiler (``service``) or starts and reads
one of the run directory's scripts (``jobs``); none holds training logic. Gradio wiring is in ``app``."""

from __future__ import annotations

import json
import shlex
import socket
import time
from pathlib import Path

import gradio as gr

from ffc.compiler import catalogue
from ffc.compiler.writer import write_text_atomic

from . import estimate, form, locales, service
from .jobs import OutsideWorkspace, Workspace, check_name
from .suggest import suggest_template


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CODE_LANGUAGES = {".py": "python", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}


def _by_path(values) -> dict:
    """The form's widget values (in ``form.FIELDS`` order) by spec path."""
    return dict(zip([f.path for f in form.FIELDS], values))


def _name_and_yaml(by_path: dict) -> tuple[str, str]:
    return str(by_path.get("name") or "").strip(), form.to_yaml(form.spec_from_values(by_path))


class App:
    def __init__(self, workspace: Workspace):
        self.ws = workspace
        self.servers: dict[str, int] = {}  # run -> port of its serve.py
        self.serving_base: dict[str, bool] = {}  # run -> whether its serve.py has the base model

    # -- handlers -------------------------------------------------------------------------------------------

    def on_preview(self, lang, *values):
        outcome = service.preview(self.ws, *_name_and_yaml(_by_path(values)))
        return self._show(outcome, lang)

    def on_build(self, lang, *values):
        name, text = _name_and_yaml(_by_path(values))
        outcome = service.build(self.ws, name, text)
        runs = self.ws.run_names()
        run = gr.update(choices=runs, value=name) if outcome.ok else gr.update(choices=runs)
        return (*self._show(outcome, lang), run)

    def _show(self, outcome: service.Outcome, lang: str):
        if outcome.errors:
            status = f"**{locales.text('invalid', lang)}**\n\n```\n" + "\n".join(outcome.errors) + "\n```"
        else:
            status = "\n\n".join([f"**{locales.text('valid', lang)}**", *[f"`{m}`" for m in outcome.messages]])
        names = list(outcome.files)
        first = "train.py" if "train.py" in outcome.files else (names[0] if names else None)
        if outcome.errors:
            diff = ""
        elif outcome.diff is None:
            diff = locales.text("never_built", lang)
        else:
            diff = outcome.diff or locales.text("no_changes", lang)
        return (
            status,
            outcome.yaml,
            gr.update(choices=names, value=first),
            outcome.files.get(first, "") if first else "",
            diff,
            outcome.files,
        )

    @staticmethod
    def on_file(choice, files):
        language = CODE_LANGUAGES.get(Path(str(choice)).suffix)
        return gr.update(value=(files or {}).get(choice, ""), language=language)

    def on_model(self, model, lang):
        """(note, template, model picker): the catalogue's template for a model it lists, else the suggestion
        from the model's name or its files in the workspace (as ``template: auto`` decides); the picker shows
        the catalogue entry, or nothing for a model it does not list."""
        entry = catalogue.find(model)
        if entry is not None:
            about = locales.text(
                "catalogue_entry", lang, params=catalogue.params_text(entry.params), modalities=entry.modalities,
                context=entry.context, licence=entry.licence,
            )  # fmt: skip
            source = locales.text("from_catalogue", lang)
            note = f"{locales.text('suggested_template', lang)}: **{entry.template}** ({source})\n\n{about}"
            return note, gr.update(value=entry.template), gr.update(value=entry.hub_id)
        picker = gr.update(value=None)
        template, why = suggest_template(model, self.ws.root, may_read=self.ws.contains)
        if not template:
            return (
                f"{locales.text('suggested_template', lang)}: {locales.text('no_suggestion', lang)}",
                gr.update(),
                picker,
            )
        return f"{locales.text('suggested_template', lang)}: **{template}** ({why})", gr.update(value=template), picker

    def on_plan(self, lang, gpu_gb, *values):
        return estimate.memory_estimate(self.ws, _by_path(values), gpu_gb, lang)

    def on_dataset_dir(self, dataset_dir, current, lang):
        """The dataset menu offers the names in the folder's dataset_info.json; its help says why when
        the UI may not read the folder."""
        info = locales.help_text("data.dataset", form.BY_PATH["data.dataset"].description, lang)
        try:
            names = service.dataset_names(dataset_dir, self.ws)
        except OutsideWorkspace as exc:
            names, info = [], f"{locales.text('datasets_not_read', lang)} {exc}"
        return gr.update(choices=names, value=[n for n in (current or []) if n in names] or current, info=info)

    def on_dataset_preview(self, lang, *values):
        """(the rows as stored and as tokenised, the thumbnails of their images and videos: hidden when they have
        none). A video shows as its first frame (see ``service.first_frame``)."""
        by_path = _by_path(values)
        names = form.to_value(form.BY_PATH["data.dataset"], by_path.get("data.dataset")) or []
        folder = by_path.get("data.dataset_dir") or "data"
        raw = "\n\n".join(service.dataset_rows(folder, n, self.ws) for n in names)
        media = [item for n in names for item in service.dataset_media(folder, n, self.ws)]
        pictures = [(service.first_frame(m.path) if m.video_file else m.path, m.caption) for m in media]
        pictures = [(picture, caption) for picture, caption in pictures if picture is not None]
        text = (raw or "(no dataset chosen)") + "\n\n" + service.tokenised_preview(self.ws, *_name_and_yaml(by_path))
        return text, gr.update(value=pictures, visible=bool(pictures))

    def on_load(self, path, lang):
        try:
            name, text = service.load_source(path, self.ws)
            spec = form.load_yaml(text)
        except (ValueError, OSError) as exc:  # OutsideWorkspace is a ValueError
            return [gr.update() for _ in form.FIELDS] + [f"**{exc}**"]
        values = form.values_from_spec(spec)
        values["name"] = spec.get("name") or name
        data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
        try:
            names = service.dataset_names(str(data.get("dataset_dir") or "data"), self.ws)
        except OutsideWorkspace:
            names = []  # the menu's help says why once the folder shows in the form
        updates = []
        for field in form.FIELDS:
            if field.path in ("data.dataset", "data.eval_dataset"):
                chosen = values[field.path] or []
                updates.append(gr.update(choices=sorted(set(names) | set(chosen)), value=chosen))
            else:
                updates.append(gr.update(value=values[field.path]))
        return updates + [locales.text("loaded", lang, path=path)]

    def on_save(self, path, lang, *values):
        try:
            target = self.ws.inside(path or "")
        except OutsideWorkspace as exc:
            return f"**{exc}**"
        if target.suffix not in (".yaml", ".yml"):
            return f"**{locales.text('not_yaml', lang, path=target)}**"
        try:
            write_text_atomic(target, _name_and_yaml(_by_path(values))[1])
        except OSError as exc:
            return f"**{exc}**"
        return locales.text("saved", lang, path=target)

    def on_stage(self, stage, finetuning_type):
        return [
            gr.update(visible=form.applies(f, stage, finetuning_type)) for f in form.FIELDS if f.section == "method"
        ]

    # -- training -------------------------------------------------------------------------------------------

    def on_start(self, run, lang):
        if not run:
            return locales.text("not_built", lang)
        try:
            self.ws.start_training(run)
        except ValueError as exc:
            return f"**{exc}**"
        return locales.text("started", lang, command="bash launch.sh", folder=self.ws.run_dir(run))

    def on_resume(self, run, lang):
        """Continue a stopped, interrupted or failed run from its newest complete checkpoint."""
        if not run:
            return locales.text("not_built", lang)
        try:
            status = self.ws.status(check_name(run))
            if not resumable(status):
                return f"**{locales.text('not_resumable', lang, run=run, status=status)}**"
            self.ws.start_training(run, resume=True)
        except ValueError as exc:
            return f"**{exc}**"
        return locales.text("started", lang, command="bash launch.sh --resume", folder=self.ws.run_dir(run))

    def on_stop(self, run, lang):
        stopped = bool(run) and self.ws.stop(run, "train")
        return locales.text("stopped" if stopped else "nothing_running", lang)

    def on_tick(self, run, lang):
        """(progress, loss plot, log tail, runs table, the Resume button)."""
        table = self.ws.runs_table()
        if not run:
            return "", None, "", table, gr.update(visible=False)
        try:
            check_name(run)
        except ValueError as exc:
            return f"**{exc}**", None, "", table, gr.update(visible=False)
        progress = self.ws.progress(run)
        status = self.ws.status(run)
        text = f"**{run}**: {status}"
        if progress["total"]:
            text += f" · {progress['step']} / {progress['total']} ({progress['percentage']:.0f}%)"
            if progress["elapsed"] is not None:
                text += f" · {progress['elapsed']:.0f} s"
            if progress["remaining"] is not None and status == "running":
                text += f" · ETA {progress['remaining']:.0f} s"
        points = progress["loss"]
        plot = None
        if points:
            import pandas as pd

            plot = pd.DataFrame({"step": [p[0] for p in points], "loss": [p[1] for p in points]})
        return text, plot, self.ws.log_tail(run, "train", 20), table, gr.update(visible=resumable(status))

    def on_timer(self, run, lang):
        """Everything that follows running processes, once a second: training, then eval.py, then export.py."""
        return (*self.on_tick(run, lang), *self.script_state("eval", run), *self.script_state("export", run))

    # -- many runs: comparison and sweeps --------------------------------------------------------------------

    def on_compare(self, runs, lang):
        """(the table of differing settings and final metrics, the loss curves overlaid): ``ffc compare``'s
        table and its PNG (eval curves dashed, every run in the legend)."""
        import tempfile

        from PIL import Image

        from ffc.compiler import compare as comparing

        names = [check_name(r) for r in runs or [] if service.check_name(r) is None]
        if len(names) < 2:
            return locales.text("compare_pick_two", lang), None
        comparison = comparing.compare_runs([self.ws.run_dir(name) for name in names])
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "compare.png"
            drawn = comparing.plot(comparison, path)
            image = Image.open(path).copy() if drawn else None
        return comparing.markdown(comparison), image

    def on_sweep(self, run, key, values_text, lang):
        """Build the selected run again once per value of one setting (``ffc sweep``'s grid and names), as runs
        named ``<run>-<key>-<value>`` in this workspace; (message, the run menu)."""
        from ffc.compiler.sweep import SweepError, parse_grid, points

        if not run or service.check_name(run):
            return locales.text("sweep_needs_run", lang), gr.update()
        field = form.BY_PATH.get(key)
        try:
            if field is None:
                raise SweepError(f"{key!r} is not a spec option")
            _, text = service.load_source(str(self.ws.run_dir(run)), self.ws)
            spec = form.load_yaml(text)
            grid = points(parse_grid([f"{key}={values_text or ''}"]))
        except (SweepError, ValueError, OSError) as exc:
            return f"**{exc}**", gr.update()
        built, problems = [], []
        for point in grid:
            node = spec
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = form.to_value(field, point.values[key])
            name = f"{run}-{point.name}"[:100]
            spec["name"] = name
            outcome = service.build(self.ws, name, form.to_yaml(spec))
            (built if outcome.ok else problems).append(name if outcome.ok else f"{name}:\n" + "\n".join(outcome.errors))
        message = locales.text("sweep_built", lang, runs=", ".join(f"`{n}`" for n in built)) if built else ""
        if problems:
            message += "\n\n```\n" + "\n\n".join(problems) + "\n```"
        return message, gr.update(choices=self.ws.run_names())

    # -- chat through the run's serve.py ---------------------------------------------------------------------

    def on_server_start(self, run, base, lang):
        """Start the run's serve.py: with the trained model, or (``base``) with the base model alone, which
        needs no training. A server of the other kind is stopped first; the conversation stays."""
        if not run:
            return locales.text("not_built", lang)
        try:
            check_name(run)
        except ValueError as exc:
            return f"**{exc}**"
        job = self.ws.job(run, "serve")
        if job and job.alive and self.serving_base.get(run) == bool(base):
            serving = locales.text("serving", lang, address=f"127.0.0.1:{self.servers.get(run)}")
            return (locales.text("serving_base", lang) if base else "") + serving
        if job and job.alive:
            self.ws.stop(run, "serve")
        port = _free_port()
        try:
            args = ["--host", "127.0.0.1", "--port", str(port), *(self._base_model_args(run) if base else [])]
            self.ws.start_script(run, "serve", args)
        except ValueError as exc:
            return f"**{exc}**"
        self.servers[run], self.serving_base[run] = port, bool(base)
        return (locales.text("serving_base", lang) if base else "") + self._wait_for_server(run, port, lang)

    def _base_model_args(self, run: str) -> list[str]:
        """serve.py's options for the untrained base model: no adapter, and the base itself where the run
        would load its trained weights (full and freeze runs). A local base is given as an absolute path,
        since serve.py runs in the run directory; a hub id as it is."""
        method = self.ws.lock_value(run, ("method", "finetuning_type"), "lora")
        if method in ("lora", "oft") and self.ws.lock_value(run, ("inference", "model_path"), "") == "":
            return ["--adapter", "none"]
        model = self.ws.lock_value(run, ("model", "model_name_or_path"), "")
        local = self.ws.root / model
        if model and self.ws.contains(model) and local.exists():
            model = str(self.ws.inside(model))
        return ["--model", model, "--adapter", "none"]

    def _wait_for_server(self, run: str, port: int, lang: str, timeout: float = 300) -> str:
        import httpx

        deadline, headers = time.time() + timeout, self._auth(run)
        while time.time() < deadline:
            job = self.ws.job(run, "serve")
            if job is None or not job.alive:
                return locales.text("server_ended", lang) + "\n```\n" + self.ws.log_tail(run, "serve", 20) + "\n```"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers, timeout=2).status_code == 200:
                    return locales.text("serving", lang, address=f"127.0.0.1:{port}")
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return locales.text("server_slow", lang) + "\n```\n" + self.ws.log_tail(run, "serve", 20) + "\n```"

    def on_server_stop(self, run, lang):
        return locales.text("stopped" if run and self.ws.stop(run, "serve") else "no_server", lang)

    def _auth(self, run: str) -> dict:
        import os

        name = self.ws.lock_value(run, ("serve", "api_key_env"), "")
        key = os.environ.get(name) if name else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def on_run_media(self, run):
        """The Chat tab's video box: shown for runs whose datasets have videos (their serve.py samples frames)."""
        return gr.update(visible=service.run_has_videos(self.ws, run))

    def on_chat(self, message, history, system, image, video, temperature, top_p, max_tokens, run, lang):
        """Stream the reply of the run's serve.py; (conversation, message box, image box, video box)."""
        import httpx

        history = list(history or [])
        if not (message or "").strip() and not image and not video:
            yield history, "", None, None
            return
        port = self.servers.get(run or "")
        job = self.ws.job(run, "serve") if run else None
        history += [{"role": "user", "content": {"path": file}} for file in (image, video) if file]
        history.append({"role": "user", "content": message or ""})
        if not port or not job or not job.alive:
            history.append({"role": "assistant", "content": locales.text("start_server_first", lang)})
            yield history, "", None, None
            return
        try:
            messages = api_messages(history)
        except (ValueError, OSError) as exc:
            history.append({"role": "assistant", "content": f"({exc})"})
            yield history, "", None, None
            return
        messages = ([{"role": "system", "content": system}] if system and system.strip() else []) + messages
        history.append({"role": "assistant", "content": ""})
        yield history, "", None, None
        body = {"model": "run", "messages": messages, "stream": True, "temperature": temperature, "top_p": top_p}
        if max_tokens:
            body["max_tokens"] = int(max_tokens)
        try:
            with httpx.stream(
                "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=self._auth(run), timeout=600
            ) as response:
                if response.status_code != 200:
                    response.read()
                    history[-1]["content"] = f"(server error {response.status_code}: {response.text[:500]})"
                    yield history, "", None, None
                    return
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    delta = json.loads(line[6:])["choices"][0].get("delta", {})
                    if delta.get("content"):
                        history[-1]["content"] += delta["content"]
                        yield history, "", None, None
        except httpx.HTTPError as exc:
            history[-1]["content"] += f"\n(connection error: {exc})"
        yield history, "", None, None

    # -- eval and export -----------------------------------------------------------------------------------

    def on_script(self, kind, run, args, lang):
        if not run:
            return locales.text("not_built", lang)
        try:
            self.ws.start_script(run, kind, shlex.split(args or ""))
        except ValueError as exc:
            return f"**{exc}**"
        command = f"python {kind}.py {args or ''}".strip()
        return locales.text("started", lang, command=command, folder=self.ws.run_dir(run))

    def on_export(self, run, gguf, dtype, ollama, onnx, args, lang):
        """export.py with the choices of the Export tab (those left empty keep the run's export settings)."""
        chosen = (["--gguf", *gguf] if gguf else []) + (["--dtype", dtype] if dtype else [])
        chosen += (["--ollama"] if ollama else []) + (["--onnx"] if onnx else [])
        return self.on_script("export", run, shlex.join(chosen) + " " + (args or ""), lang)

    def script_state(self, kind, run):
        """(state and log tail, results) of the run's eval.py or export.py."""
        if not run or service.check_name(run):
            return "", ""
        job = self.ws.job(run, kind)
        results = ""
        try:
            if kind == "eval":
                folder = self.ws.run_path(run, ("eval", "output_dir"), "eval")
                for name in ("results.md", "summary.json"):
                    if (folder / name).is_file():
                        results += f"{name}:\n{(folder / name).read_text(encoding='utf-8')}\n"
            elif kind == "export":
                folder = self.ws.run_path(run, ("export", "export_dir"), "exported")
                if folder.is_dir():
                    files = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
                    results = "\n".join(sorted(files))
        except OutsideWorkspace as exc:
            results = str(exc)
        return f"{job.state if job else ''}\n\n{self.ws.log_tail(run, kind, 30)}", results


def resumable(status: str) -> bool:
    """Whether Resume applies: training began and ended before its last step."""
    return status in ("stopped", "interrupted") or status.startswith("failed")


def api_messages(history: list) -> list[dict]:
    """The conversation as OpenAI messages: each image or video the user attached (a file in the chat) joins the
    user's next text as an image_url or video_url part (the name vLLM and SGLang give video input) with a data
    URL; serve.py puts an <image> (or <video>) mark where each part stands and gives the engine the file."""
    messages, media = [], []
    for item in history:
        text, paths = _parts(item["content"])
        if item["role"] != "user":
            messages.append({"role": item["role"], "content": text})
            continue
        media += [_media_part(path) for path in paths]
        if not text and paths:
            continue  # a file alone: it goes with the text that follows it
        if media:
            messages.append({"role": "user", "content": media + [{"type": "text", "text": text}]})
            media = []
        else:
            messages.append({"role": "user", "content": text})
    return messages


def _media_part(path: str) -> dict:
    kind = "video_url" if _is_video(path) else "image_url"
    return {"type": kind, kind: {"url": _data_url(path)}}


def _is_video(path: str) -> bool:
    from ffc.runtime.data.media import VIDEO_SUFFIXES

    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _parts(content) -> tuple[str, list[str]]:
    """(text, image and video files) of a chat message as this module writes it ({"path": ...}) or Gradio hands it back
    (a list of {"type": "text"} and {"type": "file"} parts)."""
    items = content if isinstance(content, list) else [content]
    texts, paths = [], []
    for part in items:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and (part.get("path") or part.get("type") == "file"):
            paths.append(part.get("path") or (part.get("file") or {}).get("path"))
        elif isinstance(part, dict):
            texts.append(str(part.get("text", "")))
    return "".join(texts), [p for p in paths if p]


def _data_url(path: str) -> str:
    """An uploaded image or video as a data URL. Only files in Gradio's upload folder: a chat history comes from
    the browser, and a path elsewhere is not the UI's to read."""
    import base64
    import mimetypes

    from gradio.utils import get_upload_folder

    file = Path(path).resolve()
    if not file.is_relative_to(Path(get_upload_folder()).resolve()):
        raise ValueError(f"{path}: not an uploaded file")
    kind = mimetypes.guess_type(file.name)[0]
    if _is_video(file.name) and not (kind or "").startswith("video/"):  # .mkv, .flv: unknown to some systems
        kind = "video/" + file.suffix.lower().lstrip(".")
    kind = kind or "image/png"
    return f"data:{kind};base64," + base64.b64encode(file.read_bytes()).decode("ascii")
