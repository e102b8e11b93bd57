"""Spec loading: strict keys, errors that name file:line:column, cross-field rules, overrides, schema."""

import json

import pytest

from ffc.compiler.loader import SpecError, load_spec
from ffc.schemas import json_schema

from .conftest import MINIMAL_SPEC


def errors(path, overrides=()):
    with pytest.raises(SpecError) as info:
        load_spec(path, list(overrides))
    return str(info.value)


def test_minimal_spec_loads_with_defaults(write_spec):
    spec = load_spec(write_spec()).spec
    assert spec.method.lora_rank == 8 and spec.training.learning_rate == 1e-4
    assert spec.data.dataset == ["demo_alpaca"]


def test_unknown_key_has_position_and_suggestion(write_spec):
    path = write_spec(MINIMAL_SPEC.replace("  cutoff_len: 128", "  cutof_len: 128"))
    message = errors(path)
    assert f"{path}:11:3: data.cutof_len: unknown key; did you mean 'cutoff_len'?" in message


def test_wrong_type_names_line_and_column(write_spec):
    path = write_spec(MINIMAL_SPEC.replace("max_steps: 10", "max_steps: ten"))
    message = errors(path)
    assert f"{path}:13:3: training.max_steps:" in message and "'ten'" in message


def test_missing_required_section(write_spec):
    path = write_spec("model:\n  model_name_or_path: x\n")
    assert "data: required key is missing" in errors(path)


def test_quantization_needs_lora(write_spec):
    text = MINIMAL_SPEC.replace("./model\n", "./model\n  quantization_bit: 4\n").replace("lora\n", "full\n")
    message = errors(write_spec(text))
    assert ":4:3: model.quantization_bit:" in message and "finetuning_type: lora" in message


def test_mask_history_with_train_on_prompt(write_spec):
    text = MINIMAL_SPEC.replace("  cutoff_len: 128", "  cutoff_len: 128\n  mask_history: true\n  train_on_prompt: true")
    assert "contradicts train_on_prompt" in errors(write_spec(text))


def test_lora_options_with_full_tuning(write_spec):
    text = MINIMAL_SPEC.replace("finetuning_type: lora", "finetuning_type: full\n  lora_rank: 16")
    assert "method.lora_rank: lora_rank only applies to finetuning_type: lora" in errors(write_spec(text))


def test_unknown_template_suggests(write_spec):
    assert "did you mean 'qwen3'" in errors(write_spec(MINIMAL_SPEC.replace("template: chatml", "template: qwen33")))


def test_sft_without_template(write_spec):
    assert "needs a chat template" in errors(write_spec(MINIMAL_SPEC.replace("  template: chatml\n", "")))


def test_invalid_yaml_points_at_position(write_spec):
    path = write_spec("model:\n  model_name_or_path: [unclosed\n")
    assert f"{path}:" in errors(path) and "invalid YAML" in errors(path)


def test_overrides_are_applied_and_validated(write_spec):
    path = write_spec()
    loaded = load_spec(path, ["training.learning_rate=1e-5", "method.lora_target=q_proj,v_proj"])
    assert loaded.spec.training.learning_rate == 1e-5
    assert loaded.spec.method.lora_target == ["q_proj", "v_proj"]
    assert loaded.sha256 != load_spec(path).sha256
    message = errors(path, ["training.learning_rate=fast"])
    assert "--set training.learning_rate=fast: training.learning_rate:" in message
    assert "did you mean 'learning_rate'" in errors(path, ["training.learnig_rate=1"])


def test_json_schema_covers_every_section():
    schema = json_schema()
    assert set(schema["properties"]) >= {"model", "method", "data", "training", "logging", "distributed"}
    text = json.dumps(schema)
    assert "Rank of the LoRA matrices." in text and "additionalProperties" in text
