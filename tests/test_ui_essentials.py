"""The model catalogue (``ffc models``, the UI's picker) and the UI's essentials screen without a browser: human
labels, the live memory estimate (the same numbers as ``ffc plan``), comparison and sweeps of runs, base-model
chat, images in chat and in the dataset preview, export choices. The browser walk-through is in
test_ui_essentials_browser.py."""

import json
from pathlib import Path

import pytest

from ffc.compiler import catalogue
from ffc.compiler import plan as planner
from ffc.ui import estimate, form, locales, service
from ffc.ui.jobs import Workspace

# -- the catalogue --------------------------------------------------------------------------------------------


def test_catalogue_entries_are_consistent():
    from ffc.runtime.chat.templates import TEMPLATES
    from ffc.runtime.chat.vision import VISION_TEMPLATES

    assert len({m.hub_id for m in catalogue.MODELS}) == len(catalogue.MODELS) >= 40
    for model in catalogue.MODELS:
        assert model.template in TEMPLATES, model.name
        assert (model.template in VISION_TEMPLATES) == model.vision, model.name
        assert model.hub_id.endswith("/" + model.name) and model.licence and model.context >= 2048
        # The parameter count comes from the config numbers: a typo there shows as a size the name does not say
        # (vision-language entries count the language model only; distills add an untied output layer).
        ratio = model.params / catalogue.nominal_params(model.size)
        assert 0.75 <= ratio <= 1.35, f"{model.name}: {model.params / 1e9:.2f}B from its config, named {model.size}"
    assert catalogue.find("qwen3-8b") is catalogue.find("Qwen/Qwen3-8B") is catalogue.BY_HUB_ID["Qwen/Qwen3-8B"]
    assert catalogue.find("./model") is None and catalogue.find(None) is None


def test_catalogue_search_filters():
    small_qwen3 = catalogue.search("qwen3", max_params_b=2)
    assert [m.name for m in small_qwen3] == ["Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-VL-2B-Instruct"]
    assert all(m.vision for m in catalogue.search(vision=True)) and len(catalogue.search(vision=True)) >= 5
    assert {m.family for m in catalogue.search(family="llama3")} == {"llama3"}
    assert [m.name for m in catalogue.search("llama 70b")] == ["Llama-3.3-70B-Instruct"]
    assert catalogue.search("no-such-model") == []


def _ffc(*args) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from ffc.compiler.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_ffc_models_lists_and_filters():
    code, out, _ = _ffc("models", "qwen2.5", "--max-size", "3", "--text")
    assert code == 0 and "Qwen/Qwen2.5-0.5B-Instruct" in out and "Qwen/Qwen2.5-3B-Instruct" in out
    assert "7B-Instruct" not in out and "VL" not in out and "3 models" in out and " qwen " in out  # template column
    code, out, _ = _ffc("models", "--vision", "--json")
    rows = json.loads(out)
    assert code == 0 and rows and all(row["modalities"] == "text+image" for row in rows)
    assert rows[0]["template"] == "qwen2_vl" and rows[0]["params"] == catalogue.find(rows[0]["hub_id"]).params
    code, _, err = _ffc("models", "--family", "gpt9")
    assert code == 1 and "families are" in err
    code, _, err = _ffc("models", "nothing-like-this")
    assert code == 1 and "no catalogue model matches" in err


# -- the essentials screen -------------------------------------------------------------------------------------


def test_essentials_have_human_labels_and_show_their_yaml_key():
    assert set(form.ESSENTIALS) == set(locales.HUMAN_LABEL) and len(form.ESSENTIALS) == len(set(form.ESSENTIALS))
    assert all(path in form.BY_PATH for path in form.ESSENTIALS + form.PLAN_FIELDS)
    assert all(set(words) == {"en", "zh"} for words in locales.HUMAN_LABEL.values())
    field = form.BY_PATH["training.per_device_train_batch_size"]
    assert locales.essential_label(field.path, "en") == "Batch size per GPU"
    assert locales.essential_help(field.path, field.description, "en").endswith(
        "YAML: training.per_device_train_batch_size"
    )
    assert locales.essential_help(field.path, field.description, "zh").startswith(locales.ZH_HELP[field.path])


def test_every_option_has_exactly_one_widget_essentials_first(tmp_path):
    pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")
    from ffc.ui.app import create_app

    config = create_app(Workspace(tmp_path)).get_config_file()
    ids = [c["props"].get("elem_id") for c in config["components"]]
    for field in form.FIELDS:
        assert ids.count(field.elem_id) == 1, field.path
    # The essentials come before the first Advanced section, in ESSENTIAL_ROWS' order.
    first_advanced = ids.index("section-model")
    essentials = [ids.index(form.BY_PATH[path].elem_id) for path in form.ESSENTIALS]
    assert essentials == sorted(essentials) and max(essentials) < first_advanced
    labels = {c["props"].get("elem_id"): c["props"].get("label") for c in config["components"]}
    assert labels["field-training-learning-rate"] == "Learning rate" and labels["field-training-seed"] == "seed"
    assert labels["section-training"] == "Advanced: Training"


def _values(**changes) -> dict:
    values = {**form.values_from_spec({}), "name": "r", "model.model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}
    values.update(changes)
    return values


def test_memory_estimate_is_ffc_plans_and_follows_the_settings(tmp_path):
    ws = Workspace(tmp_path)
    small = estimate.memory_estimate(ws, _values(), 8, "en")
    bigger = estimate.memory_estimate(ws, _values(**{"training.per_device_train_batch_size": 8}), 8, "en")
    total = lambda text: float(text.split("| **total** | **")[1].split("**")[0])  # noqa: E731
    assert "0.49B parameters; LoRA" in small and "batch 1 x 2048" in small and "fits in 8 GB" in small
    assert total(bigger) > total(small) and "batch 8 x 2048" in bigger
    assert "does not fit in 8 GB" in bigger and "Settings that fit" in bigger
    # The same figure as `ffc plan` on the spec the form writes, with the model's config.json.
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(catalogue.find("Qwen/Qwen2.5-0.5B-Instruct").config))
    local = _values(**{"model.model_name_or_path": "m", "training.per_device_train_batch_size": 8})
    assert total(estimate.memory_estimate(ws, local, None, "en")) == total(bigger)
    spec = form.spec_from_values({**local, "data.dataset": ["x"], "data.template": "qwen"})
    from ffc.schemas import Spec

    expected = planner.estimate(planner.Shape.from_config(json.loads((model / "config.json").read_text())),
                                planner.setup_from_spec(Spec.model_validate(spec)))  # fmt: skip
    assert f"{expected.total:.2f}" in estimate.memory_estimate(ws, local, None, "en")
    # What gives no estimate says why, in the chosen language.
    assert "neither in the model catalogue" in estimate.memory_estimate(
        ws, _values(**{"model.model_name_or_path": "x/y"}), 8, "en"
    )
    outside = estimate.memory_estimate(ws, _values(**{"model.model_name_or_path": str(tmp_path.parent)}), 8, "en")
    assert "neither in the model catalogue" in outside  # a folder outside the workspace is not read
    assert "learning_rate" in estimate.memory_estimate(ws, _values(**{"training.learning_rate": -1}), 8, "en")
    assert "选择模型" in estimate.memory_estimate(ws, _values(**{"model.model_name_or_path": ""}), 8, "zh")
    assert "放不下" not in small and "超出" in estimate.memory_estimate(ws, local, 1, "zh")


# -- handlers ----------------------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path):
    pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")
    from ffc.ui.handlers import App

    return App(Workspace(tmp_path))


def test_picking_a_catalogue_model_sets_its_template(app, tmp_path):
    note, template, picker = app.on_model("Qwen/Qwen3-4B-Instruct-2507", "en")
    assert template["value"] == "qwen3_nothink" and "from the model catalogue" in note and "262144" in note
    assert "4.02B parameters" in note and picker["value"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert app.on_model("meta-llama/Llama-3.1-8B-Instruct", "zh")[1]["value"] == "llama3_1"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    note, template, picker = app.on_model("mine", "en")  # a local model: the suggestion as before
    assert template["value"] == "qwen" and "config.json" in note and picker["value"] is None
    assert catalogue.params_text(134_515_008) == "134.5M"


def _fake_run(ws: Workspace, name: str, lr: float, losses: list) -> None:
    run = ws.run_dir(name)
    (run / "output").mkdir(parents=True)
    (run / ".ffc-manifest.json").write_text("{}")
    spec = {"model": {"model_name_or_path": "m"}, "training": {"learning_rate": lr, "output_dir": "output"}}
    (run / "ffc.lock.json").write_text(json.dumps({"spec": spec}))
    log = [{"current_steps": (i + 1) * 2, "total_steps": 2 * len(losses), "loss": v} for i, v in enumerate(losses)]
    (run / "output" / "trainer_log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")


def test_comparing_runs_shows_differing_settings_and_curves(app):
    _fake_run(app.ws, "a", 1e-4, [3.0, 2.5, 2.0])
    _fake_run(app.ws, "b", 5e-4, [3.0, 2.2])
    table, image = app.on_compare(["a", "b"], "en")
    assert "`training.learning_rate`" in table and "0.0001" in table and "0.0005" in table
    assert "model.model_name_or_path" not in table  # the same in both
    assert "final_loss" in table and "| 2.2 |" in table  # b's last logged loss
    assert image.size[0] > 400 and len(set(image.convert("RGB").getdata())) > 50  # the PNG `ffc compare -o` draws
    assert app.on_compare(["a"], "en") == (locales.text("compare_pick_two", "en"), None)
    assert app.on_compare(["a", "../b"], "en")[1] is None  # not a run name: left out
    _fake_run(app.ws, "c", 1e-3, [])
    _fake_run(app.ws, "d", 1e-3, [])
    table, image = app.on_compare(["c", "d"], "en")
    assert image is None and "The runs' settings are the same" in table  # nothing logged: no plot


def _demo_workspace(demo, tmp_path) -> Workspace:
    (tmp_path / "model").symlink_to(demo / "tiny-model")
    (tmp_path / "data").symlink_to(demo / "data")
    return Workspace(tmp_path)


def test_sweep_builds_one_run_per_value(demo, tmp_path):
    pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")
    from ffc.ui.handlers import App

    ws = _demo_workspace(demo, tmp_path)
    values = _values(**{
        "name": "base", "model.model_name_or_path": "./model", "data.dataset": ["demo_alpaca"],
        "data.dataset_dir": "./data", "data.template": "chatml", "training.max_steps": 4,
    })  # fmt: skip
    assert service.build(ws, "base", form.to_yaml(form.spec_from_values(values))).ok
    app = App(ws)
    message, menu = app.on_sweep("base", "training.learning_rate", "1e-4, 5e-4", "en")
    assert "`base-learning_rate-1e-4`, `base-learning_rate-5e-4`" in message, message
    assert menu["choices"] == ["base", "base-learning_rate-1e-4", "base-learning_rate-5e-4"]
    lock = json.loads((ws.run_dir("base-learning_rate-5e-4") / "ffc.lock.json").read_text())["spec"]
    assert lock["training"]["learning_rate"] == 5e-4 and lock["training"]["max_steps"] == 4
    assert (tmp_path / "base-learning_rate-1e-4.yaml").is_file()
    bad, _ = app.on_sweep("base", "training.learning_rate", "-1", "en")
    assert "greater than 0" in bad and "base-learning_rate--1" in bad
    assert "not a spec option" in app.on_sweep("base", "training.nope", "1", "en")[0]
    assert app.on_sweep(None, "training.learning_rate", "1", "en")[0] == locales.text("sweep_needs_run", "en")


def test_dataset_preview_shows_the_images_of_a_vision_dataset(demo, tmp_path):
    ws = _demo_workspace(demo, tmp_path)
    images = service.dataset_media("data", "demo_vision", ws)
    assert len(images) == 3 and all(Path(m.path).suffix == ".png" and Path(m.path).is_file() for m in images)
    assert images[0].caption.startswith("demo_vision · row 1 · ") and not any(m.video_file for m in images)
    assert service.dataset_media("data", "demo_alpaca", ws) == [] and service.dataset_media("data", "nope", ws) == []


def test_dataset_preview_shows_the_videos_of_a_video_dataset(demo, tmp_path):
    pytest.importorskip("av", reason="needs PyAV (the video extra)")
    ws = _demo_workspace(demo, tmp_path)
    rows = json.loads((demo / "data" / "demo_video.json").read_text())[:3]
    videos = service.dataset_media("data", "demo_video", ws)
    assert [m.path for m in videos] == [str(tmp_path / "data" / row["videos"][0]) for row in rows]
    assert all(m.video_file for m in videos) and videos[0].caption.startswith("demo_video · row 1 · video demo_video/")
    frame = service.first_frame(videos[0].path)  # what the gallery shows: a browser plays few codecs
    assert frame is not None and frame.size == (56, 56), frame
    assert service.first_frame(str(demo / "data" / "demo_vision.json")) is None  # not a video: left out

    # A video given as frame images shows by its first frame, one entry per video; files outside are left out.
    data = tmp_path / "frames"
    data.mkdir()
    for name in ("f0.png", "f1.png"):
        (data / name).symlink_to(Path(videos[0].path).parent.parent / "demo_vision" / "circle_red_0.png")
    row = {"messages": [{"role": "user", "content": "<video>What?"}, {"role": "assistant", "content": "A."}]}
    rows = [{**row, "videos": [["f0.png", "f1.png"]]}, {**row, "videos": ["/etc/passwd"]}]
    (data / "rows.json").write_text(json.dumps(rows))
    entry = {
        "file_name": "rows.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "videos": "videos"},
    }
    entry["tags"] = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    (data / "dataset_info.json").write_text(json.dumps({"frames": entry}))
    (shown,) = service.dataset_media("frames", "frames", ws)
    assert shown.path == str(data / "f0.png") and not shown.video_file
    assert shown.caption == "frames · row 1 · video of 2 frames, first: f0.png"


def test_the_dataset_preview_handler_shows_first_frames(demo, tmp_path, monkeypatch):
    pytest.importorskip("av", reason="needs PyAV (the video extra)")
    pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")
    from PIL import Image

    from ffc.ui.handlers import App

    monkeypatch.setattr(service, "tokenised_preview", lambda *args: "(tokenised)")  # train.py --preview: elsewhere
    values = _values(**{"data.dataset": ["demo_video", "demo_vision"], "data.dataset_dir": "data"})
    text, gallery = App(_demo_workspace(demo, tmp_path)).on_dataset_preview("en", *values.values())
    assert '"<video>' in text and "(tokenised)" in text and gallery["visible"]
    pictures = gallery["value"]
    assert [type(p) for p, _ in pictures[:3]] == [Image.Image] * 3 and "(first frame)" in pictures[0][1]
    assert all(Path(p).suffix == ".png" for p, _ in pictures[3:]) and len(pictures) == 6


def test_a_run_trained_on_videos_gets_the_chat_video_box(demo, tmp_path):
    pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")
    from ffc.ui.handlers import App

    ws = _demo_workspace(demo, tmp_path)
    (tmp_path / "vlm").symlink_to(demo / "tiny-vlm")
    for name, datasets in (("clips", ["demo_video"]), ("pictures", ["demo_vision"])):
        values = _values(**{
            "name": name, "model.model_name_or_path": "./vlm", "data.dataset": datasets, "data.dataset_dir": "./data",
            "data.template": "qwen2_vl",
        })  # fmt: skip
        outcome = service.build(ws, name, form.to_yaml(form.spec_from_values(values)))
        assert outcome.ok, outcome.errors
    app = App(ws)
    assert app.on_run_media("clips")["visible"] is True
    assert app.on_run_media("pictures")["visible"] is False and app.on_run_media(None)["visible"] is False
    assert service.run_has_videos(ws, "../clips") is False  # not a run name


def test_chat_images_become_image_url_parts(tmp_path):
    pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")
    from gradio.utils import get_upload_folder

    from ffc.ui.handlers import api_messages

    upload = Path(get_upload_folder()) / "ffc-test"
    upload.mkdir(parents=True, exist_ok=True)
    (upload / "cat.png").write_bytes(b"\x89PNG fake")
    history = [
        {"role": "user", "content": {"path": str(upload / "cat.png")}},
        {"role": "user", "content": "What is this?"},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        {"role": "user", "content": [{"type": "file", "file": {"path": str(upload / "cat.png")}}]},
        {"role": "user", "content": [{"type": "text", "text": "And now?"}]},
    ]  # as the handler writes them, then as Gradio hands them back
    messages = api_messages(history)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    first = messages[0]["content"]
    assert first[0]["image_url"]["url"].startswith("data:image/png;base64,") and first[1]["text"] == "What is this?"
    assert messages[1]["content"] == "A cat." and messages[2]["content"][1]["text"] == "And now?"
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    with pytest.raises(ValueError, match="not an uploaded file"):  # a history names files; only uploads are read
        api_messages([{"role": "user", "content": {"path": str(secret)}}, {"role": "user", "content": "hi"}])


def test_chat_videos_become_video_url_parts(tmp_path):
    pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")
    from gradio.utils import get_upload_folder

    from ffc.ui.handlers import api_messages

    upload = Path(get_upload_folder()) / "ffc-test"
    upload.mkdir(parents=True, exist_ok=True)
    (upload / "clip.mp4").write_bytes(b"fake mp4")
    (upload / "clip.mkv").write_bytes(b"fake mkv")
    (upload / "cat.png").write_bytes(b"\x89PNG fake")
    history = [
        {"role": "user", "content": {"path": str(upload / "cat.png")}},
        {"role": "user", "content": {"path": str(upload / "clip.mp4")}},
        {"role": "user", "content": "Which way does it move?"},
        {"role": "assistant", "content": "Left."},
        {"role": "user", "content": [{"type": "file", "file": {"path": str(upload / "clip.mkv")}}]},
        {"role": "user", "content": "And this one?"},
    ]  # as on_chat writes an image and a video sent with one message, then as Gradio hands a file back
    first, _, last = api_messages(history)
    assert [part["type"] for part in first["content"]] == ["image_url", "video_url", "text"]
    assert first["content"][1]["video_url"]["url"] == "data:video/mp4;base64,ZmFrZSBtcDQ="
    assert (
        last["content"][0]["video_url"]["url"].startswith("data:video/")
        and last["content"][1]["text"] == "And this one?"
    )


def _stub_run(ws: Workspace, name: str, lock: dict) -> Path:
    run = ws.run_dir(name)
    run.mkdir(parents=True)
    (run / ".ffc-manifest.json").write_text("{}")
    (run / "ffc.lock.json").write_text(json.dumps({"spec": lock}))
    (run / "export.py").write_text("import sys\nopen('exported-with', 'w').write(' '.join(sys.argv[1:]))\n")
    return run


def test_export_choices_become_export_py_options(app):
    run = _stub_run(app.ws, "r", {})
    message = app.on_export("r", ["q4_k_m", "f16"], "float16", True, False, "--export-size 2", "en")
    assert "export.py --gguf q4_k_m f16 --dtype float16 --ollama --export-size 2" in message
    app.ws.job("r", "export").process.wait(timeout=30)
    assert (run / "exported-with").read_text() == "--gguf q4_k_m f16 --dtype float16 --ollama --export-size 2"
    app.on_export("r", [], "", False, True, "", "en")  # nothing chosen: the run's own export settings
    app.ws.job("r", "export").process.wait(timeout=30)
    assert (run / "exported-with").read_text() == "--onnx"
    assert form.item_choices("export.gguf") == ("f32", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0")


def test_base_model_chat_needs_no_training(app, tmp_path):
    _stub_run(app.ws, "lora", {"method": {"finetuning_type": "lora"}, "model": {"model_name_or_path": "./model"}})
    assert app._base_model_args("lora") == ["--adapter", "none"]  # serve.py's MODEL is the base already
    (tmp_path / "model").mkdir()
    _stub_run(app.ws, "full", {"method": {"finetuning_type": "full"}, "model": {"model_name_or_path": "./model"}})
    assert app._base_model_args("full") == ["--model", str(tmp_path / "model"), "--adapter", "none"]
    _stub_run(app.ws, "hub", {"method": {"finetuning_type": "full"}, "model": {"model_name_or_path": "Qwen/Qwen3-8B"}})
    assert app._base_model_args("hub") == ["--model", "Qwen/Qwen3-8B", "--adapter", "none"]


def test_a_chat_message_with_a_video_goes_to_serve_py_as_a_video_url_part(app, monkeypatch):
    from contextlib import contextmanager
    from types import SimpleNamespace

    import httpx
    from gradio.utils import get_upload_folder

    upload = Path(get_upload_folder()) / "ffc-test"
    upload.mkdir(parents=True, exist_ok=True)
    (upload / "clip.webm").write_bytes(b"fake webm")
    sent = []
    chunk = json.dumps({"choices": [{"delta": {"content": "Left."}}]})

    @contextmanager
    def server(method, url, json, headers, timeout):  # serve.py's stream, as the handler reads it
        sent.append(json)
        yield SimpleNamespace(status_code=200, iter_lines=lambda: iter([f"data: {chunk}", "data: [DONE]"]))

    monkeypatch.setattr(httpx, "stream", server)
    monkeypatch.setattr(app.ws, "job", lambda run, kind: SimpleNamespace(alive=True))
    app.servers["clips"] = 1
    *_, (history, box, image, video) = app.on_chat(
        "Which way?", [], "", None, str(upload / "clip.webm"), 0.0, 1.0, 16, "clips", "en"
    )
    (message,) = sent[0]["messages"]
    assert [part["type"] for part in message["content"]] == ["video_url", "text"]
    assert message["content"][0]["video_url"]["url"] == "data:video/webm;base64,ZmFrZSB3ZWJt"
    assert history[0] == {"role": "user", "content": {"path": str(upload / "clip.webm")}}
    assert history[-1] == {"role": "assistant", "content": "Left."}
    assert (box, image, video) == ("", None, None)  # the boxes are emptied for the next message
