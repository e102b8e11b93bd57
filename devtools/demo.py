"""Demo data that ffc writes itself: small, deterministic and learnable by a tiny model.

Datasets in LLaMA-Factory's formats plus their dataset_info.json:
``demo_alpaca`` (alpaca), ``demo_sharegpt`` (multi-turn sharegpt), ``demo_text``
(plain text for pre-training), ``demo_pairs`` (preference pairs) and ``demo_kto``
(labelled responses). The answers follow simple rules, so
a model of a few hundred thousand parameters visibly learns them in minutes on CPU.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .smollm2 import identity_rows

COLORS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]
THINGS = {
    "grass": "green", "sky": "blue", "snow": "white", "coal": "black", "sun": "yellow",
    "blood": "red", "plum": "purple", "carrot": "orange", "leaf": "green", "sea": "blue",
}  # fmt: skip
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "piano",
    "lemon",
    "candle",
    "forest",
    "rocket",
    "garden",
    "window",
]


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."


def _color(rng: random.Random) -> tuple[str, str]:
    thing = rng.choice(sorted(THINGS))
    return f"What color is the {thing}?", f"The {thing} is {THINGS[thing]}."


def _reverse(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(WORDS, 3)
    return "Reverse these words: " + " ".join(words), " ".join(reversed(words))


TASKS = [_arithmetic, _color, _reverse]


def alpaca_rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        question, answer = TASKS[i % len(TASKS)](rng)
        instruction, _, rest = question.partition(": ")
        row = {"instruction": instruction + (":" if rest else ""), "input": rest, "output": answer}
        if i % 5 == 0:
            row["system"] = "Answer in one short sentence."
        rows.append(row)
    return rows


def sharegpt_rows(count: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        turns = []
        for t in range(1 + i % 3):
            question, answer = TASKS[(i + t) % len(TASKS)](rng)
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        rows.append({"conversations": turns, "system": "You are a concise assistant."})
    return rows


def text_rows(count: int, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        sentences = []
        for _ in range(rng.randint(2, 6)):
            thing = rng.choice(sorted(THINGS))
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            sentences.append(
                rng.choice(
                    [
                        f"The {thing} is {THINGS[thing]}.",
                        f"{a} plus {b} is {a + b}.",
                        f"A {rng.choice(WORDS)} is near the {rng.choice(WORDS)}.",
                    ]
                )
            )
        rows.append({"text": " ".join(sentences)})
    return rows


def _wrong(answer: str, rng: random.Random) -> str:
    """A plausible but wrong (or evasive) answer: what preference data teaches the model to avoid."""
    if rng.random() < 0.4:
        return "I am not sure."
    words = answer.rstrip(".").split()
    if words[-1].isdigit():
        words[-1] = str(int(words[-1]) + rng.randint(1, 5))
    elif words[-1] in COLORS:
        words[-1] = rng.choice([c for c in COLORS if c != words[-1]])
    else:
        words = list(reversed(words))
        rng.shuffle(words)
    return " ".join(words) + ("." if answer.endswith(".") else "")


def preference_rows(count: int, seed: int = 3) -> list[dict]:
    """sharegpt ranking rows, as LLaMA-Factory's dpo_en_demo: the chosen answer is right, the rejected one not."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        question, answer = TASKS[i % len(TASKS)](rng)
        wrong = _wrong(answer, rng)
        if wrong == answer:
            wrong = "I am not sure."
        rows.append(
            {
                "conversations": [{"from": "human", "value": question}],
                "chosen": {"from": "gpt", "value": answer},
                "rejected": {"from": "gpt", "value": wrong},
            }
        )
    return rows


def kto_rows(count: int, seed: int = 4) -> list[dict]:
    """Conversations labelled desirable (a right answer) or not, as LLaMA-Factory's kto_en_demo."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        question, answer = TASKS[i % len(TASKS)](rng)
        good = i % 2 == 0
        reply = answer if good else _wrong(answer, rng)
        rows.append(
            {
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}],
                "label": good,
            }
        )
    return rows


DATASET_INFO = {
    "demo_alpaca": {"file_name": "demo_alpaca.json"},
    "demo_sharegpt": {
        "file_name": "demo_sharegpt.json",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
    },
    "demo_text": {"file_name": "demo_text.jsonl", "columns": {"prompt": "text"}},
    "demo_pairs": {
        "file_name": "demo_pairs.json",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    },
    "demo_kto": {
        "file_name": "demo_kto.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    },
    "identity": {"file_name": "identity.json"},  # who the assistant is (the quickstart's SmolLM2 run)
}


def write_demo_data(folder: str | Path, size: int = 600) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo_alpaca.json").write_text(json.dumps(alpaca_rows(size), indent=1, ensure_ascii=False) + "\n")
    (folder / "demo_sharegpt.json").write_text(
        json.dumps(sharegpt_rows(size // 2), indent=1, ensure_ascii=False) + "\n"
    )
    (folder / "demo_text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in text_rows(size)))
    (folder / "demo_pairs.json").write_text(json.dumps(preference_rows(size), indent=1) + "\n")
    (folder / "demo_kto.json").write_text(json.dumps(kto_rows(size), indent=1) + "\n")
    (folder / "identity.json").write_text(json.dumps(identity_rows(), indent=1) + "\n")
    (folder / "dataset_info.json").write_text(json.dumps(DATASET_INFO, indent=2) + "\n")
    return folder


def corpus() -> list[str]:
    """Text a tokenizer for the demo is trained on: everything the demo data can contain."""
    lines = [r["text"] for r in text_rows(400)]
    for row in alpaca_rows(400):
        lines.append(" ".join(v for v in row.values() if v))
    lines += [f"{a} plus {b} is {a + b}." for a in range(21) for b in range(21)]
    lines += [f"Reverse these words: {w}" for w in WORDS] + COLORS
    lines += ["system user assistant", "You are a concise assistant.", "Answer in one short sentence."] * 20
    return lines
