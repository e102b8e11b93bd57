"""eval.py: multiple-choice accuracy on a fixture benchmark, and BLEU/ROUGE, against hand-computed values."""

import csv
import json
import subprocess
import sys

import pytest

from ffc.runtime.evaluation import Question, generation_scores, prompt_messages, read_questions

SUBJECTS = {"arithmetic": "STEM", "colors": "Humanities"}
CORRECT = {"arithmetic": 3, "colors": 2}  # questions per subject whose answer is set to the model's own pick


def _model_pick(model, tokenizer, template, messages, letters):
    """One prompt at a time, no padding: the model's preferred letter, independently of eval.py's batching."""
    import torch

    text = template.render(messages, add_generation_prompt=True).text
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]
    scores = {letter: logits[tokenizer.encode(letter, add_special_tokens=False)[0]].item() for letter in letters}
    return max(scores, key=scores.get)


@pytest.fixture
def benchmark(demo, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ffc.runtime.chat.templates import TEMPLATES

    model = AutoModelForCausalLM.from_pretrained(demo / "tiny-model").eval()
    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-model")
    root = tmp_path / "bench"
    (root / "test").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "subjects.json").write_text(json.dumps({s: {"name": s, "category": c} for s, c in SUBJECTS.items()}))
    letters = ["A", "B", "C", "D"]
    for subject in SUBJECTS:
        shot = Question(f"{subject} warm-up?", dict(zip(letters, ["w", "x", "y", "z"])), "B")
        with open(root / "dev" / f"{subject}_dev.csv", "w", newline="") as f:
            csv.writer(f).writerow([shot.question, *shot.choices.values(), shot.answer])
        rows = []
        for i in range(5):
            q = Question(
                f"{subject} question {i}: which is right?", dict(zip(letters, ["red", "blue", str(i), "stone"])), "A"
            )
            pick = _model_pick(
                model, tokenizer, TEMPLATES["chatml"], prompt_messages(q, [shot], subject, "en"), letters
            )
            answer = pick if i < CORRECT[subject] else letters[(letters.index(pick) + 1) % 4]
            rows.append([q.question, *q.choices.values(), answer])
        with open(root / "test" / f"{subject}_test.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "question", "A", "B", "C", "D", "answer"])  # C-Eval style header
            writer.writerows([[n, *row] for n, row in enumerate(rows)])
    return root


def test_accuracy_matches_hand_computed(demo, tmp_path, benchmark):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {{model_name_or_path: {demo / 'tiny-model'}}}\n"
        f"data: {{dataset: [demo_alpaca], dataset_dir: {demo / 'data'}, template: chatml}}\n"
        f"inference: {{model_path: {demo / 'tiny-model'}}}\n"
        f"eval: {{task_dir: {benchmark}, n_shot: 1, batch_size: 3}}\n"
    )
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)], check=True)
    result = subprocess.run([sys.executable, "eval.py"], cwd=run, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run / "eval" / "results.json").read_text())
    assert results["subjects"]["arithmetic"] == {"accuracy": 60.0, "correct": 3, "total": 5}
    assert results["subjects"]["colors"] == {"accuracy": 40.0, "correct": 2, "total": 5}
    assert results["categories"]["STEM"]["accuracy"] == 60.0
    assert results["categories"]["Average"] == {"accuracy": 50.0, "correct": 5, "total": 10}
    assert "| Average | 50.00 | 5 / 10 |" in (run / "eval" / "results.md").read_text()


def test_mmlu_style_rows_without_header(tmp_path):
    path = tmp_path / "x_test.csv"
    path.write_text("What is 1+1?,1,2,3,4,B\n")
    [q] = read_questions(path)
    assert q.answer == "B" and q.choices == {"A": "1", "B": "2", "C": "3", "D": "4"}
    path.write_text("What is 1+1?,1,2,3,4,E\n")
    with pytest.raises(ValueError, match="row 1: answer 'E' is not one of A, B, C, D"):
        read_questions(path)


def test_generation_metrics_hand_computed():
    same = generation_scores("我爱北京", "我爱北京")
    assert same == pytest.approx({"bleu-4": 100.0, "rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0}, abs=1e-3)
    partial = generation_scores("我爱北京", "我爱上海")
    # jieba: 我/爱/北京 vs 我/爱/上海 -> ROUGE-1 F = 2/3, ROUGE-2 F = 1/2, ROUGE-L F = 2/3.
    assert partial["rouge-1"] == pytest.approx(66.667, abs=0.01)
    assert partial["rouge-2"] == pytest.approx(50.0, abs=0.01)
    assert partial["rouge-l"] == pytest.approx(66.667, abs=0.01)
    # BLEU-4 on characters with NIST smoothing (method3): precisions 2/4, 1/3, (1/2)/2, (1/4)/1 -> geometric mean.
    assert partial["bleu-4"] == pytest.approx(100 * (0.5 * (1 / 3) * 0.25 * 0.25) ** 0.25, abs=0.01)
    assert generation_scores("", "我爱上海")["rouge-1"] == 0.0


@pytest.mark.parametrize("overrides", [[], ["data.fetch_image_urls=true"]])
def test_eval_py_keeps_only_rows_with_an_answer(write_spec, tmp_path, overrides):
    """A Jinja block tag at the end of the load line once swallowed the newline after it, so the filter on the
    next line ended up inside the comment and eval.py passed the whole Dataset on (the UI's Evaluate failed)."""
    import ast

    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec

    from .conftest import MINIMAL_SPEC

    spec = write_spec(MINIMAL_SPEC)
    _, files = build_files(load_spec(spec, ["eval.predict_dataset=[demo_alpaca]", *overrides]), tmp_path / "run")
    tree = ast.parse(files["eval.py"].decode())
    filters = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.ListComp)
        and ast.unparse(node.targets[0]) == "rows"
    ]
    assert len(filters) == 1 and "row['answer']" in ast.unparse(filters[0].value)
