"""Vision-language data, templates and encoding: media rows, placeholders, parity, masks, build checks."""

import json
from pathlib import Path

import pytest

from ffc.runtime.data.loading import DataError, load_datasets

from .conftest import DEMO_DATA, REFERENCE, needs_shared

OPENAI_MM = {"formatting": "openai", "columns": {"messages": "messages", "images": "images"}}


def _row(text="<image>What is it?", images=("img/a.png",)):
    return {
        "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "A red square."}],
        "images": list(images),
    }


@pytest.fixture
def media_dir(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (40, 40), "red").save(tmp_path / "img" / "a.png")
    (tmp_path / "img" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return tmp_path


def _load(folder, rows, entry=OPENAI_MM, **kwargs):
    (folder / "mm.json").write_text(json.dumps(rows))
    registry = {"mm": {"file_name": "mm.json", **entry}}
    return load_datasets(folder, registry, ["mm"], "conversations", media=True, **kwargs)


@pytest.mark.parametrize(
    "bad, message",
    [
        (_row("What is it?"), "0 <image> placeholders in the text but 1 file in 'images'"),
        (_row("<image><image>What?"), "2 <image> placeholders in the text but 1 file in 'images'"),
        (_row(images=("img/missing.png",)), "img/missing.png not found (paths are relative to the dataset directory)"),
        (_row(images=("img/bad.png",)), "img/bad.png cannot be read"),
        ({**_row(), "images": 7}, "'images' must be a list of file paths, got the number 7"),
    ],
    ids=["no-placeholder", "two-placeholders", "missing", "corrupt", "not-a-list"],
)
def test_bad_media_rows_name_file_and_row(media_dir, bad, message):
    with pytest.raises(DataError) as info:
        _load(media_dir, [_row(), bad])
    assert "mm.json: row 2: " in str(info.value) and message in str(info.value)


def test_text_run_refuses_media_dataset(media_dir):
    (media_dir / "mm.json").write_text(json.dumps([_row()]))
    with pytest.raises(DataError, match="dataset 'mm' has images, which this script cannot use"):
        load_datasets(media_dir, {"mm": {"file_name": "mm.json", **OPENAI_MM}}, ["mm"], "conversations")


def test_bad_media_rows_skipped_and_counted(media_dir):
    rows = [_row(), _row("no placeholder"), _row(images=("img/bad.png",))]
    data = _load(media_dir, rows, on_bad_row="skip")
    assert len(data) == 1 and data[0]["images"] == [str(media_dir / "img" / "a.png")]
    assert sum(data._ffc_skipped_rows.values()) == 2


@pytest.mark.parametrize(
    "entry, row",
    [
        ({"columns": {"images": "images"}}, {"instruction": "<image>What?", "output": "red", "images": ["img/a.png"]}),
        (
            {"formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"}},
            {
                "conversations": [{"from": "human", "value": "<image>What?"}, {"from": "gpt", "value": "red"}],
                "images": "img/a.png",
            },
        ),
    ],
    ids=["alpaca", "sharegpt-single-path"],
)
def test_media_in_alpaca_and_sharegpt(media_dir, entry, row):
    data = _load(media_dir, [row], entry)
    assert data[0]["images"] == [str(media_dir / "img" / "a.png")] and data[0]["videos"] == []


def test_text_only_dataset_mixes_with_media(media_dir):
    (media_dir / "mm.json").write_text(json.dumps([_row()]))
    (media_dir / "txt.json").write_text(json.dumps([{"instruction": "hi", "output": "hello"}]))
    registry = {"mm": {"file_name": "mm.json", **OPENAI_MM}, "txt": {"file_name": "txt.json"}}
    data = load_datasets(media_dir, registry, ["mm", "txt"], "conversations", media=True)
    assert [row["images"] for row in data] == [[str(media_dir / "img" / "a.png")], []]


@needs_shared(DEMO_DATA / "mllm_demo.json")
def test_mllm_demo_loads_and_tokenises(demo):
    from transformers import AutoTokenizer

    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.multimodal import MediaTokens, VisionConversationEncoder
    from ffc.runtime.data.tokenize import IGNORE_INDEX, MaskOptions
    from ffc.runtime.vlm import load_processor

    folder = DEMO_DATA
    registry = json.loads((folder / "dataset_info.json").read_text())
    data = load_datasets(folder, registry, ["mllm_demo"], "conversations", media=True)
    assert len(data) >= 3 and all(row["images"] for row in data)
    assert all(path.startswith(str(folder)) for row in data for path in row["images"])
    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-vlm")
    processor = load_processor(str(demo / "tiny-vlm"), tokenizer, max_pixels=224 * 224, min_pixels=32 * 32)
    plugin = vision_plugin("qwen2_vl")
    images = MediaTokens(processor, plugin)
    encoder = VisionConversationEncoder(tokenizer, get_template("qwen2_vl"), MaskOptions(cutoff_len=4096), images)
    tokens, stats = tokenize_dataset(data, encoder)
    assert stats.kept == len(data) and stats.truncated == 0
    pad = tokenizer.convert_tokens_to_ids(plugin.image_token)
    for raw, row in zip(data, tokens):
        assert row["input_ids"].count(pad) == sum(images.tokens_of(path) for path in raw["images"])
        assert all(label == IGNORE_INDEX for token, label in zip(row["input_ids"], row["labels"]) if token == pad)


# --- templates: parity with the official processor templates -------------------------------------------------

CONV_IMAGE = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]


def _official(folder, conversation):
    """The official chat_template.json rendered as RENDER_SCRIPT_EXTRA.py does (hf-like environment)."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    source = json.loads((folder / "chat_template.json").read_text())["chat_template"]
    return env.from_string(source).render(messages=conversation, add_generation_prompt=False)


def _ours(name, messages, images=1):
    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin

    rendered = get_template(name).render(messages, add_generation_prompt=True)
    return vision_plugin(name).expand(rendered, [1] * images).text


@pytest.mark.parametrize("name, folder", [("qwen2_vl", "qwen2-vl-instruct"), ("qwen2_vl", "qwen2.5-vl-instruct")])
def test_qwen2_vl_image_turn_matches_official(name, folder):
    path = REFERENCE / folder
    if not path.exists():
        pytest.skip(f"{path} is absent: clone the project with ../shared beside it")
    expected = _official(path, CONV_IMAGE) + "<|im_start|>assistant\n"
    assert _ours(name, [{"role": "user", "content": "<image>What is this?"}]) == expected
    two = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "A"}, {"type": "image"}]}]
    assert _ours(name, [{"role": "user", "content": "<image>A<image>"}], 2) == _official(path, two) + (
        "<|im_start|>assistant\n"
    )
    with_system = [{"role": "system", "content": "Be brief."}, *CONV_IMAGE]
    ours = _ours(
        name, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<image>What is this?"}]
    )
    assert ours == _official(path, with_system) + "<|im_start|>assistant\n"


@pytest.mark.parametrize("name, folder", [("qwen2_vl", "qwen2-vl-instruct"), ("qwen3_vl", "qwen3-vl-instruct")])
def test_vl_templates_text_turns_match_official(name, folder):
    from ffc.runtime.chat.templates import get_template

    path = REFERENCE / folder
    if not path.exists():
        pytest.skip(f"{path} is absent: clone the project with ../shared beside it")
    meta = json.loads((path / "rendered_example.meta.json").read_text())
    rendered = get_template(name).render(meta["conversation"], eos=meta["eos_token"]).text
    assert rendered == (path / "rendered_example.txt").read_text()
    if (path / "rendered_example.image.txt").exists():
        image = (path / "rendered_example.image.txt").read_text()
        assert _ours(name, [{"role": "user", "content": "<image>What is this?"}]) == image + "<|im_start|>assistant\n"


def test_placeholder_count_must_match_images():
    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import MediaError, vision_plugin

    rendered = get_template("qwen2_vl").render(
        [{"role": "user", "content": "<image>a"}, {"role": "assistant", "content": "b"}]
    )
    plugin = vision_plugin("qwen2_vl")
    assert plugin.expand(rendered, [3]).text.count("<|image_pad|>") == 3
    with pytest.raises(MediaError, match="2 images but 1 <image> placeholders"):
        plugin.expand(rendered, [3, 3])
    in_response = get_template("qwen2_vl").render(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<image>"}]
    )
    with pytest.raises(MediaError, match="stands in a response"):
        plugin.expand(in_response, [1])


# --- build: the run is multimodal exactly when its datasets have images ----------------------------------------


def _vision_spec(tmp_path, template="qwen2_vl", extra=""):
    from ffc.devtools.vlm import write_vision_data

    data = tmp_path / "data"
    if not (data / "dataset_info.json").exists():
        write_vision_data(data, size=12)
        info = json.loads((data / "dataset_info.json").read_text())
        info["text"] = {"file_name": "text.json"}
        (data / "text.json").write_text(json.dumps([{"instruction": "hi", "output": "hello"}]))
        (data / "dataset_info.json").write_text(json.dumps(info))
    spec = tmp_path / "vl.yaml"
    spec.write_text(
        f"model:\n  model_name_or_path: Qwen/Qwen2-VL-2B-Instruct\nmethod:\n  stage: sft\n"
        f"data:\n  dataset: [demo_vision]\n  dataset_dir: data\n  template: {template}\n{extra}"
    )
    return spec


def test_text_template_with_image_data_fails_at_build(tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import SpecError, load_spec

    with pytest.raises(SpecError) as info:
        build_files(load_spec(_vision_spec(tmp_path, "qwen")), tmp_path / "run")
    message = str(info.value)
    assert "dataset 'demo_vision' has images, but chat template 'qwen' has no image input" in message
    assert "qwen2_vl, qwen3_vl" in message and "vl.yaml:" in message


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["method.stage=pt", "data.template=null"], "stage pt cannot train on images"),
        (["method.finetuning_type=freeze"], "finetuning_type freeze is not supported with images"),
        (["data.packing=true"], "packing with images is refused"),
    ],
)
def test_unsupported_combinations_refused_at_build(tmp_path, overrides, fragment):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import SpecError, load_spec

    with pytest.raises(SpecError, match=fragment):
        build_files(load_spec(_vision_spec(tmp_path), overrides), tmp_path / "run")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_train_py_holds_only_the_path_its_data_needs(tmp_path, method):
    import subprocess

    from ruff.__main__ import find_ruff_bin

    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec
    from ffc.compiler.writer import write_run

    spec = _vision_spec(tmp_path)
    runs = {}
    for label, overrides in [("vision", []), ("text", ["data.dataset=[text]", "data.template=qwen"])]:
        run = tmp_path / label
        write_run(run, build_files(load_spec(spec, [f"method.finetuning_type={method}", *overrides]), run)[1])
        runs[label] = (run / "train.py").read_text()
        config = ["--config", str(Path(__file__).parent.parent / "templates" / "ruff.toml")]
        for args in (["check", *config], ["format", "--check", *config]):
            done = subprocess.run([find_ruff_bin(), *args, str(run)], capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr
    vision, text = runs["vision"], runs["text"]
    for marker in ("VisionCollator", "AutoModelForImageTextToText", "load_processor", "media=True"):
        assert marker in vision and marker not in text
    for marker in ("AutoModelForCausalLM", "ConversationEncoder("):
        assert marker in text
        assert marker not in vision.replace("VisionConversationEncoder(", "")
    assert ("freeze_parts(" in vision) == (method == "full")
    assert ("lora_targets(model)" in vision) == (method == "lora")


# --- the server keeps image_url parts for a vision engine only --------------------------------------------------


def test_server_image_parts():
    from ffc.runtime.server import InvalidRequest, parse_request, to_conversation

    url = "data:image/png;base64,AAAA"
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Look: "}, {"type": "image_url", "image_url": {"url": url}}],
                "image_urls": ["/etc/passwd"],  # not a client's to set
            }
        ],
    }
    raw = json.dumps(body).encode()
    _, conversation = to_conversation(parse_request(raw, images=True).messages)
    assert conversation == [{"role": "user", "content": "Look: <image>", "image_urls": [url]}]
    with pytest.raises(InvalidRequest, match="this model reads text only"):
        parse_request(raw)
    body["messages"][0]["content"] = "plain"
    _, conversation = to_conversation(parse_request(json.dumps(body).encode(), images=True).messages)
    assert conversation == [{"role": "user", "content": "plain"}]


def test_image_urls_are_data_urls_unless_fetching_is_on():
    from ffc.runtime.vision_inference import ImageError, open_url

    with pytest.raises(ImageError, match="does not download images"):
        open_url("http://169.254.169.254/latest")
    with pytest.raises(ImageError, match="must be a data: URL"):
        open_url("/etc/passwd")
    with pytest.raises(ImageError, match="not an image"):
        open_url("data:image/png;base64,AAAA")


# --- the demo VLM end to end -------------------------------------------------------------------------------------


def _demo_run(demo, tmp_path, max_steps=40, model="tiny-vlm", template="qwen2_vl"):
    import subprocess
    import sys

    spec = tmp_path / "vl.yaml"
    spec.write_text(
        f"name: vl\nmodel: {{model_name_or_path: {demo / model}}}\n"
        f"method: {{stage: sft, finetuning_type: lora, lora_rank: 16}}\n"
        f"data: {{dataset: [demo_vision], dataset_dir: {demo / 'data'}, template: {template}, cutoff_len: 256}}\n"
        f"training: {{learning_rate: 2.0e-3, max_steps: {max_steps}, per_device_train_batch_size: 8, gradient_accumulation_steps: 1, "
        "logging_steps: 5, save_strategy: 'no'}\nlogging: {report_to: [none]}\n"
        "inference: {temperature: 0, max_new_tokens: 8}\n"
    )
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return run


def test_preview_shows_expanded_and_masked_vision_tokens(demo, tmp_path):
    import subprocess
    import sys

    run = _demo_run(demo, tmp_path)
    done = subprocess.run([sys.executable, "train.py", "--preview", "2"], cwd=run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    block = "<|vision_start|><|image_pad|>×4<|vision_end|>"  # 56 px: 4x4 patches merged 2x2, shown as a count
    assert done.stdout.count(block) >= 2
    for line in done.stdout.splitlines():
        if "«" in line:
            assert "image_pad" not in line.split("«", 1)[1]  # vision tokens are never inside a trained span


@pytest.mark.slow
def test_lora_sft_on_images_trains_exports_chats_and_serves(demo, tmp_path):
    import base64
    import subprocess
    import sys

    from .conftest import serving

    run = _demo_run(demo, tmp_path)
    done = subprocess.run([sys.executable, "train.py"], cwd=run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = [
        json.loads(line)["loss"]
        for line in (run / "output" / "trainer_log.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert losses[-1] < losses[0] - 0.5, losses

    done = subprocess.run([sys.executable, "export.py"], cwd=run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    exported = run / "exported"
    model = AutoModelForImageTextToText.from_pretrained(exported)
    tokenizer, processor = AutoTokenizer.from_pretrained(exported), AutoImageProcessor.from_pretrained(exported)
    picture = demo / "data" / "demo_vision" / "circle_red_0.png"
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape is in the picture?"}]}
    ]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    from PIL import Image

    pixels = processor(images=[Image.open(picture).convert("RGB")], return_tensors="pt")
    count = int(pixels["image_grid_thw"].prod()) // 4
    text = text.replace("<|image_pad|>", "<|image_pad|>" * count)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            mm_token_type_ids=(ids == model.config.image_token_id).long(),
            **pixels,
            max_new_tokens=8,
            do_sample=False,
        )
    answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert answer.strip(), "the exported model answers"

    chat = subprocess.run(
        [sys.executable, "chat.py", "--image", str(picture)], cwd=run, capture_output=True, text=True,
        input="What shape is in the picture?\n/exit\n", timeout=300,
    )  # fmt: skip
    assert chat.returncode == 0 and "Assistant: " in chat.stdout and chat.stdout.split("Assistant: ")[1].strip()

    with serving(run) as base:
        from openai import BadRequestError, OpenAI

        client = OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=120)
        url = "data:image/png;base64," + base64.b64encode(picture.read_bytes()).decode()
        parts = [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "What shape is in the picture?"},
        ]
        reply = client.chat.completions.create(model="vl", messages=[{"role": "user", "content": parts}])
        assert reply.choices[0].message.content.strip()
        parts[0]["image_url"]["url"] = "http://127.0.0.1:1/x.png"
        with pytest.raises(BadRequestError, match="does not download images"):
            client.chat.completions.create(model="vl", messages=[{"role": "user", "content": parts}])


def test_cutoff_never_cuts_through_an_image(demo):
    from transformers import AutoTokenizer

    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.multimodal import MediaTokens, VisionConversationEncoder
    from ffc.runtime.data.tokenize import MaskOptions
    from ffc.runtime.vlm import load_processor

    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-vlm")
    processor = load_processor(str(demo / "tiny-vlm"), tokenizer, max_pixels=112 * 112, min_pixels=112 * 112)  # 16
    picture = str(demo / "data" / "demo_vision" / "circle_red_0.png")
    turns = [
        {"role": "user", "content": "<image>What shape?"},
        {"role": "assistant", "content": "A circle."},
        {"role": "user", "content": "<image>And this one?"},
        {"role": "assistant", "content": "A circle."},
    ]
    batch = {"messages": [turns], "system": [""], "tools": [""], "images": [[picture, picture]], "videos": [[]]}

    def encode(cutoff):
        opts = MaskOptions(cutoff_len=cutoff)
        images = MediaTokens(processor, vision_plugin("qwen2_vl"))
        return VisionConversationEncoder(tokenizer, get_template("qwen2_vl"), opts, images).encode_batch(batch)

    full = encode(4096)
    assert full["input_ids"][0].count(tokenizer.convert_tokens_to_ids("<|image_pad|>")) == 32
    cut = encode(len(full["input_ids"][0]) - 5)  # the second turn no longer fits: dropped whole, with its image
    assert cut["_truncated"] == [True] and cut["images"][0] == [picture]
    assert cut["input_ids"][0].count(tokenizer.convert_tokens_to_ids("<|image_pad|>")) == 16
    kept = cut["input_ids"][0]
    assert kept == full["input_ids"][0][: len(kept)] and kept[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    dropped = encode(20)  # not even the first image fits: the sample is dropped with the reason
    assert dropped["input_ids"] == [[]] and "longer than cutoff_len" in dropped["_drop"][0]


def test_lora_all_and_freezing_leave_the_vision_tower_alone(demo):
    from transformers import AutoModelForImageTextToText

    from ffc.runtime.vlm import freeze_parts, lora_targets

    model = AutoModelForImageTextToText.from_pretrained(demo / "tiny-vlm")
    targets = lora_targets(model)
    assert targets and all(name.startswith("model.language_model.") for name in targets)
    assert lora_targets(model, ["q_proj"]) == [name for name in targets if name.endswith("q_proj")]

    def trainable(prefix):
        return {p.requires_grad for name, p in model.named_parameters() if name.startswith(prefix)}

    freeze_parts(model)  # the defaults: vision tower and projector fixed, language model trained
    assert trainable("model.visual.") == {False} and trainable("model.language_model.") == {True}
    freeze_parts(model, train_mm_proj_only=True)
    assert trainable("model.visual.merger.") == {True} and trainable("model.visual.blocks.") == {False}
    assert trainable("model.language_model.") == {False} and trainable("lm_head.") == {False}


def test_qwen3_vl_encodes_batches_and_trains_one_step(demo):
    """No Qwen3-VL demo model: a tiny random one here checks that the encoder, the collator and the model agree."""
    from transformers import AutoTokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.multimodal import MediaTokens, VisionCollator, VisionConversationEncoder
    from ffc.runtime.data.tokenize import MaskOptions
    from ffc.runtime.vlm import assemble_processor

    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-vlm")
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    }
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16,
            rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True},
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            deepstack_visual_indexes=[0], patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    model = Qwen3VLForConditionalGeneration(config)
    pixels = Qwen2VLImageProcessorPil(patch_size=16, min_pixels=64 * 64, max_pixels=128 * 128)
    images = MediaTokens(assemble_processor(Qwen3VLProcessor, pixels, tokenizer), vision_plugin("qwen3_vl"))
    registry = json.loads((demo / "data" / "dataset_info.json").read_text())
    raw = load_datasets(demo / "data", registry, ["demo_vision"], "conversations", media=True, max_samples=4)
    encoder = VisionConversationEncoder(tokenizer, get_template("qwen3_vl"), MaskOptions(cutoff_len=256), images)
    data, _ = tokenize_dataset(raw, encoder)
    batch = VisionCollator(tokenizer.pad_token_id, images)(list(data))
    loss = model(**batch).loss
    loss.backward()
    assert loss.item() > 0 and model.lm_head.weight.grad is not None
