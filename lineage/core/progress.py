"""Progress of long work (training, eval, hashing): a bar on a terminal, plain lines elsewhere.

On a TTY the bar redraws in place with the rate, the ETA and the last loss; in CI or in a pipe it
prints a plain line at each tenth of the work instead, so logs stay readable. Under `dvc repro` run
by `lineage propose` (LINEAGE_PROGRESS=stream) it prints a line at most twice a second, which
propose redraws in place as one bar when its own output is a terminal.
LINEAGE_PROGRESS=bar|plain|stream|off overrides the choice.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


def _mode(stream: Any) -> str:
    forced = os.environ.get("LINEAGE_PROGRESS", "").strip().lower()
    if forced in ("bar", "plain", "stream", "off"):
        return forced
    try:
        return "bar" if stream.isatty() else "plain"
    except (AttributeError, ValueError):
        return "plain"


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Count done units out of a total; render as a bar (TTY) or a line per 10% (plain)."""

    WIDTH = 24

    def __init__(self, label: str, total: int, unit: str = "steps", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.stream = stream or sys.stderr
        self.mode = _mode(self.stream)
        self.clock = clock
        self.started = clock()
        self.done = 0
        self._last_draw = 0.0
        self._last_tenth = -1
        self._closed = False
        self._note = ""

    def rate(self) -> float:
        elapsed = self.clock() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        r = self.rate()
        return (self.total - self.done) / r if r > 0 and self.total else None

    def line(self) -> str:
        """The text of the current state (what plain mode prints, what the bar shows after it)."""
        pct = f" ({100 * self.done // self.total}%)" if self.total else ""
        eta = self.eta()
        return (f"{self.label}: {self.done}/{self.total} {self.unit}{pct}, {self.rate():.1f} {self.unit}/s"
                + (f", ETA {_clock(eta)}" if eta is not None and self.done < self.total else
                   f", {_clock(self.clock() - self.started)}")
                + (f", {self._note}" if self._note else ""))

    def note(self, text: str) -> None:
        """Show text after the counts (the last loss, say) from the next redraw on."""
        self._note = text

    def update(self, done: int, total: int | None = None) -> None:
        if total:
            self.total = int(total)
        self.done = min(int(done), self.total) if self.total else int(done)
        if self.mode == "off":
            return
        if self.mode == "bar":
            now = self.clock()
            if now - self._last_draw >= 0.1 or self.done >= self.total:
                self._last_draw = now
                filled = self.WIDTH * self.done // self.total if self.total else 0
                bar = "#" * filled + "-" * (self.WIDTH - filled)
                self.stream.write(f"\r[{bar}] {self.line()}\033[K")
                self.stream.flush()
            return
        if self.mode == "stream":
            now = self.clock()
            if now - self._last_draw >= 0.5 or self.done >= self.total:
                self._last_draw = now
                print(self.line(), file=self.stream, flush=True)
            return
        tenth = 10 * self.done // self.total if self.total else 0
        if tenth > self._last_tenth:  # the first update, then each tenth of the work
            self._last_tenth = tenth
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()

    def __call__(self, done: int, total: int | None = None) -> None:
        self.update(done, total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
