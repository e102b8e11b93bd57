"""Helpers for the tests of vision-language runs beyond SFT (images and videos): the demo VLM's processor and
encoders, run directories built from a spec, and their training logs."""

import json
import subprocess
import sys


def video_settings(**changes):
    """The VideoSettings of a spec's defaults (schemas: model.video_*), with ``changes``."""
    from ffc.runtime.data.video import VideoSettings
    from ffc.schemas.spec import ModelSection

    fields = ModelSection.model_fields
    defaults = {name: fields[f"video_{name}"].default for name in ("fps", "maxlen", "max_pixels", "min_pixels")}
    return VideoSettings(**{**defaults, **changes})


def vision_inputs(demo, max_pixels=None, video=None):
    """(tokenizer, processor, MediaTokens) of the demo VLM; ``video``: a VideoSettings for runs with videos."""
    from transformers import AutoTokenizer

    from ffc.runtime.chat.vision import vision_plugin
    from ffc.runtime.data.multimodal import MediaTokens
    from ffc.runtime.vlm import load_processor

    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-vlm")
    processor = load_processor(
        str(demo / "tiny-vlm"), tokenizer, max_pixels=max_pixels, min_pixels=max_pixels, video=video
    )
    return tokenizer, processor, MediaTokens(processor, vision_plugin("qwen2_vl"))


def encoded(demo, dataset, kind, encoder_class, cutoff_len=256, max_pixels=None, max_samples=4, video=None):
    """(tokenizer, processor, the dataset's first rows as loaded, an encoder of ``encoder_class`` for them)."""
    from ffc.runtime.chat.templates import get_template
    from ffc.runtime.data.loading import load_datasets
    from ffc.runtime.data.tokenize import MaskOptions

    tokenizer, processor, vision = vision_inputs(demo, max_pixels, video)
    registry = json.loads((demo / "data" / "dataset_info.json").read_text())
    raw = load_datasets(demo / "data", registry, [dataset], kind, media=True, max_samples=max_samples)
    encoder = encoder_class(tokenizer, get_template("qwen2_vl"), MaskOptions(cutoff_len=cutoff_len), vision)
    return tokenizer, processor, raw, encoder


def tiny_vlm(demo):
    """The demo VLM, seeded (its weights are random)."""
    import torch
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    return AutoModelForImageTextToText.from_pretrained(demo / "tiny-vlm")


def vlm_spec(demo, tmp_path, stage, dataset, extra="", data="", method=""):
    """A spec file of ``stage`` on the demo VLM and ``dataset``."""
    spec = tmp_path / f"{stage}.yaml"
    spec.write_text(
        f"name: vl-{stage}\nmodel: {{model_name_or_path: {demo / 'tiny-vlm'}}}\n"
        f"method: {{stage: {stage}, finetuning_type: lora{method}}}\n"
        f"data: {{dataset: [{dataset}], dataset_dir: {demo / 'data'}, template: qwen2_vl, cutoff_len: 256{data}}}\n"
        f"logging: {{report_to: [none]}}\n{extra}"
    )
    return spec


def train_logs(run):
    """Run the run directory's train.py; its trainer log, one dict a line."""
    done = subprocess.run([sys.executable, "train.py"], cwd=run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in (run / "output" / "trainer_log.jsonl").read_text().splitlines()]


def built_run(demo, tmp_path, stage, dataset, extra, data=", max_samples: 8", method=""):
    """A run directory built by ``ffc build`` from ``vlm_spec``."""
    run = tmp_path / "run"
    spec = vlm_spec(demo, tmp_path, stage, dataset, extra, data, method)
    done = subprocess.run(
        [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return run


def written_ruff_clean(spec, run, overrides=()):
    """Build ``spec`` into ``run`` (written as ``ffc build`` writes it), check that its code passes ruff as the
    project's style has it, and return its train.py."""
    from pathlib import Path

    from ruff.__main__ import find_ruff_bin

    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec
    from ffc.compiler.writer import write_run

    write_run(run, build_files(load_spec(spec, list(overrides)), run)[1])
    config = ["--config", str(Path(__file__).parent.parent / "templates" / "ruff.toml")]
    for args in (["check", *config], ["format", "--check", *config]):
        done = subprocess.run([find_ruff_bin(), *args, str(run)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    return (run / "train.py").read_text()


def build_refusal(demo, tmp_path, stage, dataset) -> str:
    """The message with which ``ffc build`` refuses ``stage`` on ``dataset`` (grpo and ppo get a reward function)."""
    import pytest

    from ffc.compiler.build import build_files
    from ffc.compiler.loader import SpecError, load_spec

    (tmp_path / "rewards.py").write_text("def one(prompts, completions, **columns):\n    return [1.0] * len(prompts)\n")
    method = ", reward_funcs: rewards.py" if stage in ("grpo", "ppo") else ""
    with pytest.raises(SpecError) as info:
        build_files(load_spec(vlm_spec(demo, tmp_path, stage, dataset, method=method)), tmp_path / "run")
    return str(info.value)
