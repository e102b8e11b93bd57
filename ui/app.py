"""``ffc ui``: the zero-code web app, on Gradio.

Gradio because it is what people fine-tuning models already know from LLaMA-Factory's LlamaBoard and
Hugging Face Spaces, and it brings the pieces this needs (streaming chat, live plots, timers, code
views) without a frontend build. The form is generated from the spec models (``form.FIELDS``); every
button calls a handler (``handlers``) that calls the compiler or starts one of the run directory's
scripts. This module is the layout and the wiring.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Optional, Sequence

import gradio as gr
from starlette.middleware import Middleware

from ffc.compiler import catalogue
from ffc.runtime.data.media import VIDEO_SUFFIXES

from . import form, locales
from .handlers import App
from .jobs import Workspace
from .security import Access, HostGuard

DEFAULT_RUN_NAME = "my-run"


class Translated:
    """Components whose texts follow the language menu: each is made with its texts in the current
    language and remembers which text (a ``locales.TEXT`` key, or a function of the language) fills
    which attribute, so a language change updates them all from one list."""

    def __init__(self, lang: str):
        self.lang = lang
        self.items: list[tuple[Any, dict]] = []

    @staticmethod
    def _resolve(text, lang: str):
        return text(lang) if callable(text) else locales.text(text, lang)

    def __call__(self, make, texts: dict, **kwargs):
        return self.add(make(**{attr: self._resolve(text, self.lang) for attr, text in texts.items()}, **kwargs), texts)

    def add(self, component, texts: dict):
        self.items.append((component, texts))
        return component

    @property
    def components(self) -> list:
        return [component for component, _ in self.items]

    def relabel(self, lang: str) -> list:
        return [gr.update(**{a: self._resolve(t, lang) for a, t in texts.items()}) for _, texts in self.items]


def _widget(field: form.FormField, value: Any, lang: str):
    common = dict(
        **{attr: Translated._resolve(text, lang) for attr, text in _field_texts(field).items()},
        elem_id=field.elem_id,
        interactive=True,
    )
    if field.path == "name":
        return gr.Textbox(value=value, **common)
    if field.path == "data.dataset" or field.path == "data.eval_dataset":
        return gr.Dropdown(choices=[], value=value or [], multiselect=True, allow_custom_value=True, **common)
    if field.path == "data.template":
        from ffc.runtime.chat.templates import TEMPLATES

        choices = [""] + list(TEMPLATES) + ["tokenizer", "auto"]
        return gr.Dropdown(choices=choices, value=value or "", allow_custom_value=True, **common)
    if field.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if field.kind == "choice":
        choices = ([""] if field.optional else []) + [str(c) for c in field.choices]
        return gr.Dropdown(choices=choices, value="" if value is None else str(value), **common)
    if field.kind in ("int", "float") and not field.optional:
        span = None if field.minimum is None or field.maximum is None else field.maximum - field.minimum
        if span is not None and span <= (256 if field.kind == "int" else 10):  # sliders for small ranges
            step = 1 if field.kind == "int" else span / 100
            return gr.Slider(minimum=field.minimum, maximum=field.maximum, step=step, value=value, **common)
        return gr.Number(value=value, precision=0 if field.kind == "int" else None, **common)
    if field.kind in ("int", "float"):  # optional numbers: an empty box means "not set", which gr.Number cannot show
        return gr.Textbox(value="" if value is None else str(value), placeholder="not set", **common)
    if field.kind == "mapping":
        return gr.Textbox(value=value, lines=2, placeholder="NAME: value, one per line", **common)
    return gr.Textbox(value=value if value is not None else "", **common)


SCRIPT_TABS = {  # kind -> (arguments label, button label, placeholder of the arguments)
    "eval": ("eval_args", "run_eval", "--task-dir ../mmlu --n-shot 5"),
    "export": ("export_args", "run_export", "--gguf f16 --ollama"),
}


def _script_tab(kind: str, tr: Translated):
    """(arguments, button, message, log, results) of a tab that runs one of the run's scripts."""
    args_label, button_label, placeholder = SCRIPT_TABS[kind]
    return (
        tr(gr.Textbox, {"label": args_label}, elem_id=f"{kind}-args", placeholder=placeholder),
        tr(gr.Button, {"value": button_label}, variant="primary", elem_id=f"{kind}-button"),
        gr.Markdown(elem_id=f"{kind}-message"),
        tr(gr.Textbox, {"label": "log"}, lines=10, elem_id=f"{kind}-log"),
        tr(gr.Textbox, {"label": "results"}, lines=8, elem_id=f"{kind}-results"),
    )


def _field_texts(field: form.FormField) -> dict:
    if field.path in locales.HUMAN_LABEL:  # the essentials: a human name, the YAML key as the help's last line
        return {
            "label": lambda lang: locales.essential_label(field.path, lang),
            "info": lambda lang: locales.essential_help(
                field.path, locales.text("run_name_info", lang) if field.path == "name" else field.description, lang
            ),
        }
    return {
        "label": lambda lang: locales.label(field.path, lang),
        "info": lambda lang: locales.help_text(field.path, field.description, lang),
    }


def _field_widget(field: form.FormField, values: dict, lang: str, tr: Translated, widgets: dict):
    widgets[field.path] = tr.add(_widget(field, values[field.path], lang), _field_texts(field))


def _model_choices() -> list[tuple[str, str]]:
    return [(model.label(), model.hub_id) for model in catalogue.MODELS]


def create_app(workspace: Workspace, lang: str = "en") -> gr.Blocks:
    app = App(workspace)
    values = {**form.values_from_spec({}), "name": DEFAULT_RUN_NAME}
    widgets: dict[str, Any] = {}
    tr = Translated(lang)

    with gr.Blocks(title="ffc") as blocks:
        with gr.Row(equal_height=True):
            tr(
                gr.Markdown,
                {"value": lambda lang: f"## {locales.text('title', lang)}\n{locales.text('subtitle', lang)}"},
                elem_id="title",
            )
            with gr.Column(scale=0, min_width=420):
                with gr.Row():
                    language = tr(
                        gr.Dropdown, {"label": "language"}, choices=[(v, k) for k, v in locales.LANGUAGES.items()],
                        value=lang, elem_id="language", min_width=140,
                    )  # fmt: skip
                    run_select = tr(
                        gr.Dropdown, {"label": "run"}, choices=workspace.run_names(), value=None, elem_id="run-select",
                        min_width=260,
                    )  # fmt: skip
        with gr.Tabs(elem_id="tabs"):
            with tr(gr.Tab, {"label": "tab_config"}, id="config", elem_id="tab-config"):
                with gr.Row():
                    load_path = tr(gr.Textbox, {"label": "load_path"}, elem_id="load-path", scale=3)
                    load_button = tr(gr.Button, {"value": "load"}, elem_id="load-button", scale=1)
                    save_path = tr(gr.Textbox, {"label": "save_path"}, elem_id="save-path", scale=3)
                    save_button = tr(gr.Button, {"value": "save"}, elem_id="save-button", scale=1)
                file_status = gr.Markdown(elem_id="file-status")
                # The essentials: what nearly every run sets, with human labels, and the live memory estimate.
                with gr.Group(elem_id="essentials"):
                    tr(
                        gr.Markdown,
                        {"value": lambda lang: f"### {locales.text('essentials', lang)}\n"
                         f"{locales.text('essentials_intro', lang)}"},
                        elem_id="essentials-title",
                    )  # fmt: skip
                    model_picker = tr(
                        gr.Dropdown, {"label": "model_picker", "info": "model_picker_info"}, choices=_model_choices(),
                        value=None, filterable=True, elem_id="model-picker",
                    )  # fmt: skip
                    for row in form.ESSENTIAL_ROWS:
                        with gr.Row(equal_height=True):
                            for path in row:
                                _field_widget(form.BY_PATH[path], values, lang, tr, widgets)
                        if "model.model_name_or_path" in row:
                            suggestion = gr.Markdown(elem_id="template-suggestion")
                        if "data.dataset" in row:
                            with gr.Row():
                                preview_data_button = tr(
                                    gr.Button, {"value": "dataset_preview"}, elem_id="dataset-preview-button",
                                    scale=0, min_width=200,
                                )  # fmt: skip
                            dataset_preview = tr(
                                gr.Textbox, {"label": "dataset_preview_out"}, lines=4, max_lines=30,
                                elem_id="dataset-preview",
                            )  # fmt: skip
                            dataset_images = tr(
                                gr.Gallery, {"label": "dataset_images"}, elem_id="dataset-images", columns=8,
                                height=190, visible=False, object_fit="contain", fit_columns=False,
                            )  # fmt: skip
                    with gr.Row():
                        gpu_memory = tr(
                            gr.Number, {"label": "gpu_memory", "info": "gpu_memory_info"}, value=24, minimum=0,
                            elem_id="gpu-memory", scale=1,
                        )  # fmt: skip
                        plan_view = gr.Markdown(elem_id="plan-estimate")
                # Everything else, section by section, generated from the schema.
                for section in form.SECTIONS:
                    title = {
                        "label": lambda lang, section=section: locales.text(
                            "advanced_section", lang, title=locales.section_title(section, lang)
                        )
                    }
                    with tr(gr.Accordion, title, open=False, elem_id=f"section-{section}"):
                        for field in form.FIELDS:
                            if form.section_of(field) == section and field.path not in form.ESSENTIALS:
                                _field_widget(field, values, lang, tr, widgets)
                with gr.Row():
                    preview_button = tr(gr.Button, {"value": "preview"}, variant="secondary", elem_id="preview-button")
                    build_button = tr(gr.Button, {"value": "build"}, variant="primary", elem_id="build-button")
                status = gr.Markdown(elem_id="build-status")
            with tr(gr.Tab, {"label": "tab_preview"}, id="preview", elem_id="tab-preview"):
                spec_yaml = tr(gr.Code, {"label": "spec_yaml"}, language="yaml", elem_id="spec-yaml")
                file_choice = tr(gr.Dropdown, {"label": "generated_file"}, choices=[], elem_id="file-choice")
                file_view = tr(gr.Code, {"label": "file_content"}, language="python", elem_id="file-view", max_lines=40)
                diff_view = tr(gr.Code, {"label": "diff"}, elem_id="diff-view", max_lines=40)
                files_state = gr.State({})
            with tr(gr.Tab, {"label": "tab_train"}, id="train", elem_id="tab-train"):
                with gr.Row():
                    start_button = tr(gr.Button, {"value": "start"}, variant="primary", elem_id="start-button")
                    resume_button = tr(gr.Button, {"value": "resume"}, elem_id="resume-button", visible=False)
                    stop_button = tr(gr.Button, {"value": "stop"}, variant="stop", elem_id="stop-button")
                train_message = gr.Markdown(elem_id="train-message")
                progress = gr.Markdown(elem_id="progress")
                loss_plot = tr(
                    gr.LinePlot, {"label": "loss_curve"}, x="step", y="loss", elem_id="loss-plot", height=300
                )
                train_log = tr(
                    gr.Textbox, {"label": "log"}, lines=20, max_lines=20, elem_id="train-log", autoscroll=True
                )
                runs_table = tr(
                    gr.Dataframe, {"label": "runs", "headers": "runs_headers"}, elem_id="runs-table", interactive=False
                )
                with gr.Row(equal_height=True):
                    compare_select = tr(
                        gr.Dropdown, {"label": "compare_runs", "info": "compare_runs_info"},
                        choices=workspace.run_names(), multiselect=True, elem_id="compare-runs", scale=4,
                    )  # fmt: skip
                    compare_button = tr(gr.Button, {"value": "compare"}, elem_id="compare-button", scale=1)
                compare_table = gr.Markdown(elem_id="compare-table")
                compare_plot = tr(
                    gr.Image, {"label": "compare_curves"}, type="pil", interactive=False, elem_id="compare-plot",
                    height=420,
                )  # fmt: skip
                with tr(gr.Accordion, {"label": "sweep_title"}, open=False, elem_id="sweep"):
                    with gr.Row(equal_height=True):
                        sweep_key = tr(
                            gr.Dropdown, {"label": "sweep_key"}, choices=[f.path for f in form.FIELDS if f.path != "name"],
                            value="training.learning_rate", elem_id="sweep-key",
                        )  # fmt: skip
                        sweep_values = tr(
                            gr.Textbox, {"label": "sweep_values"}, placeholder="1e-4, 5e-4", elem_id="sweep-values"
                        )
                        sweep_button = tr(gr.Button, {"value": "sweep_button"}, elem_id="sweep-button")
                    sweep_status = gr.Markdown(elem_id="sweep-status")
            with tr(gr.Tab, {"label": "tab_chat"}, id="chat", elem_id="tab-chat"):
                with gr.Row(equal_height=True):
                    chat_base = tr(gr.Checkbox, {"label": "chat_base"}, value=False, elem_id="chat-base")
                    server_button = tr(gr.Button, {"value": "start_server"}, elem_id="server-button")
                    server_stop = tr(gr.Button, {"value": "stop_server"}, elem_id="server-stop")
                server_status = gr.Markdown(elem_id="server-status")
                system_prompt = tr(gr.Textbox, {"label": "system_prompt"}, elem_id="system-prompt")
                with tr(gr.Accordion, {"label": "generation"}, open=False, elem_id="generation"):
                    with gr.Row():
                        inference = {f.name: f for f in form.FIELDS if f.section == "inference"}
                        temperature = tr(
                            gr.Slider, {"label": "temperature"}, minimum=0, maximum=2, step=0.05,
                            value=inference["temperature"].default, elem_id="chat-temperature",
                        )  # fmt: skip
                        top_p = tr(
                            gr.Slider, {"label": "top_p"}, minimum=0.05, maximum=1, step=0.05,
                            value=inference["top_p"].default, elem_id="chat-top-p",
                        )  # fmt: skip
                        max_tokens = tr(
                            gr.Number, {"label": "max_new_tokens"}, value=inference["max_new_tokens"].default,
                            minimum=1, precision=0, elem_id="chat-max-tokens",
                        )  # fmt: skip
                chatbot = tr(gr.Chatbot, {"label": "chatbot"}, elem_id="chatbot", height=360)
                with gr.Row(equal_height=True):
                    chat_image = tr(
                        gr.Image, {"label": "chat_image"}, type="filepath", sources=["upload"], elem_id="chat-image",
                        height=120, scale=1,
                    )  # fmt: skip
                    # Shown for runs whose datasets have videos (App.on_run_media). A file box, not gr.Video: that
                    # plays the upload and calls the many codecs PyAV reads (MPEG-4 part 2, AVI, FLV) unplayable.
                    chat_video = tr(
                        gr.File, {"label": "chat_video"}, file_types=sorted(VIDEO_SUFFIXES), type="filepath",
                        elem_id="chat-video", height=120, scale=1, visible=False,
                    )  # fmt: skip
                    chat_input = tr(gr.Textbox, {"label": "message"}, elem_id="chat-input", scale=4)
                    send_button = tr(gr.Button, {"value": "send"}, variant="primary", elem_id="send-button", scale=1)
                    clear_button = tr(gr.Button, {"value": "clear"}, elem_id="clear-button", scale=1)
            with tr(gr.Tab, {"label": "tab_eval"}, id="eval", elem_id="tab-eval"):
                eval_args, eval_button, eval_message, eval_log, eval_results = _script_tab("eval", tr)
            with tr(gr.Tab, {"label": "tab_export"}, id="export", elem_id="tab-export"):
                with gr.Row():
                    export_gguf = tr(
                        gr.Dropdown, {"label": "gguf"}, choices=list(form.item_choices("export.gguf")), multiselect=True,
                        value=[], elem_id="export-gguf",
                    )  # fmt: skip
                    export_dtype = tr(
                        gr.Dropdown, {"label": "export_dtype"}, choices=[""] + list(form.BY_PATH["export.export_dtype"].choices),
                        value="", elem_id="export-dtype",
                    )  # fmt: skip
                    export_ollama = tr(gr.Checkbox, {"label": "ollama"}, value=False, elem_id="export-ollama")
                    export_onnx = tr(gr.Checkbox, {"label": "onnx"}, value=False, elem_id="export-onnx")
                export_args, export_button, export_message, export_log, export_results = _script_tab("export", tr)

        inputs = [widgets[f.path] for f in form.FIELDS]
        shown = [status, spec_yaml, file_choice, file_view, diff_view, files_state]
        refresh_compare = (lambda: gr.update(choices=workspace.run_names()), None, compare_select)
        preview_button.click(app.on_preview, [language, *inputs], shown)
        build_button.click(app.on_build, [language, *inputs], [*shown, run_select]).then(*refresh_compare)
        file_choice.change(app.on_file, [file_choice, files_state], file_view)
        model_path = widgets["model.model_name_or_path"]
        model_picker.change(lambda hub_id: gr.update() if not hub_id else hub_id, model_picker, model_path)
        model_path.change(app.on_model, [model_path, language], [suggestion, widgets["data.template"], model_picker])
        dataset_choices = ([widgets["data.dataset_dir"], widgets["data.dataset"], language], widgets["data.dataset"])
        widgets["data.dataset_dir"].change(app.on_dataset_dir, *dataset_choices)
        blocks.load(app.on_dataset_dir, *dataset_choices)
        preview_data_button.click(app.on_dataset_preview, [language, *inputs], [dataset_preview, dataset_images])
        load_button.click(app.on_load, [load_path, language], [*inputs, file_status])
        save_button.click(app.on_save, [save_path, language, *inputs], file_status)
        method_visibility = (
            [widgets["method.stage"], widgets["method.finetuning_type"]],
            [widgets[f.path] for f in form.FIELDS if f.section == "method"],
        )
        widgets["method.stage"].change(app.on_stage, *method_visibility)
        widgets["method.finetuning_type"].change(app.on_stage, *method_visibility)
        blocks.load(app.on_stage, *method_visibility)
        # The memory estimate follows every setting it reads.
        plan_triggers = [blocks.load, language.change, gpu_memory.change]
        plan_triggers += [widgets[path].change for path in form.PLAN_FIELDS]
        gr.on(
            plan_triggers, app.on_plan, [language, gpu_memory, *inputs], plan_view, show_progress="hidden",
            trigger_mode="always_last",  # a change while it computes runs it again once it is done
        )  # fmt: skip

        blocks.load(lambda: gr.update(choices=workspace.run_names()), None, run_select)
        start_button.click(app.on_start, [run_select, language], train_message)
        resume_button.click(app.on_resume, [run_select, language], train_message)
        stop_button.click(app.on_stop, [run_select, language], train_message)
        followed = [progress, loss_plot, train_log, runs_table, resume_button]
        followed += [eval_log, eval_results, export_log, export_results]
        gr.Timer(1.0).tick(app.on_timer, [run_select, language], followed, show_progress="hidden")
        compare_button.click(app.on_compare, [compare_select, language], [compare_table, compare_plot])
        sweep_inputs = [run_select, sweep_key, sweep_values, language]
        sweep_button.click(app.on_sweep, sweep_inputs, [sweep_status, run_select]).then(*refresh_compare)

        server_button.click(app.on_server_start, [run_select, chat_base, language], server_status)
        server_stop.click(app.on_server_stop, [run_select, language], server_status)
        chat_args = (
            [chat_input, chatbot, system_prompt, chat_image, chat_video, temperature, top_p, max_tokens, run_select]
            + [language],
            [chatbot, chat_input, chat_image, chat_video],
        )
        run_select.change(app.on_run_media, run_select, chat_video)
        send_button.click(app.on_chat, *chat_args)
        chat_input.submit(app.on_chat, *chat_args)  # Enter sends
        clear_button.click(lambda: [], None, chatbot)

        eval_button.click(partial(app.on_script, "eval"), [run_select, eval_args, language], eval_message)
        export_choices = [export_gguf, export_dtype, export_ollama, export_onnx]
        export_button.click(app.on_export, [run_select, *export_choices, export_args, language], export_message)

        # Language: every label and help text again, in the chosen language.
        language.change(tr.relabel, language, tr.components)
        language.change(lambda model, lang: app.on_model(model, lang)[0], [model_path, language], suggestion)
    blocks.ffc_app = app  # for tests and shutdown
    return blocks


def serve(
    workspace: Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    lang: str = "en",
    open_browser: bool = False,
    auth: Optional[str] = None,
    allowed_hosts: Sequence[str] = (),
) -> None:
    """``ffc ui``. ValueError, before anything starts, when the options leave it open (see ``Access.check``).
    Gradio's login guards it when there is a password; HostGuard stands in front of every route (handed to
    Gradio's FastAPI app as it is made: a started app takes no middleware)."""
    access = Access.check(host, port, auth, allowed_hosts)
    ws = Workspace(workspace)
    blocks = create_app(ws, lang)
    try:
        blocks.queue(default_concurrency_limit=4).launch(
            server_name=access.host, server_port=access.port, auth=access.auth, inbrowser=open_browser,
            show_error=True, app_kwargs={"middleware": [Middleware(HostGuard, access=access)]},
            prevent_thread_lock=False,
        )  # fmt: skip
    finally:
        ws.shutdown()
