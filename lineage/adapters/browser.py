"""Browser adapter: headless Chromium, for the report's picture and its browser test."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ..core.errors import LineageError, UsageError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    """A headless-capable Chromium on PATH.

    Raises:
        UsageError: none is installed.
    """
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise UsageError(f"--png needs a headless Chromium, and none is on PATH (looked for {', '.join(BROWSERS)})",
                     "Install one (Debian/Ubuntu: apt-get install chromium; macOS: brew install --cask chromium), "
                     "or leave out --png.")


def browser_args(browser: str, profile: str) -> list[str]:
    """The command line of a headless Chromium with networking off and its own profile."""
    # --no-sandbox: Chromium refuses to start as root or in most containers without it; the page it
    # opens is our own script-free file, and networking is off.
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-extensions", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}"]


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 1600,
               timeout: float = 120) -> Path:
    """Render html_path in headless Chromium and save the top width×height of the page as a PNG.

    Raises:
        UsageError: no Chromium on PATH.
        LineageError: Chromium ran but wrote no picture.
    """
    browser = find_browser()
    png = Path(png_path).resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="lineage-chromium-") as profile:
        try:
            proc = subprocess.run(browser_args(browser, profile) + [
                f"--window-size={width},{height}", f"--screenshot={png}", Path(html_path).resolve().as_uri()],
                capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LineageError(f"{browser} took more than {timeout:.0f}s to take the screenshot",
                               "Run it again, or leave out --png.") from None
    if not png.exists() or png.stat().st_size == 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise LineageError(f"{browser} wrote no screenshot: {detail}",
                           "Check that it runs headless, or leave out --png.")
    return png
