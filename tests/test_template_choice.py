"""Build-time template checks: tool data needs a template with a tool format; template: auto picks one."""

import json

import pytest

from ffc.compiler.cli import main
from ffc.compiler.loader import SpecError, load_spec
from ffc.compiler.resolve import resolve

from .conftest import MINIMAL_SPEC, REFERENCE, needs_shared


def _data(tmp_path, entry):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps({"tools_data": entry}))
    (tmp_path / "data" / "t.json").write_text("[]")


TOOLS_ENTRY = {
    "file_name": "t.json",
    "formatting": "sharegpt",
    "columns": {"messages": "conversations", "tools": "tools"},
}


# phi4_mini: Phi-4-mini's official template renders no tool calls (see its notes), so ffc has no tool format for it.
@pytest.mark.parametrize("template", ["chatml", "phi4_mini"])
def test_tool_data_with_a_template_without_tool_format_is_refused_at_build(write_spec, tmp_path, template):
    _data(tmp_path, TOOLS_ENTRY)
    spec = write_spec(MINIMAL_SPEC.replace("[demo_alpaca]", "[tools_data]").replace("chatml", template))
    with pytest.raises(SpecError) as info:
        resolve(load_spec(spec))
    message = str(info.value)
    assert "'tools_data'" in message and f"template {template!r} has no format" in message
    assert "qwen3" in message and "llama3_1" in message and "mistral_small" in message and "spec.yaml:" in message


@pytest.mark.parametrize("template", ["qwen", "qwen3_6", "llama3_1"])  # format strings and custom renderers
def test_tool_data_with_a_tool_template_builds(write_spec, tmp_path, template):
    _data(tmp_path, TOOLS_ENTRY)
    spec = write_spec(MINIMAL_SPEC.replace("[demo_alpaca]", "[tools_data]").replace("chatml", template))
    assert resolve(load_spec(spec)).spec.data.template == template


def test_auto_picks_the_family_from_config_json_and_says_so(write_spec, tmp_path, capsys):
    _data(tmp_path, {"file_name": "t.json"})
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    spec = write_spec(
        MINIMAL_SPEC.replace("template: chatml", "template: auto").replace("[demo_alpaca]", "[tools_data]")
    )
    resolved = resolve(load_spec(spec))
    assert resolved.spec.data.template == "qwen3"
    assert "auto: qwen3 (from config.json model_type 'qwen3')" in resolved.template_note
    with pytest.raises(SystemExit) as done:
        main(["build", str(spec), "-o", str(tmp_path / "run")])
    assert done.value.code == 0
    assert "auto: qwen3" in capsys.readouterr().out


def test_auto_without_a_clue_asks_for_a_template(write_spec, tmp_path):
    _data(tmp_path, {"file_name": "t.json"})
    spec = write_spec(MINIMAL_SPEC.replace("template: chatml", "template: auto").replace("./model", "./mystery"))
    with pytest.raises(SpecError, match="template: auto cannot tell"):
        resolve(load_spec(spec))


def _model_dir(tmp_path, template: str, name: str = "model") -> str:
    model = tmp_path / name
    model.mkdir()
    config = {"chat_template": template, "eos_token": "<|im_end|>", "bos_token": None}
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    return str(model)


def test_check_a_model_whose_template_is_ffcs_own(tmp_path, capsys):
    from ffc.runtime.chat.templates import TEMPLATES

    model = _model_dir(tmp_path, TEMPLATES["qwen3"].to_jinja(), "qwen3-model")
    with pytest.raises(SystemExit) as done:
        main(["templates", "--check", model])
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    assert "ffc template qwen3 (the directory name)" in out
    assert out.count(" same") == 5


def test_check_reports_a_difference_and_fails(tmp_path, capsys):
    from ffc.runtime.chat.templates import TEMPLATES

    model = _model_dir(tmp_path, TEMPLATES["qwen"].to_jinja())
    with pytest.raises(SystemExit) as done:
        main(["templates", "--check", model, "--template", "chatml"])
    out = capsys.readouterr().out
    assert done.value.code == 1
    assert "plain              same" in out
    assert "generation prompt  differs: from character 12" in out and "You are Qwen" in out  # qwen's default system
    assert "tool call          ffc cannot render" in out


@needs_shared(REFERENCE)
def test_check_against_an_official_template(tmp_path, capsys):
    template = (REFERENCE / "qwen3" / "chat_template.trl-latest.jinja").read_text(encoding="utf-8")
    model = _model_dir(tmp_path, template, "Qwen3-8B")
    with pytest.raises(SystemExit) as done:
        main(["templates", "--check", model])
    assert done.value.code == 0, capsys.readouterr().out
