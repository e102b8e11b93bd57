"""The web UI in a real browser (Debian's chromium + chromedriver, headless): fill the form, see a
validation error, preview, build, train the tiny model and watch the loss curve, chat with the result,
switch to Chinese. Screenshots of each screen go to $FFC_SCREENSHOTS (default: the test's temp dir)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._browser import BROWSER_MARKS, chrome

pytestmark = BROWSER_MARKS
selenium = pytest.importorskip("selenium", reason="needs selenium (pip install -e '.[test]')")
pytest.importorskip("gradio", reason="needs the UI extra (pip install -e '.[ui]')")

from selenium.common.exceptions import ElementClickInterceptedException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from .conftest import free_port  # noqa: E402


@pytest.fixture(scope="module")
def ui(demo, tmp_path_factory):
    """``ffc ui`` as a user starts it, on a workspace with the tiny model and the demo data."""
    workspace = tmp_path_factory.mktemp("workspace")
    (workspace / "model").symlink_to(demo / "tiny-model")
    (workspace / "data").symlink_to(demo / "data")
    port = free_port()
    log = open(workspace / "ui.log", "wb")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ffc.compiler", "ui", "--workspace", str(workspace), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    import httpx

    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("ffc ui did not start:\n" + (workspace / "ui.log").read_text()[-3000:])
    yield url, workspace
    os.killpg(process.pid, 15)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    flags = ("--disable-background-networking", "--disable-extensions", "--window-size=1400,1800", "--lang=en-US")
    driver = chrome(tmp_path_factory.mktemp("chromium-profile"), *flags)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("FFC_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- helpers: Gradio components by their elem_id ----------------------------------------------------------


def _input(driver, elem_id):
    return driver.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")


def press(element, timeout=60):
    """Click ``element`` once nothing covers it: Gradio lays a progress overlay over the components an event
    is updating (e.g. the memory estimate), and a user waits for it too."""
    deadline = time.time() + timeout
    while True:
        try:
            return element.click()
        except ElementClickInterceptedException:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def set_text(driver, elem_id, value):
    box = _input(driver, elem_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    press(box)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    box.send_keys(str(value))
    box.send_keys(Keys.TAB)  # Gradio commits the value on blur
    close_menu(driver)


def choose(driver, elem_id, value):
    box = _input(driver, elem_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    press(box)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    box.send_keys(value)
    time.sleep(0.3)
    box.send_keys(Keys.ENTER)
    box.send_keys(Keys.TAB)
    close_menu(driver)


def close_menu(driver):
    """Tab may land on a menu (the essentials put the template menu next to the model box), which opens its
    list over the fields below it: Escape closes it, and does nothing in a text box."""
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)


def click(driver, elem_id):
    button = driver.find_element(By.ID, elem_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    press(button)


def tab(driver, label):
    for button in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]"):
        if button.text.strip() == label:
            button.click()
            return
    raise AssertionError(f"no tab {label!r}")


def open_section(driver, section):
    accordion = driver.find_element(By.ID, f"section-{section}")
    header = accordion.find_element(By.CSS_SELECTOR, "button")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", header)
    if not accordion.find_elements(By.CSS_SELECTOR, "textarea, input"):
        header.click()
        time.sleep(0.5)


def shot(driver, folder, name, elem_id=None):
    if elem_id:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", driver.find_element(By.ID, elem_id))
    else:
        driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    driver.save_screenshot(str(folder / name))


def text_of(driver, elem_id) -> str:
    element = driver.find_element(By.ID, elem_id)
    boxes = element.find_elements(By.CSS_SELECTOR, "textarea")
    return boxes[0].get_attribute("value") if boxes else element.text


def _processes_in(folder: Path) -> list:
    import psutil

    found = []
    for process in psutil.process_iter(["cwd", "cmdline"]):
        try:
            if process.info["cwd"] == str(folder) and process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.info["cmdline"])
        except psutil.Error:
            pass
    return found


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            result = predicate()
        except Exception:  # the element is being re-rendered
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_reply(driver, sent: str) -> list:
    """The chat's messages once the model answered ``sent`` (the first message)."""

    def reply():
        texts = [b.text.strip() for b in driver.find_elements(By.CSS_SELECTOR, "#chatbot .message")]
        return len(texts) >= 2 and texts[-1] and texts[-1] != sent and texts

    texts = wait_for(reply, 180, "a reply")
    assert texts[0] == sent and "start the model server" not in texts[-1], texts
    return texts


# -- the walk-through -------------------------------------------------------------------------------------


def test_configure_preview_build_train_chat(ui, browser, shots):
    url, workspace = ui
    d = browser
    d.get(url)
    wait_for(lambda: d.find_elements(By.ID, "build-button"), 60, "the page")
    time.sleep(2)  # the load events fill the dataset choices
    shot(d, shots, "01-form.png")

    set_text(d, "field-name", "browser-run")
    set_text(d, "field-model-model-name-or-path", "./model")
    choose(d, "field-data-dataset", "demo_alpaca")
    choose(d, "field-data-template", "chatml")
    set_text(d, "field-data-cutoff-len", "128")
    set_text(d, "field-training-max-steps", "16")
    open_section(d, "training")  # everything beyond the essentials is in the closed Advanced sections
    set_text(d, "field-training-logging-steps", "2")
    set_text(d, "field-training-per-device-train-batch-size", "4")
    open_section(d, "inference")
    set_text(d, "field-inference-max-new-tokens", "12")
    open_section(d, "eval")
    set_text(d, "field-eval-predict-dataset", "demo_alpaca")
    set_text(d, "field-eval-max-samples", "4")

    # The chosen dataset's rows, and the same rows templated and masked as training will see them.
    click(d, "dataset-preview-button")
    sample = wait_for(
        lambda: "«" in text_of(d, "dataset-preview") and text_of(d, "dataset-preview"), 180, "the data preview"
    )
    assert '"instruction"' in sample and "<|im_start|>assistant" in sample and "sample 1" in sample
    shot(d, shots, "02-dataset-preview.png", "dataset-preview")

    # Invalid input: the CLI's message, with the place, and the server keeps working.
    set_text(d, "field-training-learning-rate", "-1")
    click(d, "preview-button")
    message = wait_for(
        lambda: "learning_rate" in text_of(d, "build-status") and text_of(d, "build-status"), 30, "the error"
    )
    assert "browser-run.yaml:" in message and "greater than 0" in message
    shot(d, shots, "03-invalid-input.png", "build-status")

    set_text(d, "field-training-learning-rate", "0.005")
    click(d, "preview-button")
    wait_for(
        lambda: "valid" in text_of(d, "build-status") and "problems" not in text_of(d, "build-status"),
        30,
        "a valid preview",
    )
    tab(d, "Preview")
    spec_text = wait_for(
        lambda: "max_steps: 16" in d.find_element(By.ID, "spec-yaml").text and d.find_element(By.ID, "spec-yaml").text,
        20,
        "the spec YAML",
    )
    assert "learning_rate: 0.005" in spec_text and "dataset: [demo_alpaca]" in spec_text
    assert "def main" in wait_for(lambda: d.find_element(By.ID, "file-view").text, 20, "train.py")
    shot(d, shots, "04-preview.png")

    tab(d, "Configure")
    click(d, "build-button")
    wait_for(lambda: "built" in text_of(d, "build-status"), 60, "the build")
    assert (workspace / "browser-run.yaml").is_file() and (workspace / "runs" / "browser-run" / "train.py").is_file()

    tab(d, "Train")
    wait_for(lambda: "browser-run" in text_of(d, "progress"), 20, "the run to be selected")
    click(d, "start-button")
    seen_running = wait_for(
        lambda: "running" in text_of(d, "progress") and text_of(d, "progress"), 120, "training to start"
    )
    # The loss curve draws while it trains, and the run finishes.
    wait_for(lambda: "/ 16" in text_of(d, "progress"), 300, "the first logged steps")
    shot(d, shots, "05-training.png")
    final = wait_for(lambda: "finished" in text_of(d, "progress") and text_of(d, "progress"), 600, "training to finish")
    assert "16 / 16" in final and "running" in seen_running
    plot = d.find_element(By.ID, "loss-plot")
    assert plot.find_elements(By.CSS_SELECTOR, "canvas, svg"), "the loss plot drew nothing"
    assert "train_runtime" in text_of(d, "train-log") or "16/16" in text_of(d, "train-log")
    table = d.find_element(By.ID, "runs-table").text
    assert "browser-run" in table and "finished" in table
    shot(d, shots, "06-trained.png")

    tab(d, "Chat")
    click(d, "server-button")
    wait_for(lambda: "serving on" in text_of(d, "server-status"), 300, "serve.py")
    set_text(d, "chat-input", "Hello there")
    click(d, "send-button")

    wait_for_reply(d, "Hello there")
    shot(d, shots, "07-chat.png")
    click(d, "server-stop")

    tab(d, "Evaluate")
    click(d, "eval-button")
    results = wait_for(lambda: "finished" in text_of(d, "eval-log") and text_of(d, "eval-results"), 300, "eval.py")
    assert "bleu-4" in results and "rouge-l" in results
    shot(d, shots, "08-eval.png")
    tab(d, "Export")
    click(d, "export-button")
    files = wait_for(lambda: "finished" in text_of(d, "export-log") and text_of(d, "export-results"), 300, "export.py")
    assert "model.safetensors" in files and "tokenizer.json" in files
    shot(d, shots, "09-export.png")

    # Save the form as a spec file; load it back; the diff against the build shows a changed setting.
    tab(d, "Configure")
    set_text(d, "save-path", "saved/browser.yaml")
    click(d, "save-button")
    wait_for(lambda: "saved" in text_of(d, "file-status"), 20, "the save")
    assert "max_steps: 16" in (workspace / "saved" / "browser.yaml").read_text()
    set_text(d, "field-training-max-steps", "3")
    set_text(d, "load-path", "saved/browser.yaml")
    click(d, "load-button")
    wait_for(lambda: _input(d, "field-training-max-steps").get_attribute("value") == "16", 20, "the loaded spec")
    set_text(d, "field-training-learning-rate", "0.004")
    click(d, "preview-button")
    tab(d, "Preview")
    wait_for(
        lambda: "training.learning_rate: 0.005 -> 0.004" in d.find_element(By.ID, "diff-view").text, 30, "the diff"
    )
    shot(d, shots, "10-diff.png", "diff-view")

    # Start again and stop: the launcher and its training process end, and the run says so.
    tab(d, "Train")
    click(d, "start-button")
    wait_for(lambda: "running" in text_of(d, "progress"), 60, "the second training to start")
    time.sleep(3)
    click(d, "stop-button")
    wait_for(lambda: "stopped" in text_of(d, "progress"), 60, "the stop")
    assert not _processes_in(workspace / "runs" / "browser-run"), "training processes outlived Stop"
    assert "stopped" in d.find_element(By.ID, "runs-table").text

    # Chinese: tab names, section titles and labels switch.
    choose(d, "language", "中文")
    wait_for(
        lambda: any(b.text.strip() == "训练" for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]")),
        30,
        "Chinese tabs",
    )
    tab(d, "配置")
    learning_rate = d.find_element(By.ID, "field-training-learning-rate").text
    assert "学习率" in learning_rate and "YAML 键：training.learning_rate" in learning_rate
    _input(d, "language").send_keys(Keys.ESCAPE)  # close the language list
    shot(d, shots, "11-chinese.png")
    assert not [e for e in d.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
