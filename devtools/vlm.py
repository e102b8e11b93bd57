"""Tiny vision-language models (Qwen2-VL; LLaVA-1.5) and an image dataset, built locally with no network.

The model is Qwen2-VL's architecture shrunk (a 2-layer vision tower, a 2-layer language model)
with random weights; its tokenizer is the demo tokenizer plus Qwen2-VL's vision tokens, and its
processor is the PIL-based Qwen2-VL image processor transformers ships (no torchvision needed).
The dataset (``demo_vision``) is PIL-drawn shapes in colours with questions about them;
``demo_vision_pairs`` (dpo, orpo, simpo) and ``demo_vision_kto`` ask the same questions with a right
and a wrong answer. ``demo_video`` (where PyAV is installed) is short clips of those shapes moving,
with questions about which way they go; ``demo_video_pairs`` and ``demo_video_kto`` answer which way
(or which colour) rightly and wrongly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .tiny import train_tokenizer

VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
SHAPE_COLORS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (235, 210, 30)}
SHAPES = ["circle", "square", "triangle"]
IMAGE_SIZE = 56  # 4x4 patches of 14 px, merged 2x2: 4 vision tokens per image
VARIANTS = 4  # drawings per shape and colour (position and size vary)
# Qwen2-VL's official processor chat template, for the saved processor (the same as its tokenizer's).
QWEN2_VL_JINJA = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def draw(shape: str, color: str, variant: int):
    """One picture: a coloured shape on white, placed and sized by ``variant``."""

    rng = random.Random(f"{shape}-{color}-{variant}")
    size = rng.randint(24, 40)
    return _picture(shape, color, rng.randint(2, IMAGE_SIZE - size - 2), rng.randint(2, IMAGE_SIZE - size - 2), size)


def _picture(shape: str, color: str, x: int, y: int, size: int):
    """A white picture with a ``color`` ``shape`` of ``size`` pixels at (``x``, ``y``)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), "white")
    pen = ImageDraw.Draw(image)
    fill = SHAPE_COLORS[color]
    if shape == "circle":
        pen.ellipse((x, y, x + size, y + size), fill=fill)
    elif shape == "square":
        pen.rectangle((x, y, x + size, y + size), fill=fill)
    else:
        pen.polygon([(x + size // 2, y), (x, y + size), (x + size, y + size)], fill=fill)
    return image


def vision_rows(count: int, seed: int = 5) -> list[dict]:
    """openai-style rows: a question about one picture (sometimes two turns), answered by rule."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        shape, color, variant = rng.choice(SHAPES), rng.choice(sorted(SHAPE_COLORS)), rng.randrange(VARIANTS)
        questions = [
            ("What shape is in the picture?", f"A {shape}."),
            ("What color is the shape?", f"It is {color}."),
            ("Describe the picture.", f"A {color} {shape}."),
        ]
        first, second = rng.sample(questions, 2)
        messages = [{"role": "user", "content": "<image>" + first[0]}, {"role": "assistant", "content": first[1]}]
        if i % 3 == 0:
            messages += [{"role": "user", "content": second[0]}, {"role": "assistant", "content": second[1]}]
        rows.append({"messages": messages, "images": [f"demo_vision/{shape}_{color}_{variant}.png"]})
    return rows


def _wrong_answer(shape: str, color: str, rng: random.Random) -> tuple[str, str]:
    """(question, wrong answer) about a picture of a ``color`` ``shape``."""
    other_shape = rng.choice([s for s in SHAPES if s != shape])
    other_color = rng.choice([c for c in sorted(SHAPE_COLORS) if c != color])
    return rng.choice(
        [
            ("What shape is in the picture?", f"A {other_shape}."),
            ("What color is the shape?", f"It is {other_color}."),
            ("Describe the picture.", f"A {other_color} {other_shape}."),
        ]
    )


def vision_pair_rows(count: int, seed: int = 6) -> list[dict]:
    """sharegpt ranking rows with an image: the chosen answer describes the picture, the rejected one does not."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        shape, color, variant = rng.choice(SHAPES), rng.choice(sorted(SHAPE_COLORS)), rng.randrange(VARIANTS)
        question, wrong = _wrong_answer(shape, color, rng)
        right = {"What shape is in the picture?": f"A {shape}.", "What color is the shape?": f"It is {color}."}
        right = right.get(question, f"A {color} {shape}.")
        rows.append(_ranking_row("images", f"demo_vision/{shape}_{color}_{variant}.png", question, right, wrong))
    return rows


def _ranking_row(media: str, path: str, question: str, right: str, wrong: str) -> dict:
    """A sharegpt ranking row about one picture (``media`` "images") or clip ("videos")."""
    placeholder = "<image>" if media == "images" else "<video>"
    return {
        "conversations": [{"from": "human", "value": placeholder + question}],
        "chosen": {"from": "gpt", "value": right},
        "rejected": {"from": "gpt", "value": wrong},
        media: [path],
    }


def _labelled_rows(pairs: list[dict], media: str, desirable) -> list[dict]:
    """KTO rows from ranking rows: each prompt with its chosen reply where ``desirable(row number)``, else with
    its rejected one."""
    rows = []
    for i, pair in enumerate(pairs):
        good = desirable(i)
        reply = (pair["chosen"] if good else pair["rejected"])["value"]
        question = pair["conversations"][0]["value"]
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
        rows.append({"messages": messages, "label": good, media: pair[media]})
    return rows


def vision_kto_rows(count: int, seed: int = 7) -> list[dict]:
    """openai rows with an image, labelled desirable (a right answer) or not."""
    return _labelled_rows(vision_pair_rows(count, seed), "images", lambda i: i % 2 == 0)


MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
CLIP_FRAMES, CLIP_FPS = 8, 4  # 2-second clips: model.video_fps 2 samples 4 frames, 2 pairs of 2x2 merged patches


def draw_clip(shape: str, color: str, motion: str) -> list:
    """Frames of a ``color`` ``shape`` crossing a white picture in direction ``motion``."""

    dx, dy = MOTIONS[motion]
    size, travel = 18, IMAGE_SIZE - 18 - 4
    frames = []
    for step in range(CLIP_FRAMES):
        offset = 2 + travel * step // (CLIP_FRAMES - 1)
        x = offset if dx > 0 else IMAGE_SIZE - size - offset if dx < 0 else (IMAGE_SIZE - size) // 2
        y = offset if dy > 0 else IMAGE_SIZE - size - offset if dy < 0 else (IMAGE_SIZE - size) // 2
        frames.append(_picture(shape, color, x, y, size))
    return frames


def write_clip(path: Path, frames: list, fps: int = CLIP_FPS) -> Path:
    """``frames`` as an MPEG-4 video (PyAV)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        stream.options = {"qscale": "2"}  # near-lossless: colours survive the encoding
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
    return path


def video_rows(count: int, seed: int = 8) -> list[dict]:
    """sharegpt rows (LLaMA-Factory's mllm_video_demo layout): a question about one clip, answered by rule."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        shape, color, motion = rng.choice(SHAPES), rng.choice(sorted(SHAPE_COLORS)), rng.choice(sorted(MOTIONS))
        question, answer = rng.choice(
            [
                ("Which way does the shape move?", f"It moves {motion}."),
                ("What is moving in the video?", f"A {color} {shape}."),
            ]
        )
        messages = [{"role": "user", "content": "<video>" + question}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages, "videos": [f"demo_video/{shape}_{color}_{motion}.mp4"]})
    return rows


OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def video_pair_rows(count: int, seed: int = 9) -> list[dict]:
    """sharegpt ranking rows with a clip, a right and a wrong answer: which way the shape moves (the wrong one:
    the opposite way) or, every other row, its colour (the wrong one: the next colour).

    The answers take turns, so every eight rows name each way and each colour once chosen and once rejected: the
    text alone favours no answer, and only a model that reads the clips can prefer the chosen ones (the tiny demo
    model learns the colours of clips within a few steps; which way they move takes it far longer)."""
    rng = random.Random(seed)
    colors, ways = sorted(SHAPE_COLORS), sorted(MOTIONS)
    rows = []
    for i in range(count):
        turn = i // 2
        shape, color, motion = rng.choice(SHAPES), rng.choice(colors), rng.choice(ways)
        if i % 2 == 0:
            motion = ways[turn % len(ways)]
            question = "Which way does the shape move?"
            right, wrong = f"It moves {motion}.", f"It moves {OPPOSITE[motion]}."
        else:
            color = colors[turn % len(colors)]
            question = "What color is the moving shape?"
            right, wrong = f"It is {color}.", f"It is {colors[(turn + 1) % len(colors)]}."
        rows.append(_ranking_row("videos", f"demo_video/{shape}_{color}_{motion}.mp4", question, right, wrong))
    return rows


def video_kto_rows(count: int, seed: int = 10) -> list[dict]:
    """sharegpt rows with a clip, labelled desirable (a right answer about it) or not (a wrong one): both kinds
    of question, each desirable and not."""
    return _labelled_rows(video_pair_rows(count, seed), "videos", lambda i: i % 4 < 2)


_ROLE_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
VIDEO_DATASET_INFO = {
    "demo_video": {
        "file_name": "demo_video.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "videos": "videos"},
        "tags": _ROLE_TAGS,
    },
    "demo_video_pairs": {
        "file_name": "demo_video_pairs.json",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "videos": "videos"},
    },
    "demo_video_kto": {
        "file_name": "demo_video_kto.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label", "videos": "videos"},
        "tags": _ROLE_TAGS,
    },
}


def write_video_data(folder: str | Path, size: int = 200) -> Path:
    """The clips and ``demo_video.json`` (with its pairs and KTO variants), added to the folder's
    dataset_info.json (needs PyAV: the video extra)."""
    folder = Path(folder)
    (folder / "demo_video").mkdir(parents=True, exist_ok=True)
    for shape in SHAPES:
        for color in SHAPE_COLORS:
            for motion in MOTIONS:
                write_clip(folder / "demo_video" / f"{shape}_{color}_{motion}.mp4", draw_clip(shape, color, motion))
    rows = {"demo_video": video_rows, "demo_video_pairs": video_pair_rows, "demo_video_kto": video_kto_rows}
    return _write_datasets(folder, VIDEO_DATASET_INFO, {name: make(size) for name, make in rows.items()})


def _write_datasets(folder: Path, entries: dict, rows: dict) -> Path:
    """Each dataset's rows into its entry's file, and the entries added to the folder's dataset_info.json."""
    for name, data in rows.items():
        (folder / entries[name]["file_name"]).write_text(json.dumps(data, indent=1) + "\n")
    info_path = folder / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info.update(entries)
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return folder


VISION_DATASET_INFO = {
    "demo_vision": {
        "file_name": "demo_vision.json",
        "formatting": "openai",
        "columns": {"messages": "messages", "images": "images"},
    },
    "demo_vision_pairs": {
        "file_name": "demo_vision_pairs.json",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
    },
    "demo_vision_kto": {
        "file_name": "demo_vision_kto.json",
        "formatting": "openai",
        "columns": {"messages": "messages", "kto_tag": "label", "images": "images"},
    },
}


def write_vision_data(folder: str | Path, size: int = 300) -> Path:
    """The pictures, ``demo_vision.json`` (with its pairs and KTO variants) and their entries added to the
    folder's dataset_info.json."""
    folder = Path(folder)
    (folder / "demo_vision").mkdir(parents=True, exist_ok=True)
    for shape in SHAPES:
        for color in SHAPE_COLORS:
            for variant in range(VARIANTS):
                draw(shape, color, variant).save(folder / "demo_vision" / f"{shape}_{color}_{variant}.png")
    rows = {"demo_vision": vision_rows, "demo_vision_pairs": vision_pair_rows, "demo_vision_kto": vision_kto_rows}
    return _write_datasets(folder, VISION_DATASET_INFO, {name: make(size) for name, make in rows.items()})


def make_tiny_vlm(folder: str | Path, *, hidden_size: int = 64, num_layers: int = 2, seed: int = 0) -> Path:
    """Write a randomly initialised Qwen2-VL, its tokenizer and its processor to ``folder``."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = Path(folder)
    tokenizer = train_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", *VISION_TOKENS]})
    tokenizer.chat_template = QWEN2_VL_JINJA
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in VISION_TOKENS}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},  # sums to head_dim / 2
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=im_end,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=2,
            embed_dim=32,
            hidden_size=hidden_size,
            num_heads=2,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),  # fmt: skip
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=im_end,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [im_end, tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    # The processor's parts, saved one by one: Qwen2VLProcessor itself insists on its torchvision-based video
    # processor, but AutoProcessor reassembles them (where torchvision is installed) and ffc reads them directly.
    Qwen2VLImageProcessorPil(
        min_pixels=IMAGE_SIZE * IMAGE_SIZE, max_pixels=4 * IMAGE_SIZE * IMAGE_SIZE
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


LLAVA_IMAGE_SIZE = 56  # 4 x 4 patches of 14 px (LLaVA keeps them all: 16 <image> tokens per picture)
# LLaVA-1.5's official processor chat template (llava-hf), for the saved tokenizer: it renders image parts.
LLAVA_JINJA = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def make_tiny_llava(folder: str | Path, *, hidden_size: int = 64, num_layers: int = 2, seed: int = 0) -> Path:
    """Write a randomly initialised LLaVA-1.5 (a 2-layer CLIP vision tower, a 2-layer Llama), the demo tokenizer
    with <image>, its PIL CLIP image processor and the LlavaProcessor settings (processor_config.json)."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = Path(folder)
    tokenizer = train_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.chat_template = LLAVA_JINJA
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        vision_config=dict(
            model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, image_size=LLAVA_IMAGE_SIZE, patch_size=14, projection_dim=32,
        ),
        text_config=dict(
            model_type="llama", vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
        ),
        image_token_index=image_token,
        vision_feature_select_strategy="default",  # drop CLS: 16 tokens
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    size = LLAVA_IMAGE_SIZE
    CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(
        folder
    )
    tokenizer.save_pretrained(folder)
    settings = {
        "processor_class": "LlavaProcessor",
        "patch_size": 14,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,  # CLIP's CLS, which "default" drops again
        "image_token": "<image>",
    }
    (folder / "processor_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    return folder
