"""Commands that read the record: log, show, status, checkout, diff, verify, report."""

from __future__ import annotations

from typing import Any

import click

from .output import out, table


@click.command("log")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True,
              help="table: one row per attempt and per rollback, HEAD marked; csv: one row per attempt in "
                   "lineage.csv's columns (no rollback rows); jsonl: the evolution log, one event per line "
                   "(propose, train, eval, commit, rollback, ...), not one row per attempt.")
@click.pass_context
def log_cmd(ctx, fmt: str) -> None:
    """The fossil record: every attempt (frozen candidate), pass or fail, and every rollback; HEAD marked.

    The three formats are two records: attempts (table, csv) and events (jsonl).
    """
    from .. import api

    if fmt == "jsonl":
        click.echo(api.events_jsonl("."), nl=False)
        return
    if fmt == "csv":
        click.echo(api.lineage_csv("."), nl=False)
        return
    rows = api.candidates(".")
    cells = [["*" if r["head"] else "", r["generation"], r["branch"].split("/", 1)[1], r["verdict"],
              "yes" if r["promoted"] else "", r.get("parent") or "base",
              "" if r.get("composite") is None else f'{r["composite"]:.4f}',
              ", ".join(r.get("failed") or []) or ""] for r in rows]
    rollbacks = api.rollbacks(".")
    cells += [["", rb["to"], "rollback", "", "", rb["from"] or "", "", rb["reason"] or ""] for rb in rollbacks]
    text = table(cells, ["", "gen", "candidate", "verdict", "promoted", "parent", "score", "failed / reason"]) \
        if rows else "no candidates yet: run 'lineage propose'"
    out(ctx).result(rows, text)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@click.command()
@click.argument("generation")
@click.pass_context
def show(ctx, generation: str) -> None:
    """GENERATION (G002: the one main promoted) or one attempt (G002-a): verdict, reason, metrics, card."""
    from .. import api

    v = api.show(generation, ".")
    title = v.candidate.split("/", 1)[-1] if v.candidate else v.generation
    state = ("served by main" if v.served else "promoted" if v.promoted else "not promoted")
    text = [f"{title}  verdict {v.verdict}  ({state})  commit {v.commit[:12] if v.commit else '-'}"]
    if v.reason:
        text.append(f"reason: {v.reason}")
    if v.failed:
        text.append(f"failed: {', '.join(v.failed)}")
    manifest = v.manifest or {}
    parent = manifest.get("parent") or {}
    text.append(f"parent: {v.parent or parent.get('generation') or parent.get('kind') or 'base'}  "
                f"base model: {manifest.get('base_model') or '-'}")
    if v.gate:
        rows = [[c["name"], _num(c["observed"]), f'{c["op"]} {_num(c["threshold"])}', _num(c["parent"]),
                 "n.a." if not c.get("applicable", True) else ("PASS" if c["passed"] else "FAIL")]
                for c in v.gate.get("criteria") or []]
        text.append(table(rows, ["criterion", "observed", "threshold", "parent", "result"]))
    elif v.commit is None:
        text.append("no evidence: the attempt ended before its run was committed")
    if v.train:
        t = v.train
        text.append(f"training: {t.get('steps')} steps, {t.get('tokens')} tokens, {_num(t.get('wall_minutes'))} min, "
                    f"final loss {_num(t.get('loss_final'))}, status {t.get('status')}")
        text.append(f"weights {t.get('weights_sha256')}")
    others = [f"{a['branch'].split('/', 1)[-1]} ({a['verdict']}{', promoted' if a['promoted'] else ''})"
              for a in v.attempts if a.get("branch") != v.candidate]
    if others:
        text.append(f"other attempts at {v.generation}: {', '.join(others)}")
    text += ["", v.card or "(no model card)"]
    out(ctx).result(v, "\n".join(text))


@click.command()
@click.option("--no-remote", is_flag=True, help="Do not ask the DVC remote whether everything is pushed.")
@click.pass_context
def status(ctx, no_remote: bool) -> None:
    """HEAD generation, candidates awaiting a decision, the others, and remote sync."""
    from .. import api

    st = api.status(".", check_remote=not no_remote)
    out(ctx).result(st, "\n".join([
        f"{st.protected_branch} serves {st.head_generation or 'no generation yet'}"
        + (f" ({st.head_commit[:12]})" if st.head_commit else ""),
        f"open candidates (passed, promotable now): {', '.join(st.open_candidates) or 'none'}",
        f"not promoted: {', '.join(st.not_promoted) or 'none'}",
        f"work tree: {st.work_tree}",
        f"registered data waiting: {', '.join(st.pending_data)}, {st.pending_where}" if st.pending_data
        else "registered data waiting: none",
        f"DVC remote: {st.remote_detail}"]))


@click.command()
@click.argument("generation")
@click.option("--dest", default=None, help="Directory to put the weights in (default models/generations/GEN).")
@click.pass_context
def checkout(ctx, generation: str, dest: str | None) -> None:
    """Materialise GENERATION's weights read-only, checked against its hashes."""
    from .. import api

    path = api.checkout(generation, ".", dest)
    out(ctx).result({"generation": generation, "path": str(path)}, f"{generation} -> {path}")


def _change(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:+.4f}" if isinstance(value, float) else f"{value:+d}"


def _mark(c: dict) -> str:
    if c.get("passed") is None:
        return ""
    if c.get("applicable") is False:
        return "n.a."
    return "✅" if c["passed"] else "❌"


@click.command()
@click.argument("a")
@click.argument("b")
@click.pass_context
def diff(ctx, a: str, b: str) -> None:
    """Compare A and B (generations or attempts): criteria against B's thresholds, training, data, params, weights."""
    from .. import api

    d = api.diff(a, b, ".")
    rows = [[c["name"], _num(c["a"]), _num(c["b"]), _change(c["change"]),
             "" if c["op"] is None else f"{c['op']} {_num(c['threshold'])}", _mark(c)] for c in d["criteria"]]
    lines = [f"{a} -> {b}", table(rows, ["criterion", a, b, "change", f"threshold ({b})", ""])]
    if d["same_exam"] is False:
        lines.append(f"note: {a} and {b} were judged on different probe sets (generalize asks about each one's "
                     "new data), so their generalize scores are not the same exam")
    ta, tb = d["training"]["a"], d["training"]["b"]
    lines.append("training: " + ", ".join(f"{k} {_num(ta.get(k))} -> {_num(tb.get(k))}" for k in ta))
    added = ", ".join(f"{x['delta']} ({x['records']} records)" for x in d["data_added"]) or "none"
    lines.append(f"data added in {b}: {added}")
    params = "; ".join(f"{k} {v['a']} -> {v['b']}" for k, v in d["params"].items()) or "none"
    lines.append(f"params changed: {params}")
    w = d["weights"]
    if w.get("available"):
        lines.append(f"weights: {w['layers_changed']} of {w['layers']} layers ({w['layers_changed_pct']}%), "
                     f"{w['params_changed_pct']}% of parameters changed")
        lines += [f"  {m['module']}: relative L2 change {m['relative_change']}" for m in w["most_changed"]]
    else:
        lines.append(f"weights: not compared ({w['why']})")
    v = d["verdict"]
    tail = f" ({', '.join(v['b_failed'])})" if v["b_failed"] else ""
    lines.append(f"verdict: {a} {v['a']}{' (promoted)' if v['a_promoted'] else ''} -> {b} {v['b']}"
                 f"{' (promoted)' if v['b_promoted'] else ''}{tail}")
    if v["b_reason"]:
        lines.append(f"reason: {v['b_reason']}")
    out(ctx).result(d, "\n".join(lines))


@click.command()
@click.option("--signatures", is_flag=True,
              help="Also check the signed attestation of every move along the protected branch; "
                   "name the first bad link.")
@click.pass_context
def verify(ctx, signatures: bool) -> None:
    """Re-hash every promoted generation and check the evidence and the log; exit 1 on a mismatch."""
    from .. import api

    r = api.verify(".")
    text = [f"checked {c}" for c in r.checked] + [f"MISMATCH {p}" for p in r.problems]
    result: dict[str, Any] = {"checked": r.checked, "problems": r.problems, "ok": r.ok}
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


@click.command()
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


COMMANDS = (log_cmd, show, status, checkout, diff, verify, report)
