"""Bad data is named (file, row or line, reason, what to do), never trained silently, never a crash;
user errors reach the user as one message without a traceback."""

import json
import logging
import subprocess
import sys
import textwrap

import pytest

from ffc.runtime.data.loading import DataError, load_datasets, split_validation, tokenize_dataset
from ffc.runtime.errors import UserError, is_user_error

GOOD_ALPACA = {"instruction": "hi", "output": "hello"}
GOOD_SHAREGPT = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
GOOD_OPENAI = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
GOOD_PAIR = {"instruction": "hi", "chosen": "hello", "rejected": "go away"}
GOOD_KTO = {"instruction": "hi", "output": "hello", "label": True}

SHAREGPT = {"formatting": "sharegpt"}
OPENAI = {"formatting": "openai", "columns": {"messages": "messages", "tools": "tools"}}
RANKING = {"ranking": True}
KTO = {"columns": {"kto_tag": "label"}}


def sg(*turns):
    return {"conversations": [{"from": role, "value": value} for role, value in turns]}


def tool_call_row(calls):
    return {
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."},
        ]
    }


# (id, kind, registry entry extras, good row, bad row, message fragment after "FILE: row 2: ")
BAD_ROWS = [
    ("number-output", "conversations", {}, GOOD_ALPACA, {"instruction": "q", "output": 42}, "'output' must be text, got the number 42"),
    ("bool-output", "conversations", {}, GOOD_ALPACA, {"instruction": "q", "output": True}, "'output' must be text, got the boolean true"),
    ("null-output", "conversations", {}, GOOD_ALPACA, {"instruction": "q", "output": None}, "'output' is empty"),
    ("number-instruction", "conversations", {}, GOOD_ALPACA, {"instruction": 7, "output": "x"}, "'instruction' must be text, got the number 7"),
    ("empty-prompt", "conversations", {}, GOOD_ALPACA, {"instruction": "", "output": "x"}, "'instruction' and 'input' are both empty"),
    ("list-output", "conversations", {}, GOOD_ALPACA, {"instruction": "q", "output": ["a", "b"]}, "'output' is a list: this looks like ranking data"),
    ("bad-history", "conversations", {"columns": {"history": "history"}}, {**GOOD_ALPACA, "history": []}, {**GOOD_ALPACA, "history": "a"}, "'history' must be a list of [instruction, response] pairs, got text"),
    ("null-turn", "conversations", SHAREGPT, GOOD_SHAREGPT, sg(("human", "q"), ("gpt", None)), "message 2 has no text: 'value' is missing or null"),
    ("number-turn", "conversations", SHAREGPT, GOOD_SHAREGPT, sg(("human", 3), ("gpt", "x")), "message 1 'value' must be text, got the number 3"),
    ("list-role", "conversations", SHAREGPT, GOOD_SHAREGPT, sg((["human"], "q"), ("gpt", "x")), "message 1: 'from' is ['human']; expected one of 'human'"),
    ("unknown-role", "conversations", SHAREGPT, GOOD_SHAREGPT, sg(("bot", "q"), ("gpt", "x")), "message 1: 'from' is 'bot'"),
    ("conversation-string", "conversations", SHAREGPT, GOOD_SHAREGPT, {"conversations": "hi there"}, "'conversations' must be a list of messages, got text"),
    ("turns-strings", "conversations", SHAREGPT, GOOD_SHAREGPT, {"conversations": ["hi", "hello"]}, "message 1 is text, not an object with 'from' and 'value' keys"),
    ("empty-conversation", "conversations", SHAREGPT, GOOD_SHAREGPT, {"conversations": []}, "'conversations' is empty"),
    ("out-of-order", "conversations", SHAREGPT, GOOD_SHAREGPT, sg(("gpt", "x"), ("human", "q"), ("gpt", "y")), "message 1 is 'assistant' where user or observation was expected"),
    ("ends-with-prompt", "conversations", SHAREGPT, GOOD_SHAREGPT, sg(("human", "q"), ("gpt", "x"), ("human", "z")), "the conversation ends with a prompt and no response"),
    ("late-system", "conversations", SHAREGPT, GOOD_SHAREGPT, sg(("human", "q"), ("system", "s"), ("gpt", "x")), "message 2 is a system message after the conversation started"),
    ("only-system", "conversations", SHAREGPT, GOOD_SHAREGPT, sg(("system", "s")), "'conversations' holds only a system message: the conversation has no turns"),
    ("tool-call-string", "conversations", OPENAI, GOOD_OPENAI, tool_call_row(["x"]), "message 2: tool call 1 must be an object with a function name, got text"),
    ("tool-call-bad-json", "conversations", OPENAI, GOOD_OPENAI, tool_call_row([{"function": {"name": "f", "arguments": "{bad"}}]), "message 2: tool call 1 (f): the arguments are not valid JSON"),
    ("tool-calls-not-list", "conversations", OPENAI, GOOD_OPENAI, tool_call_row("f()"), "message 2: 'tool_calls' must be a list of calls, got text"),
    ("number-tools", "conversations", OPENAI, GOOD_OPENAI, {**GOOD_OPENAI, "tools": 5}, "'tools' must be JSON text, a list or an object, got the number 5"),
    ("number-chosen", "pairs", RANKING, GOOD_PAIR, {**GOOD_PAIR, "chosen": 5}, "'chosen' must be text, got the number 5"),
    ("null-rejected", "pairs", RANKING, GOOD_PAIR, {**GOOD_PAIR, "rejected": None}, "column 'rejected' is missing or null"),
    ("empty-chosen", "pairs", RANKING, GOOD_PAIR, {**GOOD_PAIR, "chosen": ""}, "the 'chosen' response is empty"),
    ("bad-label", "kto", KTO, GOOD_KTO, {**GOOD_KTO, "label": "maybe"}, "the label 'label' must be true or false, got 'maybe'"),
    ("number-text", "text", {}, {"text": "a document"}, {"text": 42}, "'text' must be text, got the number 42"),
    ("empty-text", "text", {}, {"text": "a document"}, {"text": "  "}, "'text' is empty"),
    ("number-answer", "prompts", {}, GOOD_ALPACA, {"instruction": "q", "output": 12}, "'output' must be text, got the number 12"),
]  # fmt: skip


def _load(tmp_path, name, entry, kind, **options):
    return load_datasets(tmp_path, {"d": {"file_name": name, **entry}}, ["d"], kind, **options)


@pytest.mark.parametrize("case", BAD_ROWS, ids=[case[0] for case in BAD_ROWS])
def test_bad_row_is_named_or_skipped_and_counted(tmp_path, caplog, case):
    _, kind, entry, good, bad, message = case
    (tmp_path / "d.json").write_text(json.dumps([good, bad, good]))
    with pytest.raises(DataError) as error:
        _load(tmp_path, "d.json", entry, kind)
    assert f"d.json: row 2: {message}" in str(error.value)
    assert str(error.value).endswith("Fix the row, or set data.on_bad_row: skip to skip bad rows.")
    with caplog.at_level(logging.WARNING, logger="ffc.data"):
        data = _load(tmp_path, "d.json", entry, kind, on_bad_row="skip")
    assert len(data) == 2
    assert "skipped 1 bad rows of 3" in caplog.text and f"1 like row 2: {message}" in caplog.text


# (id, file name, content, message fragment after "FILE: "); a file that cannot be parsed fails in both modes.
BAD_FILES = [
    ("malformed-json", "d.json", b'[{"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}]', "line 2, column 22: invalid JSON: Expecting ',' delimiter. Fix the JSON there."),
    ("trailing-comma", "d.json", b'[{"instruction": "a", "output": "b"},\n]', "line 2, column 1: invalid JSON"),
    ("bad-jsonl-line", "d.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n', "line 3, column 32: invalid JSON: Expecting value. Fix the line"),
    ("jsonl-line-not-object", "d.jsonl", b'{"instruction": "a", "output": "b"}\n[1, 2]\n', "line 2 is a list, not an object"),
    ("json-row-not-object", "d.json", b'[{"instruction": "a", "output": "b"}, 5]', "row 2 is the number 5, not an object"),
    ("latin1-json", "d.json", '[{"instruction": "a", "output": "b"},\n {"instruction": "café", "output": "b"}]'.encode("latin-1"), "line 2: the file is not UTF-8 text (byte 0xe9 at column 22; perhaps Latin-1 or Windows-1252). Re-save it as UTF-8."),
    ("latin1-jsonl", "d.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "café", "output": "b"}\n'.encode("latin-1"), "line 2: the file is not UTF-8 text (byte 0xe9"),
    ("utf16-json", "d.json", json.dumps([GOOD_ALPACA]).encode("utf-16"), "the file is UTF-16 text, but ffc reads UTF-8. Re-save it as UTF-8."),
    ("latin1-csv", "d.csv", "instruction,output\ncafé,b\n".encode("latin-1"), "line 2: the file is not UTF-8 text"),
    ("ragged-csv", "d.csv", b"instruction,output\na,b\nc,d,e\n", "line 3: 3 fields where the header has 2. Quote fields that contain commas"),
    ("empty-json", "d.json", b"", "the file is empty. Add rows to it, or remove the dataset from data.dataset."),
    ("empty-jsonl", "d.jsonl", b"\n\n", "the file is empty"),
    ("empty-csv", "d.csv", b"", "the file is empty"),
    ("header-only-csv", "d.csv", b"instruction,output\n", "the file has a header but no rows. Add rows"),
    ("empty-list", "d.json", b"[]", "the file holds an empty list: it has no rows"),
    ("top-level-number", "d.json", b"42", "the file holds the number 42, not rows. Make it a list of objects"),
    ("top-level-string", "d.json", b'"rows"', "the file holds text, not rows"),
    ("not-parquet", "d.parquet", b"PAR1 this is no parquet", "cannot read"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_unreadable_file_names_line_and_reason(tmp_path, case):
    _, name, content, message = case
    (tmp_path / name).write_bytes(content)
    for on_bad_row in ("error", "skip"):
        with pytest.raises(DataError) as error:
            _load(tmp_path, name, {}, "conversations", on_bad_row=on_bad_row)
        assert name in str(error.value) and message in str(error.value)
        assert "An error occurred while generating the dataset" not in str(error.value)


def test_latin1_text_file_for_pretraining(tmp_path):
    (tmp_path / "d.txt").write_bytes("one\ncafé\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"d\.txt: line 2: the file is not UTF-8 text .* Re-save it as UTF-8"):
        _load(tmp_path, "d.txt", {}, "text")


@pytest.mark.parametrize(
    "entry,rows,message",
    [
        (
            {},
            [{"instruction": "a"}, {"instruction": "b"}],
            "column 'output' (response) is missing; the row has 'instruction'",
        ),
        (
            {},
            [{"prompt": "a", "answer": "b"}],
            "column 'instruction' (prompt) is missing; the row has 'prompt', 'answer'",
        ),
        (
            SHAREGPT,
            [{"conversations": "a"}, {"conversations": "b"}],
            "'conversations' must be a list of messages, got text",
        ),
        (SHAREGPT, [{"conversations": ["a", "b"]}], "message 1 is text, not an object"),
        (SHAREGPT, [{"messages": []}], "column 'conversations' (messages) is missing"),
    ],
)
def test_a_file_of_only_bad_rows_is_an_error_even_when_skipping(tmp_path, entry, rows, message):
    (tmp_path / "d.json").write_text(json.dumps(rows))
    with pytest.raises(DataError) as error:
        _load(tmp_path, "d.json", entry, "conversations", on_bad_row="skip")
    assert f"d.json: every row is bad ({len(rows)} row" in str(error.value) and message in str(error.value)
    assert "nothing to train on" in str(error.value)


class _Encoder:
    """The columns an encoder returns, without a tokenizer: enough for tokenize_dataset's bookkeeping."""

    def encode_batch(self, batch):
        n = len(batch["messages"])
        return {
            "input_ids": [[1, 2]] * n,
            "labels": [[1, 2]] * n,
            "_drop": [""] * n,
            "_truncated": [False] * n,
            "_trained": [2] * n,
        }


def test_skip_summary_counts_by_reason_through_to_the_stats(tmp_path, caplog):
    bad = [
        {"instruction": "q", "output": 42},
        sg(("human", "q"), ("gpt", None)),
        {"instruction": "q", "output": 7},
        {"instruction": "q", "output": ""},
    ]
    (tmp_path / "d.json").write_text(json.dumps([GOOD_ALPACA] * 6 + [bad[0], bad[2], bad[3]]))
    (tmp_path / "s.json").write_text(
        json.dumps([GOOD_SHAREGPT] * 3 + [bad[1]] + [sg(("human", "q"), ("gpt", None), ("human", "r"), ("gpt", None))])
    )
    registry = {"d": {"file_name": "d.json"}, "s": {"file_name": "s.json", **SHAREGPT}}
    with caplog.at_level(logging.WARNING, logger="ffc.data"):
        data = load_datasets(tmp_path, registry, ["d", "s"], "conversations", on_bad_row="skip")
    assert len(data) == 9
    assert "d.json: skipped 3 bad rows of 9" in caplog.text
    assert "2 like row 7: 'output' must be text, got the number 42" in caplog.text  # 42 and 7: one reason
    assert "1 like row 9: 'output' is empty" in caplog.text
    assert "s.json: skipped 2 bad rows of 5" in caplog.text and "2 like row 4: message 2 has no text" in caplog.text
    train, _ = split_validation(data, 2, seed=0)
    _, stats = tokenize_dataset(train, _Encoder())
    assert sum(stats.skipped.values()) == 5 and stats.kept == 7
    summary = stats.summary()
    assert "bad rows skipped when loading: 5" in summary
    assert "skipped (2):" in summary and "d.json: 'output' must be text, got the number 42" in summary
    assert "(first: row 7)" in summary and "s.json: message 2 has no text" in summary


def test_row_numbers_are_the_file_rows_when_dataset_info_samples(tmp_path):
    rows = [{"instruction": f"q{i}", "output": "a"} for i in range(20)]
    rows[13]["output"] = 5
    (tmp_path / "d.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"d\.json: row 14: 'output' must be text, got the number 5"):
        _load(tmp_path, "d.json", {"num_samples": 40}, "conversations")


def test_csv_cells_stay_the_text_written(tmp_path):
    (tmp_path / "d.csv").write_text("instruction,input,output,label\nq,,007,true\nr,NA,1.50,false\n")
    data = _load(tmp_path, "d.csv", KTO, "kto")
    assert [row["messages"][-1]["content"] for row in data] == ["007", "1.50"]
    assert data[1]["messages"][0]["content"] == "r\nNA" and data["label"] == [True, False]


def test_streaming_checks_rows_as_they_come(tmp_path):
    (tmp_path / "d.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [GOOD_ALPACA, {"instruction": "q", "output": 3}, GOOD_ALPACA])
    )
    assert len(list(_load(tmp_path, "d.jsonl", {}, "conversations", streaming=True, on_bad_row="skip"))) == 2
    with pytest.raises(DataError, match=r"d\.jsonl: row 2: 'output' must be text"):
        list(_load(tmp_path, "d.jsonl", {}, "conversations", streaming=True))


def test_tokenizing_no_rows_is_a_data_error():
    import datasets

    empty = datasets.Dataset.from_dict({"messages": [], "system": [], "tools": []})
    with pytest.raises(DataError, match="no train samples: the train data has no rows"):
        tokenize_dataset(empty, _Encoder())


def test_data_and_registry_errors_are_user_errors():
    from ffc.runtime.data.convert import RowError
    from ffc.runtime.data.registry import RegistryError

    assert issubclass(DataError, UserError) and issubclass(RowError, UserError)
    assert is_user_error(RegistryError("x")) and not is_user_error(KeyError("x"))


ENTRY = """\
import sys
from ffc.runtime.errors import run

def main():
    what = sys.argv[1]
    print("started")
    if what == "data":
        from ffc.runtime.data.loading import DataError
        raise DataError("d.json: row 2: 'output' must be text. Fix the row.")
    if what == "registry":
        from ffc.runtime.data.loading import load_datasets
        load_datasets(".", {"x": {"formatting": "nope"}}, ["x"], "conversations")
    if what == "bug":
        raise KeyError("input_ids")
    if what == "interrupt":
        raise KeyboardInterrupt

if __name__ == "__main__":
    run(main)
"""


@pytest.mark.parametrize(
    "what,status,stderr",
    [
        ("data", 2, "error: d.json: row 2: 'output' must be text. Fix the row.\n"),
        ("registry", 2, "error: dataset_info.json: dataset 'x': "),
        ("bug", 1, "Traceback (most recent call last)"),
        ("interrupt", 130, ""),
        ("ok", 0, ""),
    ],
)
def test_entry_point_shows_user_errors_as_messages(tmp_path, what, status, stderr):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(ENTRY))
    done = subprocess.run(
        [sys.executable, str(script), what], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == status, done.stderr
    assert done.stdout == "started\n"
    if what in ("data", "registry"):
        assert done.stderr.startswith(stderr) and "Traceback" not in done.stderr
    elif what == "bug":
        assert stderr in done.stderr and "KeyError: 'input_ids'" in done.stderr
    else:
        assert done.stderr == ""


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "dataset_info.json: not found. Check data.dataset_dir"),
        ('{"a": {"file_name": "a.json"},\n}', "dataset_info.json: line 2, column 1: invalid JSON"),
        ("[]", "dataset_info.json: the top level is a list; it must be an object of dataset entries"),
    ],
)
def test_unreadable_dataset_info_is_a_data_error(tmp_path, content, message):
    from ffc.runtime.data.loading import load_registry

    if content is not None:
        (tmp_path / "dataset_info.json").write_text(content)
    with pytest.raises(DataError, match=message):
        load_registry(tmp_path / "dataset_info.json")
