"""Tuning methods, optimizers and model options of issue 15: the rules that refuse combinations that
cannot work (naming the keys), code generated only when an option is used, and (slow) a few training
steps on the demo model for each, whose result reloads."""

import json

import pytest

from ffc.compiler.build import build_files
from ffc.compiler.loader import SpecError, load_spec

from .conftest import MINIMAL_SPEC
from .test_e2e import run_training


def errors(path, overrides):
    with pytest.raises(SpecError) as info:
        load_spec(path, list(overrides))
    return str(info.value)


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["training.use_galore=true"], "use_galore optimizes the model's own weights: it needs method.finetuning_type"),
        (["method.finetuning_type=full", "training.use_badam=true", "training.use_galore=true"], "keep one"),
        (["method.finetuning_type=freeze", "training.use_badam=true"], "use_badam optimizes"),
        (["method.finetuning_type=full", "training.use_muon=true", "training.optim=adamw_8bit"], "remove training.optim"),
        (["method.finetuning_type=full", "training.galore_rank=8"], "galore_rank is an option of use_galore"),
        (["method.loraplus_lr_embedding=1e-5"], "set method.loraplus_lr_ratio"),
        (["method.pissa_convert=true"], "pissa_convert is an option of PiSSA"),
        (["method.pissa_init=true", "model.quantization_bit=8"], "PiSSA starts from the singular vectors"),
        (["method.pissa_init=true", "method.use_dora=true"], "remove use_dora or pissa_init"),
        (["method.loftq_init=true"], "set model.quantization_bit: 4"),
        (["training.fp8=true", "training.bf16=true"], "turn bf16 off"),
        (["training.fp8_backend=te"], "fp8_backend is an option of fp8"),
        (["model.quantization_method=gptq", "model.quantization_bit=4"], "stored quantized: remove quantization_bit"),
        (["model.quantization_method=awq", "method.finetuning_type=full"], "trains adapters only"),
        (["model.quantization_method=hqq"], "hqq quantizes when loading: set model.quantization_bit"),
        (["model.quantization_method=eetq", "model.quantization_bit=4"], "EETQ quantizes to 8 bits"),
        (["model.quantization_method=torchao", "model.quantization_bit=8", "model.quantization_type=fp4"], "bitsandbytes option"),
        (["method.loftq_init=true", "model.quantization_bit=4", "method.pissa_init=true"], "remove pissa_init"),
        (["method.create_new_adapter=true"], "set model.adapter_name_or_path"),
        (["method.finetuning_type=full", "method.use_llama_pro=true"], "use_llama_pro only applies to finetuning_type: freeze"),
        (["method.finetuning_type=freeze", "method.use_llama_pro=true", "method.freeze_trainable_layers=-1"], "give a positive number"),
        (["method.finetuning_type=full", "training.use_galore=true", "training.galore_layerwise=true", "training.gradient_accumulation_steps=2"], "set gradient_accumulation_steps: 1"),
        (["method.finetuning_type=full", "training.use_adam_mini=true", "distributed.backend=deepspeed", "distributed.num_processes=2"], "use backend ddp or none"),
        (["training.gradient_checkpointing=false", "training.use_reentrant_gc=true"], "needs training.gradient_checkpointing: true"),
        (["method.stage=ppo", "method.reward_funcs=r.py", "training.neftune_noise_alpha=5"], "not generated for stage ppo"),
        (["method.finetuning_type=oft", "method.oft_rank=4"], "exactly one of oft_rank"),
        (["method.finetuning_type=oft", "inference.infer_backend=vllm"], "vLLM serves LoRA adapters only"),
        (["method.finetuning_type=oft", "method.lora_rank=4"], "lora_rank only applies to finetuning_type: lora"),
        (["method.oft_block_size=8"], "oft_block_size only applies to finetuning_type: oft"),
    ],
)  # fmt: skip
def test_combinations_that_cannot_work_name_the_keys(write_spec, overrides, expected):
    assert expected in errors(write_spec(MINIMAL_SPEC), overrides)


def test_flash_attn_values_of_llama_factory_are_accepted(write_spec):
    path = write_spec(MINIMAL_SPEC)
    for value, expected in (("fa2", "flash_attention_2"), ("fa3", "flash_attention_3"), ("disabled", "eager")):
        assert load_spec(path, [f"model.attn_implementation={value}"]).spec.model.attn_implementation == expected


def _train_py(demo, tmp_path, overrides):
    spec = tmp_path / "spec.yaml"
    spec.write_text(MINIMAL_SPEC.replace("./model", str(demo / "tiny-model")).replace("./data", str(demo / "data")))
    _, files = build_files(load_spec(spec, overrides), tmp_path / "run")
    return files["train.py"].decode()


def six_steps(model, optimizer) -> list[float]:
    """The losses of six optimizer steps on one random batch (the Trainer's loop is the same for all)."""
    import torch

    ids = torch.randint(5, 200, (4, 32))
    losses = []
    for _ in range(6):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def adapter_changes_the_base(demo, adapter) -> bool:
    """The saved adapter loads with PEFT onto the demo model and changes its logits."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 60, 70, 80, 90]])
    base = AutoModelForCausalLM.from_pretrained(demo / "tiny-model")
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, adapter).eval()(input_ids=ids).logits
    return not torch.allclose(plain, tuned, atol=1e-4)


def test_code_only_when_used(demo, tmp_path):
    plain = _train_py(demo, tmp_path, [])
    assert "ffc.runtime.tuning" not in plain and "neftune" not in plain and "init_lora_weights" not in plain
    lora = _train_py(
        demo, tmp_path, ["method.loraplus_lr_ratio=16", "method.pissa_init=true", "training.neftune_noise_alpha=5"]
    )
    assert "loraplus_optimizer(" in lora and 'init_lora_weights="pissa_niter_16"' in lora
    assert "neftune_noise_alpha=5.0" in lora and "save_pissa_converted" not in lora
    galore = _train_py(demo, tmp_path, ["method.finetuning_type=full", "training.use_galore=true"])
    assert 'optim="galore_adamw"' in galore and 'optim_target_modules="all-linear"' in galore
    assert 'optim_args="rank=16,update_proj_gap=200,scale=2.0,proj_type=std"' in galore


def test_loftq_is_generated_and_refused_without_a_gpu(demo, tmp_path, monkeypatch):
    import torch

    from ffc.runtime.errors import UserError
    from ffc.runtime.tuning import loftq

    code = _train_py(demo, tmp_path, ["method.loftq_init=true", "model.quantization_bit=4"])
    assert 'loftq(model, MODEL, revision="main")' in code
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="on a CUDA GPU and this machine has none"):
        loftq(None, str(demo / "tiny-model"))


def test_cuda_only_quantization_stops_at_start(demo, tmp_path):
    code = _train_py(demo, tmp_path, ["model.quantization_method=torchao", "model.quantization_bit=4"])
    assert 'require_gpu("model.quantization_method: torchao with quantization_bit: 4")' in code
    assert "Int4WeightOnlyConfig()" in code
    assert "require_gpu" not in _train_py(
        demo, tmp_path, ["model.quantization_method=torchao", "model.quantization_bit=8"]
    )


def test_fp8_is_generated_and_refused_without_a_gpu(demo, tmp_path, monkeypatch):
    import torch

    from ffc.runtime.errors import UserError
    from ffc.runtime.tuning import require_gpu

    code = _train_py(demo, tmp_path, ["training.fp8=true", "training.fp8_backend=torchao"])
    assert 'require_gpu("training.fp8")' in code and 'os.environ["ACCELERATE_FP8_BACKEND"] = "AO"' in code
    assert code.index('require_gpu("training.fp8")') < code.index("TrainingArguments(")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="training.fp8 needs a CUDA GPU"):
        require_gpu("training.fp8")


def test_requirements_name_the_packages_used(demo, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(MINIMAL_SPEC.replace("./model", str(demo / "tiny-model")).replace("./data", str(demo / "data")))
    overrides = ["method.finetuning_type=full", "training.use_badam=true", "export.onnx=true"]
    _, files = build_files(load_spec(spec, overrides), tmp_path / "run")
    requirements = files["requirements.txt"].decode()
    assert "badam==1.4" in requirements and "onnxruntime==" in requirements and "galore" not in requirements
    assert "write_onnx(model" in files["export.py"].decode()


@pytest.mark.slow
def test_lora_plus_pissa_neftune_upcast_train_and_load_with_peft(demo, tmp_path):
    overrides = [
        "training.max_steps=8", "training.logging_steps=1", "method.loraplus_lr_ratio=16", "method.pissa_init=true", "method.pissa_convert=true",
        "training.neftune_noise_alpha=5", "model.upcast_layernorm=true", "model.upcast_lmhead_output=true",
    ]  # fmt: skip
    run, losses = run_training(demo, tmp_path, method="lora", overrides=overrides, lr=5e-3)
    assert losses[-1] < losses[0], losses
    output = run / "output"
    assert json.loads((output / "adapter_config.json").read_text())["init_lora_weights"] == "pissa_niter_16"
    converted = output / "pissa_converted"
    assert json.loads((converted / "adapter_config.json").read_text())["init_lora_weights"] is True
    assert adapter_changes_the_base(demo, converted)  # a plain LoRA on the original base


@pytest.mark.slow
def test_llama_pro_with_rope_scaling_and_muon(demo, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    overrides = [
        "training.max_steps=8", "training.logging_steps=1", "method.use_llama_pro=true", "method.freeze_trainable_layers=2",
        "model.rope_scaling=linear", "data.cutoff_len=4096", "training.use_muon=true",
    ]  # fmt: skip
    run, losses = run_training(demo, tmp_path, method="freeze", overrides=overrides, lr=5e-3)
    assert losses[-1] < losses[0], losses
    config = AutoConfig.from_pretrained(run / "output")
    base = AutoConfig.from_pretrained(demo / "tiny-model")
    assert config.num_hidden_layers == base.num_hidden_layers + 2
    assert config.rope_parameters["rope_type"] == "linear" and config.rope_parameters["factor"] == 2.0
    AutoModelForCausalLM.from_pretrained(run / "output")  # loads with the expanded layer count


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["galore", "apollo"])
def test_memory_saving_optimizers_lower_the_loss(demo, tmp_path, optimizer):
    pytest.importorskip({"galore": "galore_torch", "apollo": "apollo_torch"}.get(optimizer, optimizer))
    overrides = ["training.max_steps=8", "training.logging_steps=1", f"training.use_{optimizer}=true"]
    _, losses = run_training(demo, tmp_path, method="full", overrides=overrides, lr=5e-3)
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("name", ["badam", "adam_mini", "muon"])
def test_optimizers_built_by_the_runtime_lower_the_loss(demo, name):
    """The optimizers train.py builds itself (the Trainer's loop is the same for all): a few steps in-process."""
    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments

    from ffc.runtime import tuning

    pytest.importorskip({"adam_mini": "adam_mini"}.get(name, "torch"))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(demo / "tiny-model")
    args = TrainingArguments(output_dir="unused", learning_rate=5e-3, report_to=[], use_cpu=True)
    if name == "badam":
        optimizer = tuning.badam_optimizer(
            model, args, start_block=None, switch_mode="ascending", switch_interval=2, verbose=0
        )
    else:
        optimizer = getattr(tuning, f"{name}_optimizer")(model, args)
    losses = six_steps(model, optimizer)
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.slow
def test_oft_trains_and_loads_with_peft(demo, tmp_path):

    overrides = ["training.max_steps=8", "training.logging_steps=1", "method.oft_block_size=16"]
    run, losses = run_training(demo, tmp_path, method="oft", overrides=overrides, lr=5e-3)
    assert losses[-1] < losses[0], losses
    output = run / "output"
    assert json.loads((output / "adapter_config.json").read_text())["peft_type"] == "OFT"
    assert adapter_changes_the_base(demo, output)
    assert 'ADAPTERS = [str(RUN_DIR / "output")]' in (run / "chat.py").read_text()  # chat/serve/export apply it


@pytest.mark.slow
def test_lora_on_a_torchao_int8_base_trains_and_loads(demo, tmp_path):
    pytest.importorskip("torchao")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    overrides = [
        "training.max_steps=8", "training.logging_steps=1", "model.quantization_method=torchao",
        "model.quantization_bit=8",
    ]  # fmt: skip
    run, losses = run_training(demo, tmp_path, method="lora", overrides=overrides, lr=5e-3)
    assert losses[-1] < losses[0], losses
    assert "TorchAoConfig(quant_type=Int8WeightOnlyConfig())" in (run / "train.py").read_text()
    assert "torchao==" in (run / "requirements.txt").read_text()
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo / "tiny-model"), run / "output")


def test_llama_factory_configs_with_these_options_import(tmp_path):
    from ruamel.yaml import YAML

    from ffc.compiler.importer import translate

    source = YAML().load(
        "model_name_or_path: m\nstage: sft\nfinetuning_type: lora\ndataset: a\ntemplate: qwen\n"
        "loraplus_lr_ratio: 16\npissa_init: true\nneftune_noise_alpha: 5\nrope_scaling: linear\n"
        "quantization_method: torchao\nquantization_bit: 8\nflash_attn: fa2\n"
    )
    result = translate(source, tmp_path, tmp_path)
    assert not result.errors, result.errors
    moved = dict(result.moved)
    assert moved["loraplus_lr_ratio"] == "method.loraplus_lr_ratio" and moved["pissa_init"] == "method.pissa_init"
    assert (
        moved["neftune_noise_alpha"] == "training.neftune_noise_alpha" and moved["rope_scaling"] == "model.rope_scaling"
    )
    assert result.doc["model"]["quantization_method"] == "torchao"
