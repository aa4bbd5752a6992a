"""A headless Debian chromium driven by Selenium (never a downloaded browser or driver), or a skip reason."""

from __future__ import annotations

import os
import shutil
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if os.access(p, os.X_OK)), None) or shutil.which(name)


def browser_missing() -> str:
    """Why no browser test can run here ('' when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra has it: scripts/setup.sh)"
    if not _first(CHROMIUM, "chromium"):
        return "chromium is not installed (scripts/setup.sh installs Debian's chromium as root)"
    if not _first(DRIVER, "chromedriver"):
        return "chromedriver is not installed (Debian's chromium-driver; scripts/setup.sh installs it as root)"
    return ""


def headless_chromium(width: int = 1400, height: int = 1000) -> Any:
    """A Selenium Chrome driver on the system chromium, headless; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never fetch anything
    opts = Options()
    opts.binary_location = _first(CHROMIUM, "chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(_first(DRIVER, "chromedriver") or ""), options=opts)
