"""rm, dpo, kto, orpo, simpo, ppo and grpo on the tiny model: they train, learn what they should, and save."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

DATASETS = {
    "rm": "demo_pairs",
    "dpo": "demo_pairs",
    "orpo": "demo_pairs",
    "simpo": "demo_pairs",
    "kto": "demo_kto",
    "ppo": "demo_alpaca",
    "grpo": "demo_alpaca",
}
REWARDS = '''
def digits(prompts, completions, **columns):
    """The share of digits in the response: a reward a tiny model can learn to raise."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]
'''


def train(demo, tmp_path, stage, method="lora", steps=6, overrides=(), name="run"):
    (tmp_path / "rewards.py").write_text(REWARDS)
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"""\
model:
  model_name_or_path: {demo / "tiny-model"}
method:
  stage: {stage}
  finetuning_type: {method}
data:
  dataset: [{DATASETS[stage]}]
  dataset_dir: {demo / "data"}
  template: chatml
  cutoff_len: 96
  max_samples: 400
training:
  max_steps: {steps}
  learning_rate: 5.0e-3
  per_device_train_batch_size: 8
  gradient_accumulation_steps: 1
  logging_steps: 1
  save_strategy: "no"
logging:
  report_to: [none]
"""
    )
    run = tmp_path / name
    extra = []
    if stage in ("ppo", "grpo") and not any(o.startswith("method.reward_model") for o in overrides):
        extra = ["method.reward_funcs=rewards.py", "method.max_new_tokens=8"]
    args = [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)]
    for item in extra + list(overrides):
        args += ["--set", item]
    built = subprocess.run(args, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    result = subprocess.run(
        [sys.executable, "train.py"], cwd=run, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    log = [json.loads(line) for line in (run / "output" / "trainer_log.jsonl").read_text().splitlines()]
    return run, [entry for entry in log if "loss" in entry]


@pytest.mark.parametrize("stage", ["rm", "dpo", "kto", "orpo", "simpo", "ppo", "grpo"])
@pytest.mark.parametrize("method", ["full", "lora"])
def test_stage_trains_and_saves(demo, tmp_path, stage, method):
    run, log = train(demo, tmp_path, stage, method, steps=4)
    assert log and all(entry["loss"] == entry["loss"] for entry in log)  # logged, and not NaN
    output = run / "output"
    assert (output / ("adapter_model.safetensors" if method == "lora" else "model.safetensors")).exists()
    assert (output / "training_loss.png").exists()
    readme = (run / "README.md").read_text()
    assert f"`{stage}`" in readme


def test_dpo_raises_reward_accuracy_and_margins(demo, tmp_path):
    _, log = train(demo, tmp_path, "dpo", steps=40, overrides=["training.logging_steps=5"])
    first, last = log[0], log[-1]
    assert last["rewards/margins"] > first["rewards/margins"] + 0.2, [e["rewards/margins"] for e in log]
    accuracies = [e["rewards/accuracies"] for e in log]
    assert sum(accuracies[-3:]) / 3 >= first["rewards/accuracies"] + 0.15, accuracies


def test_reward_model_ranks_held_out_pairs(demo, tmp_path):
    import torch
    from transformers import AutoTokenizer

    from ffc.devtools.demo import preference_rows
    from ffc.runtime.chat.templates import TEMPLATES
    from ffc.runtime.ppo import load_reward_model

    run, _ = train(demo, tmp_path, "rm", steps=60, overrides=["training.logging_steps=10"])
    tokenizer = AutoTokenizer.from_pretrained(run / "output")
    model = load_reward_model(str(run / "output"), torch.float32, "cpu", tokenizer.pad_token_id)
    held_out = preference_rows(100, seed=12345)  # pairs the model never saw
    wins = 0
    for row in held_out:
        prompt = [{"role": "user", "content": row["conversations"][0]["value"]}]
        scores = []
        for side in ("chosen", "rejected"):
            text = TEMPLATES["chatml"].render(prompt + [{"role": "assistant", "content": row[side]["value"]}]).text
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
            with torch.no_grad():
                scores.append(model(**ids).logits[0, 0].item())
        wins += scores[0] > scores[1]
    assert wins >= 65, f"the reward model preferred the chosen response in {wins}/100 held-out pairs"


def test_ppo_raises_a_scripted_reward(demo, tmp_path):
    run, log = train(
        demo, tmp_path, "ppo", method="full", steps=40,
        overrides=["method.ppo_init_kl_coef=0.01", "training.per_device_train_batch_size=16"],
    )  # fmt: skip
    rewards = [entry["reward"] for entry in log]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.2, rewards
    assert (run / "output" / "value_head.bin").exists() and (run / "output" / "training_reward.png").exists()


def test_ppo_with_a_reward_model_from_the_rm_stage(demo, tmp_path):
    rm_run, _ = train(demo, tmp_path, "rm", steps=4, name="rm")
    run, log = train(demo, tmp_path, "ppo", steps=3, name="ppo", overrides=[f"method.reward_model={rm_run / 'output'}"])
    assert "REWARD_MODEL" in (run / "train.py").read_text() and len(log) == 3


def test_policy_adapter_reloads_and_generates(demo, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, _ = train(demo, tmp_path, "dpo", steps=4)
    tokenizer = AutoTokenizer.from_pretrained(run / "output")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo / "tiny-model"), run / "output")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 1 plus 1?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


@pytest.mark.parametrize(
    "stage,dataset,message",
    [
        ("dpo", "demo_alpaca", "has no preference pairs: stage dpo needs ranking: true"),
        ("kto", "demo_alpaca", "has no desirability label"),
        ("sft", "demo_pairs", "holds preference pairs (ranking: true): stage sft cannot use them"),
    ],
)
def test_wrong_data_for_a_stage_fails_at_build(demo, tmp_path, stage, dataset, message):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"model: {{model_name_or_path: {demo / 'tiny-model'}}}\nmethod: {{stage: {stage}}}\n"
        f"data: {{dataset: [{dataset}], dataset_dir: {demo / 'data'}, template: chatml}}\n"
        + ("training: {per_device_train_batch_size: 2}\n" if stage == "kto" else "")
    )
    result = subprocess.run(
        [sys.executable, "-m", "ffc.compiler", "validate", str(spec)], capture_output=True, text=True
    )
    assert result.returncode == 1 and message in result.stderr, result.stderr


def test_missing_reward_fails_at_build(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: {model_name_or_path: m}\nmethod: {stage: ppo}\ndata: {dataset: [d], template: chatml}\n")
    result = subprocess.run(
        [sys.executable, "-m", "ffc.compiler", "validate", str(spec)], capture_output=True, text=True
    )
    assert "stage ppo scores generated responses: set method.reward_model" in result.stderr
    assert f"{spec}:2:" in result.stderr


def test_wrong_data_fails_at_the_start_of_training_when_not_checked_at_build(demo, tmp_path):
    """Built without the data on disk, then run against a dataset without pairs: the run stops with the reason."""
    from ffc.devtools.demo import DATASET_INFO
    from ffc.runtime.data.loading import DataError, load_datasets

    with pytest.raises(DataError, match="this run needs a dataset marked ranking: true"):
        load_datasets(demo / "data", DATASET_INFO, ["demo_alpaca"], "pairs")
