"""Cross-field rules of the spec: combinations that are each valid alone but not together.

Each rule returns ``Problem``s that name the key to point at and say what to do
instead, so the loader can report ``spec.yaml:LINE:COL``.
"""

from __future__ import annotations

from typing import Callable, Iterator

from .methods import METHOD_OPTIONS, method_owning
from .problem import Problem
from .spec import Spec
from .stages import STAGE_DATA_OPTIONS, STAGES, option_applies, stages_using

Rule = Callable[[Spec], Iterator[Problem]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


@rule
def quantization_needs_lora(spec: Spec):
    if spec.model.quantization_bit and spec.method.finetuning_type != "lora":
        yield Problem(
            ("model", "quantization_bit"),
            f"{spec.model.quantization_bit}-bit quantization trains adapters only: set method.finetuning_type: lora "
            f"(QLoRA), or remove quantization_bit to train in full precision.",
        )


@rule
def options_of_other_methods(spec: Spec):
    chosen = spec.method.finetuning_type
    for name in sorted(spec.method.model_fields_set & METHOD_OPTIONS):
        owner = method_owning(name)
        if owner != chosen:
            yield Problem(
                ("method", name),
                f"{name} only applies to finetuning_type: {owner}, but this spec uses {chosen}: "
                f"remove it or change finetuning_type.",
            )


@rule
def options_of_other_stages(spec: Spec):
    stage = spec.method.stage
    for name in sorted(spec.method.model_fields_set):
        if not option_applies(name, stage):
            yield Problem(
                ("method", name),
                f"{name} applies to stage {' or '.join(stages_using(name))}, not {stage}: remove it or change the stage.",
            )


@rule
def online_stages_need_a_reward(spec: Spec):
    method = spec.method
    if STAGES[method.stage].needs_reward and not (method.reward_model or method.reward_funcs):
        yield Problem(
            ("method", "stage"),
            f"stage {method.stage} scores generated responses: set method.reward_model (an rm run's output or a "
            "sequence-classification model) or method.reward_funcs (a Python file of reward functions).",
        )


@rule
def stage_checks(spec: Spec):
    """What a stage itself requires (its ``check`` in the stage registry)."""
    check = STAGES[spec.method.stage].check
    if check is not None:
        yield from check(spec)


@rule
def training_needs_data(spec: Spec):
    if STAGES[spec.method.stage].trains and not spec.data.dataset:
        yield Problem(
            ("data", "dataset"),
            f"stage {spec.method.stage} trains on data.dataset: name at least one dataset of dataset_info.json "
            "(or set method.stage: none for a run that only chats, serves, evaluates and exports).",
        )


@rule
def masking_options(spec: Spec):
    if spec.data.mask_history and spec.data.train_on_prompt:
        yield Problem(
            ("data", "mask_history"),
            "mask_history (train only the last turn) contradicts train_on_prompt (train every token): choose one.",
        )


@rule
def sft_needs_template(spec: Spec):
    stage = spec.method.stage
    if STAGES[stage].chat and not spec.data.template:
        yield Problem(
            ("data", "template"),
            f"stage {stage} needs a chat template: set data.template (e.g. qwen, llama3, chatml) "
            "or 'tokenizer' to use the tokenizer's own chat template.",
        )
    for name in sorted(STAGE_DATA_OPTIONS):
        if getattr(spec.data, name) and not option_applies(name, stage, "data"):
            using = " and ".join(stages_using(name, "data"))
            yield Problem(("data", name), f"{name} applies to stage {using}, not to stage {stage}.")


@rule
def template_is_known(spec: Spec):
    from ffc.runtime.chat.templates import TEMPLATES, suggest

    name = spec.data.template
    if name and name not in ("tokenizer", "auto") and name not in TEMPLATES:
        yield Problem(
            ("data", "template"),
            f"unknown template {name!r}{suggest(name, list(TEMPLATES) + ['tokenizer', 'auto'])}.",
        )


@rule
def one_precision(spec: Spec):
    if spec.training.bf16 and spec.training.fp16:
        yield Problem(("training", "fp16"), "bf16 and fp16 are both on: choose one mixed precision.")


@rule
def mixing(spec: Spec):
    data = spec.data
    if data.interleave_probs:
        if data.mix_strategy == "concat":
            yield Problem(
                ("data", "interleave_probs"),
                "interleave_probs needs mix_strategy: interleave_under or interleave_over.",
            )
        elif len(data.interleave_probs) != len(data.dataset):
            yield Problem(
                ("data", "interleave_probs"),
                f"{len(data.interleave_probs)} probabilities for {len(data.dataset)} datasets: give one per dataset.",
            )
        elif abs(sum(data.interleave_probs) - 1.0) > 1e-6:
            yield Problem(("data", "interleave_probs"), "the probabilities must add up to 1.")


@rule
def streaming(spec: Spec):
    if not spec.data.streaming:
        return
    if spec.training.max_steps <= 0:
        yield Problem(
            ("data", "streaming"),
            "a streamed dataset has no known length: set training.max_steps to a positive number of steps.",
        )
    if 0 < spec.data.val_size < 1:
        yield Problem(
            ("data", "val_size"), "with streaming, val_size must be a number of samples (>= 1), not a fraction."
        )


@rule
def evaluation(spec: Spec):
    has_eval_data = spec.data.val_size > 0 or bool(spec.data.eval_dataset)
    if spec.training.eval_strategy in ("steps", "epoch") and not has_eval_data:
        yield Problem(
            ("training", "eval_strategy"),
            "evaluation needs data: set data.val_size or data.eval_dataset, or set eval_strategy: no.",
        )
    if spec.data.val_size >= 1 and spec.data.val_size != int(spec.data.val_size):
        yield Problem(("data", "val_size"), "a val_size of 1 or more is a number of samples: give a whole number.")


@rule
def distributed(spec: Spec):
    dist = spec.distributed
    if dist.backend == "none" and (dist.num_processes or 1) > 1:
        yield Problem(
            ("distributed", "num_processes"),
            "several processes need a backend: set distributed.backend to ddp, deepspeed or fsdp.",
        )
    if dist.num_machines > 1 and not dist.main_process_ip:
        yield Problem(
            ("distributed", "main_process_ip"), "multi-node training needs the address of the rank-0 machine."
        )
    if dist.deepspeed.offload_param and dist.deepspeed.zero_stage != 3:
        yield Problem(("distributed", "deepspeed", "offload_param"), "parameter offload needs zero_stage: 3.")
    if "deepspeed" in dist.model_fields_set and dist.backend != "deepspeed":
        yield Problem(("distributed", "deepspeed"), "deepspeed options need distributed.backend: deepspeed.")
    if "fsdp" in dist.model_fields_set and dist.backend != "fsdp":
        yield Problem(("distributed", "fsdp"), "fsdp options need distributed.backend: fsdp.")
    if dist.num_processes and dist.num_processes % dist.num_machines:
        yield Problem(
            ("distributed", "num_processes"),
            f"{dist.num_processes} processes do not split evenly over {dist.num_machines} machines: "
            "num_processes counts all processes, a multiple of num_machines.",
        )
    if dist.backend == "ddp" and dist.num_processes == 1:
        yield Problem(
            ("distributed", "backend"), "ddp with one process is plain training: set num_processes or backend: none."
        )
    if dist.backend == "fsdp" and spec.model.quantization_bit:
        yield Problem(
            ("distributed", "backend"),
            "ffc does not generate FSDP with bitsandbytes-quantized weights (QLoRA): use backend: deepspeed with "
            "zero_stage 2, or ddp.",
        )
    if dist.backend == "fsdp" and spec.training.fp16:
        yield Problem(
            ("training", "fp16"), "FSDP training here uses bf16 or fp32: fp16 needs a sharded grad scaler; use bf16."
        )
    if dist.slurm is not None and dist.num_processes is None and dist.slurm.gpus_per_node is None:
        yield Problem(
            ("distributed", "num_processes"),
            "a SLURM job asks for its GPUs up front: set distributed.num_processes or distributed.slurm.gpus_per_node.",
        )
    if dist.slurm is not None and dist.backend == "none":
        yield Problem(
            ("distributed", "slurm"),
            "a SLURM job for one process: set backend (ddp, deepspeed or fsdp) and num_processes.",
        )
    if dist.backend == "deepspeed" and dist.deepspeed.zero_stage == 3 and spec.model.quantization_bit:
        yield Problem(
            ("distributed", "deepspeed", "zero_stage"),
            "ZeRO-3 cannot shard bitsandbytes-quantized weights: use zero_stage 2 for QLoRA.",
        )


@rule
def export_options(spec: Spec):
    if spec.export.ollama and not spec.export.gguf:
        yield Problem(("export", "ollama"), "an Ollama Modelfile points at a GGUF file: set export.gguf (e.g. [q8_0]).")
    if spec.serve.host not in ("127.0.0.1", "localhost", "::1") and not spec.serve.api_key_env:
        yield Problem(
            ("serve", "host"),
            f"serving on {spec.serve.host} exposes the model to the network: set serve.api_key_env so clients need a key.",
        )


from . import tuning_rules  # noqa: E402,F401  (registers the rules of the tuning options)


def check(spec: Spec) -> list[Problem]:
    return [problem for rule_fn in RULES for problem in rule_fn(spec)]


@rule
def lean_loss(spec: Spec):
    stage, dist = spec.method.stage, spec.distributed
    lean_logits = STAGES[stage].lean_logits
    if spec.model.enable_liger_kernel and stage not in ("pt", "sft"):  # Liger replaces the causal-LM loss only
        yield Problem(
            ("model", "enable_liger_kernel"), f"enable_liger_kernel applies to stage pt and sft, not to stage {stage}."
        )
    if lean_logits == "trl" and spec.training.chunked_loss is False:
        yield Problem(
            ("training", "chunked_loss"),
            f"stage {stage} computes its log-probabilities with TRL's fused LM head, never the full-vocabulary "
            "logits; TRL 1.16 has no other path, so chunked_loss cannot be switched off for it: remove the setting.",
        )
    if not spec.training.chunked_loss or lean_logits == "trl":
        return
    if lean_logits is None:
        yield Problem(
            ("training", "chunked_loss"),
            f"chunked_loss applies to stages with a language-model loss, not to stage {stage} (a score head).",
        )
    if spec.model.enable_liger_kernel:
        yield Problem(
            ("training", "chunked_loss"),
            "chunked_loss and enable_liger_kernel both replace the loss: choose one (Liger on GPUs).",
        )
    if dist.backend == "fsdp" or (dist.backend == "deepspeed" and dist.deepspeed.zero_stage == 3):
        yield Problem(
            ("training", "chunked_loss"),
            "chunked_loss calls the output head outside the model's forward, where FSDP and ZeRO-3 have it "
            "sharded: set training.chunked_loss: false (or enable_liger_kernel on GPUs).",
        )


@rule
def pixel_bounds_in_order(spec: Spec):
    model = spec.model
    for kind in ("image", "video"):
        low, high = getattr(model, f"{kind}_min_pixels"), getattr(model, f"{kind}_max_pixels")
        if low > high:
            yield Problem(
                ("model", f"{kind}_min_pixels"),
                f"{kind}_min_pixels ({low}) is more than {kind}_max_pixels ({high}): lower it, or raise the maximum.",
            )
