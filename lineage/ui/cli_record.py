"""Commands that read the record: log, show, status, checkout, diff, verify, report."""

from __future__ import annotations

from typing import Any

import click

from .output import out, table


@click.command("log")
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
    cells = [["*" if r["head"] else "", r["generation"], r["branch"].split("/", 1)[1], r["verdict"],
              "yes" if r["promoted"] else "", r.get("parent") or "base",
              "" if r.get("composite") is None else f'{r["composite"]:.4f}',
              ", ".join(r.get("failed") or []) or ""] for r in rows]
    out(ctx).result(rows, table(cells, ["", "gen", "candidate", "verdict", "promoted", "parent", "score", "failed"])
                    if rows else "no candidates yet: run 'lineage propose'")


@click.command()
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


@click.command()
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


@click.command()
@click.argument("generation")
@click.option("--dest", default=None, help="Directory to put the weights in (default models/generations/GEN).")
@click.pass_context
def checkout(ctx, generation: str, dest: str | None) -> None:
    """Materialise GENERATION's weights read-only, checked against its hashes."""
    from .. import api

    path = api.checkout(generation, ".", dest)
    out(ctx).result({"generation": generation, "path": str(path)}, f"{generation} -> {path}")


@click.command()
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
