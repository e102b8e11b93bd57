"""Build-time template checks: tool data needs a template with a tool format; template: auto picks one."""

import json

import pytest

from ffc.compiler.cli import main
from ffc.compiler.loader import SpecError, load_spec
from ffc.compiler.resolve import resolve

from .conftest import MINIMAL_SPEC


def _data(tmp_path, entry):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps({"tools_data": entry}))
    (tmp_path / "data" / "t.json").write_text("[]")


TOOLS_ENTRY = {
    "file_name": "t.json",
    "formatting": "sharegpt",
    "columns": {"messages": "conversations", "tools": "tools"},
}


def test_tool_data_with_a_template_without_tool_format_is_refused_at_build(write_spec, tmp_path):
    _data(tmp_path, TOOLS_ENTRY)
    spec = write_spec(MINIMAL_SPEC.replace("[demo_alpaca]", "[tools_data]"))
    with pytest.raises(SpecError) as info:
        resolve(load_spec(spec))
    message = str(info.value)
    assert "'tools_data'" in message and "template 'chatml' has no format" in message
    assert "qwen" in message and "spec.yaml:" in message


def test_tool_data_with_a_tool_template_builds(write_spec, tmp_path):
    _data(tmp_path, TOOLS_ENTRY)
    spec = write_spec(MINIMAL_SPEC.replace("[demo_alpaca]", "[tools_data]").replace("chatml", "qwen"))
    assert resolve(load_spec(spec)).spec.data.template == "qwen"


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
