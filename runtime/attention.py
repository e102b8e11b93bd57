"""LongLoRA's shifted sparse attention (S²-Attn, LLaMA-Factory's ``shift_attn``) as an attention function
registered with transformers' ``AttentionInterface``: no model class is patched, and only a train.py whose
spec sets ``model.shift_attn`` registers it.

While training, the sequence is cut into groups of a quarter of its length (LongLoRA's ratio) and each
token attends only within its group; half of the heads see the groups shifted by half a group, so that
information flows between neighbouring groups. Generation, evaluation and non-causal modules (a vision
tower) keep ordinary attention, as LongLoRA prescribes (the model is trained sparse, used dense).

Written here because transformers ships no S²-Attn and LLaMA-Factory's patches rewrite the Llama attention
module of transformers 4. One deliberate difference from LongLoRA's reference code: the group that wraps
around the end keeps the causal order of the original positions (the reference lets the first tokens see the
last ones), and padding or packed-sample boundaries come from transformers' own mask.
"""

from __future__ import annotations

import functools

from .tuning import TuningError

NAME = "ffc_shift_sparse"
GROUP_SIZE_RATIO = 0.25  # LongLoRA's and LLaMA-Factory's: four groups per sequence


def shift_sparse_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, group_size_ratio=GROUP_SIZE_RATIO, **kwargs
):
    """S²-Attn with transformers' attention-function signature: query (batch, heads, length, dim), key and value
    (batch, kv_heads, length, dim), a boolean mask (batch, 1, length, length) or None for plain causal."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    length = query.shape[2]
    if not module.training or key.shape[2] != length or not getattr(module, "is_causal", True):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    for name in ("sliding_window", "softcap", "s_aux"):
        if kwargs.get(name) is not None:
            raise TuningError(
                f"model.shift_attn: this model's attention uses {name}, which shifted sparse attention does not "
                "keep: remove shift_attn."
            )
    group = max(1, min(length, int(length * group_size_ratio)))
    shift = group // 2
    key = repeat_kv(key, getattr(module, "num_key_value_groups", 1))
    value = repeat_kv(value, getattr(module, "num_key_value_groups", 1))
    device = query.device
    if attention_mask is None:
        attention_mask = torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]
    elif attention_mask.dtype != torch.bool:  # an additive mask: 0 where attended
        attention_mask = attention_mask == 0
    # Every token may see itself: keeps fully masked rows (padding) from producing NaN.
    attention_mask = attention_mask | torch.eye(length, dtype=torch.bool, device=device)

    half = query.shape[1] // 2
    outputs = []
    for heads, offset in ((slice(0, half), 0), (slice(half, None), shift)):
        parts = [t[:, heads].roll(-offset, dims=2) for t in (query, key, value)]
        mask = attention_mask.roll((-offset, -offset), dims=(2, 3))
        out = _grouped(*parts, mask, group, dropout, scaling)
        outputs.append(out.roll(offset, dims=2))
    return torch.cat(outputs, dim=1).transpose(1, 2).contiguous(), None


def _grouped(query, key, value, mask, group, dropout, scaling):
    """Attention inside consecutive groups of `group` positions (the last one padded, its padding masked)."""
    import torch
    import torch.nn.functional as F

    batch, heads, length, dim = query.shape
    groups = -(-length // group)
    pad = groups * group - length
    if pad:
        query, key, value = (F.pad(t, (0, 0, 0, pad)) for t in (query, key, value))
        mask = F.pad(mask, (0, pad, 0, pad), value=False)
        mask[..., length:, length:] = torch.eye(pad, dtype=torch.bool, device=mask.device)

    def split(t):  # (batch, heads, groups*group, dim) -> (batch*groups, heads, group, dim)
        return t.reshape(batch, heads, groups, group, dim).transpose(1, 2).reshape(batch * groups, heads, group, dim)

    blocks = torch.stack(
        [mask[:, :, i * group : (i + 1) * group, i * group : (i + 1) * group] for i in range(groups)], 1
    )
    blocks = blocks.expand(batch, groups, *blocks.shape[2:]).reshape(batch * groups, blocks.shape[2], group, group)
    out = F.scaled_dot_product_attention(
        split(query), split(key), split(value), attn_mask=blocks, dropout_p=dropout, scale=scaling
    )
    out = out.reshape(batch, groups, heads, group, dim).transpose(1, 2).reshape(batch, heads, groups * group, dim)
    return out[:, :, :length]


def enable_shift_attn(model, group_size_ratio: float = GROUP_SIZE_RATIO) -> None:
    """Switch `model` to S²-Attn for training: registers the attention function and its (SDPA) mask, then
    sets it as the model's attention implementation."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if not getattr(model, "_supports_attention_backend", False):
        raise TuningError(
            f"model.shift_attn: {type(model).__name__} computes attention in its own code rather than through "
            "transformers' attention interface, so shifted sparse attention cannot be applied: remove shift_attn."
        )
    AttentionInterface.register(NAME, functools.partial(shift_sparse_attention, group_size_ratio=group_size_ratio))
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
