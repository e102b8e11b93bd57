"""The essentials screen in a real browser (headless chromium, as test_ui_browser.py): pick a catalogue model
(path and template follow), watch the memory estimate follow the batch size and warn past the GPU's memory,
preview a vision dataset's images and a video dataset's first frames, build and train the demo model from the
essentials alone, sweep one value, compare the two finished runs (curves overlaid), chat with the base model
(Enter sends), switch to Chinese; chat about an uploaded clip with a run trained on videos.
Every labelled input of the essentials has an accessible name. Screenshots go to $FFC_SCREENSHOTS."""

import time

import pytest

from .test_ui_browser import (  # noqa: F401  (fixtures: ui, browser, shots)
    By,
    Keys,
    _input,
    browser,
    choose,
    click,
    close_menu,
    press,
    set_text,
    shot,
    shots,
    tab,
    text_of,
    ui,
    wait_for,
    wait_for_reply,
)

pytestmark = pytest.mark.slow


def snap(driver, folder, name, elem_id=None):
    """A screenshot with no menu left open."""
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    press(driver.find_element(By.ID, "title"))
    time.sleep(0.3)
    shot(driver, folder, name, elem_id)


def value_of(driver, elem_id) -> str:
    return _input(driver, elem_id).get_attribute("value")


def total_gb(driver) -> float:
    text = text_of(driver, "plan-estimate")
    return float(text.split("total")[1].split()[0])


def train(d, run: str):
    choose(d, "run-select", run)
    wait_for(lambda: run in text_of(d, "progress"), 30, f"{run} to be selected")
    click(d, "start-button")
    return wait_for(
        lambda: "finished" in text_of(d, "progress") and text_of(d, "progress"), 600, f"{run} to finish training"
    )


# Accessible name of every input in an element: a <label> tied to it, aria-label or aria-labelledby.
UNLABELLED = """
return [...arguments[0].querySelectorAll('input:not([type=hidden]), textarea, select')]
  .filter(e => e.offsetParent !== null)
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
  .map(e => e.closest('[id]') ? e.closest('[id]').id : e.outerHTML.slice(0, 80));
"""


def test_essentials_pick_estimate_train_compare_chat(ui, browser, shots):  # noqa: F811 (fixtures)
    url, workspace = ui
    d = browser
    d.get(url)
    wait_for(lambda: d.find_elements(By.ID, "build-button"), 60, "the page")
    time.sleep(2)

    # A catalogue model fills the model and its template; the estimate appears.
    choose(d, "model-picker", "Qwen2.5-0.5B")
    wait_for(lambda: value_of(d, "field-model-model-name-or-path") == "Qwen/Qwen2.5-0.5B-Instruct", 20, "the path")
    wait_for(lambda: value_of(d, "field-data-template") == "qwen", 20, "the template")
    assert "from the model catalogue" in text_of(d, "template-suggestion")
    wait_for(lambda: "0.49B parameters" in text_of(d, "plan-estimate"), 20, "the estimate")
    before = total_gb(d)
    set_text(d, "field-training-per-device-train-batch-size", "8")
    wait_for(lambda: "batch 8 x" in text_of(d, "plan-estimate"), 20, "the estimate to follow the batch size")
    assert total_gb(d) > before
    set_text(d, "gpu-memory", "16")
    wait_for(lambda: "does not fit in 16 GB" in text_of(d, "plan-estimate"), 20, "the warning")
    assert "Settings that fit" in text_of(d, "plan-estimate")
    snap(d, shots, "e01-essentials-catalogue-estimate.png", "plan-estimate")
    assert d.execute_script(UNLABELLED, d.find_element(By.ID, "essentials")) == []

    # The essentials alone build and train the demo model (a local folder: the estimate reads its config.json).
    set_text(d, "field-name", "ess")
    set_text(d, "field-model-model-name-or-path", "./model")
    wait_for(lambda: "catalogue" not in text_of(d, "template-suggestion"), 20, "the local model's suggestion")
    choose(d, "field-data-template", "chatml")
    add_choice(d, "field-data-dataset", "demo_alpaca")
    set_text(d, "field-data-cutoff-len", "128")
    set_text(d, "field-training-max-steps", "30")
    set_text(d, "field-training-learning-rate", "0.005")
    set_text(d, "gpu-memory", "24")
    wait_for(lambda: "fits in 24 GB" in text_of(d, "plan-estimate"), 20, "the estimate of the local model")
    click(d, "build-button")
    wait_for(lambda: "built" in text_of(d, "build-status"), 60, "the build")
    assert (workspace / "runs" / "ess" / "train.py").is_file()
    snap(d, shots, "e02-essentials-built.png")

    tab(d, "Train")
    assert "30 / 30" in train(d, "ess")
    # The same run again with another learning rate (a sweep of one value), trained, then both compared.
    press(d.find_element(By.CSS_SELECTOR, "#sweep button"))
    time.sleep(0.5)
    set_text(d, "sweep-values", "0.0005")
    click(d, "sweep-button")
    wait_for(lambda: "ess-learning_rate-0.0005" in text_of(d, "sweep-status"), 60, "the sweep's build")
    train(d, "ess-learning_rate-0.0005")
    add_choice(d, "compare-runs", "ess")
    add_choice(d, "compare-runs", "ess-learning_rate-0.0005")
    click(d, "compare-button")
    table = wait_for(lambda: "learning_rate" in text_of(d, "compare-table") and text_of(d, "compare-table"), 30, "x")
    assert "0.005" in table and "0.0005" in table and "final_loss" in table
    plot = d.find_element(By.ID, "compare-plot")
    wait_for(lambda: plot.find_elements(By.CSS_SELECTOR, "canvas, svg"), 30, "the overlaid curves")
    snap(d, shots, "e03-compare.png", "compare-plot")

    # Chat with the base model (no training needed); Enter sends.
    tab(d, "Chat")
    press(d.find_element(By.CSS_SELECTOR, "#chat-base input"))
    click(d, "server-button")
    wait_for(lambda: "serving on" in text_of(d, "server-status"), 300, "serve.py with the base model")
    assert any("--adapter none" in command for command in serve_commands(workspace))
    box = _input(d, "chat-input")
    press(box)
    box.send_keys("Hello base model")
    box.send_keys(Keys.ENTER)
    wait_for_reply(d, "Hello base model")
    snap(d, shots, "e04-chat-base-model.png")
    click(d, "server-stop")

    tab(d, "Export")
    snap(d, shots, "e05-export-choices.png")
    assert {"f16", "q4_k_m"} <= set(export_choices(d))

    # A vision dataset's rows come with their images, a video dataset's with the first frames of their clips
    # (the rows of each chosen dataset, then the tokenised ones).
    tab(d, "Configure")
    add_choice(d, "field-data-dataset", "demo_vision")
    add_choice(d, "field-data-dataset", "demo_video")
    click(d, "dataset-preview-button")
    wait_for(lambda: len(d.find_elements(By.CSS_SELECTOR, "#dataset-images img")) >= 6, 300, "the thumbnails")
    assert "demo_vision" in text_of(d, "dataset-preview") and "demo_video/" in text_of(d, "dataset-preview")
    snap(d, shots, "e06-dataset-images.png", "dataset-images")

    # Chinese labels on the essentials.
    choose(d, "language", "中文")
    wait_for(lambda: "批大小" in d.find_element(By.ID, "field-training-per-device-train-batch-size").text, 30, "zh")
    assert "从模型目录中选择" in d.find_element(By.ID, "model-picker").text
    assert "基本设置" in d.find_element(By.ID, "essentials").text
    wait_for(lambda: "放得下吗" in text_of(d, "plan-estimate"), 30, "the estimate in Chinese")
    _input(d, "language").send_keys(Keys.ESCAPE)
    snap(d, shots, "e07-essentials-zh.png")
    assert not [e for e in d.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]


def serve_commands(workspace) -> list:
    """The command lines of the serve.py processes running in the workspace's run directories."""
    import psutil

    runs = str((workspace / "runs").resolve())
    found = []
    for process in psutil.process_iter(["cwd", "cmdline"]):
        try:
            if (process.info["cwd"] or "").startswith(runs) and "serve.py" in " ".join(process.info["cmdline"] or []):
                found.append(" ".join(process.info["cmdline"]))
        except psutil.Error:
            pass
    return found


def export_choices(d) -> list:
    box = _input(d, "export-gguf")
    press(box)
    time.sleep(0.5)
    options = [o.text.strip() for o in d.find_elements(By.CSS_SELECTOR, "[role=option]")]
    box.send_keys(Keys.ESCAPE)
    return options


def add_choice(d, elem_id, value):
    """One more value in a multi-select menu (``choose`` clears the box first, which may drop a chosen value)."""
    box = _input(d, elem_id)
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    press(box)
    box.send_keys(value)
    time.sleep(0.3)
    box.send_keys(Keys.ENTER)
    box.send_keys(Keys.ESCAPE)
    time.sleep(0.3)
    close_menu(d)


def test_a_video_run_chats_about_an_uploaded_clip(ui, browser, shots, demo):  # noqa: F811 (fixtures)
    """The Chat tab's video box appears for a run trained on videos; a clip sent with a message reaches serve.py
    (as a video_url part) and the base model answers."""
    from ffc.ui import form, service
    from ffc.ui.jobs import Workspace

    url, workspace = ui
    (workspace / "vlm").symlink_to(demo / "tiny-vlm")
    values = {**form.values_from_spec({}), "name": "clips", "model.model_name_or_path": "./vlm"}
    values.update({"data.dataset": ["demo_video"], "data.dataset_dir": "./data", "data.template": "qwen2_vl"})
    assert service.build(Workspace(workspace), "clips", form.to_yaml(form.spec_from_values(values))).ok
    d = browser
    d.get(url)
    wait_for(lambda: d.find_elements(By.ID, "run-select"), 60, "the page")
    tab(d, "Chat")
    assert not d.find_elements(By.CSS_SELECTOR, "#chat-video input[type=file]")  # no run chosen yet
    choose(d, "run-select", "clips")
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#chat-video input[type=file]"), 30, "the video box")
    press(d.find_element(By.CSS_SELECTOR, "#chat-base input"))
    click(d, "server-button")
    wait_for(lambda: "serving on" in text_of(d, "server-status"), 300, "serve.py with the base model")
    clip = demo / "data" / "demo_video" / "circle_red_left.mp4"
    d.find_element(By.CSS_SELECTOR, "#chat-video input[type=file]").send_keys(str(clip))
    uploaded = '#chat-video [aria-label="circle_red_left.mp4"]'
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, uploaded), 30, "the upload")
    box = _input(d, "chat-input")
    press(box)
    box.send_keys("Which way does it move?")
    box.send_keys(Keys.ENTER)

    def answered():
        texts = [b.text.strip() for b in d.find_elements(By.CSS_SELECTOR, "#chatbot .message")]
        return "Which way does it move?" in texts[:-1] and texts[-1] != "Which way does it move?" and texts

    texts = wait_for(answered, 180, "a reply about the clip")
    assert "server error" not in texts[-1] and "start the model server" not in texts[-1], texts
    assert d.find_elements(By.CSS_SELECTOR, "#chatbot video"), "the clip is shown in the conversation"
    snap(d, shots, "e08-chat-video.png")
    click(d, "server-stop")
