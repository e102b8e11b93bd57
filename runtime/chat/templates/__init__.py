"""Chat templates: how each model family turns a conversation into text.

Layout (one obvious place for everything):

- ``base``: the template classes (``ChatTemplate`` and the variants with their own markup),
  their rendering, and the ``TEMPLATES`` registry;
- ``jinja``: the export of a template as a Hugging Face Jinja chat template;
- ``custom``: ``CustomTemplate``, the base of families that render turn by turn in Python and
  write their Jinja by hand (DeepSeek R1/V3.1, GLM-4.5, gpt-oss, Kimi-K2, Llama 3.1/4);
- one module per family group, each calling ``register(...)`` with its entries:
  ``generic`` (empty, default, alpaca, vicuna, chatml, zephyr), ``qwen``, ``llama``, ``llava``,
  ``mistral``, ``gemma``, ``deepseek``, ``glm``, ``phi``, ``yi``, ``internlm``, ``minicpm``, ``smollm``, ``idefics``,
  ``olmo``, ``gpt_oss``, ``kimi``.

To add a family: an entry in its group's module (a new module for a new group, imported
below), a line in tests/test_template_reference.py's ``REFERENCES`` naming its official
template folder in ../shared/reference/tokenizers, and a ``notes`` line wherever the
official template cannot be followed exactly. Vision-language variants (``qwen2_vl``, ...)
go into their family's module next to the text-only entries.

Pure Python: the compiler imports this package without torch.
"""

from . import (  # noqa: F401
    deepseek,
    gemma,
    generic,
    glm,
    gpt_oss,
    idefics,
    internlm,
    kimi,
    llama,
    llama31,
    llava,
    minicpm,
    mistral,
    olmo,
    phi,
    qwen,
    smollm,
    yi,
)
from .base import (
    PROMPT_ROLES,
    RESPONSE_ROLES,
    TEMPLATES,
    ChatTemplate,
    ConversationError,
    NextRoleEndTemplate,
    ReasoningTemplate,
    Rendered,
    Segment,
    fill,
    get_template,
    register,
    suggest,
)
from .custom import CustomTemplate
from .deepseek import DeepSeekTemplate
from .gemma import Gemma4Template
from .glm import GLM45Template
from .gpt_oss import HarmonyTemplate
from .idefics import IdeficsTemplate
from .kimi import KimiTemplate
from .llama import Llama4Template
from .mistral import MistralTemplate
from .qwen import OpenThinkTemplate, Qwen35Template

__all__ = [
    "PROMPT_ROLES",
    "RESPONSE_ROLES",
    "TEMPLATES",
    "ChatTemplate",
    "ConversationError",
    "NextRoleEndTemplate",
    "ReasoningTemplate",
    "Rendered",
    "Segment",
    "fill",
    "get_template",
    "register",
    "suggest",
]
# Families with their own renderer (runtime/chat/templates/custom.py).
__all__ += ["CustomTemplate", "DeepSeekTemplate", "GLM45Template", "HarmonyTemplate", "KimiTemplate"]
__all__ += ["Llama4Template", "MistralTemplate", "Gemma4Template"]  # Llama 4, Mistral, Gemma 4
__all__ += ["IdeficsTemplate"]  # Idefics3, SmolVLM
__all__ += ["OpenThinkTemplate", "Qwen35Template"]  # Qwen3 thinking-2507, Qwen3.5/3.6
