"""The stage registry: one entry per training stage, and the kinds of data stages train on.

Everything that differs between stages is here: its summary, the data it expects
(checked at build time against dataset_info.json), the file template of its
train.py, the metrics it plots and the ``method`` options that apply to it. Adding a
stage is one ``Stage`` entry below plus its file template in ``templates/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Optional

from .problem import Problem


@dataclass(frozen=True)
class DataKind:
    """What a stage trains on. ``name`` is a key of ``ffc.runtime.data.convert.DATA_KINDS`` (but NO_DATA's)."""

    name: str
    summary: str  # one line for the run's README
    ranking: bool = False  # dataset_info.json entries must be marked ranking: true (chosen/rejected)
    required_column: Optional[tuple[str, str]] = None  # (column dataset_info.json must name, what it holds)

    def problems(self, stage: str, dataset: str, ranking: bool, columns: dict) -> list[str]:
        """Why a registered dataset cannot feed this kind of data to ``stage`` (empty when it can)."""
        if self.ranking and not ranking:
            return [
                f"dataset {dataset!r} has no preference pairs: stage {stage} needs ranking: true with chosen and "
                "rejected responses"
            ]
        if ranking and not self.ranking:
            return [f"dataset {dataset!r} holds preference pairs (ranking: true): stage {stage} cannot use them"]
        if self.required_column and not columns.get(self.required_column[0]):
            column, meaning = self.required_column
            return [f"dataset {dataset!r} has no {meaning}: name it in dataset_info.json as columns.{column}"]
        return []


TEXT = DataKind(
    "text", "Raw text (a text column or .txt lines); each document ends with EOS and long ones are split into chunks."
)
CONVERSATIONS = DataKind(
    "conversations", "Conversations (alpaca, sharegpt or openai rows, as registered in dataset_info.json)."
)
PAIRS = DataKind(
    "pairs",
    "Preference pairs (dataset_info.json entries with ranking: true): a prompt with a chosen and a rejected response.",
    ranking=True,
)
LABELLED = DataKind(
    "kto",
    "Conversations with a desirability label (columns.kto_tag): the last response is desirable or not.",
    required_column=("kto_tag", "desirability label"),
)
PROMPTS = DataKind(
    "prompts", "Prompts: conversations whose last response, if any, is ignored (kept as `answer` for reward functions)."
)
NO_DATA = DataKind("none", "No training data: the model is used as it is (eval.py reads its own datasets).")

# Option groups of the method section, named once and shared by the stages below.
ONLINE_OPTIONS = ("reward_model", "reward_funcs", "max_new_tokens", "temperature", "top_p")
PPO_OPTIONS = (
    "ppo_epochs", "ppo_buffer_size", "ppo_target", "ppo_init_kl_coef", "ppo_adaptive_kl", "ppo_cliprange",
    "ppo_cliprange_value", "ppo_vf_coef", "ppo_gamma", "ppo_lam", "ppo_score_norm", "ppo_whiten_rewards",
)  # fmt: skip
PREFERENCE_PLOTS = ("loss", "rewards/accuracies", "rewards/margins")


# Build-time checks of single stages (``spec`` is an ffc.schemas.Spec; typed loosely to avoid a cycle).
def _kto_batch(spec) -> Iterator[Problem]:
    if spec.training.per_device_train_batch_size < 2:
        yield Problem(
            ("training", "per_device_train_batch_size"),
            "KTO estimates its KL term from other samples of the same batch: use a batch size of at least 2.",
        )


def _ppo_one_reward(spec) -> Iterator[Problem]:
    if spec.method.reward_model and spec.method.reward_funcs:
        yield Problem(("method", "reward_funcs"), "ppo takes one reward: reward_model or reward_funcs, not both.")


def _grpo_groups(spec) -> Iterator[Problem]:
    training, groups = spec.training, spec.method.num_generations
    # Unset num_processes is every visible GPU, known at launch only: then one process's share must divide.
    processes = spec.distributed.num_processes or 1
    rollouts = training.per_device_train_batch_size * training.gradient_accumulation_steps * processes
    if rollouts % groups:
        yield Problem(
            ("method", "num_generations"),
            f"GRPO samples groups of {groups} responses from the {rollouts} completions of one optimizer step "
            "(batch size x accumulation x processes): make that a multiple of num_generations.",
        )


def _no_training(spec) -> Iterator[Problem]:
    if spec.data.dataset:
        yield Problem(
            ("data", "dataset"),
            "stage none trains nothing: remove data.dataset (eval.py scores eval.predict_dataset or "
            "data.eval_dataset), or choose a training stage.",
        )


@dataclass(frozen=True)
class Stage:
    name: str
    title: str  # as in the run's title: "LoRA <title> of MODEL on DATA"
    summary: str  # what it optimises, one line
    data: DataKind
    recipe: Optional[str]  # the file template of its train.py (None: the stage trains nothing)
    options: tuple[str, ...] = ()  # method options that apply to this stage (besides the shared ones)
    data_options: tuple[str, ...] = ()  # data options that apply to this stage (besides the shared ones)
    plot_keys: Optional[tuple[str, ...]] = None  # metrics plotted at the end (None: the loss only)
    packing_default: bool = False
    needs_reward: bool = False  # scores generated responses: needs reward_model or reward_funcs
    language_model: bool = True  # ends with a causal LM, so chat/serve/eval/export apply
    trains: bool = True  # False: an inference-only run (no train.py, launch files or training options)
    check: Optional[Callable[..., Iterator[Problem]]] = None  # what the stage requires of the rest of the spec
    trainer_class: Optional[str] = None  # for recipes shared by several stages: the classes that differ
    config_class: Optional[str] = None
    # How the loss avoids the full-vocabulary logits: "ffc" (runtime/losses.py; training.chunked_loss switches
    # it), "trl" (TRL 1.16's fused LM head, which its DPO/KTO/GRPO trainers always use), None (no such loss: rm).
    lean_logits: Optional[Literal["ffc", "trl"]] = None
    chunked_trainer_class: Optional[str] = None  # trainer_class with training.chunked_loss on

    @property
    def chat(self) -> bool:
        """Trains on conversations rendered with a chat template (everything but raw text)."""
        return self.data is not TEXT


_STAGES = (
    Stage(
        "pt", "pre-training", "next-token prediction on raw text (continued pre-training)",
        TEXT, "train.py.j2", data_options=("packing", "padding_free"), packing_default=True, lean_logits="ffc",
    ),
    Stage(
        "sft", "supervised fine-tuning", "next-token prediction on the assistant's responses of conversations",
        CONVERSATIONS, "train.py.j2", data_options=("packing", "padding_free", "train_on_prompt", "mask_history"),
        lean_logits="ffc",
    ),
    Stage(
        "rm", "reward modelling",
        "a reward model: a score head trained so that chosen responses score above rejected ones",
        PAIRS, "train_rm.py.j2", plot_keys=("loss", "accuracy", "margin", "eval_loss", "eval_accuracy"),
        language_model=False,
    ),
    Stage(
        "dpo", "DPO",
        "direct preference optimisation: raise the chosen response's likelihood over the rejected one, relative to a reference model",
        PAIRS, "train_pref.py.j2",
        options=("pref_beta", "pref_loss", "pref_ftx", "dpo_label_smoothing", "ref_model"), plot_keys=PREFERENCE_PLOTS,
        trainer_class="PretokenizedDPOTrainer", config_class="DPOConfig", lean_logits="trl",
    ),
    Stage(
        "kto", "KTO",
        "Kahneman-Tversky optimisation: raise desirable and lower undesirable responses, relative to a reference model",
        LABELLED, "train_kto.py.j2",
        options=("pref_beta", "kto_chosen_weight", "kto_rejected_weight", "ref_model"),
        plot_keys=("loss", "rewards/chosen", "rewards/rejected"), check=_kto_batch, lean_logits="trl",
    ),
    Stage(
        "orpo", "ORPO",
        "odds-ratio preference optimisation: SFT on chosen responses plus an odds-ratio penalty on rejected ones, no reference model",
        PAIRS, "train_pref.py.j2", options=("pref_beta", "pref_ftx"), plot_keys=PREFERENCE_PLOTS,
        trainer_class="PretokenizedORPOTrainer", config_class="ORPOConfig", lean_logits="ffc",
        chunked_trainer_class="ChunkedORPOTrainer",
    ),
    Stage(
        "simpo", "SimPO",
        "simple preference optimisation: a length-normalised margin between chosen and rejected responses, no reference model",
        PAIRS, "train_pref.py.j2", options=("pref_beta", "pref_ftx", "simpo_gamma"), plot_keys=PREFERENCE_PLOTS,
        trainer_class="PretokenizedCPOTrainer", config_class="CPOConfig", lean_logits="ffc",
        chunked_trainer_class="ChunkedCPOTrainer",
    ),
    Stage(
        "ppo", "PPO",
        "proximal policy optimisation: generate responses, score them, and raise the reward under a KL penalty to the reference model",
        PROMPTS, "train_ppo.py.j2", options=("ref_model", *ONLINE_OPTIONS, *PPO_OPTIONS), needs_reward=True,
        check=_ppo_one_reward, lean_logits="ffc",
    ),
    Stage(
        "grpo", "GRPO",
        "group relative policy optimisation: score groups of sampled responses per prompt and favour the above-average ones",
        PROMPTS, "train_grpo.py.j2", options=("pref_beta", "ref_model", *ONLINE_OPTIONS, "num_generations"),
        plot_keys=("loss", "reward", "kl"), needs_reward=True, check=_grpo_groups, lean_logits="trl",
    ),
    Stage(
        "none", "inference",
        "no training: chat with, serve, evaluate and export the model as it is (with model.adapter_name_or_path, "
        "its adapters merged)", NO_DATA, None, trains=False, check=_no_training,
    ),
)  # fmt: skip
STAGES: dict[str, Stage] = {stage.name: stage for stage in _STAGES}
StageName = Literal[tuple(STAGES)]  # type: ignore[valid-type]  # the spec's choices, from the registry

# Options that apply to some stages only; every other method and data option applies to all of them.
STAGE_OPTIONS: frozenset[str] = frozenset(name for stage in _STAGES for name in stage.options)
STAGE_DATA_OPTIONS: frozenset[str] = frozenset(name for stage in _STAGES for name in stage.data_options)


def stages_using(option: str, section: str = "method") -> tuple[str, ...]:
    """The stages a stage-specific option of ``section`` applies to, in registry order."""
    return tuple(s.name for s in _STAGES if option in (s.options if section == "method" else s.data_options))


def option_applies(option: str, stage: str, section: str = "method") -> bool:
    if section == "method":
        return option not in STAGE_OPTIONS or option in STAGES[stage].options
    return option not in STAGE_DATA_OPTIONS or option in STAGES[stage].data_options
