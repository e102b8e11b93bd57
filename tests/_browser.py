"""Headless chromium for the browser tests (Debian's chromium + chromedriver, which .ci/run installs):
the skip marks for machines without them and the driver with the flags every test needs."""

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

# pytestmark of a browser test module: slow, and skipped (with the reason) without chromium
BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="needs chromium and chromedriver (apt-get install chromium chromium-driver; .ci/run installs them)",
    ),
]


def chrome(profile: Path, *flags: str):
    """A headless chromium driver with its own profile folder (and ``flags`` besides the common ones)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
