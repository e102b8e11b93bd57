"""serve.py's web chat page (GET /chat) in a real browser (headless chromium): type a message, see the
streamed answer of the tiny model appear, send a second turn, clear."""

import time

import pytest

from ._browser import BROWSER_MARKS, chrome

pytestmark = BROWSER_MARKS
pytest.importorskip("selenium", reason="needs selenium (pip install -e '.[test]')")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from .test_serve import live  # noqa: E402


def _wait(condition, timeout=60, driver=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out; page: " + (driver.find_element(By.TAG_NAME, "body").text if driver else ""))


def test_chat_page_streams_answers(demo, tmp_path):
    from ffc.runtime.chat.templates import TEMPLATES
    from ffc.runtime.inference import GenerationOptions, HFEngine, load_model
    from ffc.runtime.server import create_app

    model, tokenizer = load_model(str(demo / "tiny-model"))
    engine = HFEngine(model, tokenizer, TEMPLATES["chatml"], GenerationOptions(temperature=0, max_new_tokens=12))
    driver = chrome(tmp_path / "profile")
    try:
        with live(create_app(engine, "tiny-run")) as url:
            driver.get(url.replace("/v1/chat/completions", "/"))  # / redirects to /chat
            _wait(lambda: driver.find_element(By.ID, "model").text == "tiny-run", driver=driver)
            box = driver.find_element(By.ID, "input")
            for turn, text in enumerate(["What is 2 plus 3?", "And 4 plus 4?"], start=1):
                box.send_keys(text, Keys.ENTER)
                _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".assistant")) == turn, driver=driver)
                answer = _wait(
                    lambda: driver.find_elements(By.CSS_SELECTOR, ".assistant")[-1].text.strip(), driver=driver
                )
                assert answer and not driver.find_elements(By.CSS_SELECTOR, ".error")
                _wait(lambda: driver.find_element(By.ID, "send").is_enabled(), driver=driver)  # the answer is complete
            assert [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".user")] == [
                "What is 2 plus 3?",
                "And 4 plus 4?",
            ]
            driver.find_element(By.ID, "clear").click()
            assert not driver.find_elements(By.CSS_SELECTOR, ".turn")
    finally:
        driver.quit()
