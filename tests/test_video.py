"""Videos (Qwen-VL families): frame sampling, Qwen's video pixels, rows, expansion, build checks, a run."""

import json
import subprocess
import sys

import pytest

from ffc.runtime.data.loading import DataError, load_datasets

from ._vlm import video_settings

av = pytest.importorskip("av", reason="videos need PyAV (the video extra: pip install -e '.[video]')")

SHAREGPT_VIDEO = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "videos": "videos"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}


def _row(text="<video>Which way?", videos=("clip.mp4",)):
    return {
        "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Up."}],
        "videos": list(videos),
    }


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 2-second clip at 4 fps (8 frames), a 5-frame clip, its frames as images, and a corrupt file."""
    from ffc.devtools.vlm import draw_clip, write_clip

    folder = tmp_path_factory.mktemp("clips")
    frames = draw_clip("circle", "red", "up")
    write_clip(folder / "clip.mp4", frames)
    write_clip(folder / "odd.mp4", frames[:5])
    (folder / "frames").mkdir()
    for number, frame in enumerate(frames):
        frame.save(folder / "frames" / f"{number}.png")
    (folder / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    return folder


def _load(folder, rows, **kwargs):
    (folder / "vid.json").write_text(json.dumps(rows))
    return load_datasets(folder, {"vid": {"file_name": "vid.json", **SHAREGPT_VIDEO}}, ["vid"], "conversations", media=True, **kwargs)  # fmt: skip


# --- frames and pixels -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fps, maxlen, indices",
    [(2.0, 128, [0, 2, 4, 7]), (4.0, 128, list(range(8))), (2.0, 3, [0, 3, 7]), (0.25, 128, [0])],
)
def test_frames_sampled_by_fps_and_maxlen(clips, fps, maxlen, indices):
    """LLaMA-Factory's rule: min(frames, maxlen, seconds x fps) frames spread evenly from first to last."""
    from ffc.runtime.data.video import read_video

    frames, metadata = read_video(str(clips / "clip.mp4"), video_settings(fps=fps, maxlen=maxlen))
    assert metadata.frames_indices == indices and len(frames) == len(indices)
    assert metadata.fps == 4.0 and metadata.duration == 2.0 and metadata.total_num_frames == 8
    # the circle moves up: lower in the first sampled frame than in the last
    rows = [[y for y in range(56) if frame.getpixel((28, y))[1] < 120] for frame in (frames[0], frames[-1])]
    if len(frames) > 1:
        assert sum(rows[0]) / len(rows[0]) > sum(rows[1]) / len(rows[1]) + 10


@pytest.mark.parametrize("form", ["mkv", "bytes"])
def test_headerless_and_in_memory_videos_sample_alike(clips, form):
    """Matroska stores no frame count (ffc counts the frames first); the API hands over a video's bytes."""
    from ffc.devtools.vlm import draw_clip, write_clip
    from ffc.runtime.data.video import read_video

    path = write_clip(clips / "clip.mkv", draw_clip("circle", "red", "up"))
    assert av.open(str(path)).streams.video[0].frames == 0
    reference = str(path) if form == "mkv" else (clips / "clip.mp4").read_bytes()
    frames, metadata = read_video(reference, video_settings())
    expected, _ = read_video(str(clips / "clip.mp4"), video_settings())
    assert metadata.frames_indices == [0, 2, 4, 7] and metadata.total_num_frames == 8
    assert [frame.getpixel((28, 30)) for frame in frames] == [frame.getpixel((28, 30)) for frame in expected]


def test_undecodable_bytes_are_a_media_error():
    from ffc.runtime.chat.vision import MediaError
    from ffc.runtime.data.video import read_video

    with pytest.raises(MediaError, match="cannot be decoded"):
        read_video(b"not a video at all" * 10, video_settings())


def test_api_video_url_parts():
    from ffc.runtime.server import InvalidRequest, parse_request, to_conversation

    part = {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [part, {"type": "text", "text": "Which way?"}]}]}
    request = parse_request(json.dumps(body).encode(), images=True, videos=True)
    _, messages = to_conversation(request.messages)
    assert messages == [{"role": "user", "content": "<video>Which way?", "video_urls": ["data:video/mp4;base64,AAAA"]}]
    with pytest.raises(InvalidRequest, match="not trained on videos"):
        parse_request(json.dumps(body).encode(), images=True)
    with pytest.raises(InvalidRequest, match="reads text only"):
        parse_request(json.dumps(body).encode())


def test_frame_list_is_a_clip_at_video_fps(clips):
    from ffc.runtime.data.video import read_video

    frames = json.dumps([str(clips / "frames" / f"{n}.png") for n in range(8)])
    pictures, metadata = read_video(frames, video_settings(fps=2.0, maxlen=4))
    assert metadata.frames_indices == [0, 2, 4, 7] and metadata.fps == 2.0 and len(pictures) == 4


def test_still_video_equals_the_picture():
    """Qwen writes a picture as a clip of two identical frames: ffc's video patches of such a clip must equal
    transformers' image processor's patches, value for value (the layout check of QwenVideoProcessor)."""
    import numpy as np
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from ffc.runtime.data.video import QwenVideoProcessor

    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 130, 3), dtype=np.uint8))
    pictures = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    expected = pictures([picture], return_tensors="np")
    videos = QwenVideoProcessor(pictures, video_settings(max_pixels=112 * 112, min_pixels=56 * 56))
    patches, grid = videos.frames_to_patches([picture, picture])
    assert grid == tuple(expected["image_grid_thw"][0]) == (1, 6, 10)
    assert np.array_equal(patches, expected["pixel_values"])
    # frames in time order: a clip of two different frames is not the picture of either
    other, _ = videos.frames_to_patches([picture, picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    assert not np.array_equal(other, patches)


def test_odd_frame_count_repeats_the_last_frame(clips):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from ffc.runtime.data.video import QwenVideoProcessor, read_video

    settings = video_settings(fps=4.0)
    frames, metadata = read_video(str(clips / "odd.mp4"), settings)
    assert len(frames) == 5
    out = QwenVideoProcessor(Qwen2VLImageProcessorPil(), settings)([(frames, metadata)])
    assert out["video_grid_thw"].tolist() == [[3, 4, 4]]  # 5 frames -> 3 pairs; 56 px -> 4x4 patches
    assert out["pixel_values_videos"].shape == (3 * 16, 3 * 2 * 14 * 14)
    assert out["second_per_grid_ts"].tolist() == [0.5]  # two frames of a 4-fps clip


# --- rows ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, message",
    [
        (_row("Which way?"), "0 <video> placeholders in the text but 1 file in 'videos'"),
        (_row(videos=("missing.mp4",)), "missing.mp4 not found (paths are relative to the dataset directory)"),
        (_row(videos=("bad.mp4",)), "bad.mp4 cannot be decoded"),
        (_row(videos=(["frames/0.png", "frames/9.png"],)), "video frame"),
        ({**_row(), "videos": [7]}, "'videos' entry 1 must be a video file path or a list of frame paths"),
    ],
    ids=["no-placeholder", "missing", "corrupt", "missing-frame", "not-a-path"],
)
def test_bad_video_rows_name_file_and_row(clips, bad, message):
    with pytest.raises(DataError) as info:
        _load(clips, [_row(), bad])
    assert "vid.json: row 2: " in str(info.value) and message in str(info.value)


def test_bad_video_rows_skipped_and_counted(clips):
    data = _load(clips, [_row(), _row(videos=("bad.mp4",)), _row(videos=(["frames/0.png", "frames/1.png"],))], on_bad_row="skip")  # fmt: skip
    assert len(data) == 2
    assert data[0]["videos"] == [str(clips / "clip.mp4")]
    assert json.loads(data[1]["videos"][0]) == [str(clips / "frames" / "0.png"), str(clips / "frames" / "1.png")]


# --- expansion, masks and cutoff -------------------------------------------------------------------------------


def _video_tokens(demo, settings=None, template="qwen2_vl"):
    from transformers import AutoTokenizer

    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.multimodal import MediaTokens
    from ffc.runtime.vlm import load_processor

    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-vlm")
    processor = load_processor(
        str(demo / "tiny-vlm"), tokenizer, max_pixels=None, min_pixels=None, video=settings or video_settings()
    )
    return tokenizer, MediaTokens(processor, vision_plugin(template))


def test_video_expands_to_the_processors_tokens_never_trained(demo):
    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.multimodal import VisionCollator, VisionConversationEncoder
    from ffc.runtime.data.tokenize import IGNORE_INDEX, MaskOptions

    tokenizer, tokens = _video_tokens(demo)
    registry = json.loads((demo / "data" / "dataset_info.json").read_text())
    raw = load_datasets(demo / "data", registry, ["demo_video"], "conversations", media=True, max_samples=4)
    encoder = VisionConversationEncoder(tokenizer, get_template("qwen2_vl"), MaskOptions(cutoff_len=256), tokens)
    data, stats = tokenize_dataset(raw, encoder)
    assert stats.kept == 4
    pad = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    start = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    for row in data:
        # 2 seconds at 2 fps: 4 frames = 2 pairs; 56 px: 4x4 patches merged 2x2 -> 2 x 4 tokens
        assert row["input_ids"].count(pad) == 8
        assert row["input_ids"][row["input_ids"].index(pad) - 1] == start
        assert all(label == IGNORE_INDEX for token, label in zip(row["input_ids"], row["labels"]) if token == pad)
    batch = VisionCollator(tokenizer.pad_token_id, tokens)(list(data))
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4]] * 4
    assert batch["pixel_values_videos"].shape == (4 * 32, 1176)
    assert (batch["mm_token_type_ids"] == 2).sum() == 32
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(demo / "tiny-vlm")
    loss = model(**batch).loss
    loss.backward()
    assert loss.item() > 0 and model.lm_head.weight.grad is not None


def test_cutoff_keeps_whole_videos(demo):
    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.data.multimodal import VisionConversationEncoder
    from ffc.runtime.data.tokenize import MaskOptions

    tokenizer, tokens = _video_tokens(demo, None)
    clip = str(demo / "data" / "demo_video" / "circle_red_up.mp4")
    turns = [
        {"role": "user", "content": "<video>Which way?"},
        {"role": "assistant", "content": "It moves up."},
        {"role": "user", "content": "<video>And this one?"},
        {"role": "assistant", "content": "It moves up."},
    ]
    batch = {"messages": [turns], "system": [""], "tools": [""], "images": [[]], "videos": [[clip, clip]]}
    whole = VisionConversationEncoder(tokenizer, get_template("qwen2_vl"), MaskOptions(cutoff_len=1024), tokens)
    length = len(whole.encode_batch(batch)["input_ids"][0])
    cut = VisionConversationEncoder(tokenizer, get_template("qwen2_vl"), MaskOptions(cutoff_len=length - 4), tokens)
    out = cut.encode_batch(batch)
    assert out["_truncated"] == [True] and out["videos"] == [[clip]]  # the second turn and its video dropped
    assert out["input_ids"][0].count(tokenizer.convert_tokens_to_ids("<|video_pad|>")) == 8
    tiny = VisionConversationEncoder(tokenizer, get_template("qwen2_vl"), MaskOptions(cutoff_len=12), tokens)
    assert "longer than cutoff_len" in tiny.encode_batch(batch)["_drop"][0]


def _tiny_qwen_vl(kind, tokenizer):
    """A random Qwen2.5-VL or Qwen3-VL small enough for a CPU step (no demo model of these families)."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    ids = {
        token: tokenizer.convert_tokens_to_ids(token)
        for token in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    }
    tokens = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    text = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    if kind == "qwen2_5_vl":
        config = Qwen2_5_VLConfig(
            text_config={**text, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[1]),
            **tokens,
        )  # fmt: skip
        return Qwen2_5_VLForConditionalGeneration(config), 14
    config = Qwen3VLConfig(
        text_config={**text, "head_dim": 16,
                     "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True}},
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           deepstack_visual_indexes=[0], patch_size=16, spatial_merge_size=2, temporal_patch_size=2),
        **tokens,
    )  # fmt: skip
    return Qwen3VLForConditionalGeneration(config), 16


@pytest.mark.parametrize("kind, template", [("qwen2_5_vl", "qwen2_vl"), ("qwen3_vl", "qwen3_vl")])
def test_qwen2_5_and_qwen3_vl_read_videos(demo, kind, template):
    """The text each family's processor writes for a video, and a training step of that family on it:
    Qwen2.5-VL also reads the seconds per frame pair; Qwen3-VL writes timestamped frame groups."""
    import transformers
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.multimodal import MediaTokens, VisionCollator, VisionConversationEncoder
    from ffc.runtime.data.tokenize import MaskOptions
    from ffc.runtime.data.video import QwenVideoProcessor
    from ffc.runtime.vlm import assemble_processor

    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-vlm")
    model, patch = _tiny_qwen_vl(kind, tokenizer)
    pictures = Qwen2VLImageProcessorPil(patch_size=patch, min_pixels=64 * 64, max_pixels=128 * 128)
    settings = video_settings(max_pixels=64 * 64, min_pixels=32 * 32)
    cls = transformers.Qwen2_5_VLProcessor if kind == "qwen2_5_vl" else transformers.Qwen3VLProcessor
    processor = assemble_processor(cls, pictures, tokenizer, video_processor=QwenVideoProcessor(pictures, settings))
    tokens = MediaTokens(processor, vision_plugin(template))
    clip = str(demo / "data" / "demo_video" / "square_blue_left.mp4")
    messages = [{"role": "user", "content": "<video>Which way?"}, {"role": "assistant", "content": "Left."}]
    encoder = VisionConversationEncoder(tokenizer, get_template(template), MaskOptions(cutoff_len=512), tokens)
    row = {"messages": [messages], "system": [""], "tools": [""], "images": [[]], "videos": [[clip]]}
    out = encoder.encode_batch(row)
    text = tokenizer.decode(out["input_ids"][0])
    # 56 px frames scaled up to 64 px (4x4 patches of 16, or 56 -> 56: 4x4 of 14): 4 tokens per frame pair
    if kind == "qwen3_vl":
        # frames 0, 2, 4, 7 of a 4-fps clip: pairs centred at 0.25 s and 1.375 s; no marker around the groups
        group = "<|vision_start|>" + "<|video_pad|>" * 4 + "<|vision_end|>"
        assert f"<|im_start|>user\n<0.2 seconds>{group}<1.4 seconds>{group}Which way?" in text
    else:
        assert "<|vision_start|>" + "<|video_pad|>" * 8 + "<|vision_end|>Which way?" in text
    features = [{"input_ids": out["input_ids"][0], "labels": out["labels"][0], "videos": out["videos"][0]}]
    batch = VisionCollator(tokenizer.pad_token_id, tokens)(features)
    assert ("second_per_grid_ts" in batch) == (kind == "qwen2_5_vl")
    if kind == "qwen2_5_vl":
        assert batch["second_per_grid_ts"].tolist() == [1.0]  # 4 of 8 frames over 2 s: a pair spans 1 s
    loss = model(**batch).loss
    loss.backward()
    assert loss.item() > 0 and model.lm_head.weight.grad is not None


# --- build -----------------------------------------------------------------------------------------------------


def _video_spec(tmp_path, template="qwen2_vl", stage="sft", extra=""):
    from ffc.devtools.vlm import write_video_data

    data = tmp_path / "data"
    if not (data / "dataset_info.json").exists():
        write_video_data(data, size=12)
        info = json.loads((data / "dataset_info.json").read_text())
        info["audio"] = {"file_name": "audio.json", **SHAREGPT_VIDEO, "columns": {"messages": "messages", "audios": "audios"}}  # fmt: skip
        (data / "audio.json").write_text("[]")
        (data / "dataset_info.json").write_text(json.dumps(info))
    spec = tmp_path / "video.yaml"
    spec.write_text(
        f"model:\n  model_name_or_path: Qwen/Qwen2.5-VL-3B-Instruct\nmethod:\n  stage: {stage}\n"
        f"data:\n  dataset: [demo_video]\n  dataset_dir: data\n  template: {template}\n{extra}"
    )
    return spec


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["data.template=llava"], ["chat template 'llava' has no video input", "qwen2_vl or qwen3_vl"]),
        (["data.template=qwen"], ["chat template 'qwen' has no image input"]),
        (["method.stage=pt", "data.template=null"], ["stage pt cannot train on videos"]),
        (["data.dataset=[audio]"], ["dataset 'audio' has audios: ffc does not train on audio yet"]),
        (["model.video_min_pixels=100000"], ["video_min_pixels (100000) is more than video_max_pixels (65536)"]),
    ],
    ids=["image-only-template", "text-template", "pt", "audio", "pixel-bounds"],
)
def test_build_refuses_what_cannot_read_videos(tmp_path, overrides, fragments):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import SpecError, load_spec

    with pytest.raises(SpecError) as info:
        build_files(load_spec(_video_spec(tmp_path), overrides), tmp_path / "run")
    message = str(info.value)
    assert message.startswith((str(tmp_path), "--set")) and all(fragment in message for fragment in fragments), message


def test_video_run_generates_its_settings_and_pins_pyav(tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec

    spec = _video_spec(tmp_path, extra="  cutoff_len: 512\n")
    built = build_files(load_spec(spec, ["model.video_fps=1.5", "model.video_maxlen=16"]), tmp_path / "run")[1]
    files = {name: content.decode() for name, content in dict(built).items()}
    train = files["train.py"]
    assert (
        "VIDEO = VideoSettings(\n    fps=1.5,\n    maxlen=16,\n    max_pixels=65536,\n    min_pixels=256,\n)" in train
    )
    assert "video=VIDEO" in train and "video=VIDEO" in files["chat.py"] and "--video" in files["chat.py"]
    assert "av==" in files["requirements.txt"]
    images_only = _image_run_files(tmp_path)
    assert "VideoSettings" not in images_only["train.py"] and "--video" not in images_only["chat.py"]
    assert "av==" not in images_only["requirements.txt"]


def _image_run_files(tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec
    from ffc.devtools.vlm import write_vision_data

    write_vision_data(tmp_path / "data", size=12)
    spec = tmp_path / "image.yaml"
    spec.write_text(
        "model:\n  model_name_or_path: Qwen/Qwen2-VL-2B-Instruct\nmethod:\n  stage: sft\n"
        "data:\n  dataset: [demo_vision]\n  dataset_dir: data\n  template: qwen2_vl\n"
    )
    return {
        name: content.decode()
        for name, content in dict(build_files(load_spec(spec), tmp_path / "image-run")[1]).items()
    }


# --- the demo VLM end to end -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_video_sft_previews_trains_evaluates_exports_chats_and_serves(demo, tmp_path):
    from ._vlm import built_run

    extra = (
        "training: {learning_rate: 2.0e-3, max_steps: 40, per_device_train_batch_size: 8, "
        "gradient_accumulation_steps: 1, logging_steps: 5, save_strategy: 'no'}\n"
        "inference: {temperature: 0, max_new_tokens: 8}\neval: {predict_dataset: [demo_video], max_samples: 8}\n"
    )
    run = built_run(demo, tmp_path, "sft", "demo_video", extra, data="", method=", lora_rank: 16")
    preview = subprocess.run([sys.executable, "train.py", "--preview", "2"], cwd=run, capture_output=True, text=True)
    assert preview.returncode == 0, preview.stderr[-3000:]
    assert preview.stdout.count("<|vision_start|><|video_pad|>×8<|vision_end|>") == 2
    assert all("video_pad" not in line.split("«", 1)[1] for line in preview.stdout.splitlines() if "«" in line)

    done = subprocess.run([sys.executable, "train.py"], cwd=run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (run / "output" / "trainer_log.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in log if '"loss"' in line]
    assert losses[-1] < losses[0] - 0.3, losses

    evaluated = subprocess.run([sys.executable, "eval.py"], cwd=run, capture_output=True, text=True)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    predictions = [json.loads(line) for line in next(run.rglob("generated_predictions.jsonl")).read_text().splitlines()]  # fmt: skip
    assert len(predictions) == 8 and all(p["prompt"].startswith("<video>") for p in predictions)

    clip = demo / "data" / "demo_video" / "circle_red_up.mp4"
    chat = subprocess.run(
        [sys.executable, "chat.py", "--video", str(clip)], cwd=run, capture_output=True, text=True,
        input="Which way does the shape move?\n/video missing.mp4\nAnd now?\n/exit\n", timeout=300,
    )  # fmt: skip
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert chat.stdout.split("Assistant: ")[1].split("User:")[0].strip()  # an answer about the clip
    assert "video missing.mp4: not found" in chat.stdout + chat.stderr

    exported = subprocess.run([sys.executable, "export.py"], cwd=run, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr[-3000:]
    frames = json.loads((run / "exported" / "video_preprocessor_config.json").read_text())
    assert frames["fps"] == 2.0 and frames["size"] == {"longest_edge": 65536, "shortest_edge": 256}
    chat = subprocess.run(
        [sys.executable, "chat.py", "--model", "exported", "--adapter", "none", "--video", str(clip)], cwd=run,
        capture_output=True, text=True, input="Which way does the shape move?\n/exit\n", timeout=300,
    )  # fmt: skip
    assert chat.returncode == 0 and chat.stdout.split("Assistant: ")[1].split("User:")[0].strip(), chat.stderr[-3000:]

    import base64

    from openai import BadRequestError, OpenAI

    from .conftest import serving

    with serving(run) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=120)
        url = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
        parts = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "Which way?"}]
        reply = client.chat.completions.create(model="vl-sft", messages=[{"role": "user", "content": parts}])
        assert reply.choices[0].message.content.strip()
        parts[0]["video_url"]["url"] = "data:video/mp4;base64," + base64.b64encode(b"no video" * 40).decode()
        with pytest.raises(BadRequestError, match="cannot be decoded"):
            client.chat.completions.create(model="vl-sft", messages=[{"role": "user", "content": parts}])


def test_qlora_leaves_the_vision_tower_unquantized(demo, tmp_path):
    """The build's llm_int8_skip_modules (from the template's family) match the model's module names as
    transformers reads them: vision tower and merger stay 16-bit, the language model is 4-bit."""
    import ast

    import torch
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec

    pytest.importorskip("bitsandbytes")
    spec = _video_spec(tmp_path, extra="")
    built = dict(build_files(load_spec(spec, ["model.quantization_bit=4"]), tmp_path / "run")[1])
    line = next(line for line in built["train.py"].decode().splitlines() if "llm_int8_skip_modules=" in line)
    skip = ast.literal_eval(line.split("=", 1)[1].split("#")[0].strip().rstrip(","))
    assert skip == ["model.visual", "lm_head"]
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32, llm_int8_skip_modules=skip)
    model = AutoModelForImageTextToText.from_pretrained(demo / "tiny-vlm", quantization_config=config)
    kinds = {"vision": set(), "language": set()}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            kinds["vision" if ".visual." in name else "language"].add(type(module).__name__)
    assert kinds == {"vision": {"Linear"}, "language": {"Linear4bit"}}


def test_filler_media_leave_the_loss_unchanged(demo):
    """A batch without pictures gets a blank one after its first row (so every process runs the vision tower):
    the loss is the same as without it, and the first row's real tokens are untouched."""
    import torch
    from transformers import AutoModelForImageTextToText

    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.multimodal import VisionCollator, VisionConversationEncoder
    from ffc.runtime.data.tokenize import MaskOptions

    tokenizer, tokens = _video_tokens(demo)
    registry = json.loads((demo / "data" / "dataset_info.json").read_text())
    raw = load_datasets(demo / "data", registry, ["demo_video"], "conversations", media=True, max_samples=3)
    encoder = VisionConversationEncoder(tokenizer, get_template("qwen2_vl"), MaskOptions(cutoff_len=256), tokens)
    rows = list(tokenize_dataset(raw, encoder)[0])
    plain = VisionCollator(tokenizer.pad_token_id, tokens)(rows)
    filled = VisionCollator(tokenizer.pad_token_id, tokens, every_batch=("images", "videos"))(rows)
    assert "pixel_values" not in plain and filled["image_grid_thw"].tolist() == [[1, 4, 4]]  # at the demo's 56 px
    assert torch.equal(filled["pixel_values_videos"], plain["pixel_values_videos"])  # the batch had videos
    width = len(rows[0]["input_ids"])
    assert torch.equal(filled["input_ids"][0, :width], plain["input_ids"][0, :width])
    model = AutoModelForImageTextToText.from_pretrained(demo / "tiny-vlm").eval()
    with torch.no_grad():
        assert torch.allclose(model(**filled).loss, model(**plain).loss, atol=1e-6)


@pytest.mark.slow
def test_zero3_two_processes_train_on_images_and_videos(demo, tmp_path):
    """DeepSpeed ZeRO-3 over two processes (gloo on CPU), full tuning with gradient checkpointing, on a mix of
    picture and clip datasets: batches with different media would leave the processes' parameter gathering
    out of step without the collator's fillers (the run used to abort in gloo)."""
    import os
    from pathlib import Path

    pytest.importorskip("deepspeed")
    spec = tmp_path / "zero3.yaml"
    spec.write_text(
        f"name: zero3\nmodel: {{model_name_or_path: {demo / 'tiny-vlm'}}}\nmethod: {{stage: sft, finetuning_type: full}}\n"
        f"data: {{dataset: [demo_video, demo_vision], dataset_dir: {demo / 'data'}, template: qwen2_vl, cutoff_len: 256}}\n"
        "training: {learning_rate: 1.0e-4, max_steps: 4, per_device_train_batch_size: 4, logging_steps: 1, "
        "save_strategy: 'no', gradient_checkpointing: true}\nlogging: {report_to: [none]}\n"
        "distributed: {backend: deepspeed, num_processes: 2, deepspeed: {zero_stage: 3, offload_optimizer: false}}\n"
    )
    run = tmp_path / "run"
    built = subprocess.run([sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    done = subprocess.run(["bash", "launch.sh"], cwd=run, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-5000:]
    log = [json.loads(line) for line in (run / "output" / "trainer_log.jsonl").read_text().splitlines()]
    assert max(entry.get("current_steps", 0) for entry in log) == 4, log[-1]


def test_sharded_preference_runs_refuse_mixed_media(tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import SpecError, load_spec
    from ffc.devtools.vlm import write_video_data, write_vision_data

    write_video_data(write_vision_data(tmp_path / "data", size=8), size=8)
    spec = tmp_path / "dpo.yaml"
    spec.write_text(
        "model:\n  model_name_or_path: Qwen/Qwen2-VL-2B-Instruct\nmethod:\n  stage: dpo\n"
        "data:\n  dataset: [demo_video_pairs, demo_vision_pairs]\n  dataset_dir: data\n  template: qwen2_vl\n"
        "distributed:\n  backend: deepspeed\n  deepspeed:\n    zero_stage: 3\n"
    )
    with pytest.raises(SpecError, match="every dpo batch must hold the same kind of media"):
        build_files(load_spec(spec), tmp_path / "run")
    for fits in (["distributed.deepspeed.zero_stage=2"], ["data.dataset=[demo_video_pairs]"]):
        build_files(load_spec(spec, fits), tmp_path / "run")  # ZeRO-2, or one media kind: built


def test_api_videos_are_bounded_and_errors_name_the_video(clips, monkeypatch, demo):
    from ffc.runtime.chat.vision import MediaError
    from ffc.runtime.data import video as video_module
    from ffc.runtime.data.multimodal import VisionCollator
    from ffc.runtime.data.video import read_video
    from ffc.runtime.errors import UserError

    monkeypatch.setattr(video_module, "MAX_API_FRAMES", 4)
    with pytest.raises(MediaError, match="has 8 frames, more than the 4"):
        read_video((clips / "clip.mp4").read_bytes(), video_settings())  # a request's bytes: bounded
    assert len(read_video(str(clips / "clip.mp4"), video_settings())[0]) == 4  # a dataset's file: not
    odd = clips / "[draft] clip.mp4"  # a file whose name reads like a frame list is a file
    odd.write_bytes((clips / "clip.mp4").read_bytes())
    assert read_video(str(odd), video_settings())[1].total_num_frames == 8

    _, tokens = _video_tokens(demo)
    broken = str(clips / "bad.mp4")
    with pytest.raises(UserError, match=f"a training batch cannot be made: video {broken} cannot be decoded"):
        VisionCollator(0, tokens)([{"input_ids": [1, 2], "labels": [1, 2], "videos": [broken]}])


def test_frames_are_resized_as_they_are_decoded(clips):
    """Only the sampled frames are kept, each already at the size the processor gives it."""
    from ffc.runtime.data.video import read_video

    frames, _ = read_video(str(clips / "clip.mp4"), video_settings(), frame_size=lambda h, w: (28, 28))
    assert {frame.size for frame in frames} == {(28, 28)} and len(frames) == 4


@pytest.mark.parametrize(
    "processor, family, size",
    [
        ("Qwen2VLProcessor", "Qwen2VLVideoProcessor", {"shortest_edge": 256, "longest_edge": 65536}),
        ("Qwen3VLProcessor", "Qwen3VLVideoProcessor", {"shortest_edge": 512, "longest_edge": 65536 * 16}),
    ],
)
def test_exported_video_settings_per_family(processor, family, size):
    """Qwen2-VL's processor bounds each frame, Qwen3-VL's the whole clip (frames x pixels)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from ffc.runtime.data.video import QwenVideoProcessor

    videos = QwenVideoProcessor(Qwen2VLImageProcessorPil(), video_settings(fps=1.0, maxlen=16))
    config = videos.transformers_config(processor)
    assert config["video_processor_type"] == family and config["size"] == size
    assert config["fps"] == 1.0 and config["max_frames"] == 16 and config["min_frames"] == 2


def test_grids_without_pixels_match_the_patches(clips):
    """Tokenising asks for the grids only (no patches): they must be the grids the pixels come with."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from ffc.runtime.data.video import QwenVideoProcessor

    videos = QwenVideoProcessor(Qwen2VLImageProcessorPil(), video_settings(fps=4.0, max_pixels=96 * 96))
    read = [videos.read(str(clips / name), name) for name in ("clip.mp4", "odd.mp4")]
    with_pixels, grids_only = videos(read), videos(read, pixels=False)
    assert grids_only["video_grid_thw"].tolist() == with_pixels["video_grid_thw"].tolist() == [[4, 4, 4], [3, 4, 4]]
    assert "pixel_values_videos" not in grids_only
    assert grids_only["second_per_grid_ts"].tolist() == with_pixels["second_per_grid_ts"].tolist()
