"""The web UI acts only for its user: no reads or writes outside its workspace through its API, no
requests addressed to foreign names (DNS rebinding) or sent by foreign pages, a password when asked for
and whenever it listens beyond this machine. The servers are ``ffc ui`` as a user starts it; the calls
are what any local process or web page could send to its Gradio API."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ffc.ui import form, service
from ffc.ui.jobs import OutsideWorkspace, Workspace, check_name
from ffc.ui.security import Access, parse_auth
from ffc.ui.suggest import suggest_template

from .conftest import free_port

httpx = pytest.importorskip("httpx")
pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")

SECRET = "secret-marker-3f9a"
USER, PASSWORD = "ada", "correct horse"


def _outside(root: Path) -> Path:
    """A folder beside the workspace that the UI must not touch: a spec, a dataset registry, a fake run."""
    outside = root / "outside"
    (outside / "data").mkdir(parents=True)
    (outside / "secret.yaml").write_text(f"name: {SECRET}\nmodel:\n  model_name_or_path: ./m\n")
    (outside / "data" / "dataset_info.json").write_text(json.dumps({"secret_set": {"file_name": "s.json"}}))
    run = outside / "runs" / "evil"
    run.mkdir(parents=True)
    (run / ".ffc-manifest.json").write_text("{}")
    (run / "launch.sh").write_text(f"touch {outside / 'launched'}\n")
    lent = outside / "lent"  # a folder the owner links into the workspace
    lent.mkdir()
    (lent / "spec.yaml").write_text("name: lent\nmodel:\n  model_name_or_path: ./m\n")
    return outside


def _start(workspace: Path, port: int, env_extra: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "FFC_UI_AUTH"}
    env.update({"GRADIO_ANALYTICS_ENABLED": "False", **env_extra})
    log = open(workspace.parent / f"ui-{port}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "ffc.compiler", "ui", "--workspace", str(workspace), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two ``ffc ui`` servers, started together: one without a password, one with FFC_UI_AUTH."""
    root = tmp_path_factory.mktemp("security")
    outside = _outside(root)
    started = {}
    for kind, env in (("open", {}), ("auth", {"FFC_UI_AUTH": f"{USER}:{PASSWORD}"})):
        workspace = root / f"workspace-{kind}"
        workspace.mkdir()
        (workspace / "lent").symlink_to(outside / "lent")
        port = free_port()
        started[kind] = (f"http://127.0.0.1:{port}", workspace, _start(workspace, port, env))
    deadline = time.time() + 90
    for kind, (url, workspace, process) in started.items():
        while True:
            try:
                if httpx.get(url + "/", timeout=2).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or process.poll() is not None:
                logs = "\n".join(p.read_text()[-2000:] for p in root.glob("ui-*.log"))
                pytest.fail(f"ffc ui ({kind}) did not start:\n{logs}")
            time.sleep(0.3)
    yield {kind: (url, workspace) for kind, (url, workspace, _) in started.items()}, outside
    for _, _, process in started.values():
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def call(client, url: str, name: str, *args, headers=None):
    """A call of the Gradio API endpoint ``name``: (HTTP status, the handler's outputs, or the refusal's text,
    or {"error": ...} when Gradio refused the inputs)."""
    response = client.post(f"{url}/gradio_api/call/{name}", json={"data": list(args)}, headers=headers)
    if response.status_code != 200:
        return response.status_code, response.text
    event = response.json()["event_id"]
    result = client.get(f"{url}/gradio_api/call/{name}/{event}", headers=headers, timeout=60)
    lines = result.text.splitlines()
    kind = next(line.split(": ", 1)[1] for line in lines if line.startswith("event: "))
    data = next(line.split(": ", 1)[1] for line in lines if line.startswith("data: "))
    assert kind in ("complete", "error"), result.text
    return result.status_code, json.loads(data)


def _form(name="saved"):
    values = {**form.values_from_spec({}), "name": name}
    return [values[f.path] for f in form.FIELDS]


# -- over HTTP, as anyone who reaches the port could ----------------------------------------------------


def test_api_calls_cannot_reach_outside_the_workspace(servers):
    (url, workspace), outside = servers[0]["open"], servers[1]
    with httpx.Client(timeout=30) as client:
        for target in (outside / "written.yaml", "../written.yaml", "lent/../written.yaml"):
            status, (message,) = call(client, url, "on_save", str(target), "en", *_form())
            assert status == 200 and "outside the workspace" in message, message
        assert not list(outside.rglob("written.yaml")) and not (workspace.parent / "written.yaml").exists()
        status, (message,) = call(client, url, "on_save", "specs/mine.yaml", "en", *_form())
        assert "saved" in message and (workspace / "specs" / "mine.yaml").is_file()  # the API itself works

        for source in (
            outside / "secret.yaml",
            "../outside/secret.yaml",
            "lent/../secret.yaml",
            outside / "runs" / "evil",
        ):
            status, outputs = call(client, url, "on_load", str(source), "en")
            assert "outside the workspace" in outputs[-1] and SECRET not in json.dumps(outputs), outputs[-1]
        outputs = call(client, url, "on_load", "lent/spec.yaml", "en")[1]  # a folder the owner linked in
        assert "loaded" in outputs[-1] and "lent" in json.dumps(outputs)

        (update,) = call(client, url, "on_dataset_dir", str(outside / "data"), [], "en")[1]
        assert update["choices"] == [] and "not read" in update["info"] and "outside the workspace" in update["info"]
        rows, images = call(client, url, "on_dataset_preview", "en", *_dataset_preview_form(outside / "data"))[1]
        assert "outside the workspace" in rows and "s.json" not in rows  # s.json: the registry's content
        assert not images.get("value") and images.get("visible") is False  # no thumbnails of files outside

        for run in ("../../outside/runs/evil", str(outside / "runs" / "evil")):
            # Gradio refuses names its run menu does not offer; the handler refuses what is not a run name.
            outputs = call(client, url, "on_start", run, "en")[1]
            assert "not in the list of choices" in str(outputs) or "run name" in outputs[0], outputs
    assert not (outside / "launched").exists()


def _dataset_preview_form(dataset_dir: Path):
    values = {**form.values_from_spec({}), "name": "p", "data.dataset_dir": str(dataset_dir)}
    values["data.dataset"] = ["secret_set"]
    return [values[f.path] for f in form.FIELDS]


def test_foreign_host_and_origin_are_refused(servers):
    (url, workspace), _ = servers[0]["open"], servers[1]
    port = url.rsplit(":", 1)[1]
    with httpx.Client(timeout=30) as client:
        assert client.get(url + "/").status_code == 200
        assert client.get(url + "/", headers={"Host": f"localhost:{port}"}).status_code == 200
        refused = client.get(url + "/", headers={"Host": "evil.example"})
        assert refused.status_code == 403 and "DNS rebinding" in refused.text
        assert client.get(url + "/", headers={"Host": f"evil.example:{port}"}).status_code == 403
        status, _ = call(client, url, "on_save", "rebound.yaml", "en", *_form(), headers={"Host": "evil.example"})
        assert status == 403
        status, _ = call(client, url, "on_save", "csrf.yaml", "en", *_form(), headers={"Origin": "http://evil.example"})
        assert status == 403
        status, _ = call(client, url, "on_save", "own.yaml", "en", *_form(), headers={"Origin": url})
        assert status == 200
    assert not (workspace / "rebound.yaml").exists() and not (workspace / "csrf.yaml").exists()
    assert (workspace / "own.yaml").is_file()


def test_a_password_guards_the_api(servers):
    (url, workspace), _ = servers[0]["auth"], servers[1]
    with httpx.Client(timeout=30) as client:
        status, _ = call(client, url, "on_save", "anonymous.yaml", "en", *_form())
        assert status == 401
        client.post(f"{url}/login", data={"username": USER, "password": "wrong"})
        assert call(client, url, "on_save", "guessed.yaml", "en", *_form())[0] == 401
        assert client.post(f"{url}/login", data={"username": USER, "password": PASSWORD}).status_code == 200
        status, (message,) = call(client, url, "on_save", "logged-in.yaml", "en", *_form())
        assert status == 200 and "saved" in message
    assert not (workspace / "anonymous.yaml").exists() and not (workspace / "guessed.yaml").exists()
    assert (workspace / "logged-in.yaml").is_file()


def test_listening_beyond_this_machine_needs_a_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FFC_UI_AUTH"}
    port = free_port()
    command = [sys.executable, "-m", "ffc.compiler", "ui", "--workspace", str(tmp_path), "--port", str(port)]
    refused = subprocess.run([*command, "--host", "0.0.0.0"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--auth" in refused.stderr and "FFC_UI_AUTH" in refused.stderr
    bad = subprocess.run([*command, "--auth", "no-colon"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "USER:PASS" in bad.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


# -- the rules, without a server ------------------------------------------------------------------------


def test_access_rules():
    with pytest.raises(ValueError, match="FFC_UI_AUTH"):
        Access.check("0.0.0.0", 7860)
    with pytest.raises(ValueError, match="FFC_UI_AUTH"):
        Access.check("192.168.1.5", 7860, "")
    assert parse_auth("u:p:with:colons") == ("u", "p:with:colons")
    for bad in ("u:", ":p", "up"):
        with pytest.raises(ValueError, match="USER:PASS"):
            parse_auth(bad)
    local = Access.check("127.0.0.1", 7860)
    assert local.auth is None and Access.check("localhost", 7860).auth is None
    assert local.allows("127.0.0.1:7860", 80) and local.allows("localhost:7860", 80) and local.allows("[::1]:7860", 80)
    assert not local.allows("localhost:7861", 80) and not local.allows("localhost", 80)  # another port
    assert not local.allows("evil.example:7860", 80) and not local.allows("", 80) and not local.allows("a@b:7860", 80)
    assert local.refusal("127.0.0.1:7860", None) is None and local.refusal(None, None)
    assert local.refusal("127.0.0.1:7860", "http://localhost:7860") is None
    assert local.refusal("127.0.0.1:7860", "null") and local.refusal("127.0.0.1:7860", "https://evil.example")
    shared = Access.check("0.0.0.0", 7860, "u:p", ["gpu-box.lan", "proxy.example:443"])
    assert shared.auth == ("u", "p") and shared.allows("10.1.2.3:7860", 80)  # digits cannot be rebound
    assert shared.allows("gpu-box.lan:7860", 80) and shared.allows("GPU-box.lan.:9000", 80)
    assert shared.allows("proxy.example", 443) and not shared.allows("proxy.example", 80)
    assert not shared.allows("other.lan:7860", 80)
    named = Access.check("gpu-box.lan", 7860, "u:p")
    assert named.allows("gpu-box.lan:7860", 80) and not named.allows("gpu-box.lan:80", 80)
    with pytest.raises(ValueError, match="--allowed-host"):
        Access.check("127.0.0.1", 7860, None, ["http://x/"])


def test_workspace_paths_stay_inside(tmp_path):
    outside = _outside(tmp_path)
    root = tmp_path / "ws"
    root.mkdir()
    (root / "lent").symlink_to(outside / "lent")
    (root / "escape").symlink_to(outside)
    ws = Workspace(root)
    assert ws.inside("a/b.yaml") == root.resolve() / "a/b.yaml" and ws.inside(root / "x") == root.resolve() / "x"
    assert ws.inside("runs/r/../../x.yaml") == root.resolve() / "x.yaml"  # climbing back in is fine
    assert ws.inside("lent/spec.yaml") == root.resolve() / "lent/spec.yaml"  # the owner's link
    for path in ("../x", str(outside / "secret.yaml"), "~/x.yaml", "lent/../secret.yaml", "escape/../../x"):
        with pytest.raises(OutsideWorkspace):
            ws.inside(path)
    assert ws.inside("../output", base=ws.run_dir("r")) == root.resolve() / "runs" / "output"
    for name in ("..", "../r", "/r", "a/b", ".hidden", "", None):
        with pytest.raises(ValueError, match="run name"):
            check_name(name)
        with pytest.raises(ValueError, match="run name"):
            ws.run_dir(name)
    # The model suggestion looks into local folders only inside the workspace; outside, the name alone counts.
    model = outside / "mystery-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert suggest_template(str(model), root)[0] == "qwen"
    assert suggest_template(str(model), root, may_read=ws.contains)[0] is None


def test_spec_paths_the_ui_touches_stay_inside(tmp_path):
    outside = _outside(tmp_path)
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    values = {
        **form.values_from_spec({}), "name": "r", "model.model_name_or_path": str(outside / "any-model"),
        "data.dataset": ["secret_set"], "data.template": "chatml", "data.dataset_dir": str(outside / "data"),
        "training.output_dir": "../../../escaped", "export.export_dir": str(outside / "exported"),
    }  # fmt: skip
    outcome = service.preview(ws, "r", form.to_yaml(form.spec_from_values(values)))
    places = {e.split(": ")[1] for e in outcome.errors}
    assert places == {"data.dataset_dir", "training.output_dir", "export.export_dir"}, outcome.errors
    assert all("outside the workspace" in e and e.startswith("r.yaml:") for e in outcome.errors)
    assert not outcome.files  # nothing read from the registry outside
    assert not (ws.root / "r.yaml").exists() and not service.build(ws, "r", outcome.yaml).ok
    # A model may be anywhere: training reads it, not the UI.
    values.update({"data.dataset_dir": "data", "training.output_dir": "output", "export.export_dir": "exported"})
    (ws.root / "data").mkdir()
    (ws.root / "data" / "dataset_info.json").write_text(json.dumps({"secret_set": {"file_name": "s.json"}}))
    assert service.preview(ws, "r", form.to_yaml(form.spec_from_values(values))).ok


def _stub_run(ws: Workspace, name: str) -> Path:
    """A built run whose launch.sh and export.py record their arguments instead of training."""
    run = ws.run_dir(name)
    run.mkdir(parents=True)
    (run / ".ffc-manifest.json").write_text("{}")
    (run / "launch.sh").write_text('echo "$@" > launched-with\n')
    (run / "export.py").write_text("import sys\nopen('exported-with', 'w').write(' '.join(sys.argv[1:]))\n")
    return run


def _wait(job):
    job.process.wait(timeout=30)
    return job


def test_resume_starts_launch_sh_with_resume(tmp_path):
    from ffc.ui.handlers import App

    ws = Workspace(tmp_path)
    run = _stub_run(ws, "r")
    app = App(ws)
    assert "Resume continues a stopped" in app.on_resume("r", "en")  # never trained: nothing to resume
    assert "继续训练" in app.on_resume("r", "zh")
    assert app.on_tick("r", "en")[-1]["visible"] is False
    (run / ".ffc-ui.json").write_text(json.dumps({"train": "stopped"}))
    assert app.on_tick("r", "en")[-1]["visible"] is True  # the button shows for a stopped run
    message = app.on_resume("r", "en")
    assert "bash launch.sh --resume" in message
    _wait(ws.job("r", "train"))
    assert (run / "launched-with").read_text().strip() == "--resume"
    assert ws.job("r", "train").command == ["bash", "launch.sh", "--resume"]
    assert "run name" in app.on_resume("../r", "en")
    app.on_start("r", "en")
    _wait(ws.job("r", "train"))
    assert (run / "launched-with").read_text().strip() == ""  # Start begins afresh


def test_scripts_write_only_inside_the_workspace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    run = _stub_run(ws, "r")
    for args in (["--export-dir", str(tmp_path)], ["--export-d=../../../out"], ["--export", "/tmp/x"]):
        with pytest.raises(OutsideWorkspace):
            ws.start_script("r", "export", args)
    _wait(ws.start_script("r", "export", ["--export-dir", "merged", "--export-size", "2"]))
    assert (run / "exported-with").read_text() == "--export-dir merged --export-size 2"
