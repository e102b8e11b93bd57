"""What the UI's buttons and timers do. Each handler calls the compiler (``service``) or starts and reads
one of the run directory's scripts (``jobs``); none holds training logic. Gradio wiring is in ``app``."""

from __future__ import annotations

import json
import shlex
import socket
import time
from pathlib import Path

import gradio as gr

from ffc.compiler.writer import write_text_atomic

from . import form, locales, service
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
        template, why = suggest_template(model, self.ws.root, may_read=self.ws.contains)
        if not template:
            return f"{locales.text('suggested_template', lang)}: {locales.text('no_suggestion', lang)}", gr.update()
        return f"{locales.text('suggested_template', lang)}: **{template}** ({why})", gr.update(value=template)

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
        by_path = _by_path(values)
        names = form.to_value(form.BY_PATH["data.dataset"], by_path.get("data.dataset")) or []
        raw = "\n\n".join(service.dataset_rows(by_path.get("data.dataset_dir") or "data", n, self.ws) for n in names)
        return (raw or "(no dataset chosen)") + "\n\n" + service.tokenised_preview(self.ws, *_name_and_yaml(by_path))

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

    # -- chat through the run's serve.py ---------------------------------------------------------------------

    def on_server_start(self, run, lang):
        if not run:
            return locales.text("not_built", lang)
        try:
            check_name(run)
        except ValueError as exc:
            return f"**{exc}**"
        job = self.ws.job(run, "serve")
        if job and job.alive:
            return locales.text("serving", lang, address=f"127.0.0.1:{self.servers.get(run)}")
        port = _free_port()
        try:
            self.ws.start_script(run, "serve", ["--host", "127.0.0.1", "--port", str(port)])
        except ValueError as exc:
            return f"**{exc}**"
        self.servers[run] = port
        return self._wait_for_server(run, port, lang)

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

    def on_chat(self, message, history, system, run, lang):
        import httpx

        history = list(history or [])
        if not message.strip():
            yield history, ""
            return
        port = self.servers.get(run or "")
        job = self.ws.job(run, "serve") if run else None
        history.append({"role": "user", "content": message})
        if not port or not job or not job.alive:
            history.append({"role": "assistant", "content": locales.text("start_server_first", lang)})
            yield history, ""
            return
        messages = ([{"role": "system", "content": system}] if system and system.strip() else []) + [
            {"role": m["role"], "content": _text(m["content"])} for m in history
        ]
        history.append({"role": "assistant", "content": ""})
        yield history, ""
        body = {"model": "run", "messages": messages, "stream": True}
        try:
            with httpx.stream(
                "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=self._auth(run), timeout=600
            ) as response:
                if response.status_code != 200:
                    response.read()
                    history[-1]["content"] = f"(server error {response.status_code}: {response.text[:500]})"
                    yield history, ""
                    return
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    delta = json.loads(line[6:])["choices"][0].get("delta", {})
                    if delta.get("content"):
                        history[-1]["content"] += delta["content"]
                        yield history, ""
        except httpx.HTTPError as exc:
            history[-1]["content"] += f"\n(connection error: {exc})"
        yield history, ""

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


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # gradio may hand messages back as parts
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)
