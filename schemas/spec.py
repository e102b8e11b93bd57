"""The ffc spec: one YAML file, grouped by concern.

Key names follow LLaMA-Factory and Hugging Face ``TrainingArguments`` where those
exist, so that what users know carries over. Every field has a description: it is
the help text of the JSON Schema, the docs and (later) the web UI.

Cross-field rules live in ``rules.py``; this module holds types, ranges and defaults.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .methods import BackendName, MethodName
from .stages import StageName

SPEC_VERSION = 1


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors, values are not coerced silently, and a
    validated spec is immutable (resolution makes a new one, see ``ffc.compiler.resolve``)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


def derived(description: str, **kwargs):
    """An optional field whose default ``ffc.compiler.resolve`` computes from other fields. The
    resolved spec always has a value for it (tests/test_resolve.py checks every such field)."""
    return Field(None, description=description, json_schema_extra={"derived": True}, **kwargs)


def _split_names(value):
    # LLaMA-Factory writes lists of names as "a,b"; accept that as well as YAML lists.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


FLASH_ATTN = {"disabled": "eager", "fa2": "flash_attention_2", "fa3": "flash_attention_3"}


class ModelSection(Section):
    model_name_or_path: str = Field(
        description="Hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct) or local directory of the base model.",
        min_length=1,
    )
    tokenizer_name_or_path: Optional[str] = Field(
        None, description="Load the tokenizer from here instead of model_name_or_path."
    )
    adapter_name_or_path: list[str] = Field(
        default_factory=list,
        description="Existing PEFT adapters (directories or hub ids; a list, or 'a,b'), as LLaMA-Factory reads them: "
        "training merges all but the last into the base and trains the last further (with "
        "method.create_new_adapter, merges all and trains a new one); chat, serve, eval and export merge them all.",
    )
    _split_adapters = field_validator("adapter_name_or_path", mode="before")(_split_names)
    revision: str = Field("main", description="Branch, tag or commit of a hub model.")
    use_modelscope_hub: bool = Field(
        False,
        description="Download model_name_or_path from ModelScope (modelscope.cn) instead of the Hugging Face Hub, "
        "as LLaMA-Factory's USE_MODELSCOPE_HUB does (needs the modelscope package where the run starts).",
    )
    use_openmind_hub: bool = Field(
        False,
        description="Download model_name_or_path from Modelers (modelers.cn) instead of the Hugging Face Hub, as "
        "LLaMA-Factory's USE_OPENMIND_HUB does (needs the openmind package where the run starts).",
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the hub repository to run. Only for models you trust."
    )
    cache_dir: Optional[str] = Field(None, description="Where hub downloads are cached (default: HF_HOME).")
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2", "flash_attention_3"] = Field(
        "auto",
        description="Attention kernel. auto: flash_attention_2 when installed on a GPU, else sdpa. LLaMA-Factory's "
        "flash_attn values are accepted too (disabled, sdpa, fa2, fa3).",
    )
    quantization_bit: Optional[Literal[4, 8]] = Field(
        None, description="Load the base model in 4 or 8 bits with bitsandbytes (QLoRA). Needs finetuning_type: lora."
    )
    quantization_method: Literal["bnb", "torchao", "hqq", "eetq", "gptq", "awq", "aqlm"] = Field(
        "bnb",
        description="How the base is quantized for QLoRA: bnb (bitsandbytes), torchao, hqq or eetq (8-bit) when "
        "loading, with quantization_bit; gptq, awq or aqlm for a model stored quantized (no quantization_bit).",
    )
    quantization_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quantization: bool = Field(True, description="Quantize the 4-bit quantization constants too.")
    # Model options (issue 15): LLaMA-Factory's names
    rope_scaling: Optional[Literal["linear", "dynamic", "yarn", "llama3"]] = Field(
        None,
        description="Stretch the rotary position embeddings to train on data.cutoff_len tokens beyond the model's "
        "context (factor: cutoff_len / max_position_embeddings, rounded up).",
    )
    upcast_layernorm: bool = Field(False, description="Keep the normalisation layers' weights in float32.")
    upcast_lmhead_output: bool = Field(False, description="Compute the output head's logits in float32.")
    moe_aux_loss_coef: Optional[float] = Field(
        None, ge=0, description="Mixture-of-experts models: weight of the router's load-balancing loss (turns it on)."
    )
    shift_attn: bool = Field(
        False,
        description="LongLoRA's shifted sparse attention while training: each token attends within a quarter of the "
        "sequence, half of the heads shifted by half a group (models using transformers' attention interface).",
    )
    mixture_of_depths: Optional[Literal["convert", "load"]] = Field(
        None,
        description="Mixture-of-Depths (the mixture-of-depth package): refused, its latest release does not import "
        "with transformers 5 (see docs/methods.md).",
    )
    use_unsloth: bool = Field(
        False, description="Unsloth's patched model and LoRA (unsloth package; CUDA GPU, lora or qlora only)."
    )
    use_unsloth_gc: bool = Field(
        False, description="Unsloth's gradient checkpointing (offloads activations to CPU memory; CUDA GPU)."
    )

    @field_validator("attn_implementation", mode="before")
    @classmethod
    def _flash_attn(cls, value):
        # LLaMA-Factory's flash_attn spellings name the same kernels: one option, both vocabularies.
        return FLASH_ATTN.get(value, value) if isinstance(value, str) else value

    # Vision-language models (runs whose datasets have an images column)
    image_max_pixels: int = Field(
        768 * 768, ge=1, description="Images larger than this many pixels are scaled down (fewer vision tokens)."
    )
    image_min_pixels: int = Field(32 * 32, ge=1, description="Images smaller than this many pixels are scaled up.")
    video_max_pixels: int = Field(
        256 * 256, ge=1, description="Video frames larger than this many pixels are scaled down (fewer vision tokens)."
    )
    video_min_pixels: int = Field(
        16 * 16, ge=1, description="Video frames smaller than this many pixels are scaled up."
    )
    video_fps: float = Field(
        2.0,
        gt=0,
        description="Frames sampled per second of video (a list of frame images counts as a clip at this rate).",
    )
    video_maxlen: int = Field(128, ge=1, description="At most this many frames are sampled per video.")
    enable_liger_kernel: bool = Field(
        False,
        description="pt/sft: Liger's Triton kernels (fused linear cross-entropy: no full-vocabulary logits; RMSNorm, "
        "RoPE, SwiGLU). Needs a CUDA GPU and liger-kernel; replaces training.chunked_loss.",
    )


class MethodSection(Section):
    stage: StageName = Field(
        "sft",
        description=(
            "pt: language modelling on raw text. sft: supervised fine-tuning. rm: reward model. "
            "dpo, kto, orpo, simpo: preference optimisation. ppo, grpo: reinforcement learning from a reward. "
            "none: no training, a run directory to chat with, serve, evaluate and export the model as it is."
        ),
    )
    finetuning_type: MethodName = Field(
        "lora",
        description="lora: train low-rank adapters. oft: train orthogonal adapters. full: train every weight. "
        "freeze: train only some layers.",
    )
    # LoRA (finetuning_type: lora)
    lora_rank: int = Field(8, ge=1, le=4096, description="Rank of the LoRA matrices.")
    lora_alpha: Optional[int] = derived("LoRA scaling numerator. Default: 2 x lora_rank.", ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    lora_target: list[str] = Field(
        default_factory=lambda: ["all"],
        description="Modules that get adapters: 'all' (every linear layer except the output head) or names such as q_proj,v_proj.",
    )
    additional_target: list[str] = Field(
        default_factory=list,
        description="Modules trained in full and saved with the adapter (e.g. embed_tokens,lm_head).",
    )
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(rank).")
    loraplus_lr_ratio: Optional[float] = Field(
        None, gt=0, description="LoRA+: the B matrices learn this many times faster than the A matrices (e.g. 16)."
    )
    loraplus_lr_embedding: float = Field(1e-6, gt=0, description="LoRA+: learning rate of embedding-layer adapters.")
    pissa_init: bool = Field(False, description="PiSSA: start the adapter from the principal singular vectors.")
    pissa_iter: int = Field(
        16, ge=-1, description="PiSSA: fast-SVD iterations (-1: an exact SVD, slower on large layers)."
    )
    pissa_convert: bool = Field(
        False, description="PiSSA: also save the adapter converted to a plain LoRA on the original base model."
    )
    create_new_adapter: bool = Field(
        False, description="With model.adapter_name_or_path: merge that adapter and train a new one on top."
    )
    loftq_init: bool = Field(
        False,
        description="QLoRA (quantization_bit: 4): LoftQ starts the adapter from the low-rank part of the quantization "
        "error (PEFT; needs a CUDA GPU).",
    )
    # OFT (finetuning_type: oft): orthogonal fine-tuning, PEFT's OFTConfig
    oft_rank: int = Field(0, ge=0, description="OFT: number of orthogonal blocks per layer (0: set by oft_block_size).")
    oft_block_size: int = Field(
        32,
        ge=0,
        description="OFT: size of each orthogonal block (0: set by oft_rank); divides the layers' input width.",
    )
    oft_target: list[str] = Field(
        default_factory=lambda: ["all"], description="OFT: modules adapted, 'all' (every linear layer) or names."
    )
    _split_oft = field_validator("oft_target", mode="before")(_split_names)
    # Freeze (finetuning_type: freeze)
    freeze_trainable_layers: int = Field(
        2,
        description="Number of decoder layers trained: positive counts from the last layer, negative from the first.",
    )
    freeze_trainable_modules: list[str] = Field(
        default_factory=lambda: ["all"],
        description="Modules inside the trainable layers that are trained: 'all' or names such as mlp,self_attn.",
    )
    freeze_extra_modules: list[str] = Field(
        default_factory=list, description="Modules outside the decoder layers also trained (e.g. embed_tokens,norm)."
    )
    use_llama_pro: bool = Field(
        False,
        description="LLaMA Pro: add freeze_trainable_layers new decoder layers (copies initialised to the identity), "
        "spread evenly, and train only those.",
    )
    # Vision-language models: which parts train (LoRA adapts the language model's linear layers only)
    freeze_vision_tower: bool = Field(True, description="Keep the vision encoder's weights fixed (full/freeze tuning).")
    freeze_multi_modal_projector: bool = Field(
        True, description="Keep the projector from vision features to the language model fixed (full/freeze tuning)."
    )
    freeze_language_model: bool = Field(False, description="Keep the language model fixed (full/freeze tuning).")
    train_mm_proj_only: bool = Field(
        False, description="Train only the multimodal projector: vision tower and language model fixed (full tuning)."
    )

    # Preference optimisation (dpo, kto, orpo, simpo)
    pref_beta: float = Field(
        0.1, gt=0, description="Strength of the preference loss (beta of DPO/KTO/SimPO, lambda of ORPO)."
    )
    pref_loss: Literal["sigmoid", "hinge", "ipo"] = Field(
        "sigmoid", description="DPO loss: sigmoid (the paper's), hinge (SLiC) or ipo."
    )
    pref_ftx: float = Field(0.0, ge=0, description="Weight of an added SFT loss on the chosen responses (dpo).")
    dpo_label_smoothing: float = Field(
        0.0, ge=0, le=0.5, description="Robust DPO: assumed probability that a preference label is flipped."
    )
    simpo_gamma: float = Field(0.5, ge=0, description="Target reward margin of SimPO.")
    kto_chosen_weight: float = Field(1.0, gt=0, description="KTO weight of desirable samples.")
    kto_rejected_weight: float = Field(1.0, gt=0, description="KTO weight of undesirable samples.")
    ref_model: Optional[str] = Field(
        None,
        description="Reference model of dpo/kto/ppo/grpo. Default: the starting model (with LoRA, the base with the adapter disabled).",
    )
    # Online RL (ppo, grpo)
    reward_model: Optional[str] = Field(
        None,
        description="Reward model for ppo/grpo: an rm run's output directory, or any sequence-classification model.",
    )
    reward_funcs: Optional[str] = Field(
        None,
        description="A Python file whose functions score responses (ppo/grpo); it is copied into the run directory.",
    )
    max_new_tokens: int = Field(64, ge=1, description="Length limit of the responses generated by ppo/grpo.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of ppo/grpo generation.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of ppo/grpo generation.")
    ppo_epochs: int = Field(4, ge=1, description="Optimisation passes over each batch of rollouts.")
    ppo_buffer_size: int = Field(1, ge=1, description="Batches of rollouts collected before each optimisation phase.")
    ppo_target: float = Field(6.0, gt=0, description="Target KL of the adaptive KL controller.")
    ppo_init_kl_coef: float = Field(0.2, ge=0, description="Starting KL penalty coefficient.")
    ppo_adaptive_kl: bool = Field(True, description="Adapt the KL coefficient towards ppo_target (else keep it fixed).")
    ppo_cliprange: float = Field(0.2, gt=0, description="Clipping of the policy ratio.")
    ppo_cliprange_value: float = Field(0.2, gt=0, description="Clipping of the value update.")
    ppo_vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss.")
    ppo_gamma: float = Field(1.0, gt=0, le=1, description="Discount of generalised advantage estimation.")
    ppo_lam: float = Field(0.95, ge=0, le=1, description="Lambda of generalised advantage estimation.")
    ppo_score_norm: bool = Field(False, description="Normalise scores with running mean and standard deviation.")
    ppo_whiten_rewards: bool = Field(False, description="Whiten the per-token rewards of each batch.")
    num_generations: int = Field(4, ge=2, description="GRPO: responses sampled per prompt (the group).")

    _split = field_validator(
        "lora_target", "additional_target", "freeze_trainable_modules", "freeze_extra_modules", mode="before"
    )(_split_names)

    @field_validator("freeze_trainable_layers")
    @classmethod
    def _nonzero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be 0: use a positive count (last layers) or a negative one (first layers)")
        return value


class DataSection(Section):
    dataset: list[str] = Field(
        default_factory=list,
        description="Names of training datasets in dataset_info.json (a list, or 'a,b'); every stage but none needs one.",
    )
    eval_dataset: list[str] = Field(default_factory=list, description="Names of evaluation datasets.")
    dataset_dir: str = Field(
        "data", description="Folder with dataset_info.json and the data files, relative to the spec file."
    )
    template: Optional[str] = Field(
        None,
        description="Chat template for sft (e.g. qwen, llama3, chatml), 'tokenizer' to use the tokenizer's own, or "
        "'auto' to pick the family from the model's config.json, name and tokenizer chat template (the build "
        "prints its choice).",
    )
    cutoff_len: int = Field(2048, ge=8, description="Maximum tokens per training sample (per packed row with packing).")
    train_on_prompt: bool = Field(False, description="Train on prompt tokens too, not only on the assistant's.")
    mask_history: bool = Field(False, description="Train only on the last assistant turn of each conversation.")
    packing: Optional[bool] = derived(
        "Pack several samples into each row, isolated from each other. Default: on for pt, off for sft."
    )
    padding_free: Optional[bool] = derived(
        "Concatenate the samples of each batch into one row, position ids restarting per sample, instead of "
        "padding them to the longest: the same samples and loss, no compute on padding. Without FlashAttention "
        "(SDPA/eager mask the whole row) a batch goes into one row only when that costs no more attention than "
        "padding it. Default: on for pt and sft (text; runs with images always pad: their 3-D rotary positions "
        "are per sample)."
    )
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = Field(
        "concat",
        description="How several datasets mix: concatenated, or interleaved until the first (under) or last (over) runs out.",
    )
    interleave_probs: list[float] = Field(
        default_factory=list, description="Sampling probability of each dataset when interleaving."
    )
    val_size: float = Field(
        0.0, ge=0.0, description="Held out for evaluation: a fraction (< 1) or a number of samples (>= 1)."
    )
    max_samples: Optional[int] = Field(None, ge=1, description="Use at most this many samples of each dataset.")
    streaming: bool = Field(False, description="Stream the data instead of loading it all (needs training.max_steps).")
    buffer_size: int = Field(16384, ge=1, description="Shuffle buffer when streaming.")
    preprocessing_num_workers: Optional[int] = Field(
        None,
        ge=1,
        description="Processes for tokenisation and packing (default: one per CPU core, at most 8, for datasets "
        "of 20,000 rows or more; one for smaller ones).",
    )
    preprocessing_batch_size: int = Field(1000, ge=1, description="Rows per tokenisation batch.")
    default_system: Optional[str] = Field(
        None, description="System prompt used when a sample has none (replaces the template's default)."
    )
    enable_thinking: Optional[bool] = Field(
        True,
        description="Reasoning templates (qwen3), as LLaMA-Factory reads it: true trains each response's reasoning "
        "and, where a response has none, an empty <think> block; false drops all reasoning (the empty block goes "
        "to the prompt, untrained; generation prompts close the block); null lets the data decide (reasoning "
        "present is trained, an empty block is prompt).",
    )
    reasoning_turns: Literal["official", "all"] = Field(
        "official",
        description="Reasoning templates: which responses keep their reasoning. official: as the model's own "
        "template renders it (qwen3: only those after the last user message; earlier turns drop it), so training "
        "text matches inference; all: every response, as LLaMA-Factory trains (and the saved template renders).",
    )
    on_bad_row: Literal["error", "skip"] = Field(
        "error", description="A row that cannot be converted stops the run (error) or is skipped and counted (skip)."
    )
    fetch_image_urls: bool = Field(
        False,
        description="Datasets with images: download images given as http(s) URLs when the data loads. Off by "
        "default: training would then depend on those servers staying up and unchanged, and a dataset could make "
        "the machine fetch any address; a URL image is a row error (say so with on_bad_row). Paths, image bytes "
        "(Parquet) and data: URLs always work.",
    )
    seed: Optional[int] = derived("Shuffle seed of the data (default: training.seed).")

    _split = field_validator("dataset", "eval_dataset", mode="before")(_split_names)


SchedulerName = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "warmup_stable_decay",
]


class TrainingSection(Section):
    output_dir: str = Field(
        "output", description="Where checkpoints and the final model go, relative to the run directory."
    )
    num_train_epochs: float = Field(
        3.0, gt=0, description="Passes over the training data (ignored when max_steps > 0)."
    )
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use num_train_epochs).")
    per_device_train_batch_size: int = Field(1, ge=1, description="Samples per device per forward pass.")
    per_device_eval_batch_size: int = Field(1, ge=1, description="Samples per device per evaluation pass.")
    gradient_accumulation_steps: int = Field(8, ge=1, description="Forward passes per optimizer step.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    lr_scheduler_type: SchedulerName = Field("cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of steps spent warming up.")
    warmup_steps: int = Field(0, ge=0, description="Warm-up steps (overrides warmup_ratio when > 0).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Gradient clipping norm (0: off).")
    optim: str = Field("adamw_torch", description="Optimizer name as in transformers (adamw_torch, adamw_8bit, ...).")
    bf16: bool = Field(False, description="Train in bfloat16 mixed precision.")
    fp16: bool = Field(False, description="Train in float16 mixed precision.")
    gradient_checkpointing: bool = Field(
        True, description="Recompute activations in the backward pass: less memory, about 30% more compute."
    )
    logging_steps: int = Field(10, ge=1, description="Log every this many optimizer steps.")
    save_strategy: Literal["no", "steps", "epoch"] = Field("steps", description="When to save checkpoints.")
    save_steps: int = Field(500, ge=1, description="Save a checkpoint every this many steps.")
    save_total_limit: Optional[int] = Field(None, ge=1, description="Keep at most this many checkpoints.")
    eval_strategy: Optional[Literal["no", "steps", "epoch"]] = derived(
        "When to evaluate. Default: steps when there is evaluation data, else no."
    )
    eval_steps: Optional[int] = Field(
        None, ge=1, description="Evaluate every this many steps (default: save_steps; unused without evaluation)."
    )
    seed: int = Field(42, description="Random seed of model initialisation, dropout and data order.")
    full_determinism: bool = Field(
        False,
        description="Identical GPU runs for the same seed: deterministic algorithms, cuDNN without autotuning and "
        "a fixed cuBLAS workspace (transformers' enable_full_determinism). Slower; an operation with no "
        "deterministic version then stops training with an error.",
    )
    resume_from_checkpoint: Optional[str] = Field(
        None, description="A checkpoint directory to resume from, or 'last' for the newest in output_dir."
    )
    dataloader_num_workers: int = Field(0, ge=0, description="Data loader worker processes.")
    chunked_loss: Optional[bool] = derived(
        "Compute the loss and log-probabilities from the final hidden states a chunk of positions at a time, "
        "never the full-vocabulary logits (the largest tensor of fine-tuning with 128k+ vocabularies). Default: "
        "on for pt, sft, orpo, simpo and ppo without enable_liger_kernel or use_unsloth (whose fused losses do "
        "the same on GPUs) and without FSDP or DeepSpeed ZeRO-3 (whose sharded output head it would call outside "
        "the model's forward); always on for dpo, kto and grpo (TRL's fused LM head); not for rm."
    )
    include_num_input_tokens_seen: bool = Field(
        False, description="Count the non-padding tokens trained on (logged as num_input_tokens_seen)."
    )
    use_reentrant_gc: bool = Field(
        False, description="Reentrant gradient checkpointing (torch's older variant; LLaMA-Factory's default)."
    )
    neftune_noise_alpha: Optional[float] = Field(
        None, gt=0, description="NEFTune: uniform noise of this scale on the input embeddings while training (e.g. 5)."
    )
    # Memory-saving optimizers (issue 15): LLaMA-Factory's names; each replaces optim
    use_galore: bool = Field(False, description="GaLore: project gradients to low rank (full/freeze tuning).")
    galore_target: list[str] = Field(
        default_factory=lambda: ["all"], description="GaLore: modules projected, 'all' (every linear layer) or names."
    )
    galore_rank: int = Field(16, ge=1, description="GaLore: rank of the gradient projection.")
    galore_update_interval: int = Field(200, ge=1, description="GaLore: steps between projection updates.")
    galore_scale: float = Field(2.0, gt=0, description="GaLore: scale of the projected update.")
    galore_proj_type: Literal["std", "reverse_std", "right", "left", "full"] = Field(
        "std", description="GaLore: projection side."
    )
    galore_layerwise: bool = Field(False, description="GaLore: update layer by layer (less memory; no accumulation).")
    use_apollo: bool = Field(
        False, description="APOLLO: SGD-like memory with AdamW-level quality (full/freeze tuning)."
    )
    apollo_target: list[str] = Field(
        default_factory=lambda: ["all"], description="APOLLO: modules it applies to, 'all' or names."
    )
    apollo_rank: int = Field(16, ge=1, description="APOLLO: rank of the auxiliary space.")
    apollo_update_interval: int = Field(200, ge=1, description="APOLLO: steps between projection updates.")
    apollo_scale: float = Field(32.0, gt=0, description="APOLLO: scale of the update.")
    apollo_proj: Literal["svd", "random"] = Field("random", description="APOLLO: projection kind.")
    apollo_proj_type: Literal["std", "right", "left"] = Field("std", description="APOLLO: projection side.")
    apollo_scale_type: Literal["channel", "tensor"] = Field("channel", description="APOLLO: scaling granularity.")
    apollo_layerwise: bool = Field(False, description="APOLLO: update layer by layer (less memory; no accumulation).")
    use_badam: bool = Field(False, description="BAdam: Adam on one block of layers at a time (full tuning).")
    badam_mode: Literal["layer"] = Field("layer", description="BAdam: blocks are decoder layers.")
    badam_start_block: Optional[int] = Field(
        None, ge=0, description="BAdam: first block trained (default: by switch mode)."
    )
    badam_switch_mode: Literal["ascending", "descending", "random", "fixed"] = Field(
        "ascending", description="BAdam: order in which blocks take turns."
    )
    badam_switch_interval: int = Field(50, ge=1, description="BAdam: optimizer steps before the next block.")
    badam_verbose: Literal[0, 1, 2] = Field(0, description="BAdam: 1 prints block switches, 2 also trainable params.")
    use_adam_mini: bool = Field(
        False, description="Adam-mini: one learning rate per parameter block (full/freeze tuning)."
    )
    use_muon: bool = Field(
        False, description="Muon (torch.optim.Muon) for 2-D weight matrices, AdamW for the rest (full/freeze tuning)."
    )

    fp8: bool = Field(
        False,
        description="FP8 mixed precision through accelerate (torchao or Transformer Engine; a CUDA GPU with FP8, "
        "e.g. Hopper). Replaces bf16/fp16.",
    )
    fp8_backend: Literal["auto", "torchao", "te"] = Field(
        "auto", description="FP8 implementation: torchao, Transformer Engine (te), or auto (torchao when installed)."
    )

    callbacks: list[str] = Field(
        default_factory=list,
        description="Your own transformers TrainerCallback classes, as 'module:Class' (a module train.py can import: "
        "installed, or a .py file in the run directory); each is created without arguments and added to the "
        "Trainer (not stage ppo, whose loop is ffc's own).",
    )

    _split = field_validator("galore_target", "apollo_target", mode="before")(_split_names)

    @field_validator("callbacks")
    @classmethod
    def _import_strings(cls, value: list[str]) -> list[str]:
        import keyword
        import re

        for item in value:
            module, _, name = item.partition(":")
            parts = [*module.split("."), name]
            if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) and not keyword.iskeyword(p) for p in parts):
                raise ValueError(f"{item!r} is not 'module:Class' (e.g. my_callbacks:StopOnPlateau)")
        return value


ReportTarget = Literal["none", "tensorboard", "wandb", "mlflow", "swanlab", "trackio"]


class LoggingSection(Section):
    report_to: list[ReportTarget] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Experiment trackers. A JSON-lines trainer log (trainer_log.jsonl) is always written.",
    )
    plot_loss: bool = Field(True, description="Write training_loss.png (and eval_loss.png) at the end of training.")
    run_name: Optional[str] = derived("Name shown in trackers (default: the spec's name).")
    offline: bool = Field(
        False,
        description="Trackers keep their runs on this machine, under output_dir: W&B offline (upload later with "
        "`wandb sync`), MLflow's file store (mlruns/), SwanLab offline (swanlog/), Trackio's database (trackio/). "
        "Environment variables already set (WANDB_MODE, MLFLOW_TRACKING_URI, ...) win.",
    )

    _split = field_validator("report_to", mode="before")(_split_names)


class DeepSpeedSection(Section):
    zero_stage: Literal[0, 1, 2, 3] = Field(
        2, description="ZeRO stage: 0 off, 1 optimizer, 2 +gradients, 3 +parameters."
    )
    offload_optimizer: bool = Field(False, description="Keep optimizer state in CPU memory.")
    offload_param: bool = Field(False, description="Keep parameters in CPU memory (ZeRO-3 only).")
    config_file: Optional[str] = Field(
        None,
        description="A DeepSpeed JSON file of your own, used as the run's ds_config.json instead of the one ffc "
        "writes (relative to the spec file); zero_stage and the offload options are then read from it.",
    )


class FSDPSection(Section):
    offload_params: bool = Field(False, description="Keep parameters (and optimizer states) in CPU memory.")
    cpu_ram_efficient_loading: bool = Field(
        True, description="Load the weights on rank 0 only and broadcast them (saves host memory on big models)."
    )


_SLURM_WORD = r"^[A-Za-z0-9_.,:@%+=-]+$"  # one #SBATCH argument: no spaces, quotes or newlines


class SlurmSection(Section):
    partition: Optional[str] = Field(None, pattern=_SLURM_WORD, description="SLURM partition (queue).")
    account: Optional[str] = Field(None, pattern=_SLURM_WORD, description="SLURM account to charge.")
    time: str = Field("24:00:00", pattern=r"^[0-9:-]+$", description="Wall-clock limit, e.g. 2-00:00:00.")
    gpus_per_node: Optional[int] = derived("GPUs per node (default: processes per machine).", ge=1)
    cpus_per_task: int = Field(16, ge=1, description="CPU cores per node for data loading.")


class DistributedSection(Section):
    backend: BackendName = Field(
        "none", description="none: one process. ddp: data parallel. deepspeed: ZeRO. fsdp: fully sharded data parallel."
    )
    num_processes: Optional[int] = Field(
        None,
        ge=1,
        description="Processes in total (usually one per GPU, over all machines). Unset: one with backend none, "
        "else one per GPU visible on each machine when launch.sh starts (as LLaMA-Factory does).",
    )
    num_machines: int = Field(1, ge=1, description="Machines (nodes).")
    main_process_ip: Optional[str] = Field(None, description="Address of the rank-0 machine (multi-node).")
    main_process_port: int = Field(29500, ge=1, le=65535, description="Port of the rank-0 machine.")
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection, description="DeepSpeed options.")
    fsdp: FSDPSection = Field(default_factory=FSDPSection, description="FSDP options.")
    launcher: Literal["accelerate", "torchrun"] = Field(
        "accelerate", description="What launch.sh starts the processes with."
    )
    slurm: Optional[SlurmSection] = Field(None, description="Write slurm.sbatch for a SLURM cluster.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables launch.sh exports (e.g. NCCL_SOCKET_IFNAME: eth0)."
    )
    host_memory_gb: Optional[float] = Field(
        None,
        gt=0,
        description="CPU memory per machine, in GB: offloading is checked against it when config.json is at hand.",
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict) -> dict:
        import re

        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value


class InferenceSection(Section):
    """How chat.py, serve.py and eval.py load the trained model and generate."""

    infer_backend: Literal["huggingface", "vllm"] = Field(
        "huggingface", description="Generation engine: transformers, or vLLM (GPU only)."
    )
    model_path: Optional[str] = Field(
        None,
        description="Load this model instead of the run's result (e.g. the exported directory). Default: the base model with the run's adapter, or the run's output.",
    )
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling.")
    top_k: int = Field(50, ge=0, description="Top-k sampling (0: off).")
    max_new_tokens: int = Field(512, ge=1, description="Longest response.")
    repetition_penalty: float = Field(1.0, gt=0, description="Penalty on repeated tokens (1: off).")
    vllm_gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM: share of GPU memory it may use.")
    vllm_max_model_len: Optional[int] = Field(None, ge=16, description="vLLM: longest sequence (default: the model's).")


class ServeSection(Section):
    host: str = Field("127.0.0.1", description="Address serve.py binds to (0.0.0.0 exposes it to the network).")
    port: int = Field(8000, ge=1, le=65535, description="Port of the API.")
    api_key_env: Optional[str] = Field(
        None,
        description="Name of the environment variable holding the API key clients must send (Bearer). Unset: no key.",
    )
    model_name: Optional[str] = derived("Model id the API reports (default: the run's name).")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies are refused with 413.")
    fetch_image_urls: bool = Field(
        False,
        description="Vision-language runs: download http(s) image_url parts. Off by default because the server "
        "would fetch any address a client names, including internal ones only it can reach (server-side request "
        "forgery); data: URLs always work.",
    )
    max_new_tokens_limit: int = Field(
        4096,
        ge=1,
        description="Most tokens one answer may have, whatever max_tokens a client asks for (also capped by the model's context).",
    )
    request_timeout: float = Field(
        300,
        gt=0,
        description="Seconds a request may take, queue included: a generation still running then ends (finish_reason 'length'), one still waiting gets 503.",
    )
    max_queued_requests: int = Field(
        32,
        ge=1,
        description="Requests that may wait while the model answers another; more are refused with 503 and Retry-After.",
    )


class EvalSection(Section):
    task_dir: Optional[str] = Field(
        None, description="Folder of a multiple-choice benchmark in the MMLU/CMMLU/C-Eval layout (see README)."
    )
    split: str = Field("test", description="Benchmark split to score (a subfolder of task_dir).")
    n_shot: int = Field(5, ge=0, description="Worked examples from the dev split before each question.")
    lang: Literal["en", "zh"] = Field("en", description="Language of the benchmark prompt.")
    batch_size: int = Field(4, ge=1, description="Questions (or generations) per forward pass.")
    predict_dataset: list[str] = Field(
        default_factory=list,
        description="Datasets for generation evaluation (BLEU-4, ROUGE); default: data.eval_dataset.",
    )
    max_samples: Optional[int] = Field(None, ge=1, description="Evaluate at most this many samples.")
    output_dir: str = Field("eval", description="Where eval.py writes its results, relative to the run directory.")

    _split = field_validator("predict_dataset", mode="before")(_split_names)


class ExportSection(Section):
    export_dir: str = Field(
        "exported", description="Where export.py writes the merged model, relative to the run directory."
    )
    export_size: float = Field(5, gt=0, description="Largest safetensors shard, in GB.")
    export_dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "bfloat16", description="Dtype of the exported weights."
    )
    gguf: list[Literal["f32", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]] = Field(
        default_factory=list, description="GGUF files to write next to the merged model (for llama.cpp and Ollama)."
    )
    ollama: bool = Field(False, description="Write an Ollama Modelfile for the GGUF file (needs gguf).")
    onnx: bool = Field(
        False, description="Also write model.onnx: input_ids and attention_mask to logits, float32 (onnxruntime)."
    )
    export_quantization_bit: Optional[Literal[2, 3, 4, 8]] = Field(
        None,
        description="Also write a GPTQ-quantized copy of the merged model (export_dir/gptq-int<bits>; optimum and "
        "gptqmodel, CUDA GPU), calibrated on export_quantization_dataset.",
    )
    export_quantization_dataset: Optional[str] = Field(
        None, description='GPTQ calibration text: a .json/.jsonl file of {"text": ...} rows (relative to the spec).'
    )
    export_quantization_nsamples: int = Field(128, ge=1, description="GPTQ: number of calibration samples.")
    export_quantization_maxlen: int = Field(1024, ge=1, description="GPTQ: tokens per calibration sample.")

    _split = field_validator("gguf", mode="before")(_split_names)


class Spec(Section):
    """A fine-tuning run."""

    version: Literal[1] = Field(SPEC_VERSION, description="Spec format version.")
    name: Optional[str] = derived("Name of the run (default: the spec file's name).")
    model: ModelSection
    method: MethodSection = Field(default_factory=MethodSection)
    data: DataSection
    training: TrainingSection = Field(default_factory=TrainingSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    distributed: DistributedSection = Field(default_factory=DistributedSection)
    inference: InferenceSection = Field(default_factory=InferenceSection)
    serve: ServeSection = Field(default_factory=ServeSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    export: ExportSection = Field(default_factory=ExportSection)


def json_schema() -> dict:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ffc spec"
    return schema
