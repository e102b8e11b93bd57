"""Vision-language runs beyond SFT: preference stages with images (dpo, orpo, simpo, kto), their build checks."""

import json
import math
import subprocess
import sys

import pytest

from ._vlm import build_refusal, built_run, encoded, tiny_vlm, train_logs, vision_inputs, vlm_spec, written_ruff_clean

IMAGE_PAD = "<|image_pad|>"


def test_pairs_share_the_prompts_images_and_cutoff_never_cuts_them(demo):
    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.pairs import PairEncoder

    tokenizer, _, raw, encoder = encoded(demo, "demo_vision_pairs", "pairs", PairEncoder)
    data, stats = tokenize_dataset(raw, encoder)
    pad = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    for row, source in zip(data, raw):
        assert row["images"] == source["images"] and len(row["images"]) == 1
        assert row["prompt_ids"].count(pad) == 4  # 56 px: 4x4 patches merged 2x2
        assert pad not in row["chosen_ids"] and pad not in row["rejected_ids"]
    assert stats.truncated == 0

    # 112 px pictures: 16 vision tokens; a cutoff just past the prompt shortens the responses, never the prompt
    tokenizer, _, raw, encoder = encoded(demo, "demo_vision_pairs", "pairs", PairEncoder, max_pixels=112 * 112)
    full = encoder.encode_batch(raw[:1])
    prompt = full["prompt_ids"][0]
    assert prompt.count(pad) == 16
    encoder.opts.cutoff_len = len(prompt) + 2
    cut = encoder.encode_batch(raw[:1])
    assert cut["prompt_ids"][0] == prompt and cut["_truncated"] == [True]
    assert cut["chosen_ids"][0] == full["chosen_ids"][0][:2] and cut["rejected_ids"][0] == full["rejected_ids"][0][:2]
    encoder.opts.cutoff_len = len(prompt) - 3  # the prompt with its image alone is too long: dropped with the reason
    dropped = encoder.encode_batch(raw[:1])
    assert dropped["prompt_ids"] == [[]] and "16 vision tokens" in dropped["_drop"][0]


def test_kto_rows_keep_their_images(demo):
    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.pairs import KTOEncoder

    tokenizer, _, raw, encoder = encoded(demo, "demo_vision_kto", "kto", KTOEncoder)
    data, _ = tokenize_dataset(raw, encoder)
    pad = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    assert [row["images"] for row in data] == [row["images"] for row in raw]
    assert all(row["prompt_ids"].count(pad) == 4 and pad not in row["completion_ids"] for row in data)
    assert {row["label"] for row in data} == {True, False}


def test_placeholder_in_a_response_is_a_row_drop(demo):
    from ffc.runtime.data.pairs import PairEncoder

    _, _, raw, encoder = encoded(demo, "demo_vision_pairs", "pairs", PairEncoder)
    batch = raw[:1]
    batch["chosen"] = ["<image>" + batch["chosen"][0]]
    batch["messages"] = [[{**m, "content": m["content"].replace("<image>", "")} for m in batch["messages"][0]]]
    out = encoder.encode_batch(batch)
    assert out["prompt_ids"] == [[]] and "media belong in prompts" in out["_drop"][0]


def test_dpo_batches_carry_the_pixels_of_both_halves(demo):
    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.pairs import PairEncoder
    from ffc.runtime.data.vision_pairs import VisionBatchCollator, for_trl

    tokenizer, processor, raw, encoder = encoded(demo, "demo_vision_pairs", "pairs", PairEncoder)
    data = for_trl(tokenize_dataset(raw, encoder)[0])
    assert "images" not in data.column_names  # TRL would otherwise switch to its own text-level vision pipeline
    pad = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    collate = VisionBatchCollator(DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id), encoder.vision, 2)
    batch = collate(list(data))
    rows = len(data)
    assert batch["input_ids"].shape[0] == 2 * rows and batch["image_grid_thw"].shape[0] == 2 * rows
    assert torch.equal(batch["mm_token_type_ids"], (batch["input_ids"] == pad).long())
    patches = int(batch["image_grid_thw"].prod(-1).sum())
    assert batch["pixel_values"].shape[0] == patches and int(batch["mm_token_type_ids"].sum()) == patches // 4

    # The pictures reach the model: other pixels, other log-probabilities of the same tokens.
    model = tiny_vlm(demo).eval()
    with torch.no_grad():
        logits = model(**batch).logits
        other = model(**{**batch, "pixel_values": torch.zeros_like(batch["pixel_values"])}).logits
    assert not torch.allclose(logits, other)


def test_orpo_and_simpo_forward_passes_see_the_pixels(demo, tmp_path):
    import torch

    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.pairs import PairEncoder
    from ffc.runtime.data.vision_pairs import VisionBatchCollator, for_trl
    from ffc.runtime.trainers import (
        ChunkedORPOTrainer,
        ORPOConfig,
        PretokenizedORPOTrainer,
        legacy_pair_collator,
        to_legacy_pairs,
    )

    tokenizer, processor, raw, encoder = encoded(demo, "demo_vision_pairs", "pairs", PairEncoder)
    data = for_trl(to_legacy_pairs(tokenize_dataset(raw, encoder)[0]))
    model = tiny_vlm(demo)
    collate = VisionBatchCollator(legacy_pair_collator(tokenizer.pad_token_id), encoder.vision, 2)
    args = ORPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, remove_unused_columns=False, max_length=256)
    trainer = PretokenizedORPOTrainer(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, data_collator=collate
    )
    assert trainer.use_dpo_data_collator  # evaluation takes the wrapped collator's batches without a warning
    batch = collate(list(data))
    with torch.no_grad():
        seen = trainer.concatenated_forward(model, batch)[0]
        blank = trainer.concatenated_forward(model, {**batch, "pixel_values": torch.zeros_like(batch["pixel_values"])})[
            0
        ]
    assert torch.isfinite(seen).all() and not torch.allclose(seen, blank)
    chunked = ChunkedORPOTrainer(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, data_collator=collate
    )
    with torch.no_grad():  # the chunked log-probabilities (the default) see the same pixels
        assert torch.allclose(chunked.concatenated_forward(model, batch)[0], seen, atol=1e-5)


# --- build: which stages take images ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stage, dataset",
    [
        ("dpo", "demo_vision_pairs"),
        ("orpo", "demo_vision_pairs"),
        ("simpo", "demo_vision_pairs"),
        ("kto", "demo_vision_kto"),
    ],
)
@pytest.mark.parametrize("method", ["lora", "full"])
def test_preference_stages_build_the_vision_path(demo, tmp_path, stage, dataset, method):
    overrides = [f"method.finetuning_type={method}", "training.per_device_train_batch_size=4"]
    train = written_ruff_clean(vlm_spec(demo, tmp_path, stage, dataset), tmp_path / "run", overrides)
    for marker in ("AutoModelForImageTextToText", "MediaTokens(", "VisionBatchCollator(", "for_trl(", "media=True"):
        assert marker in train
    assert "AutoModelForCausalLM" not in train and "VideoSettings" not in train
    assert ("freeze_parts(" in train) == (method == "full") and ("lora_targets(model)" in train) == (method == "lora")


@pytest.mark.parametrize(
    "stage, dataset, reason",
    [
        ("rm", "demo_vision_pairs", "no sequence-classification head for vision-language models"),
        ("grpo", "demo_vision", "pre-tokenised text prompts only"),
        ("ppo", "demo_vision", "take text only"),
    ],
)
def test_stages_without_images_are_refused_with_the_reason(demo, tmp_path, stage, dataset, reason):
    message = build_refusal(demo, tmp_path, stage, dataset)
    assert f"stage {stage} cannot train on images" in message and reason in message
    assert "stages that can: sft, dpo, orpo, simpo, kto" in message


# --- training ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dpo_with_images_trains(demo, tmp_path):
    """LoRA DPO on pictures: the reference is the base model, so margins start at exactly 0; after training, the
    chosen answers (right about the picture) are preferred over the rejected ones on the pairs trained on."""
    extra = (
        "training: {learning_rate: 1.0e-2, max_steps: 12, per_device_train_batch_size: 4, gradient_accumulation_steps: 1, "
        "logging_steps: 1, save_strategy: 'no', eval_strategy: steps, eval_steps: 12, per_device_eval_batch_size: 8}\n"
    )
    data = ", max_samples: 8, eval_dataset: [demo_vision_pairs]"  # margins measured on the pairs trained on
    run = built_run(demo, tmp_path, "dpo", "demo_vision_pairs", extra, data)
    logs = train_logs(run)
    steps = [log for log in logs if "loss" in log]
    assert steps[0]["rewards/margins"] == 0 and all(math.isfinite(log["loss"]) for log in steps)
    final = [log for log in logs if "eval_rewards/margins" in log][-1]
    assert final["eval_rewards/margins"] > 0 and final["eval_loss"] < math.log(2), final
    assert (run / "output" / "preprocessor_config.json").exists()  # saved beside the adapter for chat/export
    done = subprocess.run([sys.executable, "export.py"], cwd=run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    from transformers import AutoConfig, AutoImageProcessor

    exported = run / "exported"
    assert AutoConfig.from_pretrained(exported).model_type == "qwen2_vl"
    assert AutoImageProcessor.from_pretrained(exported, backend="pil").size.longest_edge == 589824  # the run's bound


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, dataset", [("orpo", "demo_vision_pairs"), ("simpo", "demo_vision_pairs"), ("kto", "demo_vision_kto")]
)
def test_other_preference_stages_train_on_images(demo, tmp_path, stage, dataset):
    extra = (
        "training: {learning_rate: 1.0e-3, max_steps: 2, per_device_train_batch_size: 4, gradient_accumulation_steps: 1, "
        "logging_steps: 1, save_strategy: 'no'}\n"
    )
    logs = train_logs(built_run(demo, tmp_path, stage, dataset, extra))
    losses = [log["loss"] for log in logs if "loss" in log]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)


# --- export and evaluation -----------------------------------------------------------------------------------------


@pytest.fixture
def exported(demo, tmp_path):
    """The demo VLM through export's merge-and-save (no adapter), with a default system prompt."""
    from ffc.runtime.vlm import merge_and_save_vlm

    folder = tmp_path / "exported"
    merge_and_save_vlm(
        str(demo / "tiny-vlm"), None, folder, processor_dir=str(demo / "tiny-vlm"), dtype="float32",
        default_system='Answer "briefly" {{ here }} %}.',
    )  # fmt: skip
    return folder


IMAGE_TURN = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape is in the picture?"}]}
]


def test_export_keeps_the_runs_default_system(exported):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported)
    text = tokenizer.apply_chat_template(IMAGE_TURN, add_generation_prompt=True, tokenize=False)
    assert text.startswith('<|im_start|>system\nAnswer "briefly" {{ here }} %}.<|im_end|>\n')
    assert "<|vision_start|><|image_pad|><|vision_end|>What shape" in text  # the official template's image part
    own = [{"role": "system", "content": "Mine."}, *IMAGE_TURN]
    assert tokenizer.apply_chat_template(own, tokenize=False).startswith("<|im_start|>system\nMine.<|im_end|>")


def test_built_export_passes_the_default_system(demo, tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec

    spec = vlm_spec(demo, tmp_path, "sft", "demo_vision", data=", default_system: Look closely.")
    files = build_files(load_spec(spec), tmp_path / "run")[1]
    assert 'default_system="Look closely.",' in files["export.py"].decode()


def test_exported_model_reloads_with_auto_processor_and_answers(demo, exported):
    # transformers builds Qwen2-VL's AutoProcessor with its video processor, which needs torchvision; the
    # package index here has only CUDA builds of torchvision, whose operators do not load with the CPU torch.
    pytest.importorskip("torchvision", reason="AutoProcessor of Qwen2-VL needs torchvision (pip extra 'vision')")
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(exported)
    model = AutoModelForImageTextToText.from_pretrained(exported)
    text = processor.apply_chat_template(IMAGE_TURN, add_generation_prompt=True)
    picture = Image.open(demo / "data" / "demo_vision" / "circle_red_0.png").convert("RGB")
    inputs = processor(text=[text], images=[picture], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 4
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_eval_generates_batched_with_images(demo, tmp_path):
    """Batches of prompts with pictures, left-padded: the same greedy answers as one prompt at a time."""
    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.loading import load_datasets
    from ffc.runtime.data.multimodal import MediaTokens
    from ffc.runtime.evaluation import evaluate_generation
    from ffc.runtime.inference import GenerationOptions
    from ffc.runtime.vision_inference import VisionHFEngine, load_vision_model
    from ffc.runtime.vlm import load_processor

    model, tokenizer = load_vision_model(str(demo / "tiny-vlm"), dtype="float32")
    processor = load_processor(str(demo / "tiny-vlm"), tokenizer, max_pixels=None, min_pixels=None)
    options = GenerationOptions(max_new_tokens=6, temperature=0)
    images = MediaTokens(processor, vision_plugin("qwen2_vl"))
    engine = VisionHFEngine(model, tokenizer, get_template("qwen2_vl"), options, images)
    registry = json.loads((demo / "data" / "dataset_info.json").read_text())
    rows = list(load_datasets(demo / "data", registry, ["demo_vision"], "prompts", media=True, max_samples=6))
    assert {len(row["messages"]) for row in rows} == {1, 3}  # one and two turns: prompts of different lengths
    predictions = {}
    for batch_size in (1, 4):
        metrics = evaluate_generation(engine, rows, tmp_path / str(batch_size), batch_size=batch_size)
        assert set(metrics) == {"bleu-4", "rouge-1", "rouge-2", "rouge-l"}
        lines = (tmp_path / str(batch_size) / "generated_predictions.jsonl").read_text().splitlines()
        predictions[batch_size] = [json.loads(line)["predict"] for line in lines]
    assert len(predictions[4]) == 6 and predictions[4] == predictions[1]


def test_built_eval_reads_the_images(demo, tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec

    spec = vlm_spec(demo, tmp_path, "sft", "demo_vision", extra="eval: {predict_dataset: [demo_vision]}\n")
    source = build_files(load_spec(spec), tmp_path / "run")[1]["eval.py"].decode()
    assert 'kind="prompts", max_samples=args.max_samples, media=True' in source and "VisionHFEngine(" in source


# --- images as bytes, data: URLs and http(s) URLs -----------------------------------------------------------------


def _png(color="red", size=40) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _parquet_rows(folder, images_column, rows=None):
    """An openai-format Parquet file with an images column (written as Hugging Face datasets writes it)."""
    import datasets

    texts = [
        [{"role": "user", "content": "<image>What color?"}, {"role": "assistant", "content": "Red."}]
        for _ in images_column
    ]
    features = None
    if (
        images_column
        and isinstance(images_column[0], list)
        and images_column[0]
        and isinstance(images_column[0][0], dict)
    ):
        features = datasets.Features(
            {
                "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
                "images": datasets.List(datasets.Image()),
            }
        )
    data = datasets.Dataset.from_dict({"messages": texts, "images": images_column}, features=features)
    data.to_parquet(str(folder / "mm.parquet"))
    return {
        "mm": {
            "file_name": "mm.parquet",
            "formatting": "openai",
            "columns": {"messages": "messages", "images": "images"},
        }
    }


def _check_loaded(folder, registry, **kwargs):
    from PIL import Image

    from ffc.runtime.data.loading import load_datasets
    from ffc.runtime.data.media import image_source

    rows = load_datasets(folder, registry, ["mm"], "conversations", media=True, **kwargs)
    for row in rows:
        (reference,) = row["images"]
        assert reference.startswith("data:image") and ";base64," in reference  # the bytes kept in the dataset
        with Image.open(image_source(reference)) as image:
            assert image.convert("RGB").getpixel((3, 3)) == (255, 0, 0)
    return rows


def test_parquet_images_as_hf_image_features(demo, tmp_path):
    """Hugging Face's Image feature: {"bytes": ..., "path": ...} structs, decoded to PIL images when read; the
    bytes go on to the encoder (vision-token counts) and the collator (pixels)."""
    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.multimodal import VisionCollator, VisionConversationEncoder
    from ffc.runtime.data.tokenize import MaskOptions

    registry = _parquet_rows(tmp_path, [[{"bytes": _png(), "path": None}], [{"bytes": _png(), "path": None}]])
    rows = _check_loaded(tmp_path, registry)
    tokenizer, _, images = vision_inputs(demo, max_pixels=56 * 56)
    encoder = VisionConversationEncoder(tokenizer, get_template("qwen2_vl"), MaskOptions(cutoff_len=256), images)
    data, _ = tokenize_dataset(rows, encoder)
    pad = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    batch = VisionCollator(tokenizer.pad_token_id, images)(list(data))
    assert int((batch["input_ids"] == pad).sum()) == 8 and batch["image_grid_thw"].tolist() == [[1, 4, 4]] * 2


def test_parquet_images_as_plain_bytes_and_data_urls(tmp_path):
    import base64

    registry = _parquet_rows(tmp_path, [[_png()], [_png()]])
    assert len(_check_loaded(tmp_path, registry)) == 2
    url = "data:image/png;base64," + base64.b64encode(_png()).decode()
    (tmp_path / "mm.json").write_text(
        json.dumps(
            [
                {
                    "messages": [{"role": "user", "content": "<image>What?"}, {"role": "assistant", "content": "Red."}],
                    "images": [url],
                }
            ]
        )
    )
    registry = {
        "mm": {"file_name": "mm.json", "formatting": "openai", "columns": {"messages": "messages", "images": "images"}}
    }
    (row,) = _check_loaded(tmp_path, registry)


@pytest.mark.parametrize(
    "image, message",
    [
        ("data:image/png;base64,@@@", "image 1 of 'images': the data: URL is not valid base64"),
        ("data:image/png,rawtext", "image 1 of 'images': a data: URL image must be base64"),
        (b"\x89PNG\r\n\x1a\nbroken", "image 1 of 'images' is not an image file PIL can read"),
        ("http://127.0.0.1:1/cat.png", "is a URL (http://127.0.0.1:1/cat.png), and downloading images is off"),
    ],
    ids=["bad-base64", "not-base64", "corrupt-bytes", "url-off"],
)
def test_bad_image_values_are_row_errors(tmp_path, image, message):
    import base64

    from ffc.runtime.data.loading import DataError, load_datasets

    good = _png() if isinstance(image, bytes) else "data:image/png;base64," + base64.b64encode(_png()).decode()
    registry = _parquet_rows(tmp_path, [[good], [image]])  # one Arrow type per column: bytes, or strings
    with pytest.raises(DataError) as info:
        load_datasets(tmp_path, registry, ["mm"], "conversations", media=True)
    assert "mm.parquet: row 2: " in str(info.value) and message in str(info.value)


def test_image_urls_are_downloaded_when_allowed(tmp_path):
    import http.server
    import threading

    from ffc.runtime.data.loading import DataError, load_datasets

    picture = _png()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path == "/red.png"
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(picture if found else b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        registry = _parquet_rows(tmp_path, [[f"{base}/red.png"]])
        assert len(_check_loaded(tmp_path, registry, fetch_image_urls=True)) == 1
        registry = _parquet_rows(tmp_path, [[f"{base}/missing.png"]])
        with pytest.raises(DataError, match="row 1: image 1 of 'images': .*missing.png cannot be downloaded"):
            load_datasets(tmp_path, registry, ["mm"], "conversations", media=True, fetch_image_urls=True)
    finally:
        server.shutdown()


def test_fetch_image_urls_reaches_train_py(demo, tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec

    spec = vlm_spec(demo, tmp_path, "sft", "demo_vision", data=", fetch_image_urls: true")
    assert "fetch_image_urls=True," in build_files(load_spec(spec), tmp_path / "run")[1]["train.py"].decode()
    spec = vlm_spec(demo, tmp_path, "sft", "demo_vision")
    assert "fetch_image_urls" not in build_files(load_spec(spec), tmp_path / "run")[1]["train.py"].decode()
