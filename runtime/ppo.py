"""PPO for language models (Ziegler et al. 2019; Ouyang et al. 2022), small enough to read in one sitting.

TRL no longer ships a PPO trainer, so ffc keeps its own. One step:

1. rollout   sample responses to a batch of prompts from the policy;
2. score     a reward model or reward functions score each whole response;
3. evaluate  log-probs under the policy and the frozen reference, values from the value head;
4. reward    per token: -kl_coef * (logp - ref_logp), plus the score on the last token;
5. advantage generalised advantage estimation (GAE) over the response tokens;
6. optimise  ppo_epochs passes of the clipped policy loss + clipped value loss;
7. adapt     the KL coefficient moves towards the target KL (adaptive control), or stays fixed.

The value head is a linear layer on the policy's last hidden state (shared backbone).
With LoRA the reference model is the policy with its adapter switched off.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .data.packing import pad_batch
from .data.tokenize import IGNORE_INDEX
from .losses import causal_token_logprobs, final_hidden_states


@dataclass(kw_only=True)
class PPOConfig:
    """Every setting of a PPO run. No defaults here: the spec's (schemas/spec.py) are the only ones, and
    the generated train.py passes each value."""

    output_dir: str
    max_steps: int  # PPO steps (rollout + optimisation); <= 0: derive from num_train_epochs
    num_train_epochs: float
    batch_size: int  # prompts per rollout batch (per process)
    buffer_size: int  # rollout batches per optimisation phase
    ppo_epochs: int
    learning_rate: float
    weight_decay: float
    adam_betas: tuple
    adam_epsilon: float
    max_grad_norm: float
    lr_scheduler_type: str
    warmup_steps: float
    max_new_tokens: int
    temperature: float
    top_p: float
    init_kl_coef: float
    adaptive_kl: bool
    target_kl: float
    kl_horizon: int = 10000  # steps over which the adaptive KL controller moves (Ziegler et al.)
    cliprange: float
    cliprange_value: float
    vf_coef: float
    gamma: float
    lam: float
    score_norm: bool
    whiten_rewards: bool
    logging_steps: int
    save_steps: int  # 0: save only at the end
    seed: int
    chunked_logprobs: bool  # log-probs from the hidden states in chunks, never the full-vocabulary logits


class ValueHead(nn.Module):
    """Predicts the return from the last hidden state at each position."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden):
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


class PolicyWithValue(nn.Module):
    """The policy and its value head as one module, so one optimizer (and DDP wrapper) covers both."""

    def __init__(self, policy, chunked_logprobs: bool):
        super().__init__()
        self.policy = policy
        self.value_head = ValueHead(policy.config.hidden_size)
        self.chunked_logprobs = chunked_logprobs

    def forward(self, input_ids, attention_mask, labels):
        logprobs, hidden = sequence_logprobs(self.policy, input_ids, attention_mask, labels, self.chunked_logprobs)
        return logprobs, self.value_head(hidden)


def sequence_logprobs(model, input_ids, attention_mask, labels, chunked: bool):
    """Per position t, the log-prob of ``labels[t + 1]`` (0 where it is IGNORE_INDEX), and the final hidden
    states. ``chunked``: from the hidden states a chunk of positions at a time (``runtime/losses.py``), never
    the full-vocabulary logits; otherwise from the model's logits."""
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=_positions(attention_mask),
                  use_cache=False)  # fmt: skip
    if chunked:
        hidden, _, head, softcap = final_hidden_states(model, **inputs)
        return causal_token_logprobs(hidden, head, labels, softcap=softcap), hidden
    out = model(**inputs, output_hidden_states=True)
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    keep = targets != IGNORE_INDEX
    logprobs = torch.gather(F.log_softmax(out.logits.float(), dim=-1), 2, targets.clamp(min=0).unsqueeze(-1))
    return logprobs.squeeze(-1) * keep, out.hidden_states[-1]


class AdaptiveKLController:
    """Ziegler et al.: scale the KL coefficient by the proportional error to the target, clipped at +-20%."""

    def __init__(self, init: float, target: float, horizon: int, adaptive: bool):
        self.value, self.target, self.horizon, self.adaptive = init, target, horizon, adaptive

    def update(self, kl: float, n_steps: int) -> None:
        if self.adaptive:
            error = max(-0.2, min(0.2, kl / self.target - 1))
            self.value *= 1 + error * n_steps / self.horizon


class RunningMoments:
    """Running mean and standard deviation of scores, for ``score_norm``."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, x: torch.Tensor) -> None:
        batch_mean, batch_var, n = x.mean().item(), x.var(unbiased=False).item(), x.numel()
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / math.sqrt(self.var + 1e-8)


def _positions(attention_mask):
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x, mask, shift_mean: bool = True):
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


class PPOTrainer:
    def __init__(
        self,
        policy,
        tokenizer,
        config: PPOConfig,
        score: Callable[[torch.Tensor, torch.Tensor, list[dict]], torch.Tensor],
        ref_model=None,
        stop_token_ids: Optional[list[int]] = None,
        accelerator=None,
    ):
        from accelerate import Accelerator
        from transformers import get_scheduler

        self.config, self.tokenizer, self.score_fn = config, tokenizer, score
        # Without a GPU, launched processes form one (gloo) process group only when accelerate is told so.
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.model = PolicyWithValue(policy, config.chunked_logprobs)
        # With LoRA the reference is the policy without its adapter; otherwise a frozen copy (or a given model).
        self.use_adapter_as_ref = ref_model is None and hasattr(policy, "disable_adapter")
        self.ref_model = ref_model if ref_model is not None or self.use_adapter_as_ref else copy.deepcopy(policy)
        if self.ref_model is not None:
            self.ref_model.eval().requires_grad_(False)
            self.ref_model = self.ref_model.to(self.accelerator.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, betas=config.adam_betas, eps=config.adam_epsilon,
            weight_decay=config.weight_decay,
        )  # fmt: skip
        self.stop_token_ids = stop_token_ids or [tokenizer.eos_token_id]
        self.kl_ctl = AdaptiveKLController(config.init_kl_coef, config.target_kl, config.kl_horizon, config.adaptive_kl)
        self.moments = RunningMoments()
        self._scheduler = lambda total: get_scheduler(
            config.lr_scheduler_type, self.optimizer,
            num_warmup_steps=int(config.warmup_steps) if config.warmup_steps >= 1 else math.ceil(total * config.warmup_steps),
            num_training_steps=total,
        )  # fmt: skip

    # -- 1. rollout ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, queries, query_mask):
        policy = self.accelerator.unwrap_model(self.model).policy
        policy.eval()
        out = policy.generate(
            input_ids=queries, attention_mask=query_mask, do_sample=True, top_k=0,
            top_p=self.config.top_p, temperature=self.config.temperature, max_new_tokens=self.config.max_new_tokens,
            eos_token_id=self.stop_token_ids, pad_token_id=self.tokenizer.pad_token_id, use_cache=True,
        )  # fmt: skip
        policy.train()
        responses = out[:, queries.shape[1] :]
        # Everything after the first stop token is padding.
        stopped = torch.isin(responses, torch.tensor(self.stop_token_ids, device=responses.device))
        after_stop = (stopped.long().cumsum(-1) - stopped.long()) > 0
        response_mask = (~after_stop).long()
        responses = responses.masked_fill(after_stop, self.tokenizer.pad_token_id)
        return responses, response_mask

    # -- 3. evaluate ------------------------------------------------------------------------------
    def evaluate(self, model_fn, queries, query_mask, responses, response_mask):
        """Per response token: log-prob (and value, for the policy) of the sampled token; 0 after the response."""
        input_ids = torch.cat([queries, responses], dim=1)
        mask = torch.cat([query_mask, response_mask], dim=1)
        labels = torch.cat(
            [torch.full_like(queries, IGNORE_INDEX), responses.masked_fill(response_mask == 0, IGNORE_INDEX)], dim=1
        )
        start = queries.shape[1] - 1  # position t holds the log-prob of token t + 1
        logprobs, values = model_fn(input_ids, mask, labels)
        return logprobs[:, start:-1], (values[:, start:-1] if values is not None else None)

    def _policy(self, input_ids, mask, labels):
        return self.model(input_ids, mask, labels)

    def _reference(self, input_ids, mask, labels):
        chunked = self.config.chunked_logprobs
        if self.use_adapter_as_ref:
            policy = self.accelerator.unwrap_model(self.model).policy
            with policy.disable_adapter():
                return sequence_logprobs(policy, input_ids, mask, labels, chunked)[0], None
        return sequence_logprobs(self.ref_model, input_ids, mask, labels, chunked)[0], None

    # -- 4 and 5. rewards and advantages -----------------------------------------------------------
    def advantages(self, scores, logprobs, ref_logprobs, values, mask):
        kl = (logprobs - ref_logprobs) * mask
        rewards = -self.kl_ctl.value * kl
        last = mask.sum(-1).long().clamp(min=1) - 1  # the score lands on the last response token
        rewards[torch.arange(len(scores)), last] += scores
        if self.config.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        values = values * mask
        gae, reversed_advantages = 0.0, []
        for t in reversed(range(rewards.shape[1])):
            next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
            delta = rewards[:, t] + self.config.gamma * next_value - values[:, t]
            gae = delta + self.config.gamma * self.config.lam * gae
            reversed_advantages.append(gae)
        advantages = torch.stack(reversed_advantages[::-1], dim=1) * mask
        returns = advantages + values
        return masked_whiten(advantages, mask).detach(), returns.detach(), kl.sum(-1)

    # -- 6. optimise ----------------------------------------------------------------------------------
    def loss(self, batch):
        logprobs, values = self.evaluate(
            self._policy, batch["queries"], batch["query_mask"], batch["responses"], batch["mask"]
        )
        mask, advantages, returns = batch["mask"], batch["advantages"], batch["returns"]
        ratio = torch.exp(logprobs - batch["logprobs"])
        clipped_ratio = torch.clamp(ratio, 1 - self.config.cliprange, 1 + self.config.cliprange)
        pg_loss = masked_mean(torch.max(-advantages * ratio, -advantages * clipped_ratio), mask)
        clipped_values = batch["values"] + torch.clamp(
            values - batch["values"], -self.config.cliprange_value, self.config.cliprange_value
        )
        vf_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped_values - returns) ** 2), mask)
        stats = {
            "policy_loss": pg_loss.item(),
            "value_loss": vf_loss.item(),
            "clipfrac": masked_mean((ratio - clipped_ratio).abs().gt(0).float(), mask).item(),
            "approx_kl": 0.5 * masked_mean((logprobs - batch["logprobs"]) ** 2, mask).item(),
        }
        return pg_loss + self.config.vf_coef * vf_loss, stats

    # -- one PPO step -----------------------------------------------------------------------------------
    def step(self, batches: list[dict]) -> dict:
        rollouts = []
        for batch in batches:
            queries, query_mask = batch["input_ids"], batch["attention_mask"]
            responses, mask = self.generate(queries, query_mask)  # 1
            with torch.no_grad():
                scores = self.score_fn(queries, query_mask, responses, mask, batch["rows"]).float()  # 2
                raw_scores = scores.clone()
                if self.config.score_norm:
                    self.moments.update(scores)
                    scores = self.moments.normalise(scores)
                logprobs, values = self.evaluate(self._policy, queries, query_mask, responses, mask)  # 3
                ref_logprobs, _ = self.evaluate(self._reference, queries, query_mask, responses, mask)
                mask = mask.float()
                advantages, returns, kl = self.advantages(scores, logprobs, ref_logprobs, values, mask)  # 4, 5
            rollouts.append(
                dict(queries=queries, query_mask=query_mask, responses=responses, mask=mask, logprobs=logprobs,
                     values=values, advantages=advantages, returns=returns, scores=raw_scores, kl=kl)
            )  # fmt: skip
        stats: dict = {}
        for _ in range(self.config.ppo_epochs):  # 6
            for index in torch.randperm(len(rollouts)).tolist():
                loss, loss_stats = self.loss(rollouts[index])
                self.accelerator.backward(loss)
                if self.config.max_grad_norm > 0:
                    self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad()
                for key, value in loss_stats.items():
                    stats.setdefault(key, []).append(value)
        scores = torch.cat([r["scores"] for r in rollouts])
        kl = torch.cat([r["kl"] for r in rollouts])
        mean_kl = self.accelerator.gather(kl).mean().item()
        summary = {key: sum(values) / len(values) for key, values in stats.items()}
        summary.update(
            reward=self.accelerator.gather(scores).mean().item(),
            kl=mean_kl,
            kl_coef=self.kl_ctl.value,
            response_length=torch.cat([r["mask"].sum(-1) for r in rollouts]).mean().item(),
            learning_rate=self.scheduler.get_last_lr()[0],
        )
        self.kl_ctl.update(mean_kl, len(scores) * self.accelerator.num_processes)  # 7
        return summary

    # -- the loop ------------------------------------------------------------------------------------------
    def train(self, dataloader) -> list[dict]:
        config = self.config
        total = (
            config.max_steps
            if config.max_steps > 0
            else math.ceil(config.num_train_epochs * len(dataloader) / config.buffer_size)
        )
        self.scheduler = self._scheduler(total * config.ppo_epochs * config.buffer_size)
        self.model, self.optimizer, dataloader = self.accelerator.prepare(self.model, self.optimizer, dataloader)
        history, started, batches, step = [], time.time(), [], 0
        log_path = Path(config.output_dir) / "trainer_log.jsonl"
        if self.accelerator.is_main_process:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text("")
        while step < total:
            for batch in dataloader:
                batches.append(batch)
                if len(batches) < config.buffer_size:
                    continue
                stats, batches, step = self.step(batches), [], step + 1
                if step % config.logging_steps == 0 or step == total:
                    elapsed = time.time() - started
                    record = {"current_steps": step, "total_steps": total, "percentage": round(100 * step / total, 2),
                              "elapsed_time": round(elapsed, 1), "remaining_time": round(elapsed / step * (total - step), 1),
                              "step": step, "loss": stats["policy_loss"] + config.vf_coef * stats["value_loss"], **stats}  # fmt: skip
                    history.append(record)
                    if self.accelerator.is_main_process:
                        with open(log_path, "a") as f:
                            f.write(json.dumps(record) + "\n")
                        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
                if config.save_steps and step % config.save_steps == 0:
                    self.save(Path(config.output_dir) / f"checkpoint-{step}")
                if step >= total:
                    break
        self.save(Path(config.output_dir))
        if self.accelerator.is_main_process:  # the Trainer's layout, so plot_loss and UIs read it alike
            (Path(config.output_dir) / "trainer_state.json").write_text(json.dumps({"log_history": history}, indent=1))
        return history

    def save(self, directory: Path) -> None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        model = self.accelerator.unwrap_model(self.model)
        model.policy.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        torch.save(model.value_head.state_dict(), Path(directory) / "value_head.bin")


# -- scores ------------------------------------------------------------------------------------------


def reward_model_scorer(reward_model, pad_token_id: int):
    """Score = the sequence-classification model's output on prompt + response (right-padded)."""

    def score(queries, query_mask, responses, response_mask, rows):
        sequences = [
            torch.cat([q[m.bool()], r[rm.bool()]]) for q, m, r, rm in zip(queries, query_mask, responses, response_mask)
        ]
        ids, mask = pad_batch(sequences, pad_token_id, device=queries.device)
        return reward_model(input_ids=ids, attention_mask=mask).logits[:, 0]

    return score


def function_scorer(functions: list, tokenizer):
    """Score = the sum of text reward functions ``fn(prompts, completions, **columns)`` (see ffc.runtime.rewards)."""

    def score(queries, query_mask, responses, response_mask, rows):
        completions = tokenizer.batch_decode(
            responses.masked_fill(response_mask == 0, tokenizer.pad_token_id), skip_special_tokens=True
        )
        prompts = [row["prompt"][-1]["content"] for row in rows]
        columns = {key: [row[key] for row in rows] for key in rows[0] if key not in ("prompt", "prompt_ids")}
        totals = torch.zeros(len(completions))
        for fn in functions:
            totals += torch.tensor(fn(prompts=prompts, completions=completions, **columns), dtype=torch.float)
        return totals.to(queries.device)

    return score


def load_reward_model(path: str, dtype, device, pad_token_id: int):
    """An rm run's output (a full model, or a LoRA adapter with its score head) or any hub classifier."""
    from transformers import AutoModelForSequenceClassification

    adapter = Path(path) / "adapter_config.json"
    if adapter.exists():
        from peft import PeftModel

        base = json.loads(adapter.read_text())["base_model_name_or_path"]
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    model.config.pad_token_id = pad_token_id  # the score is read at the last non-padding token
    return model.eval().requires_grad_(False).to(device)


class PromptCollator:
    """Left-pads prompt ids for generation and keeps the rows for reward functions."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict:
        ids, mask = pad_batch([row["prompt_ids"] for row in rows], self.pad_token_id, left=True)
        return {"input_ids": ids, "attention_mask": mask, "rows": rows}
