"""Exactness of the lean training paths: padding-free batches and the chunked loss give the
padded batch's and the plain loss's per-sample logits, losses and gradients."""

import pytest

torch = pytest.importorskip("torch")

from ffc.runtime.data.packing import Collator  # noqa: E402
from ffc.runtime.data.tokenize import IGNORE_INDEX  # noqa: E402
from ffc.runtime.losses import chunked_causal_lm_loss  # noqa: E402

VOCAB = 300


def tiny_model(attention="sdpa", kind="llama", **extra):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    torch.manual_seed(0)
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[kind]
    config = config_class(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        use_cache=False,
        **extra,
    )
    config._attn_implementation = attention
    return AutoModelForCausalLM.from_config(config).float()


def samples():
    """Four samples of different lengths; prompts (first tokens) are not trained, as in sft."""
    gen = torch.Generator().manual_seed(1)
    out = []
    for length, prompt in ((7, 3), (19, 5), (2, 1), (12, 0)):
        ids = torch.randint(5, VOCAB, (length,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return out


def per_sample(logits, labels):
    """Each sample's summed token loss (labels shifted by one, as transformers' causal-LM loss)."""
    return torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE_INDEX, reduction="sum")


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_padding_free_batch_equals_padded_batch(attention):
    model = tiny_model(attention)
    features = samples()
    padded = Collator(0)(features)
    flat = Collator(0, padding_free=True)(features)
    assert flat["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in features))
    assert "attention_mask" not in flat
    out_padded = model(**padded)
    out_flat = model(**flat)
    start, worst = 0, 0.0
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        a, b = out_padded.logits[row, :n], out_flat.logits[0, start : start + n]
        worst = max(worst, (a - b).abs().max().item())
        labels = torch.tensor(f["labels"])
        assert torch.allclose(per_sample(a, labels), per_sample(b, labels), atol=1e-5)
        start += n
    assert worst < 1e-5, worst
    assert torch.allclose(out_padded.loss, out_flat.loss, atol=1e-6)
    out_padded.loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out_flat.loss.backward()
    for expected, got in zip(grads, (p.grad for p in model.parameters())):
        assert torch.allclose(expected, got, atol=1e-6)


def test_padding_free_without_varlen_attention_pads_batches_whose_row_would_cost_more():
    """SDPA/eager mask the whole row: (sum of lengths)^2 against batch x longest^2 decides per batch."""
    row = lambda n: {"input_ids": list(range(5, 5 + n)), "labels": list(range(5, 5 + n))}  # noqa: E731
    collate = Collator(0, padding_free=True, varlen_attention=False)
    assert collate([row(512)] * 8)["input_ids"].shape == (8, 512)  # equal lengths: 4096^2 > 8 x 512^2
    uneven = [row(500), row(20), row(30), row(60)]  # 610^2 <= 4 x 500^2
    assert collate(uneven)["input_ids"].shape == (1, 610)
    assert Collator(0, padding_free=True)([row(512)] * 8)["input_ids"].shape == (1, 4096)  # varlen kernels


def test_padding_free_keeps_packed_rows_apart():
    """Packed rows keep their own position ids (restarting per sample) when concatenated."""
    rows = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "position_ids": [0, 1, 2, 0, 1]},
        {"input_ids": [10, 11], "labels": [-100, 11], "position_ids": [0, 1]},
    ]
    flat = Collator(0, pad_to_multiple_of=4, padding_free=True)(rows)
    assert flat["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 0]]
    assert flat["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, 11, -100]]
    assert flat["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 0]]


@pytest.mark.parametrize("normaliser", [None, 23])
def test_chunked_loss_equals_plain_loss(normaliser):
    from transformers.loss.loss_utils import ForCausalLMLoss

    model = tiny_model()
    batch = Collator(0)(samples())
    hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    plain = ForCausalLMLoss(model.lm_head(hidden), batch["labels"], VOCAB, num_items_in_batch=normaliser)
    plain_grads = torch.autograd.grad(plain, list(model.parameters()), retain_graph=True)
    chunked = chunked_causal_lm_loss(hidden, model.lm_head, batch["labels"], normaliser, chunk_tokens=5)
    chunked_grads = torch.autograd.grad(chunked, list(model.parameters()))
    assert abs(plain.item() - chunked.item()) <= 1e-6 * plain.item()  # fp32 sums in another order
    worst = max((a - b).abs().max().item() for a, b in zip(plain_grads, chunked_grads))
    assert worst < 1e-6, worst


def test_chunked_loss_applies_logit_softcapping():
    hidden = torch.randn(2, 6, 8, requires_grad=True)
    head = torch.nn.Linear(8, 11, bias=False)
    labels = torch.randint(0, 11, (2, 6))
    logits = torch.tanh(head(hidden) / 3.0) * 3.0
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    assert torch.allclose(plain, chunked_causal_lm_loss(hidden, head, labels, chunk_tokens=4, softcap=3.0))


@pytest.mark.parametrize("lora", [False, True])
def test_chunked_loss_trainer_matches_trainer(tmp_path, lora):
    """ChunkedLossTrainer's loss and gradients equal the plain Trainer's, on a padding-free batch."""
    from transformers import Trainer, TrainingArguments

    from ffc.runtime.losses import ChunkedLossTrainer

    model = tiny_model(kind="qwen2")
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    batch = Collator(0, padding_free=True)(samples())
    items = torch.tensor((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    results = []
    for trainer_class in (Trainer, ChunkedLossTrainer):
        trainer = trainer_class(model=model, args=args)
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=items)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (plain, plain_grads), (chunked, chunked_grads) = results
    assert abs(plain - chunked) <= 1e-6 * plain
    assert max((a - b).abs().max().item() for a, b in zip(plain_grads, chunked_grads)) < 1e-6


def test_liger_is_refused_without_a_gpu(monkeypatch):
    import sys

    from ffc.runtime.errors import UserError
    from ffc.runtime.losses import require_liger

    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # not installed
    with pytest.raises(UserError, match="liger-kernel is not installed"):
        require_liger()
    monkeypatch.setitem(sys.modules, "liger_kernel", type(sys)("liger_kernel"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        require_liger()


@pytest.mark.parametrize(
    "overrides,present,absent",
    [
        (
            [],
            [
                "ChunkedLossTrainer(",
                "padding_free=True",
                'varlen_attention=model.config._attn_implementation.startswith("flash")',
            ],
            ["trainer = Trainer(", "use_liger_kernel"],
        ),
        (["model.attn_implementation=sdpa"], ["padding_free=True", "varlen_attention=False"], []),
        (["model.attn_implementation=flash_attention_2"], ["padding_free=True", "varlen_attention=True"], []),
        (["data.padding_free=false"], ["Collator(tokenizer.pad_token_id)"], ["padding_free=True"]),
        (["training.chunked_loss=false"], ["trainer = Trainer("], ["ChunkedLossTrainer"]),
        (
            ["model.enable_liger_kernel=true"],
            ["use_liger_kernel=True", "require_liger()", "trainer = Trainer("],
            ["ChunkedLossTrainer"],
        ),
        (
            ["distributed.backend=fsdp", "distributed.num_processes=2"],
            ["trainer = Trainer(", "padding_free=True"],
            ["ChunkedLossTrainer"],
        ),
    ],
)
def test_build_chooses_the_lean_paths(write_spec, tmp_path, overrides, present, absent):
    from .test_build import build

    files = build(write_spec(), tmp_path / "run", overrides)
    code = files["train.py"].decode()
    for text in present:
        assert text in code, text
    for text in absent:
        assert text not in code, text
    liger = "model.enable_liger_kernel=true" in overrides
    assert ("liger-kernel==" in files["requirements.txt"].decode()) == liger


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["method.stage=dpo", "training.chunked_loss=false"], "TRL's fused LM head"),
        (["method.stage=rm", "training.chunked_loss=true"], "not to stage rm"),
        (["method.stage=dpo", "model.enable_liger_kernel=true"], "enable_liger_kernel applies to stage pt and sft"),
        (["training.chunked_loss=true", "model.enable_liger_kernel=true"], "choose one"),
        (
            ["training.chunked_loss=true", "distributed.backend=fsdp", "distributed.num_processes=2"],
            "FSDP and ZeRO-3",
        ),
        (["method.stage=dpo", "data.padding_free=true"], "padding_free applies to stage pt and sft"),
    ],
)
def test_lean_options_are_refused_where_they_cannot_work(write_spec, overrides, message):
    from ffc.compiler.loader import SpecError, load_spec

    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(), overrides)


# --- chunked log-probabilities of the preference and RL stages -------------------------------------------


def test_causal_token_logprobs_equal_log_softmax():
    from ffc.runtime.losses import causal_token_logprobs

    model = tiny_model()
    batch = Collator(0)(samples())
    hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"]
    targets = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    full = torch.log_softmax(model.lm_head(hidden).float(), -1).gather(2, targets.clamp(min=0)[..., None])[..., 0]
    plain = full * (targets != IGNORE_INDEX)
    chunked = causal_token_logprobs(hidden, model.lm_head, labels, chunk_tokens=5)
    assert (chunked - plain).abs().max().item() < 1e-5
    weights = torch.randn(plain.shape, generator=torch.Generator().manual_seed(2))  # any function of the log-probs
    plain_grads = torch.autograd.grad((plain * weights).sum(), list(model.parameters()), retain_graph=True)
    chunked_grads = torch.autograd.grad((chunked * weights).sum(), list(model.parameters()))
    assert max((a - b).abs().max().item() for a, b in zip(plain_grads, chunked_grads)) < 1e-5


def pair_rows():
    gen = torch.Generator().manual_seed(3)
    ids = lambda n: torch.randint(5, VOCAB, (n,), generator=gen).tolist()  # noqa: E731
    return [
        {"prompt_ids": ids(p), "chosen_ids": ids(c), "rejected_ids": ids(r)}
        for p, c, r in ((4, 6, 3), (9, 2, 7), (3, 11, 5), (6, 4, 4))
    ]


@pytest.mark.parametrize("stage,loss_type", [("orpo", None), ("simpo", "simpo"), ("simpo", "sigmoid")])
def test_chunked_pair_trainers_match_trl(tmp_path, stage, loss_type):
    """ChunkedORPOTrainer/ChunkedCPOTrainer: TRL's log-probs, NLL term, loss, metrics and gradients."""
    from datasets import Dataset

    from ffc.runtime import trainers

    model = tiny_model(kind="qwen2")
    data = trainers.to_legacy_pairs(Dataset.from_list(pair_rows()))
    if stage == "orpo":
        config = trainers.ORPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_length=64, beta=0.1)
        classes = (trainers.PretokenizedORPOTrainer, trainers.ChunkedORPOTrainer)
    else:
        config = trainers.CPOConfig(
            output_dir=str(tmp_path), use_cpu=True, report_to=[], max_length=64, loss_type=loss_type, cpo_alpha=0.5
        )
        classes = (trainers.PretokenizedCPOTrainer, trainers.ChunkedCPOTrainer)
    tokenizer = type("Tok", (), {"pad_token": "<pad>", "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": None})()
    results = []
    for trainer_class in classes:
        trainer = trainer_class(model=model, args=config, train_dataset=data, processing_class=tokenizer)
        batch = next(iter(trainer.get_train_dataloader()))
        model.zero_grad()
        out = trainer.concatenated_forward(model, batch)
        loss, metrics = trainer.get_batch_loss_metrics(model, batch)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((out, loss.item(), metrics, grads))
    (plain, plain_loss, plain_metrics, plain_grads), (chunked, chunked_loss, chunked_metrics, chunked_grads) = results
    for index in (0, 1, 4):  # chosen and rejected log-probs, the NLL term
        assert torch.allclose(plain[index], chunked[index], atol=1e-5, rtol=1e-5), index
    for index in (2, 3):  # the logits/* metrics: means of the full logits
        assert abs(plain[index].mean().item() - chunked[index].item()) < 1e-5
    assert abs(plain_loss - chunked_loss) < 1e-5
    assert plain_metrics.keys() == chunked_metrics.keys()
    assert all(abs(plain_metrics[k] - chunked_metrics[k]) < 1e-4 for k in plain_metrics), (
        plain_metrics,
        chunked_metrics,
    )
    assert max((a - b).abs().max().item() for a, b in zip(plain_grads, chunked_grads)) < 1e-5


def test_mean_logit_with_softcapping():
    from ffc.runtime.losses import mean_logit

    hidden = torch.randn(3, 7, 8)
    head = torch.nn.Linear(8, 11)
    assert abs(mean_logit(hidden, head).item() - head(hidden).mean().item()) < 1e-6
    capped = torch.tanh(head(hidden) / 2.0) * 2.0
    assert abs(mean_logit(hidden, head, softcap=2.0).item() - capped.mean().item()) < 1e-6


@pytest.mark.parametrize("lora", [False, True])
def test_ppo_chunked_logprobs_match_logits(lora):
    """PPO's per-token log-probs and values (policy and reference) from chunks equal those from the logits."""
    from ffc.runtime.ppo import PolicyWithValue, sequence_logprobs

    model = tiny_model(kind="qwen2")
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(5, VOCAB, (3, 15), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left-padded prompt
    mask[1, 12:] = 0  # a response that stopped early
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    labels[:, :6] = IGNORE_INDEX  # the prompt
    results = []
    for chunked in (False, True):
        policy = PolicyWithValue(model, chunked)
        torch.nn.init.normal_(policy.value_head.summary.weight, generator=torch.Generator().manual_seed(5))
        model.zero_grad()
        logprobs, values = policy(ids, mask, labels)
        (logprobs.sum() + values.sum()).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        with torch.no_grad():
            reference = sequence_logprobs(model, ids, mask, labels, chunked)[0]
        results.append((logprobs.detach(), values.detach(), reference, grads))
    (a_lp, a_v, a_ref, a_g), (b_lp, b_v, b_ref, b_g) = results
    assert (a_lp - b_lp).abs().max() < 1e-5 and (a_ref - b_ref).abs().max() < 1e-5
    assert (a_v - b_v).abs().max() < 1e-6
    assert (b_lp[:, :5] == 0).all() and (b_lp[1, 11:] == 0).all()  # nothing outside the responses
    assert max((x - y).abs().max().item() for x, y in zip(a_g, b_g)) < 1e-5


@pytest.mark.parametrize(
    "stage,overrides,present,absent",
    [
        ("orpo", [], ["ChunkedORPOTrainer("], ["PretokenizedORPOTrainer"]),
        ("orpo", ["training.chunked_loss=false"], ["PretokenizedORPOTrainer("], ["Chunked"]),
        ("simpo", [], ["ChunkedCPOTrainer("], ["PretokenizedCPOTrainer"]),
        ("ppo", [], ["chunked_logprobs=True"], []),
        ("ppo", ["training.chunked_loss=false"], ["chunked_logprobs=False"], []),
        ("dpo", [], ["PretokenizedDPOTrainer("], ["Chunked"]),
    ],
)
def test_build_chooses_chunked_logprobs(tmp_path, stage, overrides, present, absent):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec

    from .test_generated_code import _spec

    resolved, files = build_files(load_spec(_spec(tmp_path, stage), overrides), tmp_path / "run")
    assert resolved.spec.training.chunked_loss == ("chunked_loss=false" not in " ".join(overrides))
    code = files["train.py"].decode()
    for text in present:
        assert text in code, text
    for text in absent:
        assert text not in code, text
