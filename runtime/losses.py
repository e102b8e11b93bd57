"""The causal-LM loss without full-vocabulary logits, and the Liger switch.

A model's forward turns every position's hidden state into a row of vocabulary logits and
the loss casts them to fp32: batch x sequence x vocabulary floats (8 x 1024 x 152k = 5 GB for
a Qwen2.5 vocabulary), usually the largest tensor of fine-tuning. ``ChunkedLossTrainer``
asks the model for one position's logits only, takes the final hidden states from the
decoder, keeps the positions that have a label, and computes the cross-entropy a chunk of
positions at a time, recomputing each chunk's logits in the backward pass.

Why by hand: Liger's fused linear cross-entropy (``enable_liger_kernel``) does this with
Triton kernels and needs a CUDA GPU; cut-cross-entropy (25.1) needs Triton too, and its
CPU fallback (``impl="torch_compile"``) materialises the whole ``hidden @ weight.T``.
Neither runs on a CPU, nor under every accelerator this trainer supports.
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


def _chunk_loss(head, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None) -> torch.Tensor:
    logits = head(hidden)
    if softcap is not None:  # Gemma 2's final logit soft-capping, as its forward applies it
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits.float(), targets, reduction="sum")


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
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1).to(hidden.device)
    keep = targets != IGNORE_INDEX
    hidden = hidden.reshape(-1, hidden.shape[-1])[keep]  # unlabelled positions need no logits at all
    targets = targets[keep]
    if chunk_tokens is None:
        vocab = getattr(head, "out_features", None) or head.weight.shape[0]  # nn.Linear and PEFT's layers
        chunk_tokens = max(16, LOGITS_PER_CHUNK // vocab)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_tokens):
        part = slice(start, start + chunk_tokens)
        # Only the chunk's inputs are saved; its logits are recomputed when the backward pass reaches it.
        total = total + checkpoint(_chunk_loss, head, hidden[part], targets[part], softcap, use_reentrant=False)
    if num_items_in_batch is None:
        return total / keep.sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def _language_model(model):
    """The causal LM inside accelerate's and PEFT's wrappers."""
    while hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    if hasattr(model, "get_base_model"):  # PeftModel
        model = model.get_base_model()
    return model


class ChunkedLossTrainer(Trainer):
    """Trainer whose training loss comes from ``chunked_causal_lm_loss``, never from full logits.

    The decoder's output is caught by a forward hook so that the model still runs through
    its wrappers (DDP's gradient hooks, PEFT's adapters, gradient checkpointing). Evaluation
    (``return_outputs``) keeps the plain forward, whose logits the evaluation loop reads.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        lm = _language_model(model)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        caught = []
        hook = lm.get_decoder().register_forward_hook(lambda module, args, output: caught.append(output[0]))
        try:
            model(**inputs, logits_to_keep=1)  # one position's logits: the loss below needs none
        finally:
            hook.remove()
        softcap = getattr(lm.config.get_text_config(), "final_logit_softcapping", None)
        loss = chunked_causal_lm_loss(
            caught[-1], lm.get_output_embeddings(), labels, num_items_in_batch, softcap=softcap
        )
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
