"""Export a run: merge the LoRA adapter, save sharded safetensors, write GGUF files and an Ollama Modelfile.

GGUF is written with the ``gguf`` package's writer (llama.cpp's converter script is not
a package on the index). ffc maps the tensors of the architectures it supports itself:
Llama/Mistral (GGUF arch ``llama``) and Qwen2 (``qwen2``), with byte-level BPE
tokenizers (Llama 3, Qwen, Mistral-Nemo style). Other models get a clear error that
names llama.cpp's ``convert_hf_to_gguf.py`` as the way out.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from .chat.templates import ChatTemplate, fill
from .model import Adapters, adapter_list, apply_adapters, tokenizer_source

log = logging.getLogger("ffc.export")


class ExportError(ValueError):
    pass


def _is_prequantized(model_path: str) -> bool:
    config = Path(model_path) / "config.json"
    if config.exists():
        return "quantization_config" in json.loads(config.read_text())
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(model_path), "quantization_config", None) is not None


def merge_and_save(
    model_path: str,
    adapters: Adapters,
    export_dir: Path,
    template: Optional[ChatTemplate],
    *,
    dtype: str = "bfloat16",
    shard_gb: float = 5,
    default_system: Optional[str] = None,
):
    """Base (+ adapters, one or a list, merged in turn) -> ``export_dir`` as safetensors shards, with the
    tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if adapter_list(adapters) and _is_prequantized(model_path):
        raise ExportError(
            f"{model_path} is stored quantized: LoRA weights cannot be merged into quantized weights. "
            "Merge into the full-precision version of the base model instead: pass --base with its path or hub id "
            "(QLoRA runs quantize at load time, so their own base model is fine)."
        )
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = apply_adapters(model, adapters)
    model = model.to(getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(model_path, adapters))
    if template is not None:  # any tool that reads chat_template now formats chats as in training
        tokenizer.chat_template = template.to_jinja(default_system=default_system)
    export_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(
        export_dir, max_shard_size=f"{max(1, round(shard_gb * 1_000_000))}KB", safe_serialization=True
    )
    tokenizer.save_pretrained(export_dir)
    return model, tokenizer


# -- GPTQ ----------------------------------------------------------------------------------------------


def calibration_samples(tokenizer, dataset: str, nsamples: int, maxlen: int, seed: int = 42) -> list[dict]:
    """LLaMA-Factory's GPTQ calibration: `nsamples` random windows of `maxlen` tokens from the "text" rows of a
    JSON/JSONL file, already tokenized (optimum then skips its own tokenization)."""
    import random

    from datasets import load_dataset

    from .errors import UserError

    if not Path(dataset).is_file():
        raise UserError(f"export.export_quantization_dataset: {dataset} is not a file: give a .json/.jsonl file.")
    rows = load_dataset("json", data_files=dataset, split="train")
    if "text" not in rows.column_names:
        raise UserError(
            f"export.export_quantization_dataset: {dataset} has no 'text' field (it has {rows.column_names}): "
            'write one {"text": ...} object per row.'
        )
    texts = [text for text in rows["text"] if isinstance(text, str) and text]
    long_enough = [ids for ids in tokenizer(texts)["input_ids"] if len(ids) > maxlen] if texts else []
    if not long_enough:
        raise UserError(
            f"export.export_quantization_dataset: no row of {dataset} is longer than export_quantization_maxlen "
            f"({maxlen} tokens): lower export_quantization_maxlen or give longer texts."
        )
    rng = random.Random(seed)
    samples = []
    for _ in range(nsamples):
        ids = rng.choice(long_enough)
        start = rng.randint(0, len(ids) - maxlen - 1)
        samples.append({"input_ids": [ids[start : start + maxlen]], "attention_mask": [[1] * maxlen]})
    return samples


def quantize_gptq(
    source: Path, target: Path, *, bits: int, dataset: str, nsamples: int, maxlen: int, shard_gb: float = 5
) -> Path:
    """The merged model in `source`, GPTQ-quantized into `target` through transformers' GPTQConfig (optimum
    with the gptqmodel kernels, what transformers 5 uses; it quantizes layer by layer on the GPU)."""
    from .tuning import TuningError, require_gpu

    require_gpu("export.export_quantization_bit")
    try:
        import gptqmodel  # noqa: F401
        import optimum  # noqa: F401
    except ImportError as error:
        raise TuningError(
            f"export.export_quantization_bit: GPTQ needs optimum and gptqmodel ({error}): "
            "pip install optimum gptqmodel, or remove export_quantization_bit."
        ) from error
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTQConfig

    tokenizer = AutoTokenizer.from_pretrained(source)
    config = GPTQConfig(
        bits=bits, tokenizer=tokenizer, dataset=calibration_samples(tokenizer, dataset, nsamples, maxlen)
    )
    model = AutoModelForCausalLM.from_pretrained(
        source, quantization_config=config, device_map="auto", dtype=torch.float16
    )
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, max_shard_size=f"{max(1, round(shard_gb * 1_000_000))}KB")
    tokenizer.save_pretrained(target)
    return target


# -- GGUF ----------------------------------------------------------------------------------------------

GGUF_ARCHS = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def gguf_name(hf_name: str) -> Optional[str]:
    if hf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[hf_name]
    parts = hf_name.split(".")
    if len(parts) > 3 and parts[:2] == ["model", "layers"]:
        suffix = _LAYER_TENSORS.get(".".join(parts[3:]))
        return f"blk.{parts[2]}.{suffix}" if suffix else None
    return None


def rope_interleave(weight, heads: int):
    """transformers' Llama rotates the two halves of each head; GGML rotates neighbouring pairs.
    Reorder the rows of q/k projections so GGML's rotation sees the same pairs."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


# llama.cpp names the pre-tokenizer (how text is split before BPE); each name stands for one regex.
_LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def pre_tokenizer_name(spec: dict) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer; an unknown one is refused rather than guessed,
    because llama.cpp would then split text differently from training."""
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    patterns = [p.get("pattern", {}).get("Regex") for p in pre.get("pretokenizers", []) if p.get("type") == "Split"]
    for name, regex in (("llama-bpe", _LLAMA3_SPLIT), ("qwen2", _QWEN2_SPLIT)):
        if regex in patterns:
            return name
    raise ExportError(
        "the tokenizer's pre-tokenizer is not one ffc can name for llama.cpp (GPT-2, Llama 3 or Qwen2 splitting): "
        "use llama.cpp's convert_hf_to_gguf.py on the exported directory"
    )


def _tokenizer_metadata(writer, tokenizer, add_bos: bool) -> None:
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise ExportError(
            "GGUF export supports byte-level BPE tokenizers (Llama 3, Qwen, ...); for this tokenizer use llama.cpp's "
            "convert_hf_to_gguf.py on the exported directory"
        )
    vocab = model["vocab"]
    size = max(len(tokenizer), max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for text, index in vocab.items():
        tokens[index], types[index] = text, gguf.TokenType.NORMAL
    for added in spec.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(spec))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for kind in ("bos", "eos", "pad"):
        token_id = getattr(tokenizer, f"{kind}_token_id")
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(add_bos)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


# GGUF types made by llama.cpp's own quantizer (through llama-cpp-python) from an f32 file: the K-quants
# choose a type per tensor (Q4_K_M keeps some at Q6_K), which the gguf package does not implement.
LLAMA_CPP_TYPES = {"q4_0": "Q4_0", "q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M", "q6_k": "Q6_K"}


def quantize_gguf(source: Path, path: Path, kind: str) -> Path:
    """llama.cpp's quantizer (llama_model_quantize) from an f32 GGUF file to ``kind``."""
    try:
        import llama_cpp
    except ImportError:
        raise ExportError(
            f"GGUF {kind} is made by llama.cpp's quantizer: pip install llama-cpp-python (or choose f16, q8_0, f32)"
        ) from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{LLAMA_CPP_TYPES[kind]}")
    if llama_cpp.llama_model_quantize(str(source).encode(), str(path).encode(), params) != 0:
        raise ExportError(f"llama.cpp could not quantize {source} to {kind}")
    return path


def write_gguf(model, tokenizer, path: Path, kind: str = "f16", add_bos: bool = False, name: str = "model") -> Path:
    """Write ``model`` as one GGUF file: ``f32``, ``f16``, ``q8_0`` (8-bit blocks of 32; 1-D tensors stay f32)
    or one of llama.cpp's quantizations (``LLAMA_CPP_TYPES``, from an intermediate f32 file)."""
    import gguf
    import numpy as np

    if kind in LLAMA_CPP_TYPES:
        source = path.with_name(path.name + ".f32.tmp")
        try:
            write_gguf(model, tokenizer, source, "f32", add_bos=add_bos, name=name)
            return quantize_gguf(source, path, kind)
        finally:
            source.unlink(missing_ok=True)

    config = model.config
    arch = GGUF_ARCHS.get(config.architectures[0] if config.architectures else type(model).__name__)
    if arch is None:
        raise ExportError(f"GGUF export supports {', '.join(GGUF_ARCHS)}; this model is {config.architectures}")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[kind]
    writer.add_file_type(file_type)
    _tokenizer_metadata(writer, tokenizer, add_bos)

    state = model.state_dict()
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # llama.cpp reuses token_embd
    for hf_name, tensor in state.items():
        target = gguf_name(hf_name)
        if target is None:
            raise ExportError(f"no GGUF name for tensor {hf_name}")
        data = tensor.float().numpy()
        if arch == "llama" and hf_name.endswith("q_proj.weight"):
            data = rope_interleave(data, config.num_attention_heads)
        elif arch == "llama" and hf_name.endswith("k_proj.weight"):
            data = rope_interleave(data, config.num_key_value_heads)
        if data.ndim == 1 or kind == "f32":
            writer.add_tensor(target, data.astype(np.float32))
        elif kind == "q8_0" and data.shape[-1] % 32 == 0:
            writer.add_tensor(
                target,
                gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                raw_dtype=gguf.GGMLQuantizationType.Q8_0,
            )
        else:
            writer.add_tensor(target, data.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- ONNX ------------------------------------------------------------------------------------------------


def write_onnx(model, path: Path, opset: int = 17) -> Path:
    """The merged model as one ONNX graph (input_ids, attention_mask -> logits; batch and length dynamic), in
    float32 (CPU runtimes lack bfloat16 kernels). torch's own exporter, so no further package is needed;
    generation with a KV cache is for optimum/onnxruntime-genai, which rebuild the graph themselves."""
    import torch

    class Logits(torch.nn.Module):  # no KV cache in or out: the graph plain ONNX runtimes run
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    model = model.float().eval()
    ids = torch.ones((1, 8), dtype=torch.long)
    dynamic = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            Logits(model),
            (ids, torch.ones_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "logits": dynamic},
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter handles transformers' masks without onnxscript
        )
    return path


# -- Ollama ----------------------------------------------------------------------------------------------


def _go(text: str) -> str:
    """Literal text inside a Go template."""
    return text.replace("{{", '{{ "{{" }}')


def ollama_modelfile(
    template: ChatTemplate, gguf_file: str, bos: str, eos: str, default_system: Optional[str] = None
) -> str:
    """An Ollama Modelfile whose TEMPLATE renders conversations exactly like ``template`` in training.

    Special tokens are written as text, as in training (the GGUF adds a BOS itself only for templates
    whose BOS is added at tokenisation). No ``{{-`` trim markers: they would eat the template's newlines."""
    values = {"bos": bos, "eos": eos}

    def part(fmt: str, content: str = "", system: str = "") -> str:
        # Placeholders become Go template actions; the rest is literal text.
        marker = {"content": "\x00C\x00", "system": "\x00S\x00"}
        text = _go(fill(fmt, content=marker["content"], system=marker["system"], **values))
        return text.replace(marker["content"], content).replace(marker["system"], system)

    lines = [f"FROM ./{gguf_file}", "", 'TEMPLATE """' + _go(fill(template.prefix, **values))]
    merge = template.system_in_first_user is not None
    if not merge:
        lines[-1] += "{{ if .System }}" + part(template.system, content="{{ .System }}") + "{{ end }}"
    user = part(template.user, content="{{ .Content }}")
    if merge:
        merged = part(template.system_in_first_user, content="{{ .Content }}", system="{{ $.System }}")
        user = (
            "{{ if and (eq $i 0) $.System }}" + part(template.user, content=merged) + "{{ else }}" + user + "{{ end }}"
        )
    assistant = (
        part(template.assistant_prefix)
        + template.response_lead
        + "{{ .Content }}"
        + part(template.assistant_end)
        + part(template.turn_sep)
    )
    lines[-1] += (
        "{{ range $i, $_ := .Messages }}"
        '{{ if eq .Role "user" }}' + user + '{{ else if eq .Role "assistant" }}' + assistant + "{{ end }}"
        "{{ end }}" + part(template.assistant_prefix) + '"""'
    )
    for stop in template.stop_strings(eos):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    if default_system or template.default_system:
        lines.append('SYSTEM """' + (default_system or template.default_system) + '"""')
    return "\n".join(lines) + "\n"
