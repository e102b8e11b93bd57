"""Datasets registered with ms_hub_url / om_hub_url (ModelScope, Modelers) load from that hub, with
LLaMA-Factory's rule for entries that name several hubs. No network here: the hub packages are stand-ins
that record the call and answer with local rows; the real packages' absence is a one-line error."""

import sys
import types

import pytest

from ffc.runtime.data.loading import load_datasets
from ffc.runtime.data.registry import parse_entry
from ffc.runtime.errors import UserError

from ._runs import ffc, write_spec

ROWS = [{"instruction": "Say hi", "input": "", "output": "hi"}, {"instruction": "2+2?", "input": "", "output": "4"}]


def test_the_hub_address_follows_the_spec_hub_and_what_the_entry_has(tmp_path):
    info = tmp_path / "dataset_info.json"
    both = {"hf_hub_url": "org/hf", "ms_hub_url": "org/ms", "om_hub_url": "org/om"}
    assert (parse_entry(info, "d", both).source, parse_entry(info, "d", both).path) == ("hub", "org/hf")
    assert parse_entry(info, "d", both, "modelscope").path == "org/ms"
    assert parse_entry(info, "d", both, "openmind").path == "org/om"
    assert parse_entry(info, "d", {"ms_hub_url": "org/ms"}).source == "modelscope"  # its only address
    assert parse_entry(info, "d", {"om_hub_url": "org/om"}).source == "openmind"
    assert parse_entry(info, "d", {"file_name": "a.json", "ms_hub_url": "org/ms"}, "modelscope").source == "file"
    with pytest.raises(UserError, match="ms_hub_url or om_hub_url"):
        parse_entry(info, "d", {"formatting": "alpaca"})


def _fake_hub(monkeypatch, module_name, cls_name, method_name, wrap):
    import datasets

    calls = []

    def load(**kwargs):
        calls.append(kwargs)
        data = datasets.Dataset.from_list(ROWS)
        return types.SimpleNamespace(to_hf_dataset=lambda: data) if wrap else data

    module = types.ModuleType(module_name)
    setattr(module, cls_name, type(cls_name, (), {method_name: staticmethod(load)}))
    monkeypatch.setitem(sys.modules, module_name, module)
    return calls


def test_modelscope_and_modelers_datasets_load_and_convert(monkeypatch, tmp_path):
    registry = {"ms": {"ms_hub_url": "AI-ModelScope/demo", "subset": "zh"}, "om": {"om_hub_url": "ml/demo"}}
    calls = _fake_hub(monkeypatch, "modelscope", "MsDataset", "load", wrap=True)
    rows = load_datasets(tmp_path, registry, ["ms"], "conversations", hub="modelscope")
    assert len(rows) == 2 and calls == [
        dict(
            dataset_name="AI-ModelScope/demo",
            subset_name="zh",
            data_dir=None,
            split="train",
            cache_dir=None,
            use_streaming=False,
        )
    ]
    assert "hi" in str(rows[0])
    calls = _fake_hub(monkeypatch, "openmind", "OmDataset", "load_dataset", wrap=False)
    assert len(load_datasets(tmp_path, registry, ["om"], "conversations")) == 2
    assert calls[0]["path"] == "ml/demo" and calls[0]["streaming"] is False


def test_a_missing_hub_package_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "modelscope", None)  # import fails as when it is not installed
    with pytest.raises(UserError, match="needs the modelscope package: pip install modelscope"):
        load_datasets(tmp_path, {"ms": {"ms_hub_url": "org/ms"}}, ["ms"], "conversations")


def test_train_py_passes_the_hub_only_when_the_spec_uses_one(demo, tmp_path, capsys):
    spec = write_spec(demo, tmp_path)
    assert ffc(capsys, "build", spec, "-o", tmp_path / "plain")[0] == 0
    assert "hub=" not in (tmp_path / "plain" / "train.py").read_text()
    spec.write_text(spec.read_text().replace("model:\n", "model:\n  use_modelscope_hub: true\n", 1))
    assert ffc(capsys, "build", spec, "-o", tmp_path / "ms")[0] == 0
    assert 'hub="modelscope",' in (tmp_path / "ms" / "train.py").read_text()
