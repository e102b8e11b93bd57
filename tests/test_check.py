"""ffc check: a fresh build is clean; edits, deletions, a changed spec or data file, other library
versions, a damaged lock or manifest and a training that read other data are each reported."""

import json
from pathlib import Path

import pytest

from ffc.compiler import check as checking
from ffc.runtime.data.registry import read_registry
from ffc.runtime.provenance import record_provenance

from ._runs import STAGES, ffc, lock_versions, write_spec


def _kinds(out):
    return {(f["kind"], f["name"]) for f in json.loads(out)["findings"]}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_fresh_build_is_clean(demo, tmp_path, capsys, monkeypatch, stage):
    lock_versions(monkeypatch)
    spec = write_spec(demo, tmp_path, stage)
    assert ffc(capsys, "build", spec, "-o", tmp_path / "runs" / "a")[0] == 0
    code, out, _ = ffc(capsys, "check", tmp_path / "runs" / "a")
    assert code == 0, out
    assert "as built" in out
    code, out, _ = ffc(capsys, "check", tmp_path / "runs" / "a", "--json")
    assert code == 0 and json.loads(out)["clean"] is True


def test_edits_deletions_spec_and_data_changes(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec = write_spec(demo, tmp_path, "dpo")
    run = tmp_path / "runs" / "a"
    ffc(capsys, "build", spec, "-o", run)
    (run / "train.py").write_text((run / "train.py").read_text() + "# mine\n")
    (run / "launch.sh").unlink()
    (run / ".ffc" / "base" / "README.md").write_text("changed")
    spec.write_text(spec.read_text().replace("1.0e-3", "2.0e-3"))
    (tmp_path / "data" / "demo_pairs.json").write_text("[]")
    code, out, _ = ffc(capsys, "check", run, "--json")
    assert code == 1
    assert _kinds(out) == {
        ("edited", "train.py"),
        ("missing", "launch.sh"),
        ("damaged", ".ffc/base/README.md"),
        ("spec", "../../spec.yaml"),
        ("data", "demo_pairs.json"),
    }
    (tmp_path / "data" / "demo_pairs.json").unlink()
    spec.unlink()
    code, out, _ = ffc(capsys, "check", run)
    assert code == 1
    assert "missing or unreadable" in out and "cannot be read" in out


def test_an_override_change_counts_as_a_spec_change(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec = write_spec(demo, tmp_path, "sft")
    run = tmp_path / "run"
    ffc(capsys, "build", spec, "-o", run, "--set", "training.max_steps=3")
    assert ffc(capsys, "check", run)[0] == 0
    lock = json.loads((run / "ffc.lock.json").read_text())
    assert checking.spec_hash(spec.read_text(), ["training.max_steps=4"]) != lock["spec_sha256"]


def test_other_library_and_ffc_versions(demo, tmp_path, capsys, monkeypatch):
    from ffc.runtime import provenance

    spec = write_spec(demo, tmp_path, "kto")
    run = tmp_path / "run"
    ffc(capsys, "build", spec, "-o", run)
    lock = json.loads((run / "ffc.lock.json").read_text())
    versions = {n: lock["library_versions"].get(n) for n in provenance.LIBRARIES}
    versions.update(transformers="0.0.1", peft=None, torch=lock["library_versions"]["torch"] + "+cu128")
    monkeypatch.setattr(provenance, "installed_versions", lambda names: {n: versions[n] for n in names})
    monkeypatch.setattr(checking, "__version__", "9.9.9")
    code, out, _ = ffc(capsys, "check", run, "--json")
    assert code == 1
    assert _kinds(out) == {("version", "transformers"), ("version", "peft"), ("version", "ffc")}  # +cu128: same torch
    assert "not installed" in out and "built by 0.1.0, this is 9.9.9" in out


def test_damaged_lock_manifest_and_journal(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec = write_spec(demo, tmp_path, "rm")
    run = tmp_path / "run"
    ffc(capsys, "build", spec, "-o", run)
    (run / "ffc.lock.json").write_text('{"spec": ')
    code, out, err = ffc(capsys, "check", run)
    assert code == 1 and not err
    assert "damaged  ffc.lock.json" in out and "edited   ffc.lock.json" in out
    (run / "ffc.lock.json").write_text("[1, 2]")
    assert "not a JSON object" in ffc(capsys, "check", run)[1]
    for odd in ({"run_paths": "x", "inputs": {"sha256": [1]}}, {"overrides": "x"}, {"run_paths": {"spec": 3}}):
        (run / "ffc.lock.json").write_text(json.dumps({"library_versions": {}, **odd}))
        code, out, err = ffc(capsys, "check", run)  # hand-edited tables of the wrong type: findings, no crash
        assert code == 1 and not err, err
    (run / "output").mkdir()
    (run / "output" / "ffc_provenance.json").write_text("[]")
    (run / "ffc.lock.json").write_text(json.dumps({"library_versions": {}}))
    assert "not a JSON object" in ffc(capsys, "check", run)[1]
    manifest = json.loads((run / ".ffc-manifest.json").read_text())
    manifest["files"]["../outside.py"] = "0" * 64
    (run / ".ffc-manifest.json").write_text(json.dumps(manifest))
    assert "outside the run directory" in ffc(capsys, "check", run)[1]
    (run / ".ffc-manifest.json").write_text("{")
    (run / ".ffc-pending.json").write_text("{}")
    code, out, _ = ffc(capsys, "check", run)
    assert code == 1 and ".ffc-manifest.json" in out and "edits cannot be told" in out
    (run / ".ffc-manifest.json").unlink()
    assert "not built by ffc" in ffc(capsys, "check", run)[1]
    code, _, err = ffc(capsys, "check", tmp_path / "nowhere")
    assert code == 2 and "is not a directory" in err and "Traceback" not in err


def test_provenance_of_training_is_compared_with_the_lock(demo, tmp_path, capsys, monkeypatch):
    lock_versions(monkeypatch)
    spec = write_spec(demo, tmp_path, "sft")
    run = tmp_path / "runs" / "a"
    ffc(capsys, "build", spec, "-o", run)
    data = run / "../../data"
    # What train.py does once its data is loaded (the generated call is checked below).
    written = record_provenance(run / "output", data, read_registry(data), ["demo_alpaca"])
    record = json.loads(written.read_text())
    assert record["hardware"]["cpu"] and record["hardware"]["cpu_count"] and "gpus" in record["hardware"]
    assert ".." not in Path(record["data"]["dataset_dir"]).parts
    assert set(record["data"]["sha256"]) == {"demo_alpaca.json"}
    assert ffc(capsys, "check", run)[0] == 0
    assert 'record_provenance(OUTPUT_DIR, DATASET_DIR, registry, ["demo_alpaca"])' in (run / "train.py").read_text()

    record["library_versions"]["trl"] = "0.1"
    record["data"]["sha256"]["demo_alpaca.json"] = "0" * 64
    record["data"]["sha256"]["extra.json"] = "1" * 64
    written.write_text(json.dumps(record))
    code, out, _ = ffc(capsys, "check", run, "--json")
    assert code == 1
    assert _kinds(out) == {("trained", "trl"), ("trained", "demo_alpaca.json"), ("trained", "extra.json")}
    written.write_text("{")
    assert ("damaged", "output/ffc_provenance.json") in _kinds(ffc(capsys, "check", run, "--json")[1])


def test_record_provenance_writes_only_on_the_main_process(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    data = demo / "data"
    assert record_provenance(tmp_path / "out", data, read_registry(data), ["demo_alpaca"]) is None
    assert not (tmp_path / "out").exists()
