"""The data engine: formats, bad rows, loss masks, truncation, packing isolation."""

import json
import os

import numpy as np
import pytest

from ffc.runtime.chat.templates import TEMPLATES
from ffc.runtime.data.loading import DataError, load_datasets, pack_dataset, preview, tokenize_dataset
from ffc.runtime.data.packing import Collator, pack_bins
from ffc.runtime.data.tokenize import IGNORE_INDEX, ConversationEncoder, MaskOptions, TextEncoder

from .conftest import DEMO_DATA, needs_shared


@pytest.fixture(scope="module")
def tokenizer(demo):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo / "tiny-model")


CONV = {
    "messages": [
        {"role": "user", "content": "What is 1 plus 2?"},
        {"role": "assistant", "content": "1 plus 2 is 3."},
        {"role": "user", "content": "What color is the sky?"},
        {"role": "assistant", "content": "The sky is blue."},
    ],
    "system": "Be brief.",
    "tools": "",
}


def encode(tokenizer, conv=CONV, template="chatml", **opts):
    encoder = ConversationEncoder(tokenizer, TEMPLATES[template], MaskOptions(**{"cutoff_len": 512, **opts}))
    out = encoder.encode_batch({k: [v] for k, v in conv.items()})
    return out["input_ids"][0], out["labels"][0], out["_drop"][0], out["_truncated"][0]


def trained_text(tokenizer, ids, labels):
    spans, current = [], []
    for i, label in zip(ids, labels):
        if label != IGNORE_INDEX:
            current.append(i)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans


def test_every_response_is_trained_and_nothing_else(tokenizer):
    ids, labels, drop, truncated = encode(tokenizer)
    assert not drop and not truncated
    assert trained_text(tokenizer, ids, labels) == ["1 plus 2 is 3.<|im_end|>", "The sky is blue.<|im_end|>"]


def test_train_on_prompt_and_mask_history(tokenizer):
    ids, labels, _, _ = encode(tokenizer, train_on_prompt=True)
    assert labels == ids
    ids, labels, _, _ = encode(tokenizer, mask_history=True)
    assert trained_text(tokenizer, ids, labels) == ["The sky is blue.<|im_end|>"]


def test_training_tokens_equal_inference_tokens(tokenizer):
    """The prompt the model gets at inference is a token prefix of the training sample."""
    ids, _, _, _ = encode(tokenizer)
    prompt = TEMPLATES["chatml"].render(CONV["messages"][:3], system="Be brief.", add_generation_prompt=True).text
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids


def test_bos_added_for_templates_without_markup(tokenizer):
    ids, labels, _, _ = encode(tokenizer, template="alpaca")
    assert ids[0] == tokenizer.bos_token_id and labels[0] == IGNORE_INDEX
    assert trained_text(tokenizer, ids, labels)[-1].endswith("</s>")


def test_truncation_keeps_whole_turns(tokenizer):
    full, _, _, _ = encode(tokenizer)
    ids, labels, drop, truncated = encode(tokenizer, cutoff_len=len(full) - 3)
    assert truncated and not drop and len(ids) < len(full) - 3
    assert trained_text(tokenizer, ids, labels) == ["1 plus 2 is 3.<|im_end|>"]
    ids, labels, _, _ = encode(tokenizer, cutoff_len=len(full) - 3, mask_history=True)
    assert trained_text(tokenizer, ids, labels) == ["The sky is blue.<|im_end|>"]  # the trained turn survives


def test_long_single_turn_keeps_a_share_of_the_response(tokenizer):
    conv = {
        "messages": [{"role": "user", "content": "tell " * 200}, {"role": "assistant", "content": "blue " * 100}],
        "system": "",
        "tools": "",
    }
    ids, labels, drop, truncated = encode(tokenizer, conv, cutoff_len=64)
    assert truncated and len(ids) == 64
    trained = sum(label != IGNORE_INDEX for label in labels)
    assert 32 <= trained < 64  # the response keeps at least half
    assert tokenizer.decode(ids[: 64 - trained]).endswith("<|im_start|>assistant\n")


def test_unrenderable_conversations_are_dropped_with_reason(tokenizer):
    conv = {"messages": [{"role": "assistant", "content": "hi"}], "system": "", "tools": ""}
    _, _, drop, _ = encode(tokenizer, conv)
    assert "cannot render" in drop and "role 'assistant'" in drop


def test_bad_rows_name_file_and_row(tmp_path):
    rows = [
        {"instruction": "a", "output": "b"},
        {"instruction": "c", "output": "d"},
        {"instruction": "e", "output": ""},
    ]
    (tmp_path / "bad.json").write_text(json.dumps(rows))
    registry = {"bad": {"file_name": "bad.json"}}
    with pytest.raises(DataError, match=r"bad\.json: row 3: 'output' is empty.*on_bad_row: skip"):
        load_datasets(tmp_path, registry, ["bad"], "conversations")
    assert len(load_datasets(tmp_path, registry, ["bad"], "conversations", on_bad_row="skip")) == 2


def test_sharegpt_roles_must_alternate(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}]
    (tmp_path / "s.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match="row 1: roles do not alternate|row 1: message 2 is 'user'"):
        load_datasets(tmp_path, {"s": {"file_name": "s.json", "formatting": "sharegpt"}}, ["s"], "conversations")


@needs_shared(DEMO_DATA)
@pytest.mark.parametrize(
    "name,rows,check",
    [
        ("alpaca_en_demo", 1000, lambda r: r["messages"][-1]["role"] == "assistant"),
        ("alpaca_zh_demo", 1000, lambda r: any("\u4e00" <= ch <= "\u9fff" for ch in r["messages"][0]["content"])),
        ("identity", 91, lambda r: len(r["messages"]) == 2),
        (
            "glaive_toolcall_en_demo",
            300,
            lambda r: r["tools"] and {"function", "observation"} & {m["role"] for m in r["messages"]} or r["tools"],
        ),
    ],
)
def test_llamafactory_demo_formats_load_and_tokenize(name, rows, check, tokenizer):
    registry = json.loads((DEMO_DATA / "dataset_info.json").read_text())
    data = load_datasets(DEMO_DATA, registry, [name], "conversations")
    assert abs(len(data) - rows) <= 1 and check(data[0])
    encoder = ConversationEncoder(tokenizer, TEMPLATES["qwen"], MaskOptions(cutoff_len=1024))
    tokenized, stats = tokenize_dataset(data, encoder)
    assert stats.kept == len(data) and stats.trained_tokens > 0
    assert "«" in preview(tokenized, tokenizer, 1, stats)


@needs_shared(DEMO_DATA)
def test_glaive_tool_calls_render_as_qwen_tool_blocks():
    registry = json.loads((DEMO_DATA / "dataset_info.json").read_text())
    data = load_datasets(DEMO_DATA, registry, ["glaive_toolcall_en_demo"], "conversations")
    row = next(r for r in data if any(m["role"] == "function" for m in r["messages"]))
    text = TEMPLATES["qwen"].render(row["messages"], system=row["system"], tools=row["tools"]).text
    assert "# Tools" in text and "<tool_call>\n{" in text and "<tool_response>" in text


@needs_shared(DEMO_DATA)
def test_ranking_data_is_refused_for_sft():
    registry = json.loads((DEMO_DATA / "dataset_info.json").read_text())
    with pytest.raises(DataError, match="ranking"):
        load_datasets(DEMO_DATA, registry, ["dpo_en_demo"], "conversations")


@needs_shared(DEMO_DATA)
def test_pretraining_text_is_chunked_not_cut(tokenizer):
    registry = json.loads((DEMO_DATA / "dataset_info.json").read_text())
    data = load_datasets(DEMO_DATA, registry, ["c4_demo"], "text", max_samples=20)
    tokenized, stats = tokenize_dataset(data, TextEncoder(tokenizer, 128))
    full = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 2 for t in data["text"])
    assert stats.tokens == full and max(len(x) for x in tokenized["input_ids"]) <= 128


def test_pack_bins_respect_capacity():
    lengths = [5, 9, 3, 7, 1, 10, 2]
    bins = pack_bins(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins) and len(bins) == 4


def test_packed_samples_do_not_see_each_other(demo, tokenizer):
    """Logits of a packed row equal the logits of each sample run alone, on SDPA and eager attention."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM

    samples = [tokenizer(t)["input_ids"] for t in ("The sky is blue.", "What is 3 plus 4? It is 7.", "red green")]
    data = datasets.Dataset.from_dict({"input_ids": samples, "labels": samples})
    packed = pack_dataset(data, 64)
    assert len(packed) == 1
    batch = Collator(tokenizer.pad_token_id)([packed[0], {**packed[0]}])
    for attention in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_pretrained(demo / "tiny-model", attn_implementation=attention).eval()
        with torch.no_grad():
            # use_cache=False as in training: with a KV cache transformers does not look for packed rows
            together = model(
                input_ids=batch["input_ids"][:1], position_ids=batch["position_ids"][:1], use_cache=False
            ).logits[0]
            start = 0
            for ids in samples:
                alone = model(input_ids=torch.tensor([ids])).logits[0]
                assert torch.allclose(together[start : start + len(ids)], alone, atol=1e-5), attention
                start += len(ids)
    labels = packed[0]["labels"]
    starts = np.cumsum([0] + [len(s) for s in samples[:-1]])
    assert all(labels[s] == IGNORE_INDEX for s in starts)  # no sample learns to predict the next one's start


def test_mixing_limits_and_validation_split(demo):
    from ffc.devtools.demo import DATASET_INFO
    from ffc.runtime.data.loading import split_validation

    data_dir = demo / "data"
    both = load_datasets(data_dir, DATASET_INFO, ["demo_alpaca", "demo_sharegpt"], "conversations", max_samples=50)
    assert len(both) == 100
    under = load_datasets(
        data_dir, DATASET_INFO, ["demo_alpaca", "demo_sharegpt"], "conversations", max_samples=50,
        mix_strategy="interleave_under", interleave_probs=[0.5, 0.5], seed=1,
    )  # fmt: skip
    assert 50 <= len(under) < 100 and {len(r["messages"]) > 2 for r in under} == {True, False}
    train, held_out = split_validation(both, 0.1, seed=0)
    assert (len(train), len(held_out)) == (90, 10)
    train, held_out = split_validation(both, 7, seed=0)
    assert len(held_out) == 7


def test_tokenizer_template_masks_like_ours(tokenizer):
    from ffc.runtime.chat.hf import TokenizerTemplate

    encoder = ConversationEncoder(tokenizer, TokenizerTemplate(tokenizer), MaskOptions(cutoff_len=512))
    out = encoder.encode_batch({k: [v] for k, v in CONV.items()})
    ours, ours_labels, _, _ = encode(tokenizer)
    assert out["input_ids"][0] == ours
    # The tokenizer's template trains the newline after <|im_end|> too; otherwise the same tokens.
    spans = trained_text(tokenizer, out["input_ids"][0], out["labels"][0])
    assert [s.rstrip("\n") for s in spans] == trained_text(tokenizer, ours, ours_labels)


@needs_shared(DEMO_DATA)
def test_llamafactory_preference_and_kto_demos_tokenize(tokenizer):
    from ffc.runtime.data.pairs import KTOEncoder, PairEncoder

    registry = json.loads((DEMO_DATA / "dataset_info.json").read_text())
    opts = MaskOptions(cutoff_len=512)
    pairs = load_datasets(DEMO_DATA, registry, ["dpo_en_demo"], "pairs")
    assert len(pairs) == 300 and pairs[0]["chosen"] != pairs[0]["rejected"]
    tokenized, stats = tokenize_dataset(pairs, PairEncoder(tokenizer, TEMPLATES["qwen"], opts))
    assert stats.kept == 300 and stats.dropped == {}
    rows = tokenized.select(range(50))
    assert all(tokenizer.decode(r["prompt_ids"]).endswith("<|im_start|>assistant\n") for r in rows)
    whole = [r for r in rows if len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) < 512]
    assert whole and all(tokenizer.decode(r["chosen_ids"]).endswith("<|im_end|>") for r in whole)
    labelled = load_datasets(DEMO_DATA, registry, ["kto_en_demo"], "kto")
    assert sorted(set(labelled["label"])) == [False, True]
    tokenized, stats = tokenize_dataset(labelled, KTOEncoder(tokenizer, TEMPLATES["qwen"], opts))
    assert stats.kept == len(labelled) and set(tokenized.column_names) >= {"prompt_ids", "completion_ids", "label"}


def test_pair_prompt_is_the_inference_prompt(tokenizer):
    """The prompt tokens of a pair are exactly what the template gives the model at inference."""
    from ffc.runtime.data.pairs import PairEncoder

    encoder = PairEncoder(tokenizer, TEMPLATES["chatml"], MaskOptions(cutoff_len=512))
    batch = {
        "messages": [CONV["messages"][:3]],
        "chosen": ["The sky is blue."],
        "rejected": ["I am not sure."],
        "system": ["Be brief."],
        "tools": [""],
    }
    out = encoder.encode_batch(batch)
    prompt = TEMPLATES["chatml"].render(CONV["messages"][:3], system="Be brief.", add_generation_prompt=True).text
    assert out["prompt_ids"][0] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(out["chosen_ids"][0]) == "The sky is blue.<|im_end|>"


def test_worker_processes_tokenize_and_pack_like_one(demo, tokenizer, monkeypatch):
    from ffc.devtools.demo import DATASET_INFO
    from ffc.runtime.data.loading import AUTO_WORKERS_MIN_ROWS, workers_for

    assert workers_for(AUTO_WORKERS_MIN_ROWS - 1, None) is None  # small data: no process start-up cost
    assert workers_for(10**6, 1) is None and workers_for(10, 3) == 3  # the spec's number wins
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "before")
    rows = load_datasets(demo / "data", DATASET_INFO, ["demo_alpaca", "demo_sharegpt"], "conversations", max_samples=60)
    encoder = ConversationEncoder(tokenizer, TEMPLATES["qwen"], MaskOptions(cutoff_len=48))
    one, one_stats = tokenize_dataset(rows, encoder, batch_size=16)
    two, two_stats = tokenize_dataset(rows, encoder, batch_size=16, num_proc=2)
    assert one["input_ids"] == two["input_ids"] and one["labels"] == two["labels"]
    assert one_stats == two_stats and one_stats.truncated > 0
    packed = pack_dataset(two, 48, num_proc=2)
    assert sum(map(len, packed["input_ids"])) == sum(map(len, one["input_ids"]))
    assert os.environ.get("TOKENIZERS_PARALLELISM") == "before"  # restored after the worker processes


def test_preview_shows_every_kind_of_tokenised_data(tokenizer):
    """text, conversations, pairs (DPO: no input_ids), kto and prompts all preview; trained tokens marked."""
    import datasets

    from ffc.runtime.data.pairs import KTOEncoder, PairEncoder, PromptEncoder

    opts = MaskOptions(cutoff_len=512)
    prompt = {"messages": [CONV["messages"][:3]], "system": ["Be brief."], "tools": [""]}
    cases = {
        "text": (TextEncoder(tokenizer, 64), {"text": ["The sky is blue."]}),
        "conversations": (ConversationEncoder(tokenizer, TEMPLATES["chatml"], opts), {k: [v] for k, v in CONV.items()}),
        "pairs": (
            PairEncoder(tokenizer, TEMPLATES["chatml"], opts),
            {**prompt, "chosen": ["Blue."], "rejected": ["Green."]},
        ),
        "kto": (
            KTOEncoder(tokenizer, TEMPLATES["chatml"], opts),
            {"messages": [CONV["messages"]], "label": [False], "system": [""], "tools": [""]},
        ),
        "prompts": (PromptEncoder(tokenizer, TEMPLATES["chatml"], opts), {**prompt, "answer": ["Blue."]}),
    }
    shown = {}
    for kind, (encoder, columns) in cases.items():
        tokenized, stats = tokenize_dataset(datasets.Dataset.from_dict(columns), encoder)
        shown[kind] = preview(tokenized, tokenizer, 2, stats)
        assert "===== sample 1:" in shown[kind] and "===== totals =====" in shown[kind], kind
    assert "«<s>The sky is blue.</s>»" in shown["text"] and "«The sky is blue.<|im_end|>»" in shown["conversations"]
    assert (
        "chosen 5, rejected 5 =====" in shown["pairs"]
        and "«Blue.<|im_end|>»" in shown["pairs"]
        and "«Green.<|im_end|>»" in shown["pairs"]
    )
    assert "(undesirable)" in shown["kto"] and "«The sky is blue.<|im_end|>»" in shown["kto"]
    assert shown["prompts"].count("<|im_start|>assistant") == 2 and "reference answer -----\nBlue." in shown["prompts"]
    assert "«" not in shown["prompts"]  # nothing is trained on a prompt: no marks, no key to them
