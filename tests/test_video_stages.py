"""Preference stages with videos (dpo, orpo, simpo, kto) on the demo Qwen2-VL: encoders, batches, training, build."""

import json
import math
from pathlib import Path

import pytest

from ._vlm import build_refusal, built_run, encoded, tiny_vlm, train_logs, video_settings, vlm_spec, written_ruff_clean

pytest.importorskip("av", reason="the demo clips need PyAV (pip extra 'video')")

VIDEO_PAD, IMAGE_PAD = "<|video_pad|>", "<|image_pad|>"


def _video():

    return video_settings()  # the spec's defaults: 2 frames a second of the 2-second clips, 2x2 merged 14-px patches


def test_video_pairs_share_the_prompts_videos_and_cutoff_never_cuts_them(demo):
    from ffc.runtime.data.loading import DataError, tokenize_dataset
    from ffc.runtime.data.pairs import PairEncoder

    tokenizer, _, raw, encoder = encoded(demo, "demo_video_pairs", "pairs", PairEncoder, video=_video())
    data, stats = tokenize_dataset(raw, encoder)
    pad = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
    for row, source in zip(data, raw):
        assert row["videos"] == source["videos"] and len(row["videos"]) == 1 and row["images"] == []
        assert row["prompt_ids"].count(pad) == 8  # 4 frames: 2 temporal patches x (4x4 patches merged 2x2)
        assert pad not in row["chosen_ids"] and pad not in row["rejected_ids"]
    assert stats.kept == len(raw) and stats.truncated == 0

    prompt = data[0]["prompt_ids"]
    encoder.opts.cutoff_len = len(prompt) + 2  # the responses are cut, never the prompt with its video
    cut = encoder.encode_batch(raw[:1])
    assert cut["prompt_ids"][0] == prompt and cut["_truncated"] == [True]
    assert cut["chosen_ids"][0] == data[0]["chosen_ids"][:2] and cut["rejected_ids"][0] == data[0]["rejected_ids"][:2]
    # every prompt with its video alone too long: each dropped with the reason, and counted
    encoder.opts.cutoff_len = min(len(row["prompt_ids"]) for row in data) - 3
    with pytest.raises(DataError) as info:
        tokenize_dataset(raw, encoder)
    assert f"dropped ({len(raw)}): the prompt with its media (8 vision tokens)" in str(info.value)
    assert "video_maxlen" in str(info.value)


def test_kto_rows_keep_their_videos(demo):
    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.pairs import KTOEncoder

    tokenizer, _, raw, encoder = encoded(demo, "demo_video_kto", "kto", KTOEncoder, video=_video())
    data, _ = tokenize_dataset(raw, encoder)
    pad = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
    assert [row["videos"] for row in data] == [row["videos"] for row in raw]
    assert all(row["prompt_ids"].count(pad) == 8 and pad not in row["completion_ids"] for row in data)
    assert {row["label"] for row in data} == {True, False}


def _mixed_pairs(demo, encoder, raw):
    """Three pairs: a clip and a picture, a two-frame video (a frame list: other grid), a clip."""
    batch = raw[:3]
    picture = str(demo / "data" / "demo_vision" / "circle_red_0.png")
    batch["images"][0] = [picture]
    batch["messages"][0] = [{**batch["messages"][0][0], "content": "<image>" + batch["messages"][0][0]["content"]}]
    batch["videos"][1] = [json.dumps([picture, str(demo / "data" / "demo_vision" / "square_blue_1.png")])]
    out = encoder.encode_batch(batch)
    assert out["_drop"] == ["", "", ""]
    return [{key: out[key][i] for key in out if not key.startswith("_")} for i in range(3)]


def test_dpo_batches_hold_the_videos_of_both_halves_in_row_order(demo):
    import datasets
    import torch
    import transformers
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from ffc.runtime.data.multimodal import MediaTokens
    from ffc.runtime.data.pairs import PairEncoder
    from ffc.runtime.data.vision_pairs import VisionBatchCollator, for_trl
    from ffc.runtime.vlm import assemble_processor

    tokenizer, processor, raw, encoder = encoded(demo, "demo_video_pairs", "pairs", PairEncoder, video=_video())
    rows = for_trl(datasets.Dataset.from_list(_mixed_pairs(demo, encoder, raw)))
    assert not {"images", "videos", "image", "video"} & set(rows.column_names)  # TRL keeps to its token path
    collate = VisionBatchCollator(DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id), encoder.vision, 2)
    batch = collate(list(rows))

    # Each video's pixels and grid, in row order, once for the chosen and once for the rejected sequences.
    per_video = [encoder.vision.pixels([], row["video_files"]) for row in rows]
    expected = torch.cat([p["pixel_values_videos"] for p in per_video])
    assert torch.equal(batch["pixel_values_videos"], torch.cat([expected, expected]))
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4], [1, 4, 4], [2, 4, 4]] * 2
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] * 2 and batch["pixel_values"].shape[0] == 2 * 16
    assert "second_per_grid_ts" not in batch  # Qwen2-VL reads no seconds (its processor names no such input)
    ids = batch["input_ids"]
    image_pad, video_pad = (tokenizer.convert_tokens_to_ids(t) for t in (IMAGE_PAD, VIDEO_PAD))
    assert torch.equal(batch["mm_token_type_ids"], (ids == image_pad).long() + 2 * (ids == video_pad).long())
    assert int((ids == video_pad).sum()) == int(batch["video_grid_thw"].prod(-1).sum()) // 4

    # Qwen2.5-VL's processor also names second_per_grid_ts: repeated per copy like the grids
    qwen25 = assemble_processor(
        transformers.Qwen2_5_VLProcessor,
        processor.image_processor,
        tokenizer,
        video_processor=processor.video_processor,
    )
    collate25 = VisionBatchCollator(collate.collator, MediaTokens(qwen25, encoder.vision.plugin), 2)
    seconds = collate25(list(rows))["second_per_grid_ts"]
    assert seconds.tolist() == pytest.approx([1.0, 2 / 2.0, 1.0] * 2)  # 2 frames a pair at 2 sampled frames a second

    # The model reads the batch: a finite loss whose gradient reaches the vision tower, and the clips matter.
    model = tiny_vlm(demo)
    inputs = {key: value for key, value in batch.items() if key != "completion_mask"}
    labels = ids.masked_fill(batch["completion_mask"] == 0, -100)
    out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.model.visual.parameters())
    with torch.no_grad():
        blank = model(**{**inputs, "pixel_values_videos": torch.zeros_like(inputs["pixel_values_videos"])}).logits
    assert not torch.allclose(out.logits.detach(), blank)


@pytest.mark.parametrize("stage", ["orpo", "simpo"])
def test_orpo_and_simpo_forward_passes_see_the_video_pixels(demo, tmp_path, stage):
    import torch

    from ffc.runtime import trainers
    from ffc.runtime.data.loading import tokenize_dataset
    from ffc.runtime.data.pairs import PairEncoder
    from ffc.runtime.data.vision_pairs import VisionBatchCollator, for_trl

    tokenizer, _, raw, encoder = encoded(demo, "demo_video_pairs", "pairs", PairEncoder, video=_video())
    data = for_trl(trainers.to_legacy_pairs(tokenize_dataset(raw, encoder)[0]))
    model = tiny_vlm(demo)
    collate = VisionBatchCollator(trainers.legacy_pair_collator(tokenizer.pad_token_id), encoder.vision, 2)
    options = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, remove_unused_columns=False, max_length=256)
    if stage == "orpo":
        plain, chunked, args = (
            trainers.PretokenizedORPOTrainer,
            trainers.ChunkedORPOTrainer,
            trainers.ORPOConfig(**options),
        )
    else:
        plain, chunked = trainers.PretokenizedCPOTrainer, trainers.ChunkedCPOTrainer
        args = trainers.CPOConfig(loss_type="simpo", cpo_alpha=0.0, **options)
    kwargs = dict(model=model, args=args, train_dataset=data, processing_class=tokenizer, data_collator=collate)
    trainer = plain(**kwargs)
    batch = collate(list(data))
    blank_batch = {**batch, "pixel_values_videos": torch.zeros_like(batch["pixel_values_videos"])}
    with torch.no_grad():
        seen = trainer.concatenated_forward(model, batch)[0]
        blank = trainer.concatenated_forward(model, blank_batch)[0]
        assert torch.isfinite(seen).all() and not torch.allclose(seen, blank)
        # the chunked log-probabilities (the default) see the same pixels
        assert torch.allclose(chunked(**kwargs).concatenated_forward(model, batch)[0], seen, atol=1e-5)


# --- build and training -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stage, dataset",
    [
        ("dpo", "demo_video_pairs"),
        ("orpo", "demo_video_pairs"),
        ("simpo", "demo_video_pairs"),
        ("kto", "demo_video_kto"),
    ],
)
def test_preference_stages_build_with_videos(demo, tmp_path, stage, dataset):
    spec = vlm_spec(demo, tmp_path, stage, dataset)
    train = written_ruff_clean(spec, tmp_path / "run", ["training.per_device_train_batch_size=4"])
    for marker in ("VIDEO = VideoSettings(", "video=VIDEO,", "VisionBatchCollator(", "for_trl(", "media=True"):
        assert marker in train
    assert "the image and video paths" in train
    assert "\nav==" in (tmp_path / "run" / "requirements.txt").read_text()  # PyAV decodes the clips


@pytest.mark.parametrize(
    "stage, dataset, reason",
    [
        ("rm", "demo_video_pairs", "no sequence-classification head for vision-language models"),
        ("grpo", "demo_video", "pre-tokenised text prompts only"),
        ("ppo", "demo_video", "take text only"),
    ],
)
def test_stages_without_videos_are_refused_with_the_reason(demo, tmp_path, stage, dataset, reason):
    message = build_refusal(demo, tmp_path, stage, dataset)
    assert f"dataset {dataset!r} has videos: stage {stage} cannot train on videos" in message and reason in message
    assert "stages that can: sft, dpo, orpo, simpo, kto" in message


@pytest.mark.slow
def test_dpo_with_videos_trains(demo, tmp_path):
    """LoRA DPO on clips. The reference is the base model, so margins start at exactly 0. demo_video_pairs names
    every answer as often chosen as rejected, so a model blind to the clips ends with a mean margin of 0 and a loss
    of at least ln 2 (measured with the clips blanked: eval loss 0.6934, margin 0.0); reading them, the chosen
    answers are preferred on the pairs trained on (measured: eval loss 0.407, margin 0.86 after 20 steps)."""
    extra = (
        "training: {learning_rate: 2.0e-2, max_steps: 20, per_device_train_batch_size: 8, gradient_accumulation_steps: 1, "
        "logging_steps: 1, save_strategy: 'no', eval_strategy: steps, eval_steps: 20, per_device_eval_batch_size: 8}\n"
    )
    data = ", max_samples: 8, eval_dataset: [demo_video_pairs]"  # margins measured on the pairs trained on
    run = built_run(demo, tmp_path, "dpo", "demo_video_pairs", extra, data, method=", pref_beta: 1.0")
    logs = train_logs(run)
    steps = [log for log in logs if "loss" in log]
    assert steps[0]["rewards/margins"] == 0 and all(math.isfinite(log["loss"]) for log in steps)
    final = [log for log in logs if "eval_rewards/margins" in log][-1]
    assert final["eval_rewards/margins"] > 0.3 and final["eval_loss"] < math.log(2) - 0.1, final


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, dataset", [("kto", "demo_video_kto"), ("orpo", "demo_video_pairs"), ("simpo", "demo_video_pairs")]
)
def test_other_preference_stages_train_on_videos(demo, tmp_path, stage, dataset):
    extra = (
        "training: {learning_rate: 1.0e-3, max_steps: 1, per_device_train_batch_size: 4, gradient_accumulation_steps: 1, "
        "logging_steps: 1, save_strategy: 'no'}\n"
    )
    run = built_run(demo, tmp_path, stage, dataset, extra)
    losses = [log["loss"] for log in train_logs(run) if "loss" in log]
    assert len(losses) == 1 and math.isfinite(losses[0])
    assert (Path(run) / "output" / "preprocessor_config.json").exists()
