"""Which chat template a model most likely wants, from its name or its local config files.

Used by ``data.template: auto`` at build time (which prints its choice) and by the UI's suggestion.
Name patterns come first (hub ids carry the family); a local directory also has config.json's
``model_type`` and the tokenizer's own chat template. A new family adds its pattern here, more
specific names before general ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Optional

# (pattern on the lower-cased name or model_type, template); the first match wins, so specific before general.
NAME_PATTERNS = (
    # Families whose names also carry a base family's (R1-Distill-Qwen, DeepSeek-V3.1, GLM-4.5) come first.
    (r"deepseek[-_ ]?r1.*0528", "deepseekr1_0528"),
    (r"deepseek[-_ ]?r1", "deepseekr1"),
    (r"deepseek[-_ ]?v3[-_.]1", "deepseek_v3_1"),
    (r"deepseek[-_ ]?coder(?![-_ ]?v2)", "deepseekcoder"),
    (r"glm[-_ ]?4\.[5-9]|glm4_moe", "glm4_moe"),
    (r"gpt[-_ ]?oss", "gpt_oss"),
    (r"kimi[-_ ]?k2", "kimi_k2"),
    (r"\byi[-_]1\.5", "yi1_5"),
    (r"qwen3\.5", "qwen3_5"),
    (r"qwen3\.6", "qwen3_6"),
    (r"qwen3.*thinking-2507", "qwen3_thinking"),
    (r"qwen3.*2507", "qwen3_nothink"),  # instruct-2507
    (r"qwen3", "qwen3"),
    (r"qwen", "qwen"),
    (r"llama[-_ ]?4", "llama4"),
    (r"llama[-_ ]?3\.[123]\b", "llama3_1"),  # 3.1-3.3: the date header and Meta's tool format
    (r"llama[-_ ]?3|llama3", "llama3"),
    (r"llama[-_ ]?2", "llama2"),
    (r"vicuna", "vicuna"),
    (r"mistral[-_ ]?small", "mistral_small"),
    (r"mistral[-_ ]?nemo|ministral[-_ ]?8b", "ministral"),
    (r"mistral.*v0\.3", "mistral_v3"),
    (r"mistral|mixtral", "mistral"),
    (r"gemma[-_ ]?4", "gemma4"),
    (r"gemma[-_ ]?3n", "gemma3n"),
    (r"gemma", "gemma"),
    (r"phi[-_ ]?4[-_ ]?reasoning", "phi4_reasoning"),
    (r"phi[-_ ]?4[-_ ]?mini", "phi4_mini"),
    (r"phi[-_ ]?4", "phi4"),
    (r"phi[-_ ]?3", "phi"),
    (r"deepseek[-_ ]?v3|deepseek3", "deepseek3"),
    (r"glm[-_ ]?4", "glm4"),
    (r"internlm[23]", "internlm2"),
    (r"minicpm[-_ ]?4", "cpm4"),
    (r"chatglm[-_ ]?3", "chatglm3"),
    (r"smollm[-_ ]?2", "smollm2"),
    (r"olmo[-_ ]?2", "olmo2"),
    (r"\byi[-_]", "yi"),
    (r"zephyr|tinyllama", "zephyr"),
)
# Markers of a tokenizer chat template, for local models whose names say nothing.
TEMPLATE_MARKERS = (
    ("<|channel|>", "gpt_oss"),
    ("<｜Assistant｜></think>", "deepseek_v3_1"),
    ("<｜Assistant｜><think>", "deepseekr1"),
    ("<arg_key>", "glm4_moe"),
    ("<|im_middle|>", "kimi_k2"),
    ("reasoning_content", "qwen3"),  # ChatML with Qwen3's <think> handling
    ("You are Qwen, created by Alibaba Cloud", "qwen"),
    ("<|im_start|>", "chatml"),
    ("Cutting Knowledge Date", "llama3_1"),
    ("<|start_header_id|>", "llama3"),
    ("<|header_start|>", "llama4"),
    ("<|turn>", "gemma4"),
    ("[SYSTEM_PROMPT]", "mistral_small"),
    ("[INST]", "mistral"),
    ("<start_of_turn>", "gemma"),
)


def _by_name(text: str) -> Optional[str]:
    return _match(text)[1]


def _match(text: str) -> tuple[int, Optional[str]]:
    """(index of the first pattern that matches, its template); (len, None) when none does."""
    lowered = text.lower()
    for index, (pattern, template) in enumerate(NAME_PATTERNS):
        if re.search(pattern, lowered):
            return index, template
    return len(NAME_PATTERNS), None


def suggest_template(
    model: str, base_dir: Path = Path("."), may_read: Optional[Callable[[Path], bool]] = None
) -> tuple[Optional[str], str]:
    """(template or None, the reason in a few words). ``may_read``: whether a local folder may be looked
    into (the UI looks only inside its workspace); otherwise only the name counts."""
    model = (model or "").strip()
    if not model:
        return None, ""
    local = Path(model) if Path(model).is_absolute() else base_dir / model
    if may_read is not None and not may_read(local):
        found = _by_name(model)
        return found, "the model name (its folder is outside the workspace: not read)"
    if local.is_dir():
        config = _read_json(local / "config.json")
        model_type = str(config.get("model_type", "")) if config else ""
        by_type, by_dir = _match(model_type) if model_type else (len(NAME_PATTERNS), None), _match(local.name)
        # The more specific match wins: Mistral Nemo's and Small's model_type is "mistral", Phi-4-mini's "phi3".
        if by_dir[1] and by_dir[0] < by_type[0]:
            return by_dir[1], "the directory name"
        if by_type[1]:
            return by_type[1], f"config.json model_type {model_type!r}"
        tokenizer_config = _read_json(local / "tokenizer_config.json") or {}
        chat_template = tokenizer_config.get("chat_template") or ""
        if not chat_template and (local / "chat_template.jinja").is_file():
            chat_template = (local / "chat_template.jinja").read_text(encoding="utf-8", errors="replace")
        if isinstance(chat_template, str) and chat_template:
            for marker, template in TEMPLATE_MARKERS:
                if marker in chat_template:
                    return template, f"its tokenizer's chat template uses {marker}"
            return "tokenizer", "its tokenizer has a chat template of its own"
        return None, "no chat template found in the model directory"
    found = _by_name(model)
    return (found, "the model name") if found else (None, "")


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
