"""Headless Chromium (Debian's chromium and chromium-driver) driven by Selenium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.assets import IN_CI

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# As root on a build machine, without the background traffic a closed network refuses.
FLAGS = (
    "--headless=new",
    # One process: the page is what is tested, not Chromium's process model, and a renderer
    # in its own process dies under qemu-user (the emulated Raspberry Pi OS roots).
    "--single-process",
    "--no-zygote",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=412,1400",  # a phone's width
)


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        msg = (
            f"browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver"
            " (scripts/setup.sh --test installs them)"
        )
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


@contextmanager
def chromium(profile: Path) -> Iterator:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
