"""Tuning methods, optimizers and model options of LLaMA-Factory that transformers/PEFT do not wire up
by themselves: a generated train.py imports only the helpers its spec uses.

Each helper builds on the package that publishes the method (PEFT's LoRA+ and PiSSA, badam, adam-mini,
torch.optim.Muon); what is written here by hand is the glue a recipe needs and no library provides.
"""

from __future__ import annotations

import copy
import logging
import math
import re

from .errors import UserError

log = logging.getLogger("ffc.tuning")


class TuningError(UserError):
    """A tuning option that cannot work with this model or on this machine."""


def require_gpu(option: str) -> None:
    """Options whose kernels exist for CUDA only: stop at start with what to change, not deep in a kernel."""
    import torch

    if not torch.cuda.is_available():
        raise TuningError(
            f"{option} needs a CUDA GPU and this machine has none: run on a GPU machine, or change the option "
            "in the spec and rebuild."
        )


# -- model options --------------------------------------------------------------------------------------


def model_config(path: str, *, rope_scaling=None, max_length=None, moe_aux_loss_coef=None, **load):
    """The model's config with RoPE scaling (LLaMA-Factory's factor: ceil(max_length / context)) and the
    router loss of mixture-of-experts models switched on."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, **load)
    if rope_scaling is not None:
        context = getattr(config, "max_position_embeddings", None)
        if context is None:
            raise TuningError(f"model.rope_scaling: {path} has no max_position_embeddings to scale")
        if max_length <= context:
            raise TuningError(
                f"model.rope_scaling: data.cutoff_len ({max_length}) fits in the model's context ({context}): "
                "remove rope_scaling, or raise cutoff_len beyond the context."
            )
        factor = float(math.ceil(max_length / context))
        params = dict(getattr(config, "rope_parameters", None) or {})
        params.update(rope_type=rope_scaling, factor=factor)
        if rope_scaling in ("yarn", "llama3"):
            params["original_max_position_embeddings"] = context
        if rope_scaling == "llama3":
            params.setdefault("low_freq_factor", 1.0)
            params.setdefault("high_freq_factor", 4.0)
        config.rope_parameters = params
        config.max_position_embeddings = context * int(factor)
        log.info(
            "RoPE %s scaling by %s: context %d -> %d", rope_scaling, factor, context, config.max_position_embeddings
        )
    if moe_aux_loss_coef is not None:
        if not hasattr(config, "router_aux_loss_coef"):
            raise TuningError(
                f"model.moe_aux_loss_coef: {config.model_type} is not a mixture-of-experts model with a router loss: "
                "remove moe_aux_loss_coef."
            )
        config.router_aux_loss_coef = moe_aux_loss_coef
        config.output_router_logits = True
    return config


def upcast_layernorm(model) -> None:
    """Normalisation weights in float32 (LLaMA-Factory's upcast_layernorm): 1-D 'norm' parameters."""
    import torch

    for name, param in model.named_parameters():
        if param.ndim == 1 and "norm" in name:
            param.data = param.data.to(torch.float32)


def upcast_lmhead_output(model) -> None:
    """The output head's logits in float32: a forward hook on the head, as LLaMA-Factory does."""
    import torch

    head = model.get_output_embeddings()
    head.register_forward_hook(lambda module, args, output: output.to(torch.float32))


# -- Unsloth --------------------------------------------------------------------------------------------


def _unsloth():
    """Unsloth's FastLanguageModel, after the checks that turn its import-time failures into one message."""
    require_gpu("model.use_unsloth")
    try:
        from unsloth import FastLanguageModel
    except ImportError as error:
        raise TuningError(
            f"model.use_unsloth: the unsloth package is not importable here ({error}): pip install unsloth, or "
            "remove use_unsloth and rebuild."
        ) from error
    return FastLanguageModel


def load_unsloth(path: str, *, max_seq_length: int, dtype, quantization_bit, gradient_checkpointing, **load):
    """The model as Unsloth loads it (its patched attention, RoPE and MLP kernels; bitsandbytes quantization),
    as LLaMA-Factory's load_unsloth_pretrained_model does; Unsloth's tokenizer fixes are not used (the run's
    tokenizer is already loaded)."""
    model, _ = _unsloth().from_pretrained(
        model_name=path,
        max_seq_length=max_seq_length,
        dtype=dtype,
        load_in_4bit=quantization_bit == 4,
        load_in_8bit=quantization_bit == 8,
        load_in_16bit=quantization_bit is None,
        fix_tokenizer=False,
        use_gradient_checkpointing=gradient_checkpointing,
        **load,
    )
    return model


def unsloth_lora(model, *, max_seq_length: int, gradient_checkpointing, **lora):
    """LoRA through Unsloth's get_peft_model (its fused LoRA kernels and gradient checkpointing)."""
    return _unsloth().get_peft_model(
        model, max_seq_length=max_seq_length, use_gradient_checkpointing=gradient_checkpointing, **lora
    )


# -- LLaMA Pro ------------------------------------------------------------------------------------------


def expand_layers(model, num_new: int) -> list[int]:
    """LLaMA Pro block expansion: after every (layers / num_new) decoder layers, insert a copy of the last
    one whose output projections are zero, so that it starts as the identity; only the new layers train.
    LLaMA-Factory does this offline (scripts/llama_pro.py); here it happens in train.py and the saved
    model has the new layer count. Returns the indices of the new layers."""
    import torch

    layers = model.model.layers
    total = len(layers)
    if num_new <= 0 or total % num_new:
        raise TuningError(
            f"method.use_llama_pro: freeze_trainable_layers ({num_new}) new layers must divide the model's "
            f"{total} layers evenly: choose a divisor of {total}."
        )
    split = total // num_new
    expanded, new_indices = [], []
    for index, layer in enumerate(layers):
        expanded.append(layer)
        if (index + 1) % split == 0:
            new = copy.deepcopy(layer)
            for name, param in new.named_parameters():
                if re.search(r"(o_proj|down_proj)\.weight$", name):
                    torch.nn.init.zeros_(param)
            new_indices.append(len(expanded))
            expanded.append(new)
    model.model.layers = torch.nn.ModuleList(expanded)
    for index, layer in enumerate(model.model.layers):
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = index  # the KV cache indexes layers by position
    config = model.config
    config.num_hidden_layers = len(expanded)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[0]] * len(expanded)
    for param in model.parameters():
        param.requires_grad_(False)
    for index in new_indices:
        for param in model.model.layers[index].parameters():
            param.requires_grad_(True)
            param.data = param.data.float()
    log.info("LLaMA Pro: %d -> %d layers, training %s", total, len(expanded), new_indices)
    return new_indices


# -- LoftQ ----------------------------------------------------------------------------------------------


def loftq(model, source: str, revision: str = "main") -> None:
    """LoftQ for QLoRA: each adapter starts as the low-rank part of its layer's 4-bit quantization error, read
    against the full-precision safetensors (PEFT's replace_lora_weights_loftq, which computes on CUDA only)."""
    import os

    import torch

    if not torch.cuda.is_available():
        raise TuningError(
            "method.loftq_init: PEFT computes the LoftQ initialisation on a CUDA GPU and this machine has none: "
            "run on a GPU machine, or remove loftq_init (the adapter then starts at zero, as in plain QLoRA)."
        )
    from peft import replace_lora_weights_loftq

    if not os.path.isdir(source):
        from huggingface_hub import snapshot_download

        source = snapshot_download(source, revision=revision, allow_patterns=["*.safetensors", "*.json"])
    replace_lora_weights_loftq(model, model_path=source)


# -- PiSSA ----------------------------------------------------------------------------------------------


def save_pissa_init(model, path) -> None:
    """The adapter as initialised, saved as a plain LoRA: PEFT converts the trained PiSSA adapter against it."""
    config = model.peft_config["default"]
    init = config.init_lora_weights
    config.init_lora_weights = True
    model.save_pretrained(str(path))
    config.init_lora_weights = init


def save_pissa_converted(model, init_path, path) -> None:
    """The trained PiSSA adapter as a LoRA on the original (unmodified) base model, PEFT's conversion."""
    model.save_pretrained(str(path), path_initial_model_for_weight_conversion=str(init_path))


# -- optimizers -----------------------------------------------------------------------------------------


def loraplus_optimizer(model, args, lr_ratio: float, lr_embedding: float):
    """LoRA+: PEFT's create_loraplus_optimizer (B matrices at lr x ratio) over AdamW with the run's settings."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(
        model,
        torch.optim.AdamW,
        lr=args.learning_rate,
        loraplus_lr_ratio=lr_ratio,
        loraplus_lr_embedding=lr_embedding,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
    )


def badam_optimizer(model, args, *, start_block, switch_mode: str, switch_interval: int, verbose: int):
    """BAdam (the badam package): AdamW on one decoder layer at a time, switching every few steps."""
    import torch
    from badam import BlockOptimizer

    prefixes = [[f"model.layers.{i}."] for i in range(model.config.num_hidden_layers)]
    base = torch.optim.AdamW(
        [p for p in model.parameters()],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
    )
    return BlockOptimizer(
        base_optimizer=base,
        named_parameters_list=list(model.named_parameters()),
        block_prefix_list=prefixes,
        switch_block_every=switch_interval,
        start_block=start_block,
        switch_mode=switch_mode,
        verbose=verbose,
    )


def adam_mini_optimizer(model, args):
    """Adam-mini (the adam-mini package), told the model's attention shape as its authors ask."""
    from adam_mini import Adam_mini

    config = model.config
    return Adam_mini(
        named_parameters=[(n, p) for n, p in model.named_parameters() if p.requires_grad],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
        model_sharding=False,
        dim=config.hidden_size,
        n_heads=config.num_attention_heads,
        n_kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
        verbose=False,
    )


def muon_optimizer(model, args):
    """torch.optim.Muon for the 2-D weights inside the decoder layers, AdamW for everything else
    (embeddings, head, norms, biases), as the Muon authors and LLaMA-Factory do. Muon's update is scaled to
    AdamW's RMS so that one learning rate serves both."""
    import torch

    matrices, others = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (matrices if param.ndim == 2 and ".layers." in name else others).append(param)
    muon = torch.optim.Muon(
        matrices, lr=args.learning_rate, weight_decay=args.weight_decay, adjust_lr_fn="match_rms_adamw"
    )
    adamw = torch.optim.AdamW(
        others,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
    )
    return combined([muon, adamw])


def combined(optimizers):
    """Several optimizers as the one the Trainer and its scheduler expect: their parameter groups are
    shared (a schedule changes every learning rate); step, zero_grad and state_dict go to each. Written
    here because torch ships Muon for matrices only and the Trainer takes a single optimizer."""
    import torch

    class Combined(torch.optim.Optimizer):
        def __init__(self, parts):
            self.parts = parts
            super().__init__([group for part in parts for group in part.param_groups], {})
            # Optimizer.__init__ copied the groups: share the parts' own, so schedules reach them.
            self.param_groups = [group for part in parts for group in part.param_groups]

        def step(self, closure=None):
            loss = closure() if closure is not None else None
            for part in self.parts:
                part.step()
            return loss

        def zero_grad(self, set_to_none: bool = True):
            for part in self.parts:
                part.zero_grad(set_to_none=set_to_none)

        def state_dict(self):
            return {"parts": [part.state_dict() for part in self.parts]}

        def load_state_dict(self, state_dict):
            for part, state in zip(self.parts, state_dict["parts"]):
                part.load_state_dict(state)

    return Combined(optimizers)
