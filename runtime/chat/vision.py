"""How a vision-language family marks images in text (LLaMA-Factory's ``mm_plugin``).

Datasets mark each image with ``<image>`` (and each video with ``<video>``). The chat template
renders the conversation with those placeholders in place; the family's plugin then replaces
each one with the family's markup and as many vision tokens as the model's processor produces
for that picture, so the text and ``pixel_values`` agree token for token.

Pure Python (no torch): the compiler reads ``VISION_TEMPLATES`` to check that a dataset with
images goes with a template that can carry them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from .templates import Rendered, Segment

IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
_PLACEHOLDERS = re.compile(r"<image>|<video>")


class MediaError(ValueError):
    """The placeholders of a conversation do not fit its media (the reason becomes a drop reason)."""


@dataclass(frozen=True)
class VisionPlugin:
    """A family's image markup: ``start`` + ``image_token`` x N + ``end`` (N from the processor)."""

    name: str  # LLaMA-Factory's mm_plugin name
    image_token: str
    video_token: Optional[str] = None
    start: str = ""
    end: str = ""

    def block(self, kind: str, count: int) -> str:
        token = self.image_token if kind == "image" else self.video_token
        return self.start + token * count + self.end

    def expand(self, rendered: Rendered, image_tokens: Sequence[int], video_tokens: Sequence[int] = ()) -> Rendered:
        """``rendered`` with its placeholders replaced, in order, by blocks of ``image_tokens[i]`` tokens.

        Placeholders belong in prompts: one in a response would make the model learn to emit vision
        tokens, so it is refused (as a wrong count of placeholders is)."""
        counts = {"image": list(image_tokens), "video": list(video_tokens)}
        used = {"image": 0, "video": 0}
        segments = []
        for segment in rendered.segments:
            if "<" not in segment.text or not _PLACEHOLDERS.search(segment.text):
                segments.append(segment)
                continue
            if segment.kind == "response":
                raise MediaError("an <image> or <video> placeholder stands in a response; media belong in prompts")

            def replace(match: re.Match) -> str:
                kind = match.group(0)[1:-1]
                if used[kind] >= len(counts[kind]):
                    raise MediaError(f"more <{kind}> placeholders than {kind}s")
                if kind == "video" and self.video_token is None:
                    raise MediaError(f"the {self.name} template has no video input")
                used[kind] += 1
                return self.block(kind, counts[kind][used[kind] - 1])

            segments.append(Segment(_PLACEHOLDERS.sub(replace, segment.text), segment.kind, segment.turn))
        for kind in counts:
            if used[kind] != len(counts[kind]):
                raise MediaError(f"{len(counts[kind])} {kind}s but {used[kind]} <{kind}> placeholders")
        return Rendered(segments)


QWEN2_VL = VisionPlugin(
    name="qwen2_vl",
    image_token="<|image_pad|>",
    video_token="<|video_pad|>",
    start="<|vision_start|>",
    end="<|vision_end|>",
)
# Chat template name -> its plugin. Qwen2.5-VL uses qwen2_vl (as in LLaMA-Factory); Qwen3-VL marks images alike.
VISION_TEMPLATES: dict[str, VisionPlugin] = {"qwen2_vl": QWEN2_VL, "qwen3_vl": QWEN2_VL}


def vision_plugin(template: str) -> VisionPlugin:
    try:
        return VISION_TEMPLATES[template]
    except KeyError:
        raise KeyError(
            f"chat template {template!r} has no image input; templates that have: {', '.join(VISION_TEMPLATES)}"
        ) from None
