"""Command line: one error boundary, documented exit codes, --json on read commands.

Exit codes: 0 ok; 1 gate rejected, check failed or data refused; 2 usage; 3 store error.
Heavy libraries are never imported here, so `lineage --help` starts fast.
"""

from __future__ import annotations

import os
import sys

import click

from ..core.errors import LineageError
from . import cli_admin, cli_arbiter, cli_exam, cli_hub, cli_loop, cli_record, cli_serve
from .output import Output, out, table

INTERRUPTED = 130  # 128 + SIGINT, as shells report it; never 1, which means "gate rejected"


class LineageGroup(click.Group):
    """Turn every LineageError into one line plus a hint, with its exit code; Ctrl-C exits 130."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LineageError as exc:
            if ctx.obj and ctx.obj.get("traceback") or os.environ.get("LINEAGE_DEBUG"):
                raise
            out = (ctx.obj or {}).get("out") or Output()
            out.error(str(exc), exc.hint)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            out = (ctx.obj or {}).get("out") or Output()
            out.error("interrupted", "Run 'lineage repair' if a command was cut off mid-way; it finishes or undoes it.")
            sys.exit(INTERRUPTED)


@click.group(cls=LineageGroup)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print only results and errors.")
@click.option("--traceback", is_flag=True, help="Show the full stack on errors (or set LINEAGE_DEBUG=1).")
@click.version_option(package_name="lineage")
@click.pass_context
def cli(ctx, as_json: bool, quiet: bool, traceback: bool) -> None:
    """lineage: a git-native versioned model store for models trained again and again."""
    ctx.obj = {"out": Output(as_json, quiet), "traceback": traceback}
    _route_logging(ctx.obj["out"])


def _route_logging(sink: Output) -> None:
    """Send the api's progress notes (logger 'lineage': recovery, stale locks) to the terminal sink."""
    import logging

    class ToOutput(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sink.info(f"lineage: {record.getMessage()}")

    logger = logging.getLogger("lineage")
    logger.handlers[:] = [ToOutput(logging.INFO)]
    logger.setLevel(logging.INFO)
    logger.propagate = False


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=True, dir_okay=True))
@click.option("--protected-branch", default="main", show_default=True, help="Branch that holds the served model.")
@click.option("--remote", default=None, help="DVC remote URL or path (default: DIRECTORY.dvc-remote beside the store).")
@click.pass_context
def init(ctx, directory: str, protected_branch: str, remote: str | None) -> None:
    """Make DIRECTORY (or the current git repo) a lineage store."""
    from .. import api

    result = api.init(directory, protected_branch, remote)
    text = [f"store:            {result.root}",
            f"protected branch: {result.protected_branch}",
            f"DVC remote:       {result.remote}"]
    text.append(f"created:          {', '.join(result.created)}" if result.created
                else "already a store; nothing to do")
    if result.committed:
        text.append(f"commit:           {result.committed[:12]}")
    text.append(f"next:             cd {result.root} && dvc repro")
    out(ctx).result(result, "\n".join(text))


@cli.group()
def data() -> None:
    """Register and inspect training data deltas."""


@data.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None, help="Delta name (default: the file's stem).")
@click.pass_context
def data_add(ctx, file: str, name: str | None) -> None:
    """Check FILE through the data gate and register it as the next delta."""
    from .. import api

    added = api.data_add(file, ".", name)
    out(ctx).result(added, f"registered {added.delta}: {added.records} training records -> {added.path} "
                           f"(sha256 {added.sha256[:12]}…); it goes into the next candidate")


@cli.group()
def corpus() -> None:
    """The bundled synthetic corpus."""


@corpus.command("write")
@click.argument("era", type=int)
@click.argument("out_file", type=click.Path(dir_okay=False))
@click.pass_context
def corpus_write(ctx, era: int, out_file: str) -> None:
    """Write ERA's training records of the bundled corpus to OUT_FILE (JSONL, for 'lineage data add')."""
    from .. import api

    path = api.corpus_era(era, out_file)
    out(ctx).result({"path": str(path), "era": era}, f"wrote era {era} to {path}\nnext: lineage data add {path}")


@corpus.command("exam")
@click.argument("era", type=int)
@click.argument("out_file", type=click.Path(dir_okay=False))
@click.pass_context
def corpus_exam(ctx, era: int, out_file: str) -> None:
    """Write ERA's exam items of the bundled corpus to OUT_FILE (JSONL, for 'lineage exam add')."""
    from .. import api

    path = api.corpus_exam(era, out_file)
    out(ctx).result({"path": str(path), "era": era}, f"wrote the exam of era {era} to {path}\n"
                                                     f"next: lineage exam add {path}")


@cli.command()
@click.option("--name", default="a", show_default=True, help="Candidate letter/name: candidates/G{NNN}-{name}.")
@click.option("-S", "--set", "overrides", multiple=True, help="Override a param for this candidate: key.sub=value.")
@click.option("--again", is_flag=True, help="Train even when the recipe (parent, params, data, stages) is exactly "
                                            "that of a generation main rolled back.")
@click.pass_context
def propose(ctx, name: str, overrides: tuple[str, ...], again: bool) -> None:
    """Train a candidate from the protected tip, gate it, commit, push data and freeze it."""
    from .. import api

    o = out(ctx)
    p = api.propose(".", name, list(overrides), progress=o.info, again=again)
    rows = [[c["name"], c["observed"], f'{c["op"]} {c["threshold"]}', "" if c["parent"] is None else c["parent"],
             "n.a." if not c.get("applicable", True) else ("PASS" if c["passed"] else "FAIL")] for c in p.criteria]
    text = [f"{p.generation} on {p.branch} ({p.commit[:12]}), parent {p.parent or 'base'}: {p.verdict}"]
    if p.reason:
        text.append(f"reason: {p.reason}")
    if rows:
        text.append(table(rows, ["criterion", "child", "threshold", "parent", "result"]))
    if p.composite is not None:
        text.append(f"composite score: {p.composite:.4f}")
    text.append(f"frozen as tag lineage/frozen/{p.branch.split('/', 1)[1]}")
    if p.verdict == "PASS" and api.signed("."):
        text.append(f"next: the arbiter judges it (lineage arbiter evaluate {p.branch}), then an approver "
                    f"promotes it (lineage promote {p.branch})")
    elif p.verdict == "PASS":
        text.append(f"promote with: lineage promote {p.branch}")
    else:
        attempt = p.branch.split("/", 1)[1]
        text.append(f"next: 'lineage show {attempt}' says why; fix that and run 'lineage propose' again "
                    f"(this attempt keeps {p.generation}: the next one takes a new number)")
    o.result(p, "\n".join(text))
    if p.verdict != "PASS":
        ctx.exit(1)


@cli.command()
@click.argument("candidate")
@click.pass_context
def promote(ctx, candidate: str) -> None:
    """Fast-forward the protected branch to CANDIDATE when the arbiter allows it.

    Unsigned store: the arbiter re-derives PASS from the committed evidence. Store with signers: a
    signed arbiter verdict PASS for exactly this commit and weights, and an approver's approval
    (signed here when your key is an approver's) unless autonomy allows a low-risk candidate.
    """
    from .. import api

    p = api.promote(candidate, ".")
    if p.kind == "already-promoted":
        out(ctx).result(p, f"{candidate} is already what the protected branch serves ({p.generation}); nothing to do")
        return
    if p.kind == "rolled-back":
        out(ctx).result(p, f"promoted {p.generation}, then rolled back: "
                           "the burn-in failed (see 'lineage log --format jsonl')")
        return
    out(ctx).result(p, f"promoted {p.generation}: {p.old[:12]} -> {p.new[:12]} (composite {p.composite})")


@cli.command()
@click.option("--to", "to", default=None, help="Generation to restore (default: the previously promoted one).")
@click.option("--reason", required=True, help="Why: recorded in the commit's Reason: trailer.")
@click.pass_context
def rollback(ctx, to: str | None, reason: str) -> None:
    """Restore a promoted generation with a new commit on the protected branch."""
    from .. import api

    r = api.rollback(reason, to, ".")
    out(ctx).result(r, f"rolled back {r.frm} -> {r.to} in {r.commit[:12]}; weights checked out")


@cli.command()
@click.option("--reason", required=True,
              help="Why the policy, stages or code change: recorded in the commit and the log.")
@click.pass_context
def change(ctx, reason: str) -> None:
    """Commit staged policy/stage/code changes on the protected branch as your approved change."""
    from .. import api

    c = api.change(reason, ".")
    out(ctx).result(c, f"approved change {c.commit[:12]} by {c.approver}: {', '.join(c.paths)}")


for _module in (cli_record, cli_admin, cli_hub, cli_loop, cli_exam, cli_arbiter, cli_serve):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def _json_anywhere(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        root = ctx.find_root()
        if root.obj and root.obj.get("out") is not None:
            root.obj["out"].as_json = True


def _accept_json_after(group: click.Group) -> None:
    """Let --json come after the subcommand too (`lineage log --json`), as it does before it."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _accept_json_after(command)
        elif not any("--json" in p.opts for p in command.params if isinstance(p, click.Option)):
            command.params.append(click.Option(["--json"], is_flag=True, expose_value=False, is_eager=True,
                                               callback=_json_anywhere, help="Print results as JSON."))


_accept_json_after(cli)


def main() -> None:
    cli(prog_name="lineage")


if __name__ == "__main__":
    main()

