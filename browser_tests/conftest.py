"""The headless Chromium that every browser check drives (one per test session)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from browser_tests.common import CHROMEDRIVER, CHROMIUM


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        message = (
            "Chromium and ChromeDriver are needed: sudo apt-get install -y chromium chromium-driver "
            "(make test installs them from apt-check.txt when it runs as root or with sudo)"
        )
        if os.environ.get("CI") or os.environ.get("BOOK_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="book-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
