"""Commands of the exam: what candidates are judged on, held by the protected branch."""

from __future__ import annotations

import click

from .output import out, table


@click.group()
def exam() -> None:
    """The exam on the protected branch: add items (an approved change commits them) and show it."""


@exam.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--delta", default=None,
              help="The delta that recall and generalize items without a 'delta' field test (e.g. era1).")
@click.pass_context
def exam_add(ctx, file: str, delta: str | None) -> None:
    """Check the exam items in FILE (JSONL), merge them into exam/ and stage them for 'lineage change'."""
    from .. import api

    added = api.exam_add(file, ".", delta)
    if not added.staged:
        out(ctx).result(added, f"nothing new: the exam already holds all {added.unchanged} items of {file}")
        return
    summary = ", ".join(f"{n} {kind}" for kind, n in added.added.items())
    text = [f"staged {summary} item(s) from {file} in {', '.join(added.staged)}"
            + (f" ({added.unchanged} already held)" if added.unchanged else ""),
            "next: lineage change --reason 'exam: …' (an approver commits the exam on the protected branch)"]
    out(ctx).result(added, "\n".join(text))


@exam.command("show")
@click.pass_context
def exam_show(ctx) -> None:
    """Items per kind and per delta of the exam the protected branch holds, and its digest."""
    from .. import api

    view = api.exam_show(".")
    rows = [[kind, sum(per.values()), ", ".join(f"{d}: {n}" for d, n in sorted(per.items()) if d) or "-"]
            for kind, per in view.counts.items()]
    text = [f"exam on {view.branch} ({(view.commit or 'no commit')[:12]}): {view.digest}",
            table(rows, ["kind", "items", "per delta"])]
    if view.pending:
        text.append("staged or edited in the work tree, not yet approved: "
                    + ", ".join(f"{n} {kind}" for kind, n in view.pending.items())
                    + " (lineage change --reason …)")
    out(ctx).result(view, "\n".join(text))


COMMANDS = (exam,)
