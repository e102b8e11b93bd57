"""The files of a run directory: one definition each (name, file template, what the run's README says of
it, and when a run has it). The build renders them; the resolver keeps user files from taking their names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class GeneratedFile:
    """One file of the run directory: where it comes from, what the run's README says of it, and
    when the run has it. ``template`` is a file template in templates/, or None for files the build
    writes itself (the spec, rewards.py); ``when`` reads the render context."""

    name: str
    template: Optional[str]
    describes: str
    when: Callable[[dict], bool] = lambda ctx: True


# The run directory, in the order its README lists it. train.py's template is the stage's recipe.
RUN_FILES = (
    GeneratedFile("train.py", None, "the training recipe: data, model, trainer; read it top to bottom (`python train.py --preview N` shows samples)", lambda c: c["trains"]),
    GeneratedFile("chat_template.py", "chat_template.py.j2", "the chat template conversations are rendered with (saved with the model too)", lambda c: c["has_template"]),
    GeneratedFile("launch.sh", "launch.sh.j2", "starts training on this machine or each node (`bash launch.sh --resume` continues from the newest checkpoint)", lambda c: c["trains"]),
    GeneratedFile("accelerate_config.yaml", "accelerate_config.yaml.j2", "processes, machines and precision for `accelerate launch`", lambda c: c["trains"]),
    GeneratedFile("ds_config.json", "ds_config.json.j2", "DeepSpeed ZeRO settings", lambda c: c["trains"] and c["backend"].name == "deepspeed"),
    GeneratedFile("slurm.sbatch", "slurm.sbatch.j2", "the SLURM job that runs launch.sh on every node", lambda c: c["trains"] and c["distributed"].slurm is not None),
    GeneratedFile("chat.py", "chat.py.j2", "chat with the run's model in the terminal", lambda c: c["stage_info"].language_model and c["has_template"]),
    GeneratedFile("serve.py", "serve.py.j2", "an OpenAI-compatible API over the run's model (and a web chat page at /chat)", lambda c: c["stage_info"].language_model and c["has_template"]),
    GeneratedFile("eval.py", "eval.py.j2", "benchmark scores (multiple choice) and generation metrics (BLEU-4, ROUGE)", lambda c: c["stage_info"].language_model and c["has_template"]),
    GeneratedFile("export.py", "export.py.j2", "merges the adapters and writes safetensors (GGUF and an Ollama Modelfile when asked)", lambda c: c["stage_info"].language_model),
    GeneratedFile("rewards.py", None, "the reward functions (a copy of method.reward_funcs)", lambda c: bool(c["reward_functions"])),
    GeneratedFile("dataset_info.json", "dataset_info.json.j2", "the entries of the datasets this run uses", lambda c: c["registry_in_run"]),
    GeneratedFile("spec.yaml", None, "the spec as written"),
    GeneratedFile("ffc.lock.json", "ffc.lock.json.j2", "the fully resolved spec: every default explicit, library defaults relied on, input hashes"),
    GeneratedFile("requirements.txt", "requirements.txt.j2", "pinned versions of ffc and the libraries (install torch first)"),
    GeneratedFile("README.md", "README.md.j2", "this file"),
)  # fmt: skip
