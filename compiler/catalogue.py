"""The model catalogue: the models people commonly fine-tune, for the families ffc has chat templates for.

One entry per model: its hub id, family, nominal size, modalities, chat template, context length, licence
note, and the few config.json numbers the memory planner (``compiler/plan.py``) needs, so ``ffc models``
and the web UI's model picker can fill the template and estimate memory without downloading anything.
The parameter count is computed from those numbers (``Shape.params``), never typed, and a test checks it
against the nominal size, which catches a wrong number in a config.

Adding a model: one ``_model(...)`` line below, its numbers copied from the model's config.json
(``text_config`` for vision-language models). Its template must be one of ``TEMPLATES`` (a test checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .plan import Shape


@dataclass(frozen=True)
class CatalogueModel:
    name: str  # the hub name without its organisation, e.g. Qwen2.5-7B-Instruct
    hub_id: str
    family: str
    size: str  # nominal, as the model's name says it: "0.5B", "7B"
    template: str  # ffc chat template (data.template)
    context: int  # tokens the model was trained for (max_position_embeddings or the model card's figure)
    licence: str
    config: dict  # the config.json numbers plan.Shape reads
    vision: bool = False  # takes images (an images column in the data)

    @property
    def shape(self) -> Shape:
        return Shape.from_config(self.config)

    @property
    def params(self) -> int:
        """Parameters of the language model (a vision tower adds a few hundred million more)."""
        return self.shape.params

    @property
    def modalities(self) -> str:
        return "text+image" if self.vision else "text"

    def label(self) -> str:
        """How a menu shows it: name, size, modalities, template."""
        return f"{self.name} · {self.size} · {self.modalities} · {self.template}"


def _config(model_type, vocab, hidden, layers, heads, kv_heads, intermediate, tied, head_dim=None) -> dict:
    config = {
        "model_type": model_type, "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "intermediate_size": intermediate,
        "tie_word_embeddings": tied,
    }  # fmt: skip
    if head_dim:
        config["head_dim"] = head_dim
    return config


APACHE = "Apache-2.0"
QWEN_RESEARCH = "Qwen Research License (non-commercial)"
LLAMA = "Llama Community License (gated on the hub: accept it there first)"
GEMMA = "Gemma Terms of Use (gated on the hub: accept them there first)"

# Shapes several models share (fine-tunes keep their base's shape).
QWEN25_05 = _config("qwen2", 151936, 896, 24, 14, 2, 4864, True)
QWEN25_15 = _config("qwen2", 151936, 1536, 28, 12, 2, 8960, True)
QWEN25_3 = _config("qwen2", 151936, 2048, 36, 16, 2, 11008, True)
QWEN25_7 = _config("qwen2", 152064, 3584, 28, 28, 4, 18944, False)
QWEN3_17 = _config("qwen3", 151936, 2048, 28, 16, 8, 6144, True, 128)
QWEN3_4 = _config("qwen3", 151936, 2560, 36, 32, 8, 9728, True, 128)
QWEN3_8 = _config("qwen3", 151936, 4096, 36, 32, 8, 12288, False, 128)
LLAMA31_8 = _config("llama", 128256, 4096, 32, 32, 8, 14336, False)

MODELS: tuple[CatalogueModel, ...] = (
    # Qwen3 (hybrid thinking) and its 2507 instruct update
    CatalogueModel("Qwen3-0.6B", "Qwen/Qwen3-0.6B", "qwen3", "0.6B", "qwen3", 32768, APACHE,
                   _config("qwen3", 151936, 1024, 28, 16, 8, 3072, True, 128)),
    CatalogueModel("Qwen3-1.7B", "Qwen/Qwen3-1.7B", "qwen3", "1.7B", "qwen3", 32768, APACHE, QWEN3_17),
    CatalogueModel("Qwen3-4B", "Qwen/Qwen3-4B", "qwen3", "4B", "qwen3", 32768, APACHE, QWEN3_4),
    CatalogueModel("Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B-Instruct-2507", "qwen3", "4B", "qwen3_nothink", 262144,
                   APACHE, QWEN3_4),
    CatalogueModel("Qwen3-8B", "Qwen/Qwen3-8B", "qwen3", "8B", "qwen3", 32768, APACHE, QWEN3_8),
    CatalogueModel("Qwen3-14B", "Qwen/Qwen3-14B", "qwen3", "14B", "qwen3", 32768, APACHE,
                   _config("qwen3", 151936, 5120, 40, 40, 8, 17408, False, 128)),
    CatalogueModel("Qwen3-32B", "Qwen/Qwen3-32B", "qwen3", "32B", "qwen3", 32768, APACHE,
                   _config("qwen3", 151936, 5120, 64, 64, 8, 25600, False, 128)),
    # Qwen2.5
    CatalogueModel("Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5", "0.5B", "qwen", 32768, APACHE,
                   QWEN25_05),
    CatalogueModel("Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", "qwen2.5", "1.5B", "qwen", 32768, APACHE,
                   QWEN25_15),
    CatalogueModel("Qwen2.5-3B-Instruct", "Qwen/Qwen2.5-3B-Instruct", "qwen2.5", "3B", "qwen", 32768, QWEN_RESEARCH,
                   QWEN25_3),
    CatalogueModel("Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "qwen2.5", "7B", "qwen", 32768, APACHE,
                   QWEN25_7),
    CatalogueModel("Qwen2.5-Coder-7B-Instruct", "Qwen/Qwen2.5-Coder-7B-Instruct", "qwen2.5", "7B", "qwen", 32768,
                   APACHE, QWEN25_7),
    CatalogueModel("Qwen2.5-14B-Instruct", "Qwen/Qwen2.5-14B-Instruct", "qwen2.5", "14B", "qwen", 32768, APACHE,
                   _config("qwen2", 152064, 5120, 48, 40, 8, 13824, False)),
    CatalogueModel("Qwen2.5-32B-Instruct", "Qwen/Qwen2.5-32B-Instruct", "qwen2.5", "32B", "qwen", 32768, APACHE,
                   _config("qwen2", 152064, 5120, 64, 40, 8, 27648, False)),
    CatalogueModel("Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-72B-Instruct", "qwen2.5", "72B", "qwen", 32768,
                   "Qwen License (commercial use above 100M monthly users needs a licence)",
                   _config("qwen2", 152064, 8192, 80, 64, 8, 29568, False)),
    # Qwen vision-language
    CatalogueModel("Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-2B-Instruct", "qwen2-vl", "2B", "qwen2_vl", 32768, APACHE,
                   _config("qwen2_vl", 151936, 1536, 28, 12, 2, 8960, True), vision=True),
    CatalogueModel("Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2-vl", "3B", "qwen2_vl", 32768,
                   QWEN_RESEARCH, _config("qwen2_5_vl", 151936, 2048, 36, 16, 2, 11008, True), vision=True),
    CatalogueModel("Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2-vl", "7B", "qwen2_vl", 32768,
                   APACHE, _config("qwen2_5_vl", 152064, 3584, 28, 28, 4, 18944, False), vision=True),
    CatalogueModel("Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl", "2B", "qwen3_vl", 262144, APACHE,
                   _config("qwen3_vl", 151936, 2048, 28, 16, 8, 6144, True, 128), vision=True),
    CatalogueModel("Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "qwen3-vl", "4B", "qwen3_vl", 262144, APACHE,
                   {**QWEN3_4, "model_type": "qwen3_vl"}, vision=True),
    CatalogueModel("Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl", "8B", "qwen3_vl", 262144, APACHE,
                   {**QWEN3_8, "model_type": "qwen3_vl"}, vision=True),
    # Llama
    CatalogueModel("Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-1B-Instruct", "llama3", "1B", "llama3_1", 131072,
                   LLAMA, _config("llama", 128256, 2048, 16, 32, 8, 8192, True, 64)),
    CatalogueModel("Llama-3.2-3B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "llama3", "3B", "llama3_1", 131072,
                   LLAMA, _config("llama", 128256, 3072, 28, 24, 8, 8192, True, 128)),
    CatalogueModel("Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "llama3", "8B", "llama3_1", 131072,
                   LLAMA, LLAMA31_8),
    CatalogueModel("Llama-3.3-70B-Instruct", "meta-llama/Llama-3.3-70B-Instruct", "llama3", "70B", "llama3_1", 131072,
                   LLAMA, _config("llama", 128256, 8192, 80, 64, 8, 28672, False)),
    # Gemma
    CatalogueModel("gemma-2-2b-it", "google/gemma-2-2b-it", "gemma", "2B", "gemma", 8192, GEMMA,
                   _config("gemma2", 256000, 2304, 26, 8, 4, 9216, True, 256)),
    CatalogueModel("gemma-2-9b-it", "google/gemma-2-9b-it", "gemma", "9B", "gemma", 8192, GEMMA,
                   _config("gemma2", 256000, 3584, 42, 16, 8, 14336, True, 256)),
    CatalogueModel("gemma-3-1b-it", "google/gemma-3-1b-it", "gemma", "1B", "gemma", 32768, GEMMA,
                   _config("gemma3_text", 262144, 1152, 26, 4, 1, 6912, True, 256)),
    # Mistral
    CatalogueModel("Mistral-7B-Instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", "mistral", "7B", "mistral_v3",
                   32768, APACHE, _config("mistral", 32768, 4096, 32, 32, 8, 14336, False)),
    CatalogueModel("Mistral-Nemo-Instruct-2407", "mistralai/Mistral-Nemo-Instruct-2407", "mistral", "12B", "ministral",
                   131072, APACHE, _config("mistral", 131072, 5120, 40, 32, 8, 14336, False, 128)),
    # Phi
    CatalogueModel("Phi-3.5-mini-instruct", "microsoft/Phi-3.5-mini-instruct", "phi", "3.8B", "phi", 131072, "MIT",
                   _config("phi3", 32064, 3072, 32, 32, 32, 8192, False)),
    CatalogueModel("Phi-4-mini-instruct", "microsoft/Phi-4-mini-instruct", "phi", "3.8B", "phi4_mini", 131072, "MIT",
                   _config("phi3", 200064, 3072, 32, 24, 8, 8192, True)),
    CatalogueModel("phi-4", "microsoft/phi-4", "phi", "14B", "phi4", 16384, "MIT",
                   _config("phi3", 100352, 5120, 40, 40, 10, 17920, False)),
    # DeepSeek-R1 distills (reasoning)
    CatalogueModel("DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek", "1.5B",
                   "deepseekr1", 131072, "MIT", {**QWEN25_15, "tie_word_embeddings": False}),
    CatalogueModel("DeepSeek-R1-Distill-Qwen-7B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek", "7B",
                   "deepseekr1", 131072, "MIT", QWEN25_7),
    CatalogueModel("DeepSeek-R1-Distill-Llama-8B", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseek", "8B",
                   "deepseekr1", 131072, f"MIT (base: {LLAMA})", LLAMA31_8),
    # Others
    CatalogueModel("glm-4-9b-chat-hf", "THUDM/glm-4-9b-chat-hf", "glm", "9B", "glm4", 131072,
                   "GLM-4 License (commercial use after registration)",
                   _config("glm", 151552, 4096, 40, 32, 2, 13696, False, 128)),
    CatalogueModel("OLMo-2-1124-7B-Instruct", "allenai/OLMo-2-1124-7B-Instruct", "olmo", "7B", "olmo2", 4096, APACHE,
                   _config("olmo2", 100352, 4096, 32, 32, 32, 11008, False)),
    CatalogueModel("Yi-1.5-9B-Chat", "01-ai/Yi-1.5-9B-Chat", "yi", "9B", "yi1_5", 4096, APACHE,
                   _config("llama", 64000, 4096, 48, 32, 4, 11008, False)),
    CatalogueModel("SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2", "135M", "smollm2", 8192,
                   APACHE, _config("llama", 49152, 576, 30, 9, 3, 1536, True)),
    CatalogueModel("SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", "smollm2", "360M", "smollm2", 8192,
                   APACHE, _config("llama", 49152, 960, 32, 15, 5, 2560, True)),
    CatalogueModel("SmolLM2-1.7B-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct", "smollm2", "1.7B", "smollm2", 8192,
                   APACHE, _config("llama", 49152, 2048, 24, 32, 32, 8192, True)),
)  # fmt: skip

BY_HUB_ID = {model.hub_id: model for model in MODELS}


def find(hub_id_or_name: Optional[str]) -> Optional[CatalogueModel]:
    """The entry for a hub id (``Qwen/Qwen3-8B``) or a bare name (``Qwen3-8B``, any case); None otherwise."""
    key = (hub_id_or_name or "").strip().rstrip("/")
    if key in BY_HUB_ID:
        return BY_HUB_ID[key]
    lowered = key.lower()
    return next((m for m in MODELS if lowered in (m.hub_id.lower(), m.name.lower())), None)


def params_text(params: int) -> str:
    """A parameter count as people write it: 0.49B, 135.0M."""
    return f"{params / 1e9:.2f}B" if params >= 4e8 else f"{params / 1e6:.1f}M"


def nominal_params(size: str) -> float:
    """ "0.5B" -> 5e8, "135M" -> 1.35e8."""
    return float(size[:-1]) * {"B": 1e9, "M": 1e6}[size[-1]]


def search(
    query: str = "", family: str = "", vision: Optional[bool] = None, max_params_b: Optional[float] = None
) -> list[CatalogueModel]:
    """Models whose name, hub id, family or template contains every word of ``query`` (any case), filtered."""
    words = query.lower().split()
    found = []
    for model in MODELS:
        text = f"{model.hub_id} {model.family} {model.template} {model.size}".lower()
        if not all(word in text for word in words):
            continue
        if family and model.family != family.lower():
            continue
        if vision is not None and model.vision != vision:
            continue
        if max_params_b is not None and nominal_params(model.size) > max_params_b * 1e9:
            continue
        found.append(model)
    return found


def families() -> list[str]:
    return sorted({model.family for model in MODELS})
