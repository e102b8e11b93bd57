"""scripts/gpu_check.sh --dry-run builds every run directory the GPU check would launch (no torch, no GPU)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_builds_every_configuration(tmp_path):
    env = {**os.environ, "PY": sys.executable, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    runs = tmp_path / "runs"
    expected = {
        "sft_lora", "sft_lora_padded", "sft_full", "sft_lora_liger", "sft_qlora", "dpo_lora", "orpo_lora", "grpo_lora",
    }  # fmt: skip
    methods = {"sft_shift_attn", "sft_qlora_loftq", "sft_qlora_torchao_int4", "sft_fp8", "sft_unsloth"}
    expected |= methods | {"sft_unsloth_qlora", "export_gptq"}  # issue 15's GPU-only paths
    expected |= {"vlm_lora", "vlm_video_lora", "vlm_qlora"}  # issue 12's (the test environment has PyAV)
    assert {p.name for p in runs.iterdir()} == expected
    code = {name: (runs / name / "train.py").read_text() for name in expected}
    assert "ChunkedLossTrainer(" in code["sft_lora"] and "padding_free=True" in code["sft_lora"]
    assert "ChunkedLossTrainer" not in code["sft_lora_padded"] and "padding_free" not in code["sft_lora_padded"]
    assert "LoraConfig" not in code["sft_full"]
    assert "use_liger_kernel=True" in code["sft_lora_liger"]
    assert "load_in_4bit=True" in code["sft_qlora"]
    assert "DPOTrainer" in code["dpo_lora"] and "GRPO" in code["grpo_lora"]
    assert "ChunkedORPOTrainer(" in code["orpo_lora"]
    assert (runs / "sft_lora" / "serve.py").exists()
    assert "enable_shift_attn(model)" in code["sft_shift_attn"] and "loftq(model" in code["sft_qlora_loftq"]
    assert 'require_gpu("training.fp8")' in code["sft_fp8"] and "load_unsloth(" in code["sft_unsloth"]
    assert "Int4WeightOnlyConfig()" in code["sft_qlora_torchao_int4"]
    assert "quantize_gptq(" in (runs / "export_gptq" / "export.py").read_text()
    assert "VisionCollator(" in code["vlm_lora"] and "VideoSettings(" in code["vlm_video_lora"]
    assert "load_in_4bit=True" in code["vlm_qlora"] and "activation_checkpointing=True" in code["vlm_lora"]
    config = (tmp_path / "qwen2.5-0.5b-shaped" / "config.json").read_text()
    assert '"vocab_size": 151936' in config and not (tmp_path / "qwen2.5-0.5b-shaped" / "model.safetensors").exists()
