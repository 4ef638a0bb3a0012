"""Headless Chromium (Debian's `chromium`) for checking that pages render: screenshots and the DOM
after scripts ran. Every host name resolves to nothing, so a page can only use what it carries."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "chromium is not installed: run ./scripts/bootstrap.sh (it installs Debian's chromium), or apt-get install chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-pings",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # offline by construction: no name resolves
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError(INSTALL_HINT)
    return path


def _run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, timeout=timeout, check=True)


def screenshot(url: str, png: Path, width: int = 1280, height: int = 2000) -> Path:
    _run([f"--screenshot={png}", f"--window-size={width},{height}", url])
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot for {url}")
    return png


def dump_dom(url: str) -> str:
    """The document as it is after the page's scripts ran."""
    return _run(["--dump-dom", url]).stdout.decode()
