"""template: auto for the families whose names refine a shared model_type (Mistral Nemo/Small, Phi-4-mini, ...)."""

import json

import pytest

from ffc.runtime.chat.templates.detect import suggest_template


@pytest.mark.parametrize(
    "model,template",
    [
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4"),
        ("google/gemma-3n-E4B-it", "gemma3n"),
        ("google/gemma-4-E4B-it", "gemma4"),
        ("google/gemma-3-4b-it", "gemma"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral_v3"),
        ("mistralai/Mistral-7B-Instruct-v0.2", "mistral"),
        ("mistralai/Mistral-Nemo-Instruct-2407", "ministral"),
        ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", "mistral_small"),
        ("microsoft/Phi-4-mini-instruct", "phi4_mini"),
        ("microsoft/Phi-4-reasoning-plus", "phi4_reasoning"),
        ("microsoft/phi-4", "phi4"),
        ("internlm/internlm3-8b-instruct", "internlm2"),
        ("openbmb/MiniCPM4-8B", "cpm4"),
        ("THUDM/chatglm3-6b", "chatglm3"),
        ("HuggingFaceTB/SmolLM2-1.7B-Instruct", "smollm2"),
        ("allenai/OLMo-2-1124-7B-Instruct", "olmo2"),
    ],
)
def test_hub_names(model, template):
    assert suggest_template(model)[0] == template


@pytest.mark.parametrize(
    "folder,model_type,template",
    [
        ("Mistral-Nemo-Instruct-2407", "mistral", "ministral"),  # the name is more specific than model_type
        ("Phi-4-mini-instruct", "phi3", "phi4_mini"),
        ("my-finetune", "mistral", "mistral"),  # a name that says nothing: model_type decides
        ("gemma-3n-E2B-it", "gemma3n", "gemma3n"),
    ],
)
def test_local_folders(tmp_path, folder, model_type, template):
    model = tmp_path / folder
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": model_type}))
    assert suggest_template(str(model))[0] == template
