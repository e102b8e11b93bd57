"""The web UI's logic without a browser: the form derived from the spec, form <-> spec, preview/build
with the CLI's messages, the workspace's processes. The browser tests are in test_ui_browser.py."""

import json
import sys
import time
from pathlib import Path

import pytest

from ffc.compiler.loader import SpecError, load_spec
from ffc.schemas import Spec
from ffc.ui import form, service
from ffc.ui.jobs import Workspace, read_progress, tail
from ffc.ui.suggest import suggest_template

ROOT = Path(__file__).resolve().parent.parent


def _leaf_paths(model, prefix=""):
    from pydantic import BaseModel

    from ffc.ui.form import _strip_optional

    out = []
    for name, info in model.model_fields.items():
        annotation, _ = _strip_optional(info.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _leaf_paths(annotation, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_every_spec_option_is_a_form_field_with_its_help():
    assert [f.path for f in form.FIELDS] == [p for p in _leaf_paths(Spec) if p != "version"]
    lr = form.BY_PATH["training.learning_rate"]
    assert (
        lr.kind == "float"
        and lr.description == Spec.model_fields["training"].annotation.model_fields["learning_rate"].description
    )
    assert form.BY_PATH["method.stage"].kind == "choice" and "dpo" in form.BY_PATH["method.stage"].choices
    assert form.BY_PATH["distributed.env"].kind == "mapping"
    assert form.BY_PATH["distributed.deepspeed.zero_stage"].section == "distributed"
    assert all(f.description for f in form.FIELDS), "every option needs help text"
    assert len({f.elem_id for f in form.FIELDS}) == len(form.FIELDS)


def test_form_round_trip_writes_what_a_person_would(tmp_path):
    spec = form.load_yaml((ROOT / "examples" / "lora_sft.yaml").read_text())
    values = form.values_from_spec(spec)
    assert values["data.dataset"] == ["demo_alpaca", "demo_sharegpt"]
    assert values["training.learning_rate"] == 5e-3 and values["training.seed"] == 42  # a default filled in
    again = form.spec_from_values(values)
    # Only what differs from the defaults comes back (the example also spells out a few defaults).
    assert again["training"] == {k: v for k, v in spec["training"].items() if k != "lr_scheduler_type"}
    assert "method" not in again and "logging" not in again  # sft + lora + rank 8 + all, tensorboard: defaults
    text = form.to_yaml(again)
    assert "dataset: [demo_alpaca, demo_sharegpt]" in text and "seed" not in text
    # Both specs compile to the same settings.
    (tmp_path / "a.yaml").write_text((ROOT / "examples" / "lora_sft.yaml").read_text())
    (tmp_path / "b.yaml").write_text(text)
    assert load_spec(tmp_path / "a.yaml").spec == load_spec(tmp_path / "b.yaml").spec


def test_widget_values_convert_and_bad_ones_reach_validation():
    field = form.BY_PATH["training.per_device_train_batch_size"]
    assert form.to_value(field, 8.0) == 8 and isinstance(form.to_value(field, 8.0), int)
    assert form.to_value(form.BY_PATH["model.quantization_bit"], "4") == 4  # Literal[4, 8] from a dropdown's text
    assert form.to_value(form.BY_PATH["model.quantization_bit"], "") is None
    assert form.to_value(form.BY_PATH["data.interleave_probs"], "0.3, 0.7") == [0.3, 0.7]
    assert form.to_value(form.BY_PATH["distributed.env"], "NCCL_DEBUG: WARN") == {"NCCL_DEBUG": "WARN"}
    assert form.to_value(form.BY_PATH["training.learning_rate"], "fast") == "fast"  # left for the spec to refuse


def _ui_spec(**changes):
    values = form.values_from_spec({})
    values.update({
        "name": "ui-run", "model.model_name_or_path": "./model", "data.dataset": ["demo_alpaca"],
        "data.dataset_dir": "./data", "data.template": "chatml", "training.max_steps": 5,
    })  # fmt: skip
    values.update(changes)
    return form.to_yaml(form.spec_from_values(values))


def test_preview_reports_what_the_cli_reports(tmp_path):
    ws = Workspace(tmp_path)
    text = _ui_spec(**{"training.learning_rate": -1, "method.stage": "dpo"})
    outcome = service.preview(ws, "ui-run", text)
    assert not outcome.ok and not outcome.files
    (tmp_path / "cli.yaml").write_text(text)
    with pytest.raises(SpecError) as cli:
        load_spec(tmp_path / "cli.yaml")
    # Same problems, same words; the place names the spec file the UI saves, with the line in the YAML shown.
    assert [e.split(": ", 1)[1] for e in outcome.errors] == [str(i).split(": ", 1)[1] for i in cli.value.issues]
    assert all(e.startswith("ui-run.yaml:") for e in outcome.errors)
    assert any("learning_rate" in e for e in outcome.errors)
    assert not (tmp_path / "ui-run.yaml").exists() and not list(tmp_path.glob(".*preview*"))  # preview writes nothing
    assert "run name" in service.preview(ws, "../escape", text).errors[0]


def test_preview_build_and_diff(demo, tmp_path):
    ws = Workspace(tmp_path)
    (tmp_path / "model").symlink_to(demo / "tiny-model")
    (tmp_path / "data").symlink_to(demo / "data")
    text = _ui_spec()
    first = service.preview(ws, "ui-run", text)
    assert first.ok and first.diff is None and "train.py" in first.files and "accelerate_config.yaml" in first.files
    built = service.build(ws, "ui-run", text)
    assert built.ok, built.errors
    assert (tmp_path / "ui-run.yaml").read_text() == text
    assert (tmp_path / "runs" / "ui-run" / "train.py").read_text() == first.files["train.py"]
    assert service.preview(ws, "ui-run", text).diff == ""
    changed = service.preview(ws, "ui-run", _ui_spec(**{"training.learning_rate": 1e-3}))
    assert "training.learning_rate: 0.0001 -> 0.001" in changed.diff and "+        learning_rate=0.001," in changed.diff
    assert ws.run_names() == ["ui-run"] and ws.status("ui-run") == "built"
    name, loaded = service.load_source("runs/ui-run", ws)
    assert (name, loaded) == ("ui-run", text)
    # ./data is a link to the demo data: the owner lends it to the workspace, so the UI reads it.
    assert service.dataset_names("./data", ws)[:2] == ["demo_alpaca", "demo_sharegpt"]
    assert '"instruction"' in service.dataset_rows("./data", "demo_alpaca", ws)


def test_jobs_log_stop_and_status(tmp_path):
    ws = Workspace(tmp_path)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / ".ffc-manifest.json").write_text("{}")
    loop = "import time\nfor i in range(600):\n    print('step', i, end='\\r' if i % 2 else '\\n', flush=True); time.sleep(0.05)"
    job = ws.start("r", "train", [sys.executable, "-c", loop])
    with pytest.raises(ValueError, match="already running"):
        ws.start("r", "train", [sys.executable, "-c", "pass"])
    deadline = time.time() + 20
    while "step 6" not in ws.log_tail("r", "train") and time.time() < deadline:
        time.sleep(0.1)
    assert ws.status("r") == "running"
    assert ws.stop("r") and not job.alive and ws.status("r") == "stopped"
    done = ws.start("r", "eval", [sys.executable, "-c", "raise SystemExit(3)"])
    done.process.wait()
    assert ws.job("r", "eval").returncode == 3
    assert json.loads((run / ".ffc-ui.json").read_text()) == {"train": "stopped", "eval": "failed (exit 3)"}
    assert Workspace(tmp_path).status("r") == "stopped"  # remembered by a new UI process


def test_progress_and_tail(tmp_path):
    log = tmp_path / "trainer_log.jsonl"
    log.write_text(
        "\n".join(json.dumps(r) for r in [
            {"current_steps": 5, "total_steps": 20, "percentage": 25.0, "elapsed_time": 2.0, "remaining_time": 6.0, "loss": 3.2},
            {"current_steps": 10, "total_steps": 20, "percentage": 50.0, "elapsed_time": 4.0, "remaining_time": 4.0, "loss": 2.9},
        ]) + "\n{\"current_st"  # a line being written
    )  # fmt: skip
    progress = read_progress(log)
    assert progress["loss"] == [(5, 3.2), (10, 2.9)] and progress["step"] == 10 and progress["remaining"] == 4.0
    (tmp_path / "out.log").write_bytes(b"a\n10%|#  \r50%|##  \r100%|###\nlast\n")
    assert tail(tmp_path / "out.log", 3) == "100%|###\nlast\n"


@pytest.mark.parametrize(
    "model, expected",
    [
        ("Qwen/Qwen2.5-0.5B-Instruct", "qwen"), ("Qwen/Qwen3-8B", "qwen3"), ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
        ("meta-llama/Llama-2-7b-chat-hf", "llama2"), ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral"),
        ("google/gemma-2-9b-it", "gemma"), ("microsoft/phi-4", "phi4"), ("microsoft/Phi-3-mini-4k-instruct", "phi"),
        ("01-ai/Yi-6B-Chat", "yi"), ("THUDM/glm-4-9b-chat", "glm4"), ("some/unknown-model", None),
    ],
)  # fmt: skip
def test_template_suggestion_from_names(model, expected):
    assert suggest_template(model)[0] == expected


def test_template_suggestion_from_a_local_model(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert suggest_template("my-model", tmp_path) == ("qwen", "config.json model_type 'qwen2'")
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ '<|im_start|>' + m }}"}))
    assert suggest_template(str(model))[0] == "chatml"


def test_app_handlers_answer_bad_input_with_messages(tmp_path):
    pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")
    from ffc.ui.app import create_app

    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    blocks = create_app(Workspace(tmp_path))
    app = blocks.ffc_app
    *updates, message = app.on_load("broken.yaml", "en")
    assert "invalid YAML" in message and len(updates) == len(form.FIELDS)
    assert "not found" in app.on_load("missing.yaml", "en")[-1]
    values = [form.values_from_spec({}).get(f.path) for f in form.FIELDS]
    assert "ends in .yaml" in app.on_save("spec.txt", "en", *values)
    assert app.on_start(None, "en") == "Build the run first." and "not built" in app.on_start("nope", "en")
    by_path = dict(zip([f.path for f in form.FIELDS], values))
    by_path.update({"name": "t", "model.model_name_or_path": "./m", "data.dataset": ["d"], "data.template": "chatml"})
    by_path["distributed.env"] = "A: : b"  # not a mapping: reported by validation, not a crash
    status = app.on_preview("en", *[by_path[f.path] for f in form.FIELDS])[0]
    assert "distributed.env" in status and "valid dictionary" in status
    method = [f for f in form.FIELDS if f.section == "method"]
    visible = dict(zip([f.name for f in method], (u["visible"] for u in app.on_stage("dpo", "full"))))
    assert visible["pref_beta"] and not visible["lora_rank"] and not visible["ppo_epochs"]


def test_chinese_help_covers_exactly_the_spec_options():
    from ffc.ui import locales

    paths = {f.path for f in form.FIELDS}
    assert set(locales.ZH_HELP) == paths, "translate new spec options in compiler/ui/locales.py (ZH_HELP)"
    assert set(locales.ZH_LABEL) <= paths
    assert all(set(entry) == {"en", "zh"} for entry in locales.TEXT.values())
    assert locales.help_text("training.learning_rate", "x", "zh") == "AdamW 的初始学习率。"
