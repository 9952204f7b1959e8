"""Command line: one error boundary, documented exit codes, --json on read commands.

Exit codes: 0 ok; 1 gate rejected, check failed or data refused; 2 usage; 3 store error.
Heavy libraries are never imported here, so `lineage --help` starts fast.
"""

from __future__ import annotations

import os
import sys

import click

from ..core.errors import LineageError
from .output import Output


class LineageGroup(click.Group):
    """Turn every LineageError into one line plus a hint, with its exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LineageError as exc:
            if ctx.obj and ctx.obj.get("traceback") or os.environ.get("LINEAGE_DEBUG"):
                raise
            out = (ctx.obj or {}).get("out") or Output()
            out.error(str(exc), exc.hint)
            sys.exit(exc.exit_code)


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


def out(ctx) -> Output:
    return ctx.obj["out"]


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
    text.append(f"created:          {', '.join(result.created)}" if result.created else "already a store; nothing to do")
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
    """Write ERA of the bundled corpus to OUT_FILE (JSONL)."""
    from .. import api

    path = api.corpus_era(era, out_file)
    out(ctx).result({"path": str(path), "era": era}, f"wrote era {era} to {path}")


def _table(rows: list[list], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


@cli.command()
@click.option("--name", default="a", show_default=True, help="Candidate letter/name: candidates/G{NNN}-{name}.")
@click.option("-S", "--set", "overrides", multiple=True, help="Override a param for this candidate: key.sub=value.")
@click.pass_context
def propose(ctx, name: str, overrides: tuple[str, ...]) -> None:
    """Train a candidate from the protected tip, gate it, commit, push data and freeze it."""
    from .. import api

    o = out(ctx)
    p = api.propose(".", name, list(overrides), progress=o.info)
    rows = [[c["name"], c["observed"], f'{c["op"]} {c["threshold"]}', "" if c["parent"] is None else c["parent"],
             "n.a." if not c.get("applicable", True) else ("PASS" if c["passed"] else "FAIL")] for c in p.criteria]
    text = [f"{p.generation} on {p.branch} ({p.commit[:12]}), parent {p.parent or 'base'}: {p.verdict}"]
    if p.reason:
        text.append(f"reason: {p.reason}")
    if rows:
        text.append(_table(rows, ["criterion", "child", "threshold", "parent", "result"]))
    if p.composite is not None:
        text.append(f"composite score: {p.composite:.4f}")
    text.append(f"frozen as tag lineage/frozen/{p.branch.split('/', 1)[1]}")
    if p.verdict == "PASS":
        text.append(f"promote with: lineage promote {p.branch}")
    o.result(p, "\n".join(text))
    if p.verdict != "PASS":
        ctx.exit(1)


@cli.command()
@click.argument("candidate")
@click.pass_context
def promote(ctx, candidate: str) -> None:
    """Fast-forward the protected branch to CANDIDATE if the arbiter re-derives PASS."""
    from .. import api

    p = api.promote(candidate, ".")
    if p.kind == "already-promoted":
        out(ctx).result(p, f"{candidate} is already what the protected branch serves ({p.generation}); nothing to do")
        return
    if p.kind == "rolled-back":
        out(ctx).result(p, f"promoted {p.generation}, then rolled back: the burn-in failed (see 'lineage log --format jsonl')")
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
@click.option("--reason", required=True, help="Why the policy, stages or code change: recorded in the commit and the log.")
@click.pass_context
def change(ctx, reason: str) -> None:
    """Commit staged policy/stage/code changes on the protected branch as your approved change."""
    from .. import api

    c = api.change(reason, ".")
    out(ctx).result(c, f"approved change {c.commit[:12]} by {c.approver}: {', '.join(c.paths)}")


@cli.command("log")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True,
              help="table of candidates; jsonl: the evolution log (evolution_log.jsonl); csv: lineage.csv.")
@click.pass_context
def log_cmd(ctx, fmt: str) -> None:
    """The fossil record: every frozen candidate, pass or fail, HEAD marked."""
    from .. import api

    if fmt == "jsonl":
        click.echo(api.events_jsonl("."), nl=False)
        return
    if fmt == "csv":
        click.echo(api.lineage_csv("."), nl=False)
        return
    rows = api.candidates(".")
    table = [["*" if r["head"] else "", r["generation"], r["branch"].split("/", 1)[1], r["verdict"],
              "yes" if r["promoted"] else "", r.get("parent") or "base",
              "" if r.get("composite") is None else f'{r["composite"]:.4f}',
              ", ".join(r.get("failed") or []) or ""] for r in rows]
    out(ctx).result(rows, _table(table, ["", "gen", "candidate", "verdict", "promoted", "parent", "score", "failed"])
                    if rows else "no candidates yet: run 'lineage propose'")


@cli.command()
@click.argument("generation")
@click.pass_context
def show(ctx, generation: str) -> None:
    """Manifest, metrics, verdict and model card of GENERATION."""
    from .. import api

    v = api.show(generation, ".")
    child = (v.metrics or {}).get("child") or {}
    parent = (v.manifest or {}).get("parent") or {}
    text = [f"{v.generation}  commit {v.commit[:12]}  verdict {v.verdict}",
            f"parent: {parent.get('generation') or parent.get('kind')}  base: {(v.manifest or {}).get('base_model')}",
            f"recall {child.get('recall')}  generalize {child.get('generalize')}  "
            f"tone_drift {(v.metrics or {}).get('tone_drift')}  law_violations {child.get('law_violations')}",
            f"weights {(v.train or {}).get('weights_sha256')}", "", v.card or "(no model card)"]
    out(ctx).result(v, "\n".join(text))


@cli.command()
@click.option("--no-remote", is_flag=True, help="Do not ask the DVC remote whether everything is pushed.")
@click.pass_context
def status(ctx, no_remote: bool) -> None:
    """HEAD generation, open candidates and remote sync."""
    from .. import api

    st = api.status(".", check_remote=not no_remote)
    out(ctx).result(st, "\n".join([
        f"{st.protected_branch} serves {st.head_generation or 'no generation yet'}"
        + (f" ({st.head_commit[:12]})" if st.head_commit else ""),
        f"open candidates: {', '.join(st.open_candidates) or 'none'}",
        f"DVC remote: {st.remote_detail}"]))


@cli.command()
@click.argument("generation")
@click.option("--dest", default=None, help="Directory to put the weights in (default models/generations/GEN).")
@click.pass_context
def checkout(ctx, generation: str, dest: str | None) -> None:
    """Materialise GENERATION's weights read-only, checked against its hashes."""
    from .. import api

    path = api.checkout(generation, ".", dest)
    out(ctx).result({"generation": generation, "path": str(path)}, f"{generation} -> {path}")


@cli.command()
@click.argument("a")
@click.argument("b")
@click.pass_context
def diff(ctx, a: str, b: str) -> None:
    """Compare generations A and B: metrics, params, data, weight change."""
    from .. import api

    d = api.diff(a, b, ".")
    lines = [f"{a} -> {b}"]
    for section in ("metrics", "params"):
        for key, v in d[section].items():
            lines.append(f"  {section[:-1] if section == 'params' else 'metric'} {key}: {v['a']} -> {v['b']}")
    lines.append(f"  data only in {b}: {', '.join(d['data']['only_in_b']) or 'none'}")
    w = d["weights"]
    lines.append(f"  weights: {w['params_changed_pct']}% of parameters, {w['tensors_changed_pct']}% of tensors changed")
    lines += [f"    {m['tensor']}: {m['relative_change']}" for m in w["most_changed"]]
    out(ctx).result(d, "\n".join(lines))


@cli.command()
@click.option("--signatures", is_flag=True,
              help="Also check the signed attestation of every move along the protected branch; name the first bad link.")
@click.pass_context
def verify(ctx, signatures: bool) -> None:
    """Re-hash every promoted generation and check the evidence and the log; exit 1 on a mismatch."""
    from .. import api

    r = api.verify(".")
    text = [f"checked {c}" for c in r.checked] + [f"MISMATCH {p}" for p in r.problems]
    result = {"checked": r.checked, "problems": r.problems, "ok": r.ok}
    if signatures:
        s = api.verify_signatures(".")
        text += [f"signed  {link}" for link in s.links] + [f"BAD     {p}" for p in s.problems]
        if s.first_bad:
            text.append(f"first bad link: {s.first_bad}")
        result.update(signatures={"links": s.links, "problems": s.problems, "first_bad": s.first_bad, "ok": s.ok},
                      ok=r.ok and s.ok)
    problems = len(r.problems) + len(result.get("signatures", {}).get("problems", []))
    text.append("verify: OK" if result["ok"] else f"verify: {problems} problem(s)")
    out(ctx).result(result, "\n".join(text))
    if not result["ok"]:
        ctx.exit(1)


@cli.group()
def keys() -> None:
    """Signing keys and allowed_signers: who may promote and approve (SSH signatures)."""


@keys.command("init")
@click.option("--principal", default=None, help="Name in allowed_signers (default: git's user.email).")
@click.option("--path", default=None, type=click.Path(dir_okay=False),
              help="Where to create the key (default: the configured key, else ~/.config/lineage/signing_key).")
@click.pass_context
def keys_init(ctx, principal: str | None, path: str | None) -> None:
    """Create an ed25519 signing key (an existing one is kept) and print its allowed_signers line."""
    from .. import api

    k = api.keys_init(principal, path, ".")
    text = [f"{'created' if k.created else 'kept'} {k.path} ({k.fingerprint})",
            f"allowed_signers line: {k.line}"]
    if k.roles_on_tip:
        text.append(f"this store already lets it: {', '.join(k.roles_on_tip)}")
    else:
        text.append("next: lineage keys allow <principal> " + k.path + ".pub && lineage change --reason 'add a signer'")
    out(ctx).result(k, "\n".join(text))


@keys.command("allow")
@click.argument("principal")
@click.argument("public_key")
@click.option("--role", "roles", multiple=True, type=click.Choice(["promote", "approve"]),
              help="What the key may sign (repeatable; default both).")
@click.pass_context
def keys_allow(ctx, principal: str, public_key: str, roles: tuple[str, ...]) -> None:
    """Add PUBLIC_KEY (a .pub file or 'ssh-ed25519 AAAA…') for PRINCIPAL to allowed_signers and stage it."""
    from .. import api

    line = api.keys_allow(principal, public_key, list(roles) or ["promote", "approve"], ".")
    out(ctx).result({"line": line}, f"staged in allowed_signers: {line}\n"
                                    "next: lineage change --reason '...' (signed by a current approver)")


@cli.command()
@click.pass_context
def repair(ctx) -> None:
    """Finish or undo commands that were killed mid-way and clear stale git locks no process holds."""
    from .. import api

    r = api.repair(".")
    text = [f"in the way: {b}" for b in r.blocking]  # what was recovered is already on stderr, one line each
    text += [f"not recorded: {u}" for u in r.unrecorded]
    text.append(f"repair: {len(r.recovered)} interrupted command(s) or stale lock(s) dealt with; "
                + ("the store is consistent" if r.ok else f"{len(r.blocking)} lock(s) still held"))
    out(ctx).result({"recovered": r.recovered, "blocking": r.blocking, "unrecorded": r.unrecorded, "ok": r.ok},
                    "\n".join(text))
    if not r.ok:
        ctx.exit(3)


@cli.command("gc")
@click.option("--cloud", is_flag=True, help="Also delete unreferenced objects from the DVC remote "
                                             "(refused where other clones' refs could need them).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.pass_context
def gc_cmd(ctx, cloud: bool, dry_run: bool) -> None:
    """Free DVC cache space, keeping the data of every commit, tag, branch, experiment and the work tree."""
    from .. import api

    r = api.gc(".", cloud=cloud, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    text = [f"gc: {verb} {r.cache_objects} object(s) from the DVC cache"
            + ("" if dry_run else f", {_bytes(r.cache_bytes)} freed")]
    if cloud:
        text.append(f"gc: {verb} {r.remote_objects} object(s) from the DVC remote"
                    + ("" if dry_run else f", {_bytes(r.remote_bytes)} freed" if r.remote_bytes is not None
                       else " (bytes freed not measured on a non-local remote)"))
    text += [f"gc: {line}" for line in r.pruned_worktrees]
    out(ctx).result(r, "\n".join(text))


def _bytes(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / (1 << 20):.1f} MiB)" if n >= 1 << 20 else "")


@cli.group()
def hub() -> None:
    """A shared bare repository whose receive hook enforces the arbiter for everyone."""


@hub.command("init")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--name", default="hub", show_default=True, help="Git remote name to register in the current store.")
@click.pass_context
def hub_init(ctx, path: str, name: str) -> None:
    """Create a hub at PATH and register it as a remote of the current store (if in one)."""
    from .. import api

    h = api.hub_init(path, ".", name)
    out(ctx).result(h, f"hub at {h.path} (protected branch {h.protected_branch})"
                       + (f", registered as remote '{h.remote_name}'" if h.remote_name else ""))


@cli.command()
@click.option("--remote", default="hub", show_default=True, help="Git remote of the hub.")
@click.pass_context
def push(ctx, remote: str) -> None:
    """Push DVC data, then the protected branch, candidates, tags and log atomically."""
    from .. import api

    r = api.push(".", remote)
    out(ctx).result(r, f"pushed {len(r.refs)} ref(s) to {r.remote} after the DVC data")


@cli.command()
@click.option("--remote", default="hub", show_default=True, help="Git remote of the hub.")
@click.pass_context
def pull(ctx, remote: str) -> None:
    """Fetch lineage refs and DVC data from the hub; fast-forward the protected branch."""
    from .. import api

    r = api.pull(".", remote)
    out(ctx).result(r, f"pulled from {remote}; protected branch {'moved' if r['protected_moved'] else 'unchanged'}")


def _csv_ints(value: str | None) -> list[int] | None:
    try:
        return [int(v) for v in value.split(",")] if value else None
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


@cli.command()
@click.option("--cycle", type=int, default=None, help="The caller's heartbeat cycle; acts only when a window opens.")
@click.option("-k", "k", type=int, default=None, help="Candidates in this window (default evolve.k, capped).")
@click.option("--seeds", default=None, help="Comma-separated seeds, one per candidate.")
@click.option("--strategies", default=None, help="Comma-separated data strategies, cycled over candidates.")
@click.pass_context
def evolve(ctx, cycle: int | None, k: int | None, seeds: str | None, strategies: str | None) -> None:
    """One evolution window: preconditions, K candidates, rank, freeze all, propose the best."""
    from .. import api

    o = out(ctx)
    r = api.evolve(".", cycle, k, _csv_ints(seeds), strategies.split(",") if strategies else None, progress=o.info)
    lines = [f"window {r.window or '-'}: {r.state}: {r.reason}"]
    if r.ranked:
        lines.append(_table([[i + 1, c["branch"].split("/", 1)[1], c["seed"], c["strategy"], c["verdict"],
                              "" if c.get("composite") is None else f"{c['composite']:.4f}",
                              ", ".join(c.get("failed") or [])] for i, c in enumerate(r.ranked)],
                            ["rank", "candidate", "seed", "strategy", "verdict", "score", "failed"]))
    if r.proposal and r.proposal["status"] == "open":
        lines.append("approve with: lineage proposal approve   (or: lineage proposal reject --reason TEXT)")
    o.result(r, "\n".join(lines))


@cli.group()
def proposal() -> None:
    """The open promotion proposal of the evolution loop."""


@proposal.command("show")
@click.pass_context
def proposal_show(ctx) -> None:
    """Show the proposal: current head, proposed head, improvement, gates, hashes."""
    from .. import api

    p = api.proposal_show(".")
    rows = [[c["name"], c["observed"], f'{c["op"]} {c["threshold"]}', "" if c["parent"] is None else c["parent"],
             "n.a." if not c.get("applicable", True) else ("PASS" if c["passed"] else "FAIL")]
            for c in p.get("criteria") or []]
    text = [f"proposal ({p['status']}): {p['candidate']} ({p['commit'][:12]}) over HEAD {p['current_head'][:12]}",
            f"improvement {p['improvement']:+.4f} (composite {p['composite']:.4f} vs {p['head_composite']})",
            f"risk: {p['risk']} ({'; '.join(p['risk_reasons'])})", _table(rows, ["criterion", "child", "threshold",
                                                                                  "parent", "result"])]
    text += [f"  {k}: {v}" for k, v in sorted((p.get("hashes") or {}).items())]
    out(ctx).result(p, "\n".join(text))


@proposal.command("approve")
@click.pass_context
def proposal_approve(ctx) -> None:
    """Promote the proposal through the arbiter, recording your approval."""
    from .. import api

    p = api.proposal_decide(True, None, ".")
    out(ctx).result(p, f"approved and promoted {p['candidate']}")


@proposal.command("reject")
@click.option("--reason", required=True, help="Why: recorded in the evolution log.")
@click.pass_context
def proposal_reject(ctx, reason: str) -> None:
    """Reject the proposal, recording why."""
    from .. import api

    p = api.proposal_decide(False, reason, ".")
    out(ctx).result(p, f"rejected {p['candidate']}: {reason}")


@cli.command()
@click.argument("candidate")
@click.pass_context
def shadow(ctx, candidate: str) -> None:
    """Run HEAD and CANDIDATE side by side on everyday prompts; report parity."""
    from .. import api

    r = api.shadow(candidate, ".")
    lines = [f"parity {r['parity']:.3f} over {r['prompts']} prompts ({len(r['differ'])} differ)"]
    lines += [f"  {d['prompt']!r}: HEAD {d['a']!r} | candidate {d['b']!r}" for d in r["differ"][:10]]
    out(ctx).result(r, "\n".join(lines))


@cli.command()
@click.pass_context
def stats(ctx) -> None:
    """How the evolution loop is doing: proposals, promotions, rejections, rollbacks, rates."""
    from .. import api

    s = api.stats(".")
    text = [f"windows {s.windows} (refused {s.refused_windows}), candidates {s.proposals}, promoted {s.promoted}, "
            f"rejected {s.rejected}, rollbacks {s.rollbacks}",
            f"promotion success rate {s.promotion_success_rate}, regression rate {s.regression_rate}, "
            f"mean cycles to revert {s.mean_cycles_to_revert}, mean seconds to revert {s.mean_seconds_to_revert}",
            "rejected by: " + (", ".join(f"{k} {v}" for k, v in sorted(s.rejected_by.items())) or "none")]
    if s.plateau:
        text.append(f"plateau: {s.plateau}")
    out(ctx).result(s, "\n".join(text))


@cli.command()
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Where to write the HTML (default .lineage/report.html in the store: git-ignored).")
@click.option("--open", "open_it", is_flag=True, help="Open the report in the desktop's browser.")
@click.option("--png", is_flag=True, help="Also write an overview PNG beside it (needs headless Chromium).")
@click.pass_context
def report(ctx, out_path: str | None, open_it: bool, png: bool) -> None:
    """One self-contained HTML page of the record: tree, metrics, per-delta recall, loss, budget, cards."""
    from .. import api
    from . import report as rep

    o = out(ctx)
    root = api.find_store(".")
    data = rep.gather(root)
    path = rep.write(data, out_path or root / rep.DEFAULT_OUT).resolve()
    if rep.dirties_tree(root, path):
        o.info(f"note: {path} is in the work tree and not git-ignored; 'lineage propose' refuses a dirty tree")
    picture = rep.screenshot(path, path.with_suffix(".png")) if png else None
    if open_it and not rep.open_in_browser(path):
        o.info("no display to open a browser on: open the file yourself")
    lines = [f"report: {path}"] + ([f"overview: {picture}"] if picture else [])
    o.result({"path": str(path), "png": str(picture) if picture else None, "data": data}, "\n".join(lines))


def main() -> None:
    cli(prog_name="lineage")


if __name__ == "__main__":
    main()
