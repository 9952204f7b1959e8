"""The one place that writes to the terminal: plain text, or JSON with --json."""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import click

PROGRESS_RE = re.compile(r"^\s*\w+: \d+/\d+ \w+ \(\d+%\)")


class Output:
    """Terminal sink shared by every command."""

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json, self.quiet = as_json, quiet
        self._drawing = False  # a progress line is on screen, to be redrawn in place

    def info(self, message: str) -> None:
        """A progress or explanation line (stderr, silenced by --quiet and --json).

        On a terminal, a stage's progress line ("  train: 30/300 steps (10%), …") redraws the previous
        one in place: one live bar per stage instead of a line per update.
        """
        if self.quiet or self.as_json:
            return
        if is_tty() and PROGRESS_RE.match(message):
            click.echo("\r" + message.rstrip() + "\033[K", err=True, nl=False)
            self._drawing = True
            return
        if self._drawing:
            click.echo("", err=True)
            self._drawing = False
        click.echo(message, err=True)

    def result(self, value, text: str | None = None) -> None:
        """The command's result: JSON with --json, else the given text."""
        if self.as_json:
            click.echo(json.dumps(to_jsonable(value), indent=2, sort_keys=True))
        elif text is not None:
            click.echo(text)

    def error(self, message: str, hint: str = "") -> None:
        if self.as_json:
            click.echo(json.dumps({"error": message, "hint": hint}), err=True)
            return
        click.secho(f"error: {message}", fg="red", err=True)
        if hint:
            click.echo(f"hint: {hint}", err=True)


def to_jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return value.to_dict()
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def is_tty() -> bool:
    return sys.stderr.isatty()


def out(ctx) -> Output:
    """The Output of the running command."""
    return ctx.obj["out"]


def table(rows: list[list], header: list[str]) -> str:
    """Rows as an aligned plain-text table under header."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


