"""Vision-language families besides Qwen: templates against the official processor templates, and the
expansion of ``<image>`` by each family's own transformers processor.

Parity: each conversation kind is rendered by the official processor chat template in
../shared/reference/tokenizers (image parts as ``{"type": "image"}``) and by ffc (the same turns as a
dataset row writes them, ``<image>`` in the text, each then written as the family's marker); the two
must be byte-identical. ``python -m tests.test_vision_families`` prints the table.
"""

from __future__ import annotations

import json

import pytest

from .conftest import REFERENCE
from .test_template_reference import _jinja, _official, _without_trained_eos

# ffc template -> (reference folder, template file in it)
VISION_REFERENCES = {
    "qwen2_vl": ("qwen2-vl-instruct", "chat_template.json"),
    "llava": ("llava-1.5", "chat_template.jinja"),
    "llava_next": ("llava-v1.6-mistral", "chat_template.jinja"),
    "gemma3": ("gemma-3-it", "chat_template.json"),
    "glm4v": ("glm-4.1v-thinking", "chat_template.jinja"),
    "idefics3": ("idefics3", "chat_template.jinja"),
    "smolvlm": ("smolvlm-instruct", "chat_template.jinja"),
}
STRING_TEXT = {"glm4v"}  # official templates that read system and assistant content as plain text
IMAGE = {"type": "image"}
SYSTEM = {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]}


def _user(*parts):
    return {"role": "user", "content": [IMAGE if p is IMAGE else {"type": "text", "text": p} for p in parts]}


def _assistant(text):
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


# kind -> (conversation in content parts, add_generation_prompt)
KINDS = {
    "no_image": ([_user("What is 2+2?")], True),
    "one_image": ([_user(IMAGE, "What is this?")], True),
    "several_images": ([_user(IMAGE, IMAGE, "Which one is bigger?")], True),
    "system": ([SYSTEM, _user(IMAGE, "What is this?")], True),
    "images_in_turns": ([_user(IMAGE, "What is this?"), _assistant("A cat."), _user(IMAGE, "And this?")], True),
    "finished": ([SYSTEM, _user(IMAGE, "What is this?"), _assistant("A cat.")], False),
}
# (template, kind) -> why ffc differs on purpose (strict: a fix shows as XPASS)
KNOWN_GAPS = {
    ("llava", kind): (
        "LLaVA-1.5's processor template ends a response with a space; ffc trains the EOS LLaVA was trained with "
        "(vicuna_v1: 'answer</s>USER: '), or the model would not learn to stop (see the llava notes)"
    )
    for kind in ("images_in_turns", "finished")
}


def _as_row(messages):
    """The conversation as a dataset row writes it: text with an <image> where each image part stands."""
    return [
        {
            "role": m["role"],
            "content": "".join("<image>" if part["type"] == "image" else part["text"] for part in m["content"]),
        }
        for m in messages
    ]


def _images(messages) -> int:
    return sum(part["type"] == "image" for m in messages for part in m["content"])


def case(name: str, kind: str) -> tuple[str, str]:
    """(official, ffc) renderings of one kind."""
    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin

    folder, source = VISION_REFERENCES[name]
    template, meta = _official(folder, source)
    messages, generation = KINDS[kind]
    bos, eos = meta["bos_token"], meta["eos_token"]
    plain = [m if m["role"] == "user" else _as_row([m])[0] for m in messages] if name in STRING_TEXT else messages
    official = _jinja(template, plain, bos, eos, None, generation)
    rendered = get_template(name).render(
        _as_row(messages), bos=bos or "", eos=eos or "", add_generation_prompt=generation
    )
    ours = vision_plugin(name).expand(rendered, [1] * _images(messages)).text
    return official, _without_trained_eos(name, ours, eos, generation)


def _params():
    for name in VISION_REFERENCES:
        for kind in KINDS:
            marks = []
            if (name, kind) in KNOWN_GAPS:
                marks.append(pytest.mark.xfail(reason=KNOWN_GAPS[(name, kind)], strict=True))
            yield pytest.param(name, kind, marks=marks, id=f"{name}-{kind}")


@pytest.mark.parametrize("name, kind", list(_params()))
def test_image_turns_render_as_official(name, kind):
    folder = REFERENCE / VISION_REFERENCES[name][0]
    if not folder.exists():
        pytest.skip(f"{folder} is absent: clone the project with ../shared beside it")
    official, ours = case(name, kind)
    assert ours == official


@pytest.mark.parametrize("name", [n for n in VISION_REFERENCES if n != "qwen2_vl"])
def test_recorded_image_rendering_matches(name):
    """Where ../shared recorded the official image rendering (rendered_example.image.txt), ffc writes it too."""
    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin

    folder = REFERENCE / VISION_REFERENCES[name][0]
    recorded = folder / "rendered_example.image.txt"
    if not recorded.exists():
        pytest.skip(f"{recorded} is absent (../shared recorded no image rendering for {folder.name})")
    meta = json.loads((folder / "rendered_example.meta.json").read_text())
    rendered = get_template(name).render(
        [{"role": "user", "content": "<image>What is this?"}],
        bos=meta["bos_token"] or "",
        eos=meta["eos_token"] or "",
        add_generation_prompt=True,
    )
    text = vision_plugin(name).expand(rendered, [1]).text
    generation = {"llava": "ASSISTANT:", "glm4v": "<|assistant|>\n", "idefics3": "Assistant:", "smolvlm": "Assistant:"}[
        name
    ]
    assert text == recorded.read_text() + generation


def table() -> str:
    rows = ["| template | " + " | ".join(KINDS) + " |", "|---" * (len(KINDS) + 1) + "|"]
    for name in VISION_REFERENCES:
        cells = []
        for kind in KINDS:
            official, ours = case(name, kind)
            cells.append("pass" if official == ours else "fail" if (name, kind) in KNOWN_GAPS else "FAIL")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())


@pytest.mark.parametrize("name", ["llava", "llava_next", "gemma3", "glm4v", "intern_vl", "idefics3", "smolvlm"])
def test_vision_templates_build_and_are_listed_where_text_templates_fail(tmp_path, name):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import SpecError, load_spec

    from .test_vision import _vision_spec

    build_files(load_spec(_vision_spec(tmp_path, name)), tmp_path / "run")  # a vision template: the build accepts it
    with pytest.raises(SpecError, match=f"set data.template to one that has: .*\\b{name}\\b"):
        build_files(load_spec(_vision_spec(tmp_path, "gemma" if name == "gemma3" else "vicuna")), tmp_path / "run2")


def test_local_model_of_another_family_is_refused_at_build(demo, tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import SpecError, load_spec

    from .test_vision import _vision_spec

    qwen = [f"model.model_name_or_path={demo / 'tiny-vlm'}"]
    with pytest.raises(
        SpecError,
        match="is a qwen2_vl model, but chat template 'llava' is for llava models; set data.template to qwen2_vl",
    ):
        build_files(load_spec(_vision_spec(tmp_path, "llava"), qwen), tmp_path / "run")
    build_files(load_spec(_vision_spec(tmp_path, "qwen2_vl"), qwen), tmp_path / "run")
    llava = [f"model.model_name_or_path={demo / 'tiny-llava'}"]
    build_files(load_spec(_vision_spec(tmp_path, "llava"), llava), tmp_path / "run2")


# --- expansion: each <image> becomes exactly what the family's own transformers processor makes of it ----------

# template -> (processor class, PIL image processor (class path, kwargs), processor settings, tokenizer's extra
# special tokens, vision tokens per image or None where it depends on the picture). Sizes shrunk for speed
# where the count does not depend on them.
PROCESSORS = {
    "llava": (
        "LlavaProcessor",
        ("clip.image_processing_pil_clip.CLIPImageProcessorPil", {"size": {"shortest_edge": 336}, "crop_size": 336}),
        {"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1},
        {"image_token": "<image>"},
        576,  # LLaVA-1.5 at 336 px: 24 x 24 patches
    ),
    "llava_next": (
        "LlavaNextProcessor",
        (
            "llava_next.image_processing_pil_llava_next.LlavaNextImageProcessorPil",
            {
                "size": {"shortest_edge": 56},
                "crop_size": 56,
                "image_grid_pinpoints": [[56, 112], [112, 56], [112, 112]],
            },
        ),
        {"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1},
        {"image_token": "<image>"},
        None,  # anyres: base tile + the tiles of the best grid, unpadded, plus a newline token per row
    ),
    "gemma3": (
        "Gemma3Processor",
        ("gemma3.image_processing_pil_gemma3.Gemma3ImageProcessorPil", {"size": {"height": 64, "width": 64}}),
        {"image_seq_length": 256},
        {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
        256,
    ),
    "glm4v": (
        "Glm4vProcessor",
        (
            "glm4v.image_processing_pil_glm4v.Glm4vImageProcessorPil",
            {"size": {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}},
        ),
        {},
        {"image_token": "<|image|>", "boi": "<|begin_of_image|>", "eoi": "<|end_of_image|>"},
        None,  # patches of 14 px merged 2 x 2: depends on the size
    ),
    "intern_vl": (
        "InternVLProcessor",
        (
            "got_ocr2.image_processing_pil_got_ocr2.GotOcr2ImageProcessorPil",
            {"size": {"height": 56, "width": 56}, "crop_to_patches": True, "max_patches": 4},
        ),
        {"image_seq_length": 16},
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
        None,  # 16 per tile, tiles by aspect ratio, plus <img> and </img>
    ),
    "idefics3": (
        "Idefics3Processor",
        (
            "idefics3.image_processing_pil_idefics3.Idefics3ImageProcessorPil",
            {"size": {"longest_edge": 128}, "max_image_size": {"longest_edge": 64}, "do_image_splitting": True},
        ),
        {"image_seq_len": 4},
        {},
        None,  # a grid of tiles by the picture's shape (<row_i_col_j>), then the global image
    ),
    "smolvlm": (  # Idefics3's layout; its processor writes the tile grid with num2words (the test extra)
        "SmolVLMProcessor",
        (
            "smolvlm.image_processing_pil_smolvlm.SmolVLMImageProcessorPil",
            {"size": {"longest_edge": 128}, "max_image_size": {"longest_edge": 64}, "do_image_splitting": True},
        ),
        {"image_seq_len": 4},
        {
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        },  # Idefics3's processor adds its tokens itself; SmolVLM's reads them from the tokenizer
        None,
    ),
}


def _family_processor(name, tokenizer_dir):
    import importlib

    import transformers
    from transformers import AutoTokenizer

    from ffc.runtime.vlm import assemble_processor

    cls_name, (pixels_path, pixels_kwargs), settings, tokens, _ = PROCESSORS[name]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, extra_special_tokens=tokens)
    module, _, pixels_cls = pixels_path.rpartition(".")
    pixels = getattr(importlib.import_module(f"transformers.models.{module}"), pixels_cls)(**pixels_kwargs)
    return tokenizer, assemble_processor(getattr(transformers, cls_name), pixels, tokenizer, **settings)


@pytest.mark.parametrize("name", list(PROCESSORS))
def test_images_expand_as_the_family_processor_does(demo, tmp_path, name):
    """ffc's tokens for a row with two pictures of different shapes are the processor's own (given the text the
    official template writes), the pixels and token types its collator makes are the processor's, and no vision
    token is trained."""
    import torch
    from PIL import Image

    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.multimodal import MediaTokens, VisionCollator, VisionConversationEncoder
    from ffc.runtime.data.tokenize import IGNORE_INDEX, MaskOptions

    tokenizer, processor = _family_processor(name, demo / "tiny-vlm")
    paths = []
    for index, size in enumerate([(60, 40), (40, 100)]):
        paths.append(str(tmp_path / f"{index}.png"))
        Image.new("RGB", size, (40 * index, 90, 200)).save(paths[-1])
    messages = [
        {"role": "user", "content": "<image>What is this? And<image>"},
        {"role": "assistant", "content": "Two boxes."},
    ]
    images = MediaTokens(processor, vision_plugin(name))
    encoder = VisionConversationEncoder(tokenizer, get_template(name), MaskOptions(cutoff_len=100_000), images)
    row = {"messages": [messages], "system": [""], "tools": [""], "images": [paths], "videos": [[]]}
    out = encoder.encode_batch(row)
    assert out["_drop"] == [""], out["_drop"]
    ids, labels = out["input_ids"][0], out["labels"][0]

    rendered = get_template(name).render(messages, bos=tokenizer.bos_token, eos=tokenizer.eos_token)
    official = vision_plugin(name).expand(rendered, [1, 1]).text  # as the official template writes it
    pictures = [Image.open(path).convert("RGB") for path in paths]
    reference = processor(text=[official], images=[pictures], add_special_tokens=False, return_tensors="pt")
    expected = reference["input_ids"][0].tolist()
    bos = [tokenizer.bos_token_id] if get_template(name).add_bos_token else []
    if ids != bos + expected:
        first = next(i for i, (a, b) in enumerate(zip(ids, bos + expected)) if a != b)
        raise AssertionError(
            f"{len(ids)} vs {len(bos + expected)} at {first}: "
            f"{tokenizer.convert_ids_to_tokens(ids[first - 3 : first + 8])} vs "
            f"{tokenizer.convert_ids_to_tokens((bos + expected)[first - 3 : first + 8])}"
        )

    vision = set(processor.image_token_ids)
    counts = [
        sum(t in vision for t in tokenizer(b, add_special_tokens=False)["input_ids"]) for b in images.expansions(paths)
    ]
    per_image = PROCESSORS[name][4]
    if per_image is not None:
        assert counts[0] == counts[1] == per_image
    assert sum(t in vision for t in ids) == sum(counts) > 0
    assert all(label == IGNORE_INDEX for token, label in zip(ids, labels) if token in vision)

    batch = VisionCollator(tokenizer.pad_token_id, images)([{"input_ids": ids, "labels": labels, "images": paths}])
    assert set(batch) - {"labels"} == set(reference)  # what the model reads: no more, no less
    for key, value in reference.items():
        if key not in ("input_ids", "attention_mask"):  # pixels as they are; token types after ffc's BOS
            assert torch.equal(batch[key][:, len(bos) :] if "type_ids" in key else batch[key], value), key


def test_template_of_another_family_is_refused(demo):
    from transformers import AutoTokenizer

    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.multimodal import MediaTokens
    from ffc.runtime.errors import UserError
    from ffc.runtime.vlm import load_processor

    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-vlm")
    processor = load_processor(str(demo / "tiny-vlm"), tokenizer, max_pixels=None, min_pixels=None)  # Qwen2-VL
    with pytest.raises(UserError, match="llava template writes images with <image>.*expands <\\|image_pad\\|>"):
        MediaTokens(processor, vision_plugin("llava"))


# --- training: a tiny LLaVA-1.5 learns the demo image task through the generated train.py ----------------------


@pytest.mark.slow
def test_lora_sft_on_images_trains_tiny_llava_exports_and_chats(demo, tmp_path):
    import subprocess
    import sys

    from .test_vision import _demo_run

    run = _demo_run(demo, tmp_path, max_steps=30, model="tiny-llava", template="llava")
    preview = subprocess.run([sys.executable, "train.py", "--preview", "1"], cwd=run, capture_output=True, text=True)
    assert preview.returncode == 0, preview.stderr[-3000:]
    assert "USER: <image>×16\n" in preview.stdout  # 56 px through 14 px patches, CLS dropped; untrained
    done = subprocess.run([sys.executable, "train.py"], cwd=run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (run / "output" / "trainer_log.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in log if '"loss"' in line]
    print("tiny LLaVA LoRA losses:", losses)
    assert losses[-1] < losses[0] - 0.5, losses
    assert (run / "output" / "processor_config.json").is_file()  # chat, serve and export rebuild the processor

    picture = demo / "data" / "demo_vision" / "circle_red_0.png"
    chat = subprocess.run(
        [sys.executable, "chat.py", "--image", str(picture)], cwd=run, capture_output=True, text=True,
        input="What shape is in the picture?\n/exit\n", timeout=600,
    )  # fmt: skip
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert "Assistant: " in chat.stdout and chat.stdout.split("Assistant: ")[1].strip()

    done = subprocess.run([sys.executable, "export.py"], cwd=run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    exported = run / "exported"
    processor = AutoProcessor.from_pretrained(exported)  # LLaVA's processor has no video part: no torchvision
    model = AutoModelForImageTextToText.from_pretrained(exported)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape is it?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=text, images=[Image.open(picture).convert("RGB")], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 16
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
