"""ffc import: LLaMA-Factory-style configs (written here, in the layout of LLaMA-Factory's examples/) become
specs that validate and build; dropped keys are listed, missing features are errors naming the key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from ffc.compiler.cli import main as _main


def main(argv: list[str]) -> None:
    """The CLI in-process; a success returns, a failure raises SystemExit with its status."""
    try:
        _main(argv)
    except SystemExit as exc:
        if exc.code:
            raise


HEAD = """\
### model
model_name_or_path: models/tiny
trust_remote_code: true

### method
stage: {stage}
do_train: true
finetuning_type: {method}
"""
TAIL = """
### dataset
dataset: {dataset}
template: qwen
cutoff_len: 128
max_samples: 50
overwrite_cache: true
preprocessing_num_workers: 1
dataloader_num_workers: 0

### output
output_dir: saves/tiny/{method}/{stage}
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]

### train
per_device_train_batch_size: 2
gradient_accumulation_steps: 2
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
ddp_timeout: 180000000
resume_from_checkpoint: null
"""
LORA = "lora_rank: 8\nlora_target: all\n"
STAGE_KEYS = {
    "pt": ("demo_text", ""),
    "sft": ("demo_alpaca,demo_sharegpt", ""),
    "rm": ("demo_pairs", ""),
    "dpo": ("demo_pairs", "pref_beta: 0.1\npref_loss: sigmoid  # choices: [sigmoid (dpo), orpo, simpo]\n"),
    "kto": ("demo_kto", "pref_beta: 0.1\n"),
    "orpo": ("demo_pairs", "pref_beta: 0.1\npref_loss: orpo\n"),
    "simpo": ("demo_pairs", "pref_beta: 0.1\npref_loss: simpo\nsimpo_gamma: 0.5\n"),
    "ppo": ("demo_alpaca", "reward_model: models/tiny\nreward_model_type: full\n"),
}
Z3 = {
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_allow_untested_optimizer": True,
    "fp16": {
        "enabled": "auto",
        "loss_scale": 0,
        "loss_scale_window": 1000,
        "initial_scale_power": 16,
        "hysteresis": 2,
        "min_loss_scale": 1,
    },
    "bf16": {"enabled": "auto"},
    "zero_optimization": {
        "stage": 3,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "sub_group_size": 1e9,
        "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto",
        "stage3_max_live_parameters": 1e9,
        "stage3_max_reuse_distance": 1e9,
        "stage3_gather_16bit_weights_on_model_save": True,
    },
}
# LLaMA-Factory's ZeRO-2 file tunes buckets that ffc does not write: it is used as it is.
Z2 = {
    **{k: v for k, v in Z3.items() if k != "zero_optimization"},
    "zero_optimization": {
        "stage": 2,
        "allgather_partitions": True,
        "allgather_bucket_size": 5e8,
        "overlap_comm": False,
        "reduce_scatter": True,
        "reduce_bucket_size": 5e8,
        "contiguous_gradients": True,
        "round_robin_gradients": True,
    },
}


@pytest.fixture
def lf(tmp_path, demo) -> Path:
    """A LLaMA-Factory working directory: data/, a model, examples/deepspeed/."""
    root = tmp_path / "LLaMA-Factory"
    shutil.copytree(demo / "data", root / "data")
    (root / "models").mkdir()
    (root / "models" / "tiny").symlink_to(demo / "tiny-model")
    (root / "examples" / "deepspeed").mkdir(parents=True)
    (root / "examples" / "deepspeed" / "ds_z3_config.json").write_text(json.dumps(Z3, indent=2))
    (root / "examples" / "deepspeed" / "ds_z2_config.json").write_text(json.dumps(Z2, indent=2))
    return root


def _config(root: Path, stage: str, method: str = "lora", extra: str = "") -> Path:
    dataset, keys = STAGE_KEYS[stage]
    lf_stage = "dpo" if stage in ("orpo", "simpo") else stage
    text = HEAD.format(stage=lf_stage, method=method) + (LORA if method == "lora" else "") + keys + extra
    text += TAIL.format(dataset=dataset, method=method, stage=stage)
    path = root / "examples" / f"{stage}_{method}.yaml"
    path.write_text(text)
    return path


def _import(root: Path, config: Path, out: Path, capsys, *extra: str) -> str:
    main(["import", str(config), "-o", str(out), "--lf-root", str(root), *extra])
    return capsys.readouterr().out


def _spec(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


CASES = [(stage, "lora") for stage in STAGE_KEYS] + [("sft", "full"), ("sft", "freeze"), ("pt", "full")]


@pytest.mark.parametrize("stage,method", CASES)
def test_every_stage_and_method_imports_and_builds(lf, tmp_path, capsys, stage, method):
    extra = "freeze_trainable_layers: 1\n" if method == "freeze" else ""
    out = tmp_path / "specs" / f"{stage}_{method}.yaml"
    said = _import(lf, _config(lf, stage, method, extra), out, capsys)
    spec = _spec(out)
    assert spec["method"]["stage"] == stage and spec["method"]["finetuning_type"] == method
    assert spec["training"]["learning_rate"] == 1e-4 and spec["data"]["cutoff_len"] == 128
    assert spec["model"]["model_name_or_path"] == "../LLaMA-Factory/models/tiny"  # relative to the spec now
    assert spec["data"]["dataset_dir"] == "../LLaMA-Factory/data"  # LLaMA-Factory's default, written out
    for key in ("do_train", "overwrite_cache", "overwrite_output_dir", "save_only_model", "ddp_timeout"):
        assert f"dropped {key}:" in said
    text = out.read_text()
    assert "report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]" in text  # comment kept
    assert "# dropped ddp_timeout:" in text
    if stage == "ppo":
        assert "dropped reward_model_type" in said and spec["method"]["reward_model"] == "../LLaMA-Factory/models/tiny"
    main(["build", str(out), "-o", str(tmp_path / "run")])
    assert (tmp_path / "run" / "train.py").is_file()


def test_generation_keys_go_to_ppo_or_to_inference(lf, tmp_path, capsys):
    out = tmp_path / "ppo.yaml"
    said = _import(lf, _config(lf, "ppo", extra="max_new_tokens: 32\ntop_k: 0\ntop_p: 0.9\n"), out, capsys)
    assert _spec(out)["method"]["max_new_tokens"] == 32 and _spec(out)["method"]["top_p"] == 0.9
    assert "dropped top_k: 0 is off" in said
    with pytest.raises(SystemExit):
        _import(lf, _config(lf, "ppo", extra="top_k: 5\n"), tmp_path / "ppo5.yaml", capsys)
    out = tmp_path / "sft.yaml"
    _import(lf, _config(lf, "sft", extra="top_k: 5\ntemperature: 0.3\n"), out, capsys)
    assert _spec(out)["inference"] == {"top_k": 5, "temperature": 0.3}


def test_deepspeed_files(lf, tmp_path, capsys):
    out = tmp_path / "z3.yaml"
    _import(lf, _config(lf, "sft", "full", "deepspeed: examples/deepspeed/ds_z3_config.json\n"), out, capsys)
    dist = _spec(out)["distributed"]
    assert dist == {
        "backend": "deepspeed",
        "deepspeed": {"zero_stage": 3, "offload_optimizer": False, "offload_param": False},
    }
    out = tmp_path / "z2.yaml"
    said = _import(lf, _config(lf, "sft", "full", "deepspeed: examples/deepspeed/ds_z2_config.json\n"), out, capsys)
    assert "allgather_bucket_size" in said  # the note says why the file is used as it is
    assert _spec(out)["distributed"]["deepspeed"] == {
        "config_file": "LLaMA-Factory/examples/deepspeed/ds_z2_config.json"
    }
    main(["build", str(out), "-o", str(tmp_path / "run")])
    assert json.loads((tmp_path / "run" / "ds_config.json").read_text()) == Z2
    lock = (tmp_path / "run" / "ffc.lock.json").read_text()
    assert '"zero_stage": 2' in lock  # read from the file


def test_user_deepspeed_file_must_agree_with_the_section(lf, write_spec, tmp_path):
    from ffc.compiler.loader import SpecError, load_spec
    from ffc.compiler.resolve import resolve

    spec = write_spec(
        f"model:\n  model_name_or_path: {lf}/models/tiny\ndata:\n  dataset: demo_alpaca\n  dataset_dir: {lf}/data\n"
        f"  template: qwen\ndistributed:\n  backend: deepspeed\n  num_processes: 2\n  deepspeed:\n"
        f"    zero_stage: 3\n    config_file: {lf}/examples/deepspeed/ds_z2_config.json\n"
    )
    with pytest.raises(SpecError, match="zero_stage=2"):
        resolve(load_spec(spec))


@pytest.mark.parametrize(
    "extra,named",
    [
        ("export_hub_model_id: me/x\n", "pushing the export to the Hub"),
        ("ref_model_adapters: saves/x\n", "reference models with adapters"),
        ("pref_loss: kto_pair\n", "kto_pair"),
        ("flash_attn: fa3\n", "flash_attn"),
        ("something_new: 1\n", "something_new"),
        ("deepspeed: examples/deepspeed/missing.json\n", "missing.json"),
    ],
)
def test_missing_features_are_errors_naming_the_key(lf, tmp_path, capsys, extra, named):
    out = tmp_path / "x.yaml"
    with pytest.raises(SystemExit) as exc:
        _import(lf, _config(lf, "sft", extra=extra), out, capsys)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert named in err and "sft_lora.yaml:" in err
    assert not out.exists()


def test_renamed_keys_and_templates(lf, tmp_path, capsys):
    extra = "flash_attn: fa2\ndisable_gradient_checkpointing: true\nneat_packing: true\n"
    out = tmp_path / "x.yaml"
    config = _config(lf, "sft", extra=extra)
    config.write_text(config.read_text().replace("template: qwen", "template: intern2"))
    _import(lf, config, out, capsys)
    spec = _spec(out)
    assert spec["model"]["attn_implementation"] == "flash_attention_2"
    assert spec["training"]["gradient_checkpointing"] is False
    assert spec["data"]["packing"] is True and spec["data"]["template"] == "internlm2"


# LLaMA-Factory's examples/inference, examples/merge_lora and examples/train_lora/*_eval|predict layouts.
INFER = """\
model_name_or_path: models/tiny
adapter_name_or_path: saves/tiny/lora/sft
template: qwen
finetuning_type: lora
trust_remote_code: true
infer_backend: huggingface  # choices: [huggingface, vllm]
temperature: 0.3
"""
MERGE = """\
### Note: DO NOT use quantized model or quantization_bit when merging lora adapters

### model
model_name_or_path: models/tiny
adapter_name_or_path: saves/tiny/lora/sft,saves/tiny/lora/dpo
template: qwen
trust_remote_code: true

### export
export_dir: output/tiny_lora_sft
export_size: 2
export_device: cpu
export_legacy_format: false
"""
EVAL = """\
### model
model_name_or_path: models/tiny
adapter_name_or_path: saves/tiny/lora/sft
trust_remote_code: true

### method
finetuning_type: lora

### dataset
task: mmlu_test  # choices: [mmlu_test, ceval_validation, cmmlu_test]
template: fewshot
lang: en
n_shot: 5

### output
save_dir: saves/tiny/lora/eval

### eval
batch_size: 4
"""
PREDICT = """\
### model
model_name_or_path: models/tiny
adapter_name_or_path: saves/tiny/lora/sft

### method
stage: sft
do_predict: true
finetuning_type: lora

### dataset
eval_dataset: demo_alpaca
template: qwen
cutoff_len: 128
max_samples: 50
overwrite_cache: true

### output
output_dir: saves/tiny/lora/predict
overwrite_output_dir: true

### eval
per_device_eval_batch_size: 1
predict_with_generate: true
ddp_timeout: 180000000
learning_rate: 1.0e-4
"""


@pytest.fixture
def saves(lf) -> Path:
    """Adapter folders where LLaMA-Factory's configs name them (the importer rewrites paths that exist)."""
    for name in ("sft", "dpo"):
        (lf / "saves" / "tiny" / "lora" / name).mkdir(parents=True)
    return lf / "saves"


@pytest.mark.parametrize(
    "text,kind",
    [(INFER, "inference"), (MERGE, "export"), (EVAL, "eval"), (PREDICT, "eval")],
    ids=["inference", "merge", "eval", "predict"],
)
def test_configs_without_training_become_stage_none_specs(lf, saves, tmp_path, capsys, text, kind):
    config = lf / "examples" / "config.yaml"
    config.write_text(text)
    out = tmp_path / "specs" / "x.yaml"
    said = _import(lf, config, out, capsys)
    spec = _spec(out)
    assert spec["method"] == {"stage": "none"}, spec
    assert f"# LLaMA-Factory {kind} config: no training" in out.read_text()
    assert spec["model"]["model_name_or_path"] == "../LLaMA-Factory/models/tiny"
    assert spec["model"]["adapter_name_or_path"][0] == "../LLaMA-Factory/saves/tiny/lora/sft"
    if text is INFER:
        assert "dropped finetuning_type:" in said
        assert spec["inference"] == {"infer_backend": "huggingface", "temperature": 0.3}
    if text is MERGE:
        assert spec["model"]["adapter_name_or_path"][1] == "../LLaMA-Factory/saves/tiny/lora/dpo"
        assert spec["export"] == {"export_dir": "output/tiny_lora_sft", "export_size": 2}
        assert "dropped export_device:" in said and "dropped export_legacy_format:" in said
    if text is EVAL:
        assert spec["eval"] == {
            "task_dir": "../LLaMA-Factory/evaluation/mmlu", "split": "test", "lang": "en", "n_shot": 5,
            "output_dir": "saves/tiny/lora/eval", "batch_size": 4,
        }  # fmt: skip
        assert spec["data"]["template"] == "empty" and "fewshot" in out.read_text()
    if text is PREDICT:
        assert spec["eval"] == {
            "predict_dataset": "demo_alpaca", "max_samples": 50, "output_dir": "saves/tiny/lora/predict",
            "batch_size": 1,
        }  # fmt: skip
        assert spec["data"]["dataset_dir"] == "../LLaMA-Factory/data"
        for key in ("stage", "do_predict", "predict_with_generate", "learning_rate"):
            assert f"dropped {key}:" in said
    run = tmp_path / "run"
    main(["build", str(out), "-o", str(run)])
    files = {p.name for p in run.iterdir() if p.is_file()}
    assert {"chat.py", "serve.py", "eval.py", "export.py"} <= files and "train.py" not in files


def test_existing_output_needs_force(lf, tmp_path, capsys):
    out = tmp_path / "x.yaml"
    out.write_text("keep me")
    with pytest.raises(SystemExit):
        _import(lf, _config(lf, "sft"), out, capsys)
    assert out.read_text() == "keep me"
    _import(lf, _config(lf, "sft"), out, capsys, "--force")
    assert _spec(out)["method"]["stage"] == "sft"


def test_build_and_validate_point_a_flat_config_to_import(lf, capsys):
    config = _config(lf, "sft")
    for command in ("validate", "build"):
        args = [command, str(config)] + (["-o", str(lf / "run")] if command == "build" else [])
        with pytest.raises(SystemExit):
            main(args)
        err = capsys.readouterr().err
        assert "LLaMA-Factory config" in err and f"ffc import {config}" in err


@pytest.mark.parametrize(
    "text,hint",
    [
        ("learning_rate: 1.0e-4\n", "it belongs in training (as training.learning_rate)"),
        ("report_to: none\n", "logging (as logging.report_to)"),
        ("data:\n  logging_steps: 3\n", "training (as training.logging_steps)"),
        ("data:\n  do_train: true\n", "do_train has no effect in ffc"),
        ("training:\n  flash_attn: fa2\n", "model.attn_implementation"),
        ("data:\n  learnig_rate: 1\n", "did you mean 'training.learning_rate'"),
        ("method:\n  temperature: 2\n  zero_stage: 3\n", "distributed"),
    ],
)
def test_misplaced_keys_name_their_section(write_spec, capsys, text, hint):
    base = "model:\n  model_name_or_path: m\n"
    if text.startswith("data:"):
        text = text.replace("data:\n", "data:\n  dataset: a\n")
    else:
        base += "data:\n  dataset: a\n"
    spec = write_spec(base + text)
    with pytest.raises(SystemExit):
        main(["validate", str(spec)])
    assert hint in capsys.readouterr().err


@pytest.mark.slow
def test_an_imported_config_trains_unedited(lf, tmp_path, capsys):
    """The promise of ffc import: import, build, train, with no edit in between (2 steps of the tiny model)."""
    import os
    import subprocess
    import sys

    config = _config(lf, "sft", extra="max_steps: 2\n")
    config.write_text(config.read_text().replace("report_to: none", "report_to: none\nsave_strategy: 'no'"))
    out = tmp_path / "specs" / "sft.yaml"
    _import(lf, config, out, capsys)
    main(["build", str(out), "-o", str(tmp_path / "run")])
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "train.py"], cwd=tmp_path / "run", capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (tmp_path / "run" / "saves" / "tiny" / "lora" / "sft" / "trainer_log.jsonl").read_text().splitlines()
    assert json.loads(log[-1]).get("current_steps", json.loads(log[-1]).get("step")) == 2


def test_swanlab_keys(lf, tmp_path, capsys):
    out = tmp_path / "x.yaml"
    _import(lf, _config(lf, "sft", extra="use_swanlab: true\nswanlab_mode: local\nswanlab_api_key: k\n"), out, capsys)
    spec = _spec(out)
    assert spec["logging"]["report_to"] == ["swanlab"] and spec["logging"]["offline"] is True  # report_to: none
    assert "dropped swanlab_api_key" in out.read_text()
    with pytest.raises(SystemExit):
        _import(lf, _config(lf, "sft", extra="use_swanlab: true\nswanlab_project: p\n"), tmp_path / "y.yaml", capsys)
    assert "SWANLAB_PROJECT" in capsys.readouterr().err


def test_modelscope_hub_from_the_key_or_the_environment(lf, tmp_path, capsys, monkeypatch):
    out = tmp_path / "x.yaml"
    _import(lf, _config(lf, "sft", extra="use_modelscope_hub: true\nms_hub_token: t\n"), out, capsys)
    assert _spec(out)["model"]["use_modelscope_hub"] is True and "dropped ms_hub_token" in out.read_text()
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")  # LLaMA-Factory reads the hub from the environment
    out = tmp_path / "y.yaml"
    _import(lf, _config(lf, "sft"), out, capsys)
    assert _spec(out)["model"]["use_modelscope_hub"] is True and "USE_MODELSCOPE_HUB was set" in out.read_text()


def test_training_from_existing_adapters(lf, saves, tmp_path, capsys):
    extra = "adapter_name_or_path: saves/tiny/lora/sft,saves/tiny/lora/dpo\ncreate_new_adapter: true\n"
    out = tmp_path / "specs" / "x.yaml"
    _import(lf, _config(lf, "sft", extra=extra), out, capsys)
    spec = _spec(out)
    assert spec["model"]["adapter_name_or_path"] == [
        "../LLaMA-Factory/saves/tiny/lora/sft", "../LLaMA-Factory/saves/tiny/lora/dpo"
    ]  # fmt: skip
    assert spec["method"]["create_new_adapter"] is True and spec["method"]["stage"] == "sft"
    main(["build", str(out), "-o", str(tmp_path / "run")])
    assert "apply_adapters(model, ADAPTERS, train_last=False)" in (tmp_path / "run" / "train.py").read_text()
