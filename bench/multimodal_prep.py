"""Multimodal preprocessing speed: rows/s of ffc's image and video data preparation, by worker count.

    .venv/bin/python bench/multimodal_prep.py [--rows 1200] [--workers 1 2]

On the demo VLM (Qwen2-VL shrunk: the tokenizer is small, so the figures are dominated by media work):
conversion (placeholders counted, every image opened and every video's first frame decoded) and
tokenisation (each <image>/<video> expanded to the processor's tokens: pictures resized and patched,
videos decoded, sampled and patched), as train.py runs them. Writes bench/results/multimodal_prep.json.
Not side by side with LLaMA-Factory: its Qwen2-VL plugin takes transformers' torchvision video processor,
and the package index's torchvision does not load with the CPU torch (see README, "Vision-language").
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "multimodal_prep.json"


def _prepare(root: Path, rows: int) -> None:
    from ffc.devtools.demo import write_demo_data
    from ffc.devtools.vlm import make_tiny_vlm, video_rows, vision_rows, write_video_data, write_vision_data

    make_tiny_vlm(root / "tiny-vlm")
    data = write_video_data(write_vision_data(write_demo_data(root / "data")))
    (data / "demo_vision.json").write_text(json.dumps(vision_rows(rows)))
    (data / "demo_video.json").write_text(json.dumps(video_rows(rows)))


def _measure(root: Path, dataset: str, workers: int) -> dict:
    from transformers import AutoTokenizer

    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.loading import load_datasets, tokenize_dataset
    from ffc.runtime.data.multimodal import MediaTokens, VisionConversationEncoder
    from ffc.runtime.data.tokenize import MaskOptions
    from ffc.runtime.data.video import VideoSettings
    from ffc.runtime.vlm import load_processor
    from ffc.schemas.spec import ModelSection

    tokenizer = AutoTokenizer.from_pretrained(root / "tiny-vlm")
    fields = ModelSection.model_fields  # the spec's defaults
    settings = {name: fields[f"video_{name}"].default for name in ("fps", "maxlen", "max_pixels", "min_pixels")}
    video = VideoSettings(**settings) if dataset == "demo_video" else None
    processor = load_processor(str(root / "tiny-vlm"), tokenizer, max_pixels=None, min_pixels=None, video=video)
    encoder = VisionConversationEncoder(
        tokenizer, get_template("qwen2_vl"), MaskOptions(cutoff_len=1024), MediaTokens(processor, vision_plugin("qwen2_vl"))
    )  # fmt: skip
    registry = json.loads((root / "data" / "dataset_info.json").read_text())
    start = time.perf_counter()
    raw = load_datasets(root / "data", registry, [dataset], "conversations", media=True)  # one process
    converted = time.perf_counter()
    tokens, stats = tokenize_dataset(raw, encoder, num_proc=workers, batch_size=100)
    done = time.perf_counter()
    assert stats.kept == len(raw), stats
    return {
        "dataset": dataset,
        "workers": workers,
        "rows": len(raw),
        "convert_rows_per_s": round(len(raw) / (converted - start), 1),
        "tokenize_rows_per_s": round(len(raw) / (done - converted), 1),
        "total_rows_per_s": round(len(raw) / (done - start), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    import datasets

    datasets.disable_caching()  # every measurement converts and tokenises afresh
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.environ.setdefault("HF_DATASETS_CACHE", str(root / "cache"))
        _prepare(root, args.rows)
        results = [_measure(root, name, n) for name in ("demo_vision", "demo_video") for n in args.workers]
    for r in results:
        print(
            f"{r['dataset']:12} {r['workers']} worker(s): {r['total_rows_per_s']:7.1f} rows/s "
            f"(convert {r['convert_rows_per_s']:.1f}, tokenise {r['tokenize_rows_per_s']:.1f})"
        )
    RESULTS.write_text(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
