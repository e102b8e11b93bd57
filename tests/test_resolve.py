"""Resolution: one typed, frozen spec with every default explicit, recorded in full by the lock file."""

import json

import pydantic
import pytest

from ffc.compiler.build import build_files, lock
from ffc.compiler.loader import load_spec
from ffc.compiler.resolve import inapplicable, resolve
from ffc.schemas import Spec
from ffc.schemas.methods import METHODS
from ffc.schemas.stages import STAGES


def _leaves(model: type[pydantic.BaseModel], prefix=()):
    """(path, field) of every leaf option of the schema; subsections are walked."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        inner = [
            a for a in getattr(annotation, "__args__", ()) if isinstance(a, type) and issubclass(a, pydantic.BaseModel)
        ]
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            yield from _leaves(annotation, prefix + (name,))
        elif inner:
            yield prefix + (name,), field
            yield from _leaves(inner[0], prefix + (name,))
        else:
            yield prefix + (name,), field


def _spec_for(tmp_path, stage: str, method: str):
    (tmp_path / "rewards.py").write_text("def r(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    text = {
        "model": {"model_name_or_path": "org/model"},
        "method": {"stage": stage, "finetuning_type": method},
        "data": {
            "dataset": ["d"] if STAGES[stage].trains else [],
            "template": None if stage == "pt" else "chatml",
            "val_size": 0.1,
        },
        "distributed": {"slurm": {}, "backend": "ddp", "num_processes": 2},
        "training": {"per_device_train_batch_size": 4},
    }
    if STAGES[stage].needs_reward:
        text["method"]["reward_funcs"] = "rewards.py"
    path = tmp_path / f"{stage}-{method}.yaml"
    path.write_text(json.dumps(text))
    return load_spec(path)


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("method", list(METHODS))
def test_lock_records_every_applicable_option_and_derived_defaults_are_filled(stage, method, tmp_path):
    loaded = _spec_for(tmp_path, stage, method)
    resolved = resolve(loaded)
    recorded = lock(resolved)["spec"]
    excluded = inapplicable(resolved.spec)
    for path, field in _leaves(Spec):
        section_excluded = excluded.get(path[0], set()) if len(path) > 1 else set()
        if len(path) > 1 and path[1] in section_excluded:
            continue
        node = recorded
        for key in path:
            assert isinstance(node, dict) and key in node, f"{'.'.join(path)} missing from the lock of {stage}/{method}"
            node = node[key]
        if (field.json_schema_extra or {}).get("derived"):
            assert node is not None, f"derived default {'.'.join(path)} left unset for {stage}/{method}"


def test_the_resolved_spec_is_frozen(tmp_path):
    resolved = resolve(_spec_for(tmp_path, "sft", "lora"))
    with pytest.raises(pydantic.ValidationError):
        resolved.spec.method.lora_rank = 4
    with pytest.raises(AttributeError):
        resolved.spec = None  # type: ignore[misc]
    assert resolved.spec.method.lora_alpha == 2 * resolved.spec.method.lora_rank


def test_options_of_other_stages_and_methods_stay_out_of_the_lock(tmp_path):
    recorded = lock(resolve(_spec_for(tmp_path, "dpo", "full")))["spec"]
    assert "pref_beta" in recorded["method"] and "ppo_epochs" not in recorded["method"]
    assert "lora_rank" not in recorded["method"] and "freeze_trainable_layers" not in recorded["method"]
    assert "packing" not in recorded["data"] and "deepspeed" not in recorded["distributed"]


def test_every_stage_and_method_option_names_a_schema_field():
    method_fields = set(Spec.model_fields["method"].annotation.model_fields)
    data_fields = set(Spec.model_fields["data"].annotation.model_fields)
    for stage in STAGES.values():
        assert set(stage.options) <= method_fields, stage.name
        assert set(stage.data_options) <= data_fields, stage.name
    for method in METHODS.values():
        assert set(method.options) <= method_fields, method.name


def test_absolute_paths_stay_absolute_and_relative_ones_follow_the_spec(tmp_path):
    spec = tmp_path / "specs" / "s.yaml"
    spec.parent.mkdir()
    spec.write_text(
        "model:\n  model_name_or_path: /models/base\ndata:\n  dataset: [d]\n  dataset_dir: ../data\n  template: chatml\n"
    )
    _, files = build_files(load_spec(spec), tmp_path / "runs" / "r")
    train = files["train.py"].decode()
    assert 'MODEL = str(Path("/models/base"))' in train
    assert 'DATASET_DIR = RUN_DIR / "../../data"' in train
