"""Cross-field rules of the tuning methods, optimizers and model options of issue 15 (LoRA+, PiSSA,
LLaMA Pro, GaLore, APOLLO, BAdam, Adam-mini, Muon, RoPE scaling, model options). Registered in
``rules.RULES`` like the others; kept apart so that rules.py stays readable."""

from __future__ import annotations

from .problem import Problem
from .rules import rule

# The optimizer switches, LLaMA-Factory's names: each replaces training.optim.
OPTIMIZERS = ("use_galore", "use_apollo", "use_badam", "use_adam_mini", "use_muon")
# Options of one optimizer or method that mean nothing without its switch.
PREFIXED = {"galore_": "use_galore", "apollo_": "use_apollo", "badam_": "use_badam"}


@rule
def one_optimizer(spec):
    training, method = spec.training, spec.method
    chosen = [name for name in OPTIMIZERS if getattr(training, name)]
    if method.loraplus_lr_ratio is not None:
        chosen.append("loraplus_lr_ratio")
    if len(chosen) > 1:
        yield Problem(("training", chosen[1]) if chosen[1] != "loraplus_lr_ratio" else ("method", chosen[1]),
                      f"{' and '.join(chosen)} each choose the optimizer: keep one.")  # fmt: skip
    if chosen and "optim" in training.model_fields_set:
        yield Problem(
            ("training", "optim"), f"{chosen[0]} replaces the optimizer: remove training.optim ({training.optim})."
        )
    for name in chosen:
        if name == "loraplus_lr_ratio":
            continue
        allowed = ("full",) if name == "use_badam" else ("full", "freeze")
        if method.finetuning_type not in allowed:
            yield Problem(
                ("training", name),
                f"{name} optimizes the model's own weights: it needs method.finetuning_type "
                f"{' or '.join(allowed)}, not {method.finetuning_type} (for adapters, LoRA+ is loraplus_lr_ratio).",
            )
    if chosen and spec.distributed.backend in ("deepspeed", "fsdp"):
        yield Problem(
            ("distributed", "backend"),
            f"{chosen[0]} is not generated for {spec.distributed.backend} (its optimizer is built outside "
            "DeepSpeed/FSDP's sharding): use backend ddp or none.",
        )
    for name, switch in (("galore_layerwise", "use_galore"), ("apollo_layerwise", "use_apollo")):
        if getattr(training, switch) and getattr(training, name) and training.gradient_accumulation_steps > 1:
            yield Problem(
                ("training", name),
                f"{name} updates each layer during the backward pass: set gradient_accumulation_steps: 1 "
                "(or turn layerwise off).",
            )


@rule
def options_need_their_switch(spec):
    training = spec.training
    for name in sorted(training.model_fields_set):
        for prefix, switch in PREFIXED.items():
            if name.startswith(prefix) and not getattr(training, switch):
                yield Problem(("training", name), f"{name} is an option of {switch}: set {switch}: true or remove it.")
    method = spec.method
    if "loraplus_lr_embedding" in method.model_fields_set and method.loraplus_lr_ratio is None:
        yield Problem(("method", "loraplus_lr_embedding"), "an option of LoRA+: set method.loraplus_lr_ratio too.")
    for name in ("pissa_iter", "pissa_convert"):
        if name in method.model_fields_set and not method.pissa_init:
            yield Problem(("method", name), f"{name} is an option of PiSSA: set method.pissa_init: true or remove it.")


@rule
def adapter_initialisation(spec):
    method, model = spec.method, spec.model
    if method.pissa_init and model.quantization_bit:
        yield Problem(
            ("method", "pissa_init"),
            f"PiSSA starts from the singular vectors of full-precision weights, which {model.quantization_bit}-bit "
            "quantization (model.quantization_bit) does not keep: remove one of them.",
        )
    if method.loftq_init and model.quantization_bit != 4:
        yield Problem(
            ("method", "loftq_init"),
            "LoftQ initialises adapters against 4-bit quantization: set model.quantization_bit: 4, or remove loftq_init.",
        )
    if method.loftq_init and (method.pissa_init or method.use_dora):
        yield Problem(
            ("method", "loftq_init"), "LoftQ initialises plain LoRA matrices itself: remove pissa_init and use_dora."
        )
    if method.pissa_init and method.use_dora:
        yield Problem(("method", "pissa_init"), "PiSSA initialises plain LoRA matrices: remove use_dora or pissa_init.")
    if method.create_new_adapter and not model.adapter_name_or_path:
        yield Problem(
            ("method", "create_new_adapter"),
            "create_new_adapter stacks a new adapter on an existing one: set model.adapter_name_or_path.",
        )
    if method.use_llama_pro and method.freeze_trainable_layers < 0:
        yield Problem(
            ("method", "freeze_trainable_layers"),
            "with use_llama_pro, freeze_trainable_layers is the number of new layers added: give a positive number.",
        )


@rule
def existing_adapters(spec):
    """model.adapter_name_or_path, with LLaMA-Factory's limits: adapters continue LoRA training only, and a
    quantized base takes one adapter (its weights cannot be merged into quantized ones)."""
    model, method = spec.model, spec.method
    adapters = model.adapter_name_or_path
    if not adapters or spec.method.stage == "none":
        if adapters and spec.inference.infer_backend == "vllm" and len(adapters) > 1:
            yield Problem(
                ("model", "adapter_name_or_path"),
                "vLLM applies one adapter: merge the others first (export.py), or use infer_backend: huggingface.",
            )
        return
    if model.use_unsloth:
        yield Problem(
            ("model", "adapter_name_or_path"),
            "Unsloth sets up its own adapter: merge the existing ones first (a stage none run's export.py) and "
            "train on the merged model, or remove use_unsloth.",
        )
    if method.finetuning_type != "lora":
        yield Problem(
            ("model", "adapter_name_or_path"),
            f"existing adapters continue LoRA training: set method.finetuning_type: lora, or merge them first "
            f"(a stage none run's export.py) and train {method.finetuning_type} on the merged model.",
        )
    elif model.quantization_bit or model.quantization_method in ("gptq", "awq", "aqlm"):
        if len(adapters) > 1:
            yield Problem(
                ("model", "adapter_name_or_path"),
                "a quantized base takes one adapter (adapters cannot be merged into quantized weights): merge them "
                "first with a stage none run's export.py.",
            )
        if method.create_new_adapter:
            yield Problem(
                ("method", "create_new_adapter"),
                "a quantized base cannot have its adapter merged: remove create_new_adapter to train the adapter further.",
            )
    elif not method.create_new_adapter:
        for name in ("pissa_init", "loftq_init", "use_dora", "use_rslora"):
            if getattr(method, name) and name in method.model_fields_set:
                yield Problem(
                    ("method", name),
                    f"{name} sets up a new adapter, but the last of model.adapter_name_or_path is trained further "
                    "with its own settings: remove it, or set create_new_adapter: true.",
                )
    if spec.inference.infer_backend == "vllm" and len(adapters) + int(method.create_new_adapter) > 1:
        yield Problem(
            ("inference", "infer_backend"),
            "vLLM applies one adapter, and this run's model has more (model.adapter_name_or_path and the trained one): "
            "use infer_backend: huggingface, or export.py's merged model as inference.model_path.",
        )


@rule
def one_hub(spec):
    if spec.model.use_modelscope_hub and spec.model.use_openmind_hub:
        yield Problem(("model", "use_openmind_hub"), "the model comes from one hub: choose ModelScope or Modelers.")


@rule
def callbacks(spec):
    if spec.training.callbacks and spec.method.stage == "ppo":
        yield Problem(
            ("training", "callbacks"), "stage ppo runs ffc's own loop, not a Trainer: callbacks apply to the others."
        )


@rule
def model_options(spec):
    training = spec.training
    if training.fp8 and (training.bf16 or training.fp16):
        yield Problem(
            ("training", "fp8"),
            f"fp8 is the run's mixed precision: turn {'bf16' if training.bf16 else 'fp16'} off (non-FP8 operations "
            "run in the model's dtype).",
        )
    if training.fp8 and spec.distributed.backend in ("deepspeed", "fsdp"):
        yield Problem(("training", "fp8"), "fp8 is generated for backend none or ddp, not DeepSpeed or FSDP.")
    if "fp8_backend" in training.model_fields_set and not training.fp8:
        yield Problem(("training", "fp8_backend"), "fp8_backend is an option of fp8: set training.fp8: true.")
    if training.use_reentrant_gc and not training.gradient_checkpointing:
        yield Problem(("training", "use_reentrant_gc"), "use_reentrant_gc needs training.gradient_checkpointing: true.")
    if spec.method.stage == "ppo":
        # PPO's loop (ffc.runtime.ppo) builds its own optimizer and arguments.
        method = spec.method
        used = [
            f"training.{name}"
            for name in (*OPTIMIZERS, "neftune_noise_alpha")
            if getattr(training, name) not in (False, None)
        ]
        used += ["method.loraplus_lr_ratio"] if method.loraplus_lr_ratio is not None else []
        used += ["method.pissa_convert"] if method.pissa_convert else []
        used += ["training.fp8"] if training.fp8 else []
        if used:
            section, name = used[0].split(".")
            yield Problem((section, name), f"{', '.join(used)} is not generated for stage ppo: remove it or use grpo.")


@rule
def oft(spec):
    method = spec.method
    if method.finetuning_type != "oft":
        return
    if (method.oft_rank == 0) == (method.oft_block_size == 0):
        yield Problem(
            ("method", "oft_block_size"),
            "OFT takes its block layout from exactly one of oft_rank (blocks per layer) and oft_block_size "
            "(block width): set the other to 0.",
        )
    if spec.inference.infer_backend == "vllm":
        yield Problem(
            ("inference", "infer_backend"), "vLLM serves LoRA adapters only: use infer_backend: huggingface for OFT."
        )


@rule
def quantization_method(spec):
    model = spec.model
    chosen = model.quantization_method
    if chosen in ("gptq", "awq", "aqlm"):
        if model.quantization_bit:
            yield Problem(
                ("model", "quantization_bit"),
                f"a {chosen} model is stored quantized: remove quantization_bit (its config.json says how).",
            )
        if spec.method.finetuning_type != "lora":
            yield Problem(
                ("model", "quantization_method"),
                f"a {chosen}-quantized model trains adapters only: set method.finetuning_type: lora.",
            )
    elif chosen != "bnb" and "quantization_method" in model.model_fields_set and not model.quantization_bit:
        yield Problem(("model", "quantization_method"), f"{chosen} quantizes when loading: set model.quantization_bit.")
    if chosen == "eetq" and model.quantization_bit == 4:
        yield Problem(("model", "quantization_bit"), "EETQ quantizes to 8 bits: set quantization_bit: 8.")
    if chosen != "bnb":
        for name in ("quantization_type", "double_quantization"):
            if name in model.model_fields_set:
                yield Problem(("model", name), f"{name} is a bitsandbytes option: remove it for {chosen}.")


# Why Mixture-of-Depths is refused: checked against the package index (docs/methods.md).
MIXTURE_OF_DEPTHS_REFUSAL = (
    "Mixture-of-Depths is not available: the only published implementation, the mixture-of-depth package (1.2.0, "
    "its latest release), fails to import with transformers 5 (it imports TRANSFORMERS_CACHE, since removed) and "
    "replaces the decoder layers with copies of transformers 4's model code. Remove mixture_of_depths."
)
# Stages whose recipe loads a causal LM and adapts it (Unsloth's FastLanguageModel has no other heads).
UNSLOTH_STAGES = ("pt", "sft", "dpo", "kto", "orpo", "simpo")


@rule
def attention_and_kernels(spec):
    model, method, distributed = spec.model, spec.method, spec.distributed
    if model.mixture_of_depths:
        yield Problem(("model", "mixture_of_depths"), MIXTURE_OF_DEPTHS_REFUSAL)
    if model.shift_attn and model.attn_implementation not in ("auto", "sdpa"):
        yield Problem(
            ("model", "attn_implementation"),
            f"shift_attn computes attention itself while training (SDPA within each group): set attn_implementation "
            f"to auto or sdpa, not {model.attn_implementation}.",
        )
    if model.shift_attn and method.stage in ("ppo", "grpo"):
        yield Problem(
            ("model", "shift_attn"),
            f"shift_attn trains on long sequences with sparse attention; stage {method.stage} generates with the "
            "policy it trains, which would then see a different attention: remove shift_attn.",
        )
    if model.use_unsloth_gc and not model.use_unsloth:
        yield Problem(
            ("model", "use_unsloth_gc"),
            "use_unsloth_gc is Unsloth's gradient checkpointing of the model Unsloth loads: set model.use_unsloth: true.",
        )
    if not model.use_unsloth:
        return
    if method.finetuning_type != "lora":
        yield Problem(
            ("model", "use_unsloth"),
            f"Unsloth is generated for LoRA and QLoRA (its FastLanguageModel.get_peft_model): set "
            f"method.finetuning_type: lora, not {method.finetuning_type}.",
        )
    if method.stage not in UNSLOTH_STAGES:
        yield Problem(
            ("model", "use_unsloth"),
            f"Unsloth loads causal language models for stages {', '.join(UNSLOTH_STAGES)}, not {method.stage}.",
        )
    if distributed.backend == "fsdp" or (distributed.backend == "deepspeed" and distributed.deepspeed.zero_stage == 3):
        yield Problem(
            ("distributed", "backend"),
            "Unsloth's patched model does not shard: use backend none, ddp or DeepSpeed ZeRO-0/1/2, not "
            f"{'FSDP' if distributed.backend == 'fsdp' else 'ZeRO-3'}.",
        )
    if model.quantization_bit and model.quantization_method != "bnb":
        yield Problem(
            ("model", "quantization_method"), "Unsloth quantizes with bitsandbytes: use quantization_method: bnb."
        )
    if spec.training.chunked_loss:
        yield Problem(
            ("training", "chunked_loss"),
            "chunked_loss and use_unsloth both replace the loss (Unsloth's is fused): choose one.",
        )
    others = [f"model.{n}" for n in ("shift_attn", "enable_liger_kernel", "rope_scaling") if getattr(model, n)]
    others += [f"model.{n}" for n in ("moe_aux_loss_coef",) if getattr(model, n) is not None]
    others += [f"method.{n}" for n in ("use_dora", "loftq_init") if getattr(method, n)]
    if others:
        section, name = others[0].split(".")
        yield Problem(
            (section, name),
            f"{', '.join(others)} is not generated with use_unsloth (Unsloth loads and patches the model itself): "
            "remove it or use_unsloth.",
        )


@rule
def gptq_export(spec):
    export = spec.export
    if export.export_quantization_bit is None:
        for name in ("export_quantization_dataset", "export_quantization_nsamples", "export_quantization_maxlen"):
            if name in export.model_fields_set:
                yield Problem(
                    ("export", name), f"{name} is an option of export_quantization_bit: set it too, or remove {name}."
                )
        return
    if not export.export_quantization_dataset:
        yield Problem(
            ("export", "export_quantization_bit"),
            'GPTQ calibrates on text: set export.export_quantization_dataset to a .json/.jsonl file of {"text": ...} '
            "rows (LLaMA-Factory's c4_demo.jsonl has that shape).",
        )
    if spec.method.stage == "rm":
        yield Problem(
            ("export", "export_quantization_bit"), "GPTQ export quantizes causal language models, not stage rm's."
        )
