"""Generate docs/cli.md from the click help of every command; `--check` tells when it is stale.

    python -m lineage.ui.docs            write docs/cli.md
    python -m lineage.ui.docs --check    exit 1 when docs/cli.md differs from the generated text

Each command's help is rendered by click's own formatter, exactly as `lineage CMD --help` prints
it in a terminal at least 80 columns wide. The width is fixed (click's max_content_width minus the
margin click leaves, 78 by default), so neither $COLUMNS nor the terminal changes the output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import click

PROG = "lineage"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
FIX = "make docs"
HEADER = """\
# lineage command line

<!-- Generated from the commands' --help texts by `python -m lineage.ui.docs`; do not edit by hand.
     Regenerate with `make docs`; tests/test_docs.py fails when this file is stale. -->

Every command and subcommand with the help `lineage … --help` prints. Exit codes: 0 ok; 1 gate
rejected, check failed or data refused; 2 usage; 3 store error. `--json`, `-q` and `--traceback`
go before the command name: `lineage --json log`.
"""


def help_width(root: click.Command) -> int:
    """The width click uses for help in a wide terminal: max_content_width (default 80) minus 2."""
    return (root.context_settings.get("max_content_width") or 80) - 2


def walk(command: click.Command, path: tuple[str, ...] = (PROG,), parent: click.Context | None = None,
         width: int | None = None) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """Yield (name path, command, context) for a command and every visible subcommand, depth first."""
    settings = dict(command.context_settings)
    if parent is None:
        settings["terminal_width"] = width if width is not None else help_width(command)
    else:
        settings.pop("terminal_width", None)  # inherited from the root, like a real invocation
    ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, path + (name,), ctx)


def command_paths(root: click.Command | None = None) -> list[str]:
    """Every command as it is typed: 'lineage', 'lineage data add', …"""
    return [" ".join(path) for path, _, _ in walk(root or _cli())]


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


def render(root: click.Command | None = None) -> str:
    """The whole of docs/cli.md as text."""
    root = root or _cli()
    entries = list(walk(root))
    parts = [HEADER.rstrip("\n"), ""]
    for path, command, _ in entries[1:]:
        title = " ".join(path)
        indent = "  " * (len(path) - 2)
        summary = command.get_short_help_str(limit=120)
        parts.append(f"{indent}- [`{title}`](#{_anchor(title)}): {summary}")
    for path, command, ctx in entries:
        title = " ".join(path)
        text = command.get_help(ctx).rstrip("\n")
        parts += ["", f"## {title}", "", "```text", text, "```"]
    return "\n".join(parts) + "\n"


def _cli() -> click.Command:
    from .cli import cli

    return cli


def main(argv: list[str] | None = None) -> int:
    """Write docs/cli.md, or with --check report whether it is stale (exit 1)."""
    parser = argparse.ArgumentParser(prog="python -m lineage.ui.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale; write nothing")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"default {DEFAULT_PATH}")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.read_text() if args.path.is_file() else None
        if current != text:
            why = "is missing" if current is None else "is stale: the CLI's help texts changed"
            print(f"{args.path} {why}; regenerate it with `{FIX}`.", file=sys.stderr)
            return 1
        print(f"{args.path} is up to date")
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    print(f"wrote {args.path} ({len(command_paths())} commands)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
