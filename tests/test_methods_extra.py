"""The last methods of issue 15: LongLoRA's shifted sparse attention (checked against ordinary attention and
against the S²-Attn mask it stands for, and trained on the tiny Llama), Unsloth and GPTQ export (GPU-only:
generated code and the refusals where they cannot run), Mixture-of-Depths (refused, with the reason)."""

import json

import pytest

from ffc.compiler.loader import SpecError, load_spec

from .conftest import MINIMAL_SPEC
from .test_e2e import run_training
from .test_tuning import _train_py, adapter_changes_the_base, six_steps


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["model.mixture_of_depths=convert"], "fails to import with transformers 5"),
        (["model.shift_attn=true", "model.attn_implementation=eager"], "set attn_implementation to auto or sdpa"),
        (["model.shift_attn=true", "method.stage=grpo", "method.reward_funcs=r.py"], "stage grpo generates with the policy"),
        (["model.use_unsloth_gc=true"], "set model.use_unsloth: true"),
        (["model.use_unsloth=true", "method.finetuning_type=full"], "set method.finetuning_type: lora, not full"),
        (["model.use_unsloth=true", "distributed.backend=fsdp", "distributed.num_processes=2"], "not FSDP"),
        (["model.use_unsloth=true", "distributed.backend=deepspeed", "distributed.num_processes=2", "distributed.deepspeed.zero_stage=3"], "not ZeRO-3"),
        (["model.use_unsloth=true", "model.quantization_method=hqq", "model.quantization_bit=4"], "use quantization_method: bnb"),
        (["model.use_unsloth=true", "model.shift_attn=true"], "model.shift_attn is not generated with use_unsloth"),
        (["model.use_unsloth=true", "method.use_dora=true"], "method.use_dora is not generated with use_unsloth"),
        (["model.use_unsloth=true", "method.stage=rm"], "not rm"),
        (["model.use_unsloth=true", "training.chunked_loss=true"], "chunked_loss and use_unsloth both replace the loss"),
        (["export.export_quantization_nsamples=64"], "an option of export_quantization_bit"),
        (["export.export_quantization_bit=4"], "set export.export_quantization_dataset"),
    ],
)  # fmt: skip
def test_combinations_that_cannot_work_name_the_keys(write_spec, overrides, expected):
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(MINIMAL_SPEC), overrides)
    assert expected in str(info.value)


# -- shifted sparse attention ----------------------------------------------------------------------------


class _Attention:
    """What the attention function reads of the module: training mode, causality, grouped-query heads."""

    training, is_causal, num_key_value_groups = True, True, 2


def _qkv(length, batch=2, heads=4, kv_heads=2, dim=8):
    import torch

    torch.manual_seed(0)
    return (torch.randn(batch, h, length, dim) for h in (heads, kv_heads, kv_heads))


@pytest.mark.parametrize("padded", [False, True])
def test_shift_attn_with_one_group_equals_ordinary_attention(padded):
    """Groups as long as the sequence: the shifted half sees one rolled group in causal order, i.e. everything
    ordinary causal attention sees (with left padding too)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from ffc.runtime.attention import shift_sparse_attention

    query, key, value = _qkv(13)
    mask = None
    if padded:
        mask = torch.ones(2, 1, 13, 13, dtype=torch.bool).tril()
        mask[1, :, :, :3] = False  # three pad tokens on the left of the second row
    module = _Attention()
    expected, _ = sdpa_attention_forward(module, query, key, value, mask)
    got, _ = shift_sparse_attention(module, query, key, value, mask, group_size_ratio=1.0)
    rows = slice(3, None) if padded else slice(None)
    assert torch.allclose(got[:, rows], expected[:, rows], atol=1e-5)
    assert not torch.isnan(got).any()
    shorter, _ = shift_sparse_attention(module, query, key, value, mask)  # LongLoRA's quarter: sparse, not equal
    assert not torch.allclose(shorter, expected, atol=1e-3)


@pytest.mark.parametrize("ratio", [0.25, 0.3, 0.5])
def test_shift_attn_is_attention_under_the_shifted_group_mask(ratio):
    """The grouped computation equals full attention under S²-Attn's mask: causal, and within a group, where
    the second half of the heads counts groups from half a group on (13 tokens: the last group is short)."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv

    from ffc.runtime.attention import shift_sparse_attention

    length = 13
    query, key, value = _qkv(length)
    group = int(length * ratio)
    positions = torch.arange(length)
    causal = positions[:, None] >= positions[None, :]
    halves = []
    for heads, offset in ((slice(0, 2), 0), (slice(2, 4), group // 2)):
        rolled = (positions - offset) % length
        mask = causal & (rolled[:, None] // group == rolled[None, :] // group)
        halves.append(
            torch.nn.functional.scaled_dot_product_attention(
                query[:, heads], repeat_kv(key, 2)[:, heads], repeat_kv(value, 2)[:, heads], attn_mask=mask
            )
        )
    expected = torch.cat(halves, 1).transpose(1, 2)
    got, _ = shift_sparse_attention(_Attention(), query, key, value, None, group_size_ratio=ratio)
    assert torch.allclose(got, expected, atol=1e-5)


def test_shift_attn_on_the_tiny_llama_is_sparse_in_training_and_dense_in_eval(demo):
    import torch
    from transformers import AutoModelForCausalLM

    from ffc.runtime.attention import enable_shift_attn

    ids = torch.randint(5, 200, (2, 64))
    plain = AutoModelForCausalLM.from_pretrained(demo / "tiny-model", attn_implementation="sdpa").train()
    shifted = AutoModelForCausalLM.from_pretrained(demo / "tiny-model").train()
    enable_shift_attn(shifted)
    with torch.no_grad():
        assert not torch.allclose(shifted(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-4)
        shifted.eval(), plain.eval()
        assert torch.allclose(shifted(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5)
    loss = shifted.train()(input_ids=ids, labels=ids).loss
    loss.backward()
    assert shifted.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_shift_attn_code_only_when_used(demo, tmp_path):
    assert "enable_shift_attn" not in _train_py(demo, tmp_path, [])
    code = _train_py(demo, tmp_path, ["model.shift_attn=true"])
    assert "from ffc.runtime.attention import enable_shift_attn" in code and "    enable_shift_attn(model)" in code


@pytest.mark.slow
def test_shift_attn_trains_and_the_model_reloads_with_ordinary_attention(demo, tmp_path):
    from transformers import AutoModelForCausalLM

    overrides = ["training.max_steps=8", "training.logging_steps=1", "model.shift_attn=true", "data.packing=true"]
    run, losses = run_training(demo, tmp_path, method="full", overrides=overrides, lr=5e-3)
    assert losses[-1] < losses[0], losses
    config = json.loads((run / "output" / "config.json").read_text())
    assert "ffc_shift_sparse" not in json.dumps(config)  # the saved model is an ordinary one
    AutoModelForCausalLM.from_pretrained(run / "output")


# -- Unsloth -----------------------------------------------------------------------------------------------


def test_unsloth_code_only_when_used_and_refused_without_cuda(demo, tmp_path, monkeypatch):
    import torch

    from ffc.runtime.errors import UserError
    from ffc.runtime.tuning import load_unsloth

    assert "unsloth" not in _train_py(demo, tmp_path, []).lower()
    code = _train_py(
        demo, tmp_path, ["model.use_unsloth=true", "model.use_unsloth_gc=true", "model.quantization_bit=4"]
    )
    assert "load_unsloth(" in code and "quantization_bit=4," in code and 'gradient_checkpointing="unsloth"' in code
    assert "unsloth_lora(" in code and "activation_checkpointing=False" in code and "ChunkedLossTrainer" not in code
    assert "LoraConfig" not in code and "BitsAndBytesConfig" not in code and "AutoModelForCausalLM" not in code
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="model.use_unsloth needs a CUDA GPU and this machine has none"):
        load_unsloth("m", max_seq_length=8, dtype=None, quantization_bit=None, gradient_checkpointing=False)


# -- GPTQ export -------------------------------------------------------------------------------------------


def test_gptq_export_code_only_when_used_and_refused_without_cuda(demo, tmp_path, monkeypatch):
    import torch

    from ffc.compiler.build import build_files
    from ffc.runtime.errors import UserError
    from ffc.runtime.export import quantize_gptq

    spec = tmp_path / "spec.yaml"
    spec.write_text(MINIMAL_SPEC.replace("./model", str(demo / "tiny-model")).replace("./data", str(demo / "data")))
    _, plain = build_files(load_spec(spec, []), tmp_path / "run")
    assert "gptq" not in plain["export.py"].decode().lower()
    overrides = [
        "export.export_quantization_bit=4",
        "export.export_quantization_dataset=c4.jsonl",
        "export.export_quantization_nsamples=16",
    ]
    _, files = build_files(load_spec(spec, overrides), tmp_path / "run")
    code = files["export.py"].decode()
    assert "quantize_gptq(" in code and "bits=4" in code and "nsamples=16" in code
    requirements = files["requirements.txt"].decode()
    assert "optimum==" in requirements and "gptqmodel" in requirements
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="export_quantization_bit needs a CUDA GPU"):
        quantize_gptq(tmp_path, tmp_path / "q", bits=4, dataset=str(tmp_path / "d.jsonl"), nsamples=2, maxlen=8)


# -- the generated code of these options is lint- and format-clean -----------------------------------------

VARIANTS = {
    "sft-unsloth-qlora": ["model.use_unsloth=true", "model.use_unsloth_gc=true", "model.quantization_bit=4"],
    "sft-unsloth-pissa": ["model.use_unsloth=true", "method.pissa_init=true", "method.pissa_convert=true"],
    "dpo-unsloth-ref": ["method.stage=dpo", "model.use_unsloth=true", "method.ref_model={model}"],
    "kto-unsloth": ["method.stage=kto", "model.use_unsloth=true", "training.per_device_train_batch_size=2"],
    "pt-shift-attn": ["method.stage=pt", "model.shift_attn=true", "method.finetuning_type=full"],
    "sft-gptq-export": ["export.export_quantization_bit=4", "export.export_quantization_dataset=c4.jsonl"],
}
DATASETS = {"dpo": "demo_pairs", "kto": "demo_kto", "pt": "demo_text"}


def test_generated_code_of_these_options_passes_ruff(demo, tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.writer import write_run

    from .test_generated_code import _ruff

    dirs = []
    for label, overrides in VARIANTS.items():
        stage = label.split("-")[0]
        spec = tmp_path / f"{label}.yaml"
        text = MINIMAL_SPEC.replace("./model", str(demo / "tiny-model")).replace("./data", str(demo / "data"))
        text = text.replace("demo_alpaca", DATASETS.get(stage, "demo_alpaca"))
        spec.write_text(text.replace("  template: chatml\n", "") if stage == "pt" else text)
        run = tmp_path / "runs" / label
        write_run(run, build_files(load_spec(spec, [o.format(model=demo / "tiny-model") for o in overrides]), run)[1])
        dirs.append(str(run))
    lint = _ruff("check", "--no-cache", "--output-format", "concise", *dirs)
    assert lint.returncode == 0, lint.stdout[-6000:]
    form = _ruff("format", "--check", "--no-cache", *dirs)
    assert form.returncode == 0, form.stdout[-3000:]
    dpo = (tmp_path / "runs" / "dpo-unsloth-ref" / "train.py").read_text()
    assert "load_unsloth(" in dpo and "AutoModelForCausalLM.from_pretrained(" in dpo  # the reference model


def test_gptq_calibration_samples_are_windows_of_maxlen_tokens(demo, tmp_path):
    """LLaMA-Factory's calibration: random windows of export_quantization_maxlen tokens from longer rows."""
    from transformers import AutoTokenizer

    from ffc.runtime.errors import UserError
    from ffc.runtime.export import calibration_samples

    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-model")
    data = tmp_path / "c4.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"text": t}) for t in ("short", "one plus two is three. " * 40, "reverse these words " * 30)
        )
    )
    samples = calibration_samples(tokenizer, str(data), nsamples=6, maxlen=32)
    assert len(samples) == 6
    long_ids = [tokenizer(t)["input_ids"] for t in ("one plus two is three. " * 40, "reverse these words " * 30)]
    for sample in samples:
        (window,) = sample["input_ids"]
        assert len(window) == 32 and sample["attention_mask"] == [[1] * 32]
        assert any(window == ids[i : i + 32] for ids in long_ids for i in range(len(ids) - 31))
    with pytest.raises(UserError, match="no row of .* is longer than export_quantization_maxlen"):
        calibration_samples(tokenizer, str(data), nsamples=2, maxlen=10_000)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"content": "x"}))
    with pytest.raises(UserError, match="has no 'text' field"):
        calibration_samples(tokenizer, str(tmp_path / "bad.jsonl"), nsamples=2, maxlen=4)


def test_llama_factory_configs_with_these_options_import(tmp_path):
    from ruamel.yaml import YAML

    from ffc.compiler.importer import translate

    source = YAML().load(
        "model_name_or_path: m\nstage: sft\nfinetuning_type: lora\ndataset: a\ntemplate: qwen\nshift_attn: true\n"
        "use_unsloth: true\nuse_unsloth_gc: true\nexport_quantization_bit: 4\nexport_quantization_dataset: c4.jsonl\n"
    )
    result = translate(source, tmp_path, tmp_path)
    assert not result.errors, result.errors
    moved = dict(result.moved)
    assert moved["shift_attn"] == "model.shift_attn" and moved["use_unsloth_gc"] == "model.use_unsloth_gc"
    assert moved["export_quantization_bit"] == "export.export_quantization_bit"


# -- LoRA variants and bitsandbytes optimizers that had no training test -------------------------------------


@pytest.mark.parametrize("optim", ["adamw_8bit", "paged_adamw_8bit"])
def test_bitsandbytes_adamw_through_training_optim_lowers_the_loss(demo, optim):
    """training.optim passes transformers' names through: 8-bit and paged AdamW are bitsandbytes' (on CPU the
    paged one falls back to ordinary memory, with bitsandbytes' warning)."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(demo / "tiny-model")
    args = TrainingArguments(output_dir="unused", learning_rate=5e-3, optim=optim, report_to=[], use_cpu=True)
    optimizer = Trainer(model=model, args=args).create_optimizer()
    assert type(optimizer).__module__.startswith("bitsandbytes"), type(optimizer)
    losses = six_steps(model, optimizer)
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.slow
def test_dora_with_rslora_trains_and_loads_with_peft(demo, tmp_path):
    overrides = ["training.max_steps=8", "training.logging_steps=1", "method.use_dora=true", "method.use_rslora=true"]
    run, losses = run_training(demo, tmp_path, method="lora", overrides=overrides, lr=5e-3)
    assert losses[-1] < losses[0], losses
    config = json.loads((run / "output" / "adapter_config.json").read_text())
    assert config["use_dora"] is True and config["use_rslora"] is True
    assert adapter_changes_the_base(demo, run / "output")
