"""``ffc plan``: per-device training memory from the model's config.json alone (no weights, no torch).

The estimate adds up what a training step keeps on one device:

- weights: every parameter in the load dtype; 4/8-bit quantized linear layers at their packed size
  (NF4: 4 bits + a block scale per 64 weights, ~0.127 bits more with double quantization);
- trainable copies: gradients and AdamW's two moments in the trainable weights' dtype (PEFT keeps
  adapters in fp32); DeepSpeed instead keeps fp32 moments and an fp32 master copy of 16-bit weights;
- activations, after Korthikanti et al. (2022): about 34·s·b·h bytes per layer in 16 bits with a
  fused attention kernel (no s² scores). With gradient checkpointing each layer keeps only its input
  (2·s·b·h) and one layer is recomputed at a time;
- the loss: s·b·V fp32 values four times (logits, log-softmax output and their gradients);
- a fixed allowance for the CUDA context, kernels and allocator slack.

ZeRO-1/2/3 divide optimizer states, gradients and parameters by the number of devices; FSDP counts
as ZeRO-3; offload moves optimizer states (and parameters) to CPU memory. docs/memory-planner.md
compares the estimates with published figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from ffc.schemas.spec import MethodSection

GB = 1024**3
OVERHEAD_GB = 1.0  # CUDA context, cuBLAS/cuDNN workspaces, allocator fragmentation
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


_METHOD_FIELDS = MethodSection.model_fields


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    qkv_bias: bool = False

    @classmethod
    def from_config(cls, config: dict) -> "Shape":
        text = config.get("text_config", config)  # multimodal configs nest the language model
        try:
            heads = text["num_attention_heads"]
            hidden = text["hidden_size"]
            return cls(
                vocab=text["vocab_size"],
                hidden=hidden,
                layers=text["num_hidden_layers"],
                heads=heads,
                kv_heads=text.get("num_key_value_heads") or heads,
                head_dim=text.get("head_dim") or hidden // heads,
                intermediate=text["intermediate_size"],
                tied=bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False))),
                qkv_bias=text.get("model_type", config.get("model_type")) in ("qwen2",)
                or bool(text.get("attention_bias")),
            )
        except KeyError as exc:
            raise ValueError(
                f"config.json lacks {exc.args[0]!r}: ffc plan reads decoder-only transformer configs"
            ) from None

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of one decoder layer's linear layers."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "q_proj": (self.hidden, q), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv), "o_proj": (q, self.hidden),
            "gate_proj": (self.hidden, self.intermediate), "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }  # fmt: skip

    @property
    def layer_linear_params(self) -> int:
        return sum(i * o for i, o in self.linears().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        per_layer = self.layer_linear_params + 2 * self.hidden + bias
        return self.embedding_params + self.layers * per_layer + self.hidden

    def lora_params(self, rank: int, targets: list[str]) -> int:
        chosen = self.linears() if targets == ["all"] else {k: v for k, v in self.linears().items() if k in targets}
        return self.layers * sum(rank * (i + o) for i, o in chosen.values())


@dataclass(frozen=True)
class Setup:
    """The training choices that decide memory."""

    method: str  # full | freeze | lora
    quant_bits: Optional[int]
    dtype: str  # weight dtype: bfloat16 | float16 | float32
    checkpointing: bool
    batch: int
    seq: int
    devices: int = 1
    zero: int = 0  # 0 none/DDP, 1, 2, 3 (FSDP counts as 3)
    offload_optimizer: bool = False
    offload_params: bool = False
    # The spec's own defaults, for setups built without a spec (``ffc plan --config`` alone).
    lora_rank: int = _METHOD_FIELDS["lora_rank"].default
    lora_targets: tuple = tuple(_METHOD_FIELDS["lora_target"].default_factory())
    freeze_layers: int = _METHOD_FIELDS["freeze_trainable_layers"].default
    deepspeed: bool = False

    def label(self) -> str:
        method = (
            f"QLoRA {self.quant_bits}-bit"
            if self.quant_bits
            else {"full": "full", "freeze": "freeze", "lora": "LoRA", "oft": "OFT"}[self.method]
        )
        parts = [
            method,
            self.dtype,
            f"batch {self.batch} x {self.seq}",
            "checkpointing" if self.checkpointing else "no checkpointing",
        ]
        if self.zero:
            parts.append(f"ZeRO-{self.zero} on {self.devices}" + (" + offload" if self.offload_optimizer else ""))
        elif self.devices > 1:
            parts.append(f"DDP on {self.devices}")
        return ", ".join(parts)


@dataclass
class Estimate:
    setup: Setup
    rows: dict[str, float]  # component -> GB per device
    cpu_gb: float  # offloaded to host memory, per machine share

    @property
    def total(self) -> float:
        return sum(self.rows.values())


def estimate(shape: Shape, setup: Setup) -> Estimate:
    width = BYTES[setup.dtype]
    linear = shape.layers * shape.layer_linear_params
    other = shape.params - linear
    if setup.quant_bits == 4:
        weights = linear * (0.5 + 4 / 64 / 8 + 0.127 / 8) + other * width
    elif setup.quant_bits == 8:
        weights = linear * (1 + 4 / 4096) + other * width
    else:
        weights = shape.params * width
    if setup.method in ("lora", "oft"):  # OFT: setup_from_spec gives the LoRA rank of as many parameters
        trainable = shape.lora_params(setup.lora_rank, list(setup.lora_targets))
        trainable_width = 4  # PEFT keeps adapters in fp32
    elif setup.method == "freeze":
        trainable = min(setup.freeze_layers, shape.layers) * (shape.layer_linear_params + 2 * shape.hidden)
        trainable_width = 4
    else:
        trainable, trainable_width = shape.params, width
    adapter_weights = trainable * trainable_width if setup.method in ("lora", "oft") else 0
    gradients = trainable * trainable_width
    optimizer = trainable * 2 * trainable_width  # torch AdamW: two moments in the parameter's dtype
    if setup.deepspeed and setup.method == "full" and width == 2:
        optimizer = trainable * 12  # DeepSpeed: fp32 moments and an fp32 master copy of 16-bit weights
    n = max(setup.devices, 1)
    if setup.zero >= 1:
        optimizer /= n
    if setup.zero >= 2:
        gradients /= n
    if setup.zero >= 3:
        weights /= n
        adapter_weights /= n
    cpu = 0.0
    if setup.offload_optimizer:
        cpu += optimizer
        optimizer = 0.0
    if setup.offload_params and setup.zero == 3:
        cpu += weights
        weights = 0.0
    tokens = setup.batch * setup.seq
    per_layer_full = 34 * tokens * shape.hidden  # bytes in 16-bit with fused attention
    act_width = width / 2  # the formula assumes 16-bit activations
    if setup.checkpointing:
        activations = (shape.layers * 2 * tokens * shape.hidden + per_layer_full) * act_width
    else:
        activations = shape.layers * per_layer_full * act_width
    logits = 4 * tokens * shape.vocab * 4  # fp32 logits, log-softmax output and both gradients
    rows = {
        "weights": (weights + adapter_weights) / GB,
        "gradients": gradients / GB,
        "optimizer states": optimizer / GB,
        "activations": activations / GB,
        "logits (loss)": logits / GB,
        "CUDA and allocator": OVERHEAD_GB,
    }
    return Estimate(setup, rows, cpu / GB)


def setup_from_spec(spec) -> Setup:
    """The planner's view of a resolved spec (an ``ffc.schemas.Spec``)."""
    method, training, dist = spec.method, spec.training, spec.distributed
    lora = method.finetuning_type == "lora"
    dtype = "bfloat16" if training.bf16 else ("float16" if training.fp16 and lora else "float32")
    zero = {"deepspeed": dist.deepspeed.zero_stage, "fsdp": 3}.get(dist.backend, 0)
    deepspeed_offload = dist.backend == "deepspeed" and dist.deepspeed.offload_optimizer
    fsdp_offload = dist.backend == "fsdp" and dist.fsdp.offload_params
    return Setup(
        method=method.finetuning_type,
        quant_bits=spec.model.quantization_bit,
        dtype=dtype,
        checkpointing=training.gradient_checkpointing,
        batch=training.per_device_train_batch_size,
        seq=spec.data.cutoff_len,
        devices=dist.num_processes or dist.num_machines,  # unset: every GPU; assume one per machine here
        zero=zero,
        offload_optimizer=bool(deepspeed_offload or fsdp_offload),
        offload_params=bool((dist.backend == "deepspeed" and dist.deepspeed.offload_param) or fsdp_offload),
        # An OFT block of width b on a d x d layer trains about d*b/2 values, LoRA of rank r 2*d*r: r = b/4.
        lora_rank=max(1, method.oft_block_size // 4) if method.finetuning_type == "oft" else method.lora_rank,
        lora_targets=tuple(method.oft_target if method.finetuning_type == "oft" else method.lora_target),
        freeze_layers=abs(method.freeze_trainable_layers),
        deepspeed=dist.backend == "deepspeed",
    )


def alternatives(shape: Shape, base: Setup, budget_gb: float, limit: int = 6) -> list[Estimate]:
    """Nearby setups that fit ``budget_gb``, fewest changes first."""
    options = []
    for method, bits in (("lora", None), ("lora", 8), ("lora", 4), ("full", None), ("freeze", None)):
        for checkpointing in (True, False):
            for zero, offload in ((0, False), (2, False), (3, False), (3, True)):
                if zero and base.devices == 1 and not offload:
                    continue
                if bits and zero == 3:
                    continue  # ZeRO-3 cannot shard bitsandbytes weights
                for batch in sorted({base.batch, 1}):
                    setup = replace(
                        base, method=method, quant_bits=bits, checkpointing=checkpointing, zero=zero,
                        offload_optimizer=offload, offload_params=offload, batch=batch,
                        dtype="bfloat16" if base.dtype == "float32" and method != "full" else base.dtype,
                        deepspeed=bool(zero),
                    )  # fmt: skip
                    result = estimate(shape, setup)
                    if result.total <= budget_gb:
                        changes = sum(
                            getattr(setup, f) != getattr(base, f)
                            for f in ("method", "quant_bits", "checkpointing", "zero", "batch", "offload_optimizer")
                        )
                        options.append((changes, result.total, result))
    options.sort(key=lambda item: (item[0], item[1]))
    seen, out = set(), []
    for _, _, result in options:
        if result.setup.label() not in seen and result.setup != base:
            seen.add(result.setup.label())
            out.append(result)
    return out[:limit]


def table(result: Estimate) -> str:
    lines = ["| component | GB per device |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in result.rows.items()]
    lines.append(f"| **total** | **{result.total:.2f}** |")
    if result.cpu_gb:
        lines.append(f"| offloaded to CPU memory | {result.cpu_gb:.2f} |")
    return "\n".join(lines)


def load_config(model: str, base_dir: Path, config: Optional[str] = None) -> dict:
    path = Path(config) if config else base_dir / model / "config.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: pass --config with the model's config.json (download just that file from the hub)"
        )
    return json.loads(path.read_text())
