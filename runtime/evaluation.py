"""Evaluation: multiple-choice benchmarks (MMLU, CMMLU, C-Eval layout) and generation metrics.

Benchmark folder layout (what ``eval.task_dir`` points at)::

    task_dir/
      subjects.json          optional: {"subject": {"name": "abstract algebra", "category": "STEM"}, ...}
      dev/<subject>.csv      worked examples for few-shot prompts (optional)
      test/<subject>.csv     the questions scored (the split name is eval.split)

Each CSV row is ``question, A, B, C, D, answer`` (MMLU's files, no header), or has a
header naming ``question``, the choice letters and ``answer`` (C-Eval/CMMLU files,
an ``id`` column is ignored). A question is scored by the next-token probabilities
of the choice letters after the chat-template prompt: no generation, no parsing.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .data.packing import pad_batch
from .data.tokenize import prompt_ids

log = logging.getLogger("ffc.eval")

PROMPTS = {
    "en": ("The following are multiple choice questions (with answers) about {subject}.\n\n", "Answer:"),
    "zh": ("以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n", "答案："),
}


@dataclass
class Question:
    question: str
    choices: dict  # letter -> text
    answer: str

    def format(self, answer_prompt: str) -> str:
        lines = [self.question] + [f"{letter}. {text}" for letter, text in self.choices.items()]
        return "\n".join(lines) + "\n" + answer_prompt


def read_questions(path: Path) -> list[Question]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows:
        return []
    header = [cell.strip() for cell in rows[0]]
    if "question" in header and "answer" in header:
        letters = [h for h in header if len(h) == 1 and h.isupper()]
        index = {name: header.index(name) for name in ["question", "answer", *letters]}
        body = rows[1:]
    else:
        letters = ["A", "B", "C", "D"]
        index = {"question": 0, "A": 1, "B": 2, "C": 3, "D": 4, "answer": 5}
        body = rows
    questions = []
    for number, row in enumerate(body, start=2 if body is not rows else 1):
        try:
            answer = row[index["answer"]].strip()
            choices = {letter: row[index[letter]] for letter in letters}
        except IndexError:
            raise ValueError(f"{path}: row {number}: expected question, {', '.join(letters)}, answer") from None
        if answer not in choices:
            raise ValueError(f"{path}: row {number}: answer {answer!r} is not one of {', '.join(letters)}")
        questions.append(Question(row[index["question"]], choices, answer))
    return questions


def prompt_messages(question: Question, shots: list[Question], subject: str, lang: str) -> list[dict]:
    """LLaMA-Factory's layout: the instruction opens the first turn, worked examples are earlier turns."""
    intro, answer_prompt = PROMPTS[lang]
    messages = []
    for shot in shots:
        messages += [
            {"role": "user", "content": shot.format(answer_prompt)},
            {"role": "assistant", "content": shot.answer},
        ]
    messages.append({"role": "user", "content": question.format(answer_prompt)})
    messages[0] = {"role": "user", "content": intro.format(subject=subject) + messages[0]["content"]}
    return messages


class ChoiceScorer:
    """Picks the choice letter with the highest next-token logit, batched with left padding."""

    def __init__(self, model, tokenizer, template, batch_size: int = 4, system: Optional[str] = None):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.batch_size, self.system = batch_size, system

    def letter_ids(self, letters) -> list[int]:
        ids = []
        for letter in letters:
            pieces = self.tokenizer.encode(letter, add_special_tokens=False)
            ids.append(pieces[0])  # the model's first step towards writing the letter
        return ids

    def prompt_ids(self, messages) -> list[int]:
        return prompt_ids(self.tokenizer, self.template, messages, system=self.system)

    def predict(self, prompts: list[list[int]], letters: list[str]) -> list[str]:
        import torch

        choice_ids = torch.tensor(self.letter_ids(letters))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        predictions = []
        for start in range(0, len(prompts), self.batch_size):
            ids, mask = pad_batch(prompts[start : start + self.batch_size], pad, left=True)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                logits = self.model(
                    input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                    position_ids=positions.to(self.model.device), use_cache=False,
                ).logits[:, -1, :]  # fmt: skip
            best = logits[:, choice_ids.to(logits.device)].argmax(-1).tolist()
            predictions += [letters[i] for i in best]
        return predictions


def evaluate_choices(
    scorer: ChoiceScorer, task_dir: str | Path, split: str = "test", n_shot: int = 5, lang: str = "en"
) -> dict:
    task_dir = Path(task_dir)
    split_dir = task_dir / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"{split_dir} not found: a benchmark folder holds {split}/<subject>.csv (see ffc.runtime.evaluation)"
        )
    subjects_file = task_dir / "subjects.json"
    info = json.loads(subjects_file.read_text(encoding="utf-8")) if subjects_file.exists() else {}
    per_subject, per_category = {}, defaultdict(lambda: [0, 0])
    for path in sorted(split_dir.glob("*.csv")):
        subject = path.stem.removesuffix(f"_{split}")
        meta = info.get(subject, {})
        questions = read_questions(path)
        dev = task_dir / "dev" / path.name.replace(f"_{split}", "_dev")
        shots = read_questions(dev)[:n_shot] if n_shot and dev.exists() else []
        if not questions:
            continue
        letters = list(questions[0].choices)
        name = meta.get("name", subject.replace("_", " "))
        prompts = [scorer.prompt_ids(prompt_messages(q, shots, name, lang)) for q in questions]
        predicted = scorer.predict(prompts, letters)
        correct = sum(p == q.answer for p, q in zip(predicted, questions))
        per_subject[subject] = {"accuracy": 100 * correct / len(questions), "correct": correct, "total": len(questions)}
        for category in (meta.get("category", "Other"), "Average"):
            per_category[category][0] += correct
            per_category[category][1] += len(questions)
        log.info("%s: %d/%d", subject, correct, len(questions))
    categories = {
        name: {"accuracy": 100 * c / t, "correct": c, "total": t} for name, (c, t) in sorted(per_category.items())
    }
    return {"subjects": per_subject, "categories": categories}


def results_table(results: dict) -> str:
    lines = ["| | accuracy | correct / total |", "|---|---:|---:|"]
    for name, row in list(results["categories"].items()) + [("", None)] + list(results["subjects"].items()):
        if row is None:
            continue
        lines.append(f"| {name} | {row['accuracy']:.2f} | {row['correct']} / {row['total']} |")
    return "\n".join(lines)


# -- generation ---------------------------------------------------------------------------------------


def generation_scores(prediction: str, reference: str) -> dict:
    """BLEU-4 (characters) and ROUGE-1/2/L F1 (jieba words), x100: LLaMA-Factory's numbers, per sample."""
    import jieba
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    jieba.setLogLevel(logging.WARNING)
    hypothesis, expected = list(jieba.cut(prediction)), list(jieba.cut(reference))
    if not "".join(hypothesis).strip() or not "".join(expected).strip():
        rouge = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    else:
        scores = Rouge().get_scores(" ".join(hypothesis), " ".join(expected))[0]
        rouge = {key: 100 * value["f"] for key, value in scores.items()}
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3)
    return {"bleu-4": 100 * bleu, **rouge}


def generate_batch(engine, prompts: list[list[int]], options, conversations: Optional[list] = None) -> list[str]:
    """Greedy responses to several prompts at once (left padding), cut at the template's stop strings.

    ``conversations``: the messages each prompt was rendered from; a vision engine takes their images
    (in batch order, the order of the image tokens in the padded batch) and adds the pixels."""
    import torch

    ids, mask = pad_batch(prompts, engine.tokenizer.pad_token_id, left=True)
    ids, mask = ids.to(engine.model.device), mask.to(engine.model.device)
    width = ids.shape[1]
    kwargs = engine._generate_kwargs(options.update(temperature=0))
    if conversations is not None:
        kwargs.update(engine.model_inputs([m for messages in conversations for m in messages], ids))
    with torch.no_grad():
        out = engine.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    texts = engine.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    for stop in options.stop:
        texts = [t.split(stop)[0] if stop else t for t in texts]
    return texts


def with_images(row: dict) -> list[dict]:
    """A prompt row's messages, its ``images`` and ``videos`` (rows of datasets with those columns) on the first
    message, where a vision engine reads them in order, one per ``<image>`` or ``<video>`` of the text."""
    messages = list(row["messages"])
    media = {key: list(row[key]) for key in ("images", "videos") if row.get(key)}
    if media:
        messages[0] = {**messages[0], **media}
    return messages


def evaluate_generation(engine, rows: list[dict], output_dir: Path, batch_size: int = 4) -> dict:
    """Greedy answers to each prompt -> generated_predictions.jsonl and the mean BLEU-4 / ROUGE."""
    totals: dict = defaultdict(float)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "generated_predictions.jsonl", "w", encoding="utf-8") as f:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            conversations = [with_images(row) for row in batch]
            prompts = [
                engine.prompt_ids(messages, row.get("system") or None) for row, messages in zip(batch, conversations)
            ]
            for row, predict in zip(batch, generate_batch(engine, prompts, engine.defaults, conversations)):
                scores = generation_scores(predict, row["answer"])
                for key, value in scores.items():
                    totals[key] += value
                record = {
                    "prompt": row["messages"][-1]["content"],
                    "predict": predict,
                    "label": row["answer"],
                    **scores,
                }
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    count = max(len(rows), 1)
    return {key: round(value / count, 4) for key, value in totals.items()}
