"""``ffc ui``: the zero-code web app, on Gradio.

Gradio because it is what people fine-tuning models already know from LLaMA-Factory's LlamaBoard and
Hugging Face Spaces, and it brings the pieces this needs (streaming chat, live plots, timers, code
views) without a frontend build. The form is generated from the spec models (``form.FIELDS``); every
button calls a handler (``handlers``) that calls the compiler or starts one of the run directory's
scripts. This module is the layout and the wiring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from . import form, locales
from .handlers import App
from .jobs import Workspace

DEFAULT_VALUES = {
    "name": "my-run",
    "model.model_name_or_path": "",
    "data.dataset": [],
    "data.template": "",
}


def _widget(field: form.FormField, value: Any, lang: str):
    common = dict(
        label=locales.label(field.path, lang),
        info=locales.help_text(field.path, field.description, lang),
        elem_id=field.elem_id,
        interactive=True,
    )
    if field.path == "data.dataset" or field.path == "data.eval_dataset":
        return gr.Dropdown(choices=[], value=value or [], multiselect=True, allow_custom_value=True, **common)
    if field.path == "data.template":
        from ffc.runtime.chat.templates import TEMPLATES

        choices = [""] + list(TEMPLATES) + ["tokenizer"]
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


def _script_tab(kind: str, lang: str):
    """(arguments, button, message, log, results) of a tab that runs one of the run's scripts."""
    args_label, button_label, placeholder = SCRIPT_TABS[kind]
    return (
        gr.Textbox(label=locales.text(args_label, lang), elem_id=f"{kind}-args", placeholder=placeholder),
        gr.Button(locales.text(button_label, lang), variant="primary", elem_id=f"{kind}-button"),
        gr.Markdown(elem_id=f"{kind}-message"),
        gr.Textbox(label=locales.text("log", lang), lines=10, elem_id=f"{kind}-log"),
        gr.Textbox(label=locales.text("results", lang), lines=8, elem_id=f"{kind}-results"),
    )


def create_app(workspace: Workspace, lang: str = "en") -> gr.Blocks:
    app = App(workspace, lang)
    values = {**form.values_from_spec({}), **{k: v for k, v in DEFAULT_VALUES.items()}}
    widgets: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    t = lambda key: locales.text(key, lang)  # noqa: E731

    with gr.Blocks(title="ffc") as blocks:
        with gr.Row(equal_height=True):
            title = gr.Markdown(f"## {t('title')}\n{t('subtitle')}", elem_id="title")
            with gr.Column(scale=0, min_width=420):
                with gr.Row():
                    language = gr.Dropdown(
                        choices=[(v, k) for k, v in locales.LANGUAGES.items()], value=lang, label=t("language"),
                        elem_id="language", min_width=140,
                    )  # fmt: skip
                    run_select = gr.Dropdown(
                        choices=workspace.run_names(), value=None, label=t("run"), elem_id="run-select", min_width=260
                    )
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab(t("tab_config"), id="config", elem_id="tab-config") as tab_config:
                with gr.Row():
                    load_path = gr.Textbox(label=t("load_path"), elem_id="load-path", scale=3)
                    load_button = gr.Button(t("load"), elem_id="load-button", scale=1)
                    save_path = gr.Textbox(label=t("save_path"), elem_id="save-path", scale=3)
                    save_button = gr.Button(t("save"), elem_id="save-button", scale=1)
                file_status = gr.Markdown(elem_id="file-status")
                for section in form.SECTIONS:
                    open_ = section in form.OPEN_SECTIONS
                    with gr.Accordion(
                        locales.section_title(section, lang), open=open_, elem_id=f"section-{section}"
                    ) as acc:
                        sections[section] = acc
                        for field in form.FIELDS:
                            if form.section_of(field) != section:
                                continue
                            if field.path == "name":
                                widgets[field.path] = gr.Textbox(
                                    value=values["name"],
                                    label=t("run_name"),
                                    info=t("run_name_info"),
                                    elem_id="field-name",
                                )
                                continue
                            widgets[field.path] = _widget(field, values[field.path], lang)
                            if field.path == "model.model_name_or_path":
                                suggestion = gr.Markdown(elem_id="template-suggestion")
                        if section == "data":
                            preview_data_button = gr.Button(t("dataset_preview"), elem_id="dataset-preview-button")
                            dataset_preview = gr.Textbox(
                                label=t("dataset_preview_out"), lines=12, max_lines=30, elem_id="dataset-preview"
                            )
                with gr.Row():
                    preview_button = gr.Button(t("preview"), variant="secondary", elem_id="preview-button")
                    build_button = gr.Button(t("build"), variant="primary", elem_id="build-button")
                status = gr.Markdown(elem_id="build-status")
            with gr.Tab(t("tab_preview"), id="preview", elem_id="tab-preview") as tab_preview:
                spec_yaml = gr.Code(label=t("spec_yaml"), language="yaml", elem_id="spec-yaml")
                file_choice = gr.Dropdown(choices=[], label=t("generated_file"), elem_id="file-choice")
                file_view = gr.Code(label=t("file_content"), language="python", elem_id="file-view", max_lines=40)
                diff_view = gr.Code(label=t("diff"), elem_id="diff-view", max_lines=40)
                files_state = gr.State({})
            with gr.Tab(t("tab_train"), id="train", elem_id="tab-train") as tab_train:
                with gr.Row():
                    start_button = gr.Button(t("start"), variant="primary", elem_id="start-button")
                    stop_button = gr.Button(t("stop"), variant="stop", elem_id="stop-button")
                train_message = gr.Markdown(elem_id="train-message")
                progress = gr.Markdown(elem_id="progress")
                loss_plot = gr.LinePlot(x="step", y="loss", label=t("loss_curve"), elem_id="loss-plot", height=300)
                train_log = gr.Textbox(label=t("log"), lines=20, max_lines=20, elem_id="train-log", autoscroll=True)
                runs_table = gr.Dataframe(
                    headers=locales.text("runs_headers", lang), label=t("runs"), elem_id="runs-table", interactive=False
                )
            with gr.Tab(t("tab_chat"), id="chat", elem_id="tab-chat") as tab_chat:
                with gr.Row():
                    server_button = gr.Button(t("start_server"), elem_id="server-button")
                    server_stop = gr.Button(t("stop_server"), elem_id="server-stop")
                server_status = gr.Markdown(elem_id="server-status")
                system_prompt = gr.Textbox(label=t("system_prompt"), elem_id="system-prompt")
                chatbot = gr.Chatbot(label=t("chatbot"), elem_id="chatbot", height=360)
                with gr.Row():
                    chat_input = gr.Textbox(label=t("message"), elem_id="chat-input", scale=5)
                    send_button = gr.Button(t("send"), variant="primary", elem_id="send-button", scale=1)
                    clear_button = gr.Button(t("clear"), elem_id="clear-button", scale=1)
            with gr.Tab(t("tab_eval"), id="eval", elem_id="tab-eval") as tab_eval:
                eval_args, eval_button, eval_message, eval_log, eval_results = _script_tab("eval", lang)
            with gr.Tab(t("tab_export"), id="export", elem_id="tab-export") as tab_export:
                export_args, export_button, export_message, export_log, export_results = _script_tab("export", lang)

        inputs = [widgets[f.path] for f in form.FIELDS]
        shown = [status, spec_yaml, file_choice, file_view, diff_view, files_state]
        preview_button.click(app.on_preview, [language, *inputs], shown)
        build_button.click(app.on_build, [language, *inputs], [*shown, run_select])
        file_choice.change(app.on_file, [file_choice, files_state], file_view)
        widgets["model.model_name_or_path"].change(
            app.on_model, [widgets["model.model_name_or_path"], language], [suggestion, widgets["data.template"]]
        )
        widgets["data.dataset_dir"].change(
            app.on_dataset_dir, [widgets["data.dataset_dir"], widgets["data.dataset"]], widgets["data.dataset"]
        )
        blocks.load(app.on_dataset_dir, [widgets["data.dataset_dir"], widgets["data.dataset"]], widgets["data.dataset"])
        preview_data_button.click(app.on_dataset_preview, [language, *inputs], dataset_preview)
        load_button.click(app.on_load, [load_path, language], [*inputs, file_status])
        save_button.click(app.on_save, [save_path, language, *inputs], file_status)
        method_widgets = [widgets[f.path] for f in form.FIELDS if f.section == "method"]
        for key in ("method.stage", "method.finetuning_type"):
            widgets[key].change(
                app.on_stage, [widgets["method.stage"], widgets["method.finetuning_type"]], method_widgets
            )
        blocks.load(app.on_stage, [widgets["method.stage"], widgets["method.finetuning_type"]], method_widgets)

        blocks.load(lambda: gr.update(choices=workspace.run_names()), None, run_select)
        start_button.click(app.on_start, [run_select, language], train_message)
        stop_button.click(app.on_stop, [run_select, language], train_message)
        timer = gr.Timer(1.0)
        timer.tick(
            app.on_tick, [run_select, language], [progress, loss_plot, train_log, runs_table], show_progress="hidden"
        )

        server_button.click(app.on_server_start, [run_select, language], server_status)
        server_stop.click(app.on_server_stop, [run_select, language], server_status)
        chat_args = ([chat_input, chatbot, system_prompt, run_select, language], [chatbot, chat_input])
        send_button.click(app.on_chat, *chat_args)
        chat_input.submit(app.on_chat, *chat_args)
        clear_button.click(lambda: [], None, chatbot)

        eval_button.click(
            lambda run, args, lang: app.on_script("eval", run, args, lang),
            [run_select, eval_args, language],
            eval_message,
        )
        export_button.click(
            lambda run, args, lang: app.on_script("export", run, args, lang),
            [run_select, export_args, language],
            export_message,
        )
        timer.tick(
            lambda run: app.script_state("eval", run), run_select, [eval_log, eval_results], show_progress="hidden"
        )
        timer.tick(
            lambda run: app.script_state("export", run),
            run_select,
            [export_log, export_results],
            show_progress="hidden",
        )

        # Language: every label and help text again, in the chosen language.
        def relabel(lang):
            tt = lambda key: locales.text(key, lang)  # noqa: E731
            out = [
                gr.update(value=f"## {tt('title')}\n{tt('subtitle')}"),
                gr.update(label=tt("language")),
                gr.update(label=tt("run")),
            ]
            out += [
                gr.update(label=tt(key))
                for key in ("tab_config", "tab_preview", "tab_train", "tab_chat", "tab_eval", "tab_export")
            ]
            out += [gr.update(label=locales.section_title(s, lang)) for s in form.SECTIONS]
            for field in form.FIELDS:
                if field.path == "name":
                    out.append(gr.update(label=tt("run_name"), info=tt("run_name_info")))
                else:
                    out.append(
                        gr.update(
                            label=locales.label(field.path, lang),
                            info=locales.help_text(field.path, field.description, lang),
                        )
                    )
            out += [
                gr.update(label=tt("load_path")), gr.update(value=tt("load")), gr.update(label=tt("save_path")),
                gr.update(value=tt("save")), gr.update(value=tt("dataset_preview")), gr.update(label=tt("dataset_preview_out")),
                gr.update(value=tt("preview")), gr.update(value=tt("build")), gr.update(label=tt("spec_yaml")),
                gr.update(label=tt("generated_file")), gr.update(label=tt("file_content")), gr.update(label=tt("diff")),
                gr.update(value=tt("start")), gr.update(value=tt("stop")), gr.update(label=tt("loss_curve")),
                gr.update(label=tt("log")), gr.update(label=tt("runs"), headers=tt("runs_headers")),
                gr.update(value=tt("start_server")), gr.update(value=tt("stop_server")), gr.update(label=tt("system_prompt")),
                gr.update(label=tt("chatbot")), gr.update(label=tt("message")), gr.update(value=tt("send")),
                gr.update(value=tt("clear")), gr.update(label=tt("eval_args")), gr.update(value=tt("run_eval")),
                gr.update(label=tt("log")), gr.update(label=tt("results")), gr.update(label=tt("export_args")),
                gr.update(value=tt("run_export")), gr.update(label=tt("log")), gr.update(label=tt("results")),
            ]  # fmt: skip
            return out

        relabelled = [title, language, run_select, tab_config, tab_preview, tab_train, tab_chat, tab_eval, tab_export]
        relabelled += [sections[s] for s in form.SECTIONS] + inputs
        relabelled += [
            load_path, load_button, save_path, save_button, preview_data_button, dataset_preview, preview_button,
            build_button, spec_yaml, file_choice, file_view, diff_view, start_button, stop_button, loss_plot,
            train_log, runs_table, server_button, server_stop, system_prompt, chatbot, chat_input, send_button,
            clear_button, eval_args, eval_button, eval_log, eval_results, export_args, export_button, export_log,
            export_results,
        ]  # fmt: skip
        language.change(relabel, language, relabelled)
    blocks.ffc_app = app  # for tests and shutdown
    return blocks


def serve(
    workspace: Path, host: str = "127.0.0.1", port: int = 7860, lang: str = "en", open_browser: bool = False
) -> None:
    ws = Workspace(workspace)
    blocks = create_app(ws, lang)
    try:
        blocks.queue(default_concurrency_limit=4).launch(
            server_name=host, server_port=port, inbrowser=open_browser, show_error=True, prevent_thread_lock=False
        )
    finally:
        ws.shutdown()
