"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright.

Playwright's own browser download cannot work on a machine that reaches only package registries,
so the tests launch the system Chromium (installed by services/dev/install-browser.sh) through
`executable_path`. The flags keep Chromium from reaching out to the network on its own: without
them its background services try non-loopback hosts and the closed network refuses them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily at run time, so a machine without playwright still collects
    from playwright.async_api import Browser, Playwright

CHROMIUM_ENV = "DUET_CHROMIUM"
"""Set to another Chromium binary to use it instead of the first `chromium` on PATH."""

SCREENSHOT_DIR_ENV = "DUET_SCREENSHOT_DIR"
"""Where screenshots of failed browser tests go (default: test-artifacts/screenshots)."""

INSTALL_HINT = "run services/dev/install-browser.sh to install Debian's chromium and playwright"

CHROMIUM_ARGS = (
    "--no-sandbox",  # tests run as root in a container, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# --headless is passed by Playwright (headless=True) and a fresh --user-data-dir too: launch()
# gives every browser its own temporary profile and removes it on close.


def find_chromium() -> Path | None:
    """The Chromium binary to drive, or None when none is installed."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


async def launch_chromium(playwright: Playwright, executable: Path) -> Browser:
    """Start one headless Chromium; pages come from `browser.new_context()` then `new_page()`."""
    return await playwright.chromium.launch(
        executable_path=str(executable),
        headless=True,
        args=list(CHROMIUM_ARGS),
    )


def screenshot_dir() -> Path:
    return Path(os.environ.get(SCREENSHOT_DIR_ENV, "test-artifacts/screenshots"))


def screenshot_name(test_id: str) -> str:
    """A file name for a test's screenshot: its pytest node id with unsafe characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", test_id).strip("_") + ".png"
