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
from dataclasses import dataclass, replace
from typing import Optional, Sequence

from .templates import Rendered, Segment

IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
_PLACEHOLDERS = re.compile(r"<image>|<video>")


class MediaError(ValueError):
    """The placeholders of a conversation do not fit its media (the reason becomes a drop reason)."""


@dataclass(frozen=True)
class VisionPlugin:
    """What a family's chat template writes for one image (``marker``, as its official processor template
    writes an image part) and the token in it that the model's processor expands (``image_token``).

    The expansion itself is the processor's (``ffc.runtime.data.multimodal.MediaTokens``): each family's
    transformers processor knows how many tokens a picture becomes, with which markup around them (a grid
    of tiles for Idefics3, start/end markers for Gemma 3), so ffc keeps no per-family counting rule.
    """

    name: str  # LLaMA-Factory's mm_plugin name
    marker: str  # one image as the official processor chat template writes it
    image_token: str  # the processor's placeholder inside ``marker`` (its ``image_token``)
    # A video's token (the video's block is ``marker`` with it in place of ``image_token``); None: no videos.
    video_token: Optional[str] = None
    # Qwen3-VL writes each video as timestamped frame groups, each with its own start/end markers: the expansion
    # replaces the whole marker (as Qwen's reference processor and LLaMA-Factory do), not just the video token.
    video_replaces_marker: bool = False
    model_types: tuple[str, ...] = ()  # config.json model types the template is for (the build checks local models)

    def block(self, kind: str, expansion) -> str:
        """The text of one image or video: ``marker`` with its placeholder replaced by the processor's
        ``expansion`` (a string), or repeated ``expansion`` times (an int: families whose tokens are the
        placeholder itself)."""
        token = self.image_token
        if kind == "video":
            if self.video_token is None:
                raise MediaError(f"the {self.name} template has no video input")
            token = self.video_token
        if isinstance(expansion, int):
            expansion = token * expansion
        if kind == "video" and self.video_replaces_marker:
            return expansion
        return self.marker.replace(self.image_token, expansion, 1)

    def expand(self, rendered: Rendered, image_tokens: Sequence = (), video_tokens: Sequence = ()) -> Rendered:
        """``rendered`` with its ``<image>`` and ``<video>`` placeholders replaced, in order, by the blocks of
        ``image_tokens[i]`` and ``video_tokens[i]`` (see ``block``: the processor's expansion of that picture or
        clip, or a count of tokens).

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
                used[kind] += 1
                return self.block(kind, counts[kind][used[kind] - 1])

            segments.append(Segment(_PLACEHOLDERS.sub(replace, segment.text), segment.kind, segment.turn))
        for kind in counts:
            if used[kind] != len(counts[kind]):
                raise MediaError(f"{len(counts[kind])} {kind}s but {used[kind]} <{kind}> placeholders")
        return Rendered(segments)


def media_turns(rendered: Rendered, placeholder: str = IMAGE_PLACEHOLDER) -> list[int]:
    """The turn of each ``<image>`` (or ``placeholder``) of ``rendered``, in order (cutting whole turns keeps
    the images and videos of the turns kept)."""
    return [s.turn for s in rendered.segments for _ in range(s.text.count(placeholder))]


QWEN2_VL = VisionPlugin(
    name="qwen2_vl",
    marker="<|vision_start|><|image_pad|><|vision_end|>",
    image_token="<|image_pad|>",
    video_token="<|video_pad|>",
    model_types=("qwen2_vl", "qwen2_5_vl"),
)
LLAVA = VisionPlugin(name="llava", marker="<image>\n", image_token="<image>", model_types=("llava",))
IDEFICS3 = VisionPlugin(name="idefics3", marker="<image>", image_token="<image>", model_types=("idefics3",))
# Chat template name -> its plugin (LLaMA-Factory's names). Qwen2.5-VL uses qwen2_vl (as in LLaMA-Factory); Qwen3-VL
# marks images alike; LLaVA-NeXT writes images as LLaVA-1.5 does (the processor's anyres count differs).
VISION_TEMPLATES: dict[str, VisionPlugin] = {
    "qwen2_vl": QWEN2_VL,
    "qwen3_vl": replace(QWEN2_VL, video_replaces_marker=True, model_types=("qwen3_vl", "qwen3_vl_moe")),
    "llava": LLAVA,
    "llava_next": replace(LLAVA, name="llava_next", model_types=("llava_next",)),
    "gemma3": VisionPlugin(
        name="gemma3", marker="<start_of_image>", image_token="<start_of_image>", model_types=("gemma3",)
    ),
    "glm4v": VisionPlugin(
        name="glm4v",
        marker="<|begin_of_image|><|image|><|end_of_image|>",
        image_token="<|image|>",
        model_types=("glm4v", "glm4v_moe"),
    ),
    "intern_vl": VisionPlugin(
        name="intern_vl", marker="<IMG_CONTEXT>\n", image_token="<IMG_CONTEXT>", model_types=("internvl",)
    ),
    "idefics3": IDEFICS3,
    "smolvlm": replace(IDEFICS3, name="smolvlm", model_types=("smolvlm",)),
}


def templates_for(model_type: str) -> list[str]:
    """The vision templates of a model type (config.json's ``model_type``)."""
    return [name for name, plugin in VISION_TEMPLATES.items() if model_type in plugin.model_types]


def video_templates() -> list[str]:
    """The vision templates that also take videos."""
    return [name for name, plugin in VISION_TEMPLATES.items() if plugin.video_token]


def vision_plugin(template: str) -> VisionPlugin:
    try:
        return VISION_TEMPLATES[template]
    except KeyError:
        raise KeyError(
            f"chat template {template!r} has no image input; templates that have: {', '.join(VISION_TEMPLATES)}"
        ) from None
