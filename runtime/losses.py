"""The causal-LM loss and per-token log-probabilities without full-vocabulary logits; the Liger switch.

A model's forward turns every position's hidden state into a row of vocabulary logits and
the loss casts them to fp32: batch x sequence x vocabulary floats (8 x 1024 x 152k = 5 GB for
a Qwen2.5 vocabulary), usually the largest tensor of fine-tuning. ``final_hidden_states``
asks the model for one position's logits only and takes the final hidden states from the
decoder; ``causal_token_logprobs`` keeps the positions that have a label and computes their
log-probabilities a chunk of positions at a time, recomputing each chunk's logits in the
backward pass. The sft/pt loss (``ChunkedLossTrainer``), ORPO/SimPO (``runtime/trainers.py``)
and PPO (``runtime/ppo.py``) use it. TRL 1.16's DPO, KTO and GRPO trainers need none of it:
they compute their log-probabilities with TRL's own fused, chunked LM head (``add_fused_lm_head``).

Why by hand: Liger's fused linear cross-entropy (``enable_liger_kernel``) does this with
Triton kernels and needs a CUDA GPU; cut-cross-entropy (25.1) needs Triton too, and its
CPU fallback (``impl="torch_compile"``) materialises the whole ``hidden @ weight.T``.
Neither runs on a CPU, nor under every accelerator this trainer supports. TRL's fused head
replaces ``model.forward`` on the instance and, off Triton devices, scores every position
(prompt and padding too) in 4096 x 32768 fp32 tiles (512 MB); TRL's ORPO/CPO do not use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import Trainer

from .data.tokenize import IGNORE_INDEX
from .errors import UserError

# fp32 logits per chunk: 2**25 = 128 MB, about 220 positions of a 152k vocabulary. The backward pass holds
# about three such tensors (the recomputed logits, their softmax, its gradient): the loss's whole peak.
LOGITS_PER_CHUNK = 2**25


def _chunk_logprobs(head, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None) -> torch.Tensor:
    logits = head(hidden)
    if softcap is not None:  # Gemma 2's final logit soft-capping, as its forward applies it
        logits = torch.tanh(logits / softcap) * softcap
    return -F.cross_entropy(logits.float(), targets, reduction="none")


def _chunk_size(head, chunk_tokens: int | None) -> int:
    if chunk_tokens is not None:
        return chunk_tokens
    vocab = getattr(head, "out_features", None) or head.weight.shape[0]  # nn.Linear and PEFT's layers
    return max(16, LOGITS_PER_CHUNK // vocab)


def causal_token_logprobs(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    labels: torch.Tensor,
    chunk_tokens: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """``log p(labels[t + 1])`` at each position ``t`` of ``hidden`` (batch x sequence), 0 where that label
    is ``IGNORE_INDEX`` and at the last position: the log-probabilities of the causal-LM loss, DPO and PPO,
    computed from the final hidden states a chunk of labelled positions at a time."""
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].to(hidden.device)
    keep = targets != IGNORE_INDEX
    kept_hidden, kept_targets = hidden[keep], targets[keep]  # unlabelled positions need no logits at all
    size = _chunk_size(head, chunk_tokens)
    parts = [
        # Only the chunk's inputs are saved; its logits are recomputed when the backward pass reaches it.
        checkpoint(_chunk_logprobs, head, kept_hidden[i : i + size], kept_targets[i : i + size], softcap,
                   use_reentrant=False)
        for i in range(0, kept_targets.numel(), size)
    ]  # fmt: skip
    flat = torch.cat(parts) if parts else kept_hidden.new_zeros(0, dtype=torch.float32)
    # masked_scatter keeps a batch without labels connected to the graph (a differentiable zero).
    return hidden.new_zeros(targets.shape, dtype=torch.float32).masked_scatter(keep, flat)


def chunked_causal_lm_loss(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    chunk_tokens: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """transformers' ``ForCausalLMLoss`` (labels shifted by one, sum over ``num_items_in_batch``
    or mean over the labelled tokens) from final hidden states and the output head."""
    total = -causal_token_logprobs(hidden, head, labels, chunk_tokens, softcap).sum()
    if num_items_in_batch is None:
        labelled = (labels[..., 1:] != IGNORE_INDEX).sum()
        return total / labelled.clamp(min=1).to(total.device)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def mean_logit(hidden: torch.Tensor, head: torch.nn.Module, softcap: float | None = None) -> torch.Tensor:
    """The mean of the logits over every position of ``hidden`` and the whole vocabulary (a metric of
    TRL's ORPO/CPO), without the logits: the head is affine, so that mean is the head's output at the
    mean hidden state. Soft-capping is not affine: then the logits are summed a chunk at a time."""
    with torch.no_grad():
        flat = hidden.reshape(-1, hidden.shape[-1])
        if softcap is None:
            return head(flat.float().mean(0, keepdim=True).to(flat.dtype)).float().mean()
        size = _chunk_size(head, None)
        total = sum(
            (torch.tanh(head(flat[i : i + size]).float() / softcap) * softcap).sum() for i in range(0, len(flat), size)
        )
        return total / (flat.shape[0] * (getattr(head, "out_features", None) or head.weight.shape[0]))


def _language_model(model):
    """The causal LM inside accelerate's and PEFT's wrappers."""
    while hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    if hasattr(model, "get_base_model"):  # PeftModel
        model = model.get_base_model()
    return model


def final_hidden_states(model, **inputs):
    """Runs ``model`` (through its wrappers: DDP's gradient hooks, PEFT's adapters, gradient checkpointing)
    asking for one position's logits only, and returns the decoder's final hidden states, the model's
    output (for a mixture of experts' auxiliary loss), the output head and its logit soft-capping."""
    lm = _language_model(model)
    caught = []
    hook = lm.get_decoder().register_forward_hook(lambda module, args, output: caught.append(output[0]))
    try:
        outputs = model(**inputs, logits_to_keep=1)  # one position's logits: the callers need none
    finally:
        hook.remove()
    softcap = getattr(lm.config.get_text_config(), "final_logit_softcapping", None)
    return caught[-1], outputs, lm.get_output_embeddings(), softcap


class ChunkedLossTrainer(Trainer):
    """Trainer whose training loss comes from ``chunked_causal_lm_loss``, never from full logits.

    The decoder's output is caught by ``final_hidden_states``. Evaluation (``return_outputs``)
    keeps the plain forward, whose logits the evaluation loop reads.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        hidden, _, head, softcap = final_hidden_states(model, **inputs)
        loss = chunked_causal_lm_loss(hidden, head, labels, num_items_in_batch, softcap=softcap)
        # As Trainer.compute_loss: a loss summed over num_items_in_batch is scaled back for averaging across devices.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return loss


def require_liger() -> None:
    """Liger's kernels are Triton code for CUDA GPUs: say so before the model loads, not in a kernel traceback."""
    try:
        import liger_kernel  # noqa: F401
    except ImportError as error:
        raise UserError(
            "model.enable_liger_kernel is on but liger-kernel is not installed: pip install liger-kernel "
            "(it needs a CUDA GPU and Triton), or set model.enable_liger_kernel: false"
        ) from error
    if not torch.cuda.is_available():
        raise UserError(
            "model.enable_liger_kernel is on but no CUDA GPU is visible: Liger's kernels run only on GPUs. "
            "Set model.enable_liger_kernel: false to train here (ffc's chunked loss then avoids the "
            "full-vocabulary logits)"
        )
