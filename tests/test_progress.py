"""Progress output: a redrawn bar on a terminal, a plain line per tenth elsewhere, nothing when off."""

from __future__ import annotations

import io

import pytest

from lineage.core.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(stream, total=100, clock=None):
    clock = clock or Clock()
    with Progress("train", total, "steps", stream=stream, clock=clock) as bar:
        for step in range(1, total + 1):
            clock.now += 0.5
            bar(step, total)
    return stream.getvalue()


def test_plain_output_prints_a_line_at_start_and_at_each_tenth_with_rate_and_eta(monkeypatch):
    monkeypatch.delenv("LINEAGE_PROGRESS", raising=False)
    text = run(io.StringIO())
    lines = text.splitlines()
    assert len(lines) == 11 and "\r" not in text
    assert lines[0].startswith("train: 1/100 steps (1%), 2.0 steps/s, ETA 0:50")
    assert lines[5].startswith("train: 50/100 steps (50%)") and "ETA 0:25" in lines[5]
    assert lines[-1] == "train: 100/100 steps (100%), 2.0 steps/s, 0:50"


def test_a_terminal_gets_one_bar_redrawn_in_place(monkeypatch):
    monkeypatch.delenv("LINEAGE_PROGRESS", raising=False)
    text = run(Tty())
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") == 100  # redrawn at most every 0.1 s: each 0.5 s step draws once
    assert "\r[" + "#" * 24 + "] train: 100/100 steps (100%)" in text


@pytest.mark.parametrize("forced, stream, expect_cr, expect_text", [
    ("off", Tty(), False, False), ("plain", Tty(), False, True), ("bar", io.StringIO(), True, True)])
def test_lineage_progress_overrides_the_terminal_check(monkeypatch, forced, stream, expect_cr, expect_text):
    monkeypatch.setenv("LINEAGE_PROGRESS", forced)
    text = run(stream, total=20)
    assert ("\r" in text) == expect_cr and bool(text) == expect_text
