"""The HTML lineage report: gather the store's record into plain data, render one self-contained page.

`gather` reads only what the store recorded: frozen candidate tags, each candidate's committed
evidence (gate report, metrics, budget used, loss curve, model card), the protected branch's
first-parent history (promotions and rollbacks) and the evolution log. `render` turns that data
into one HTML file with hand-written inline SVG: no script, no network, no external font, and every
string from the store escaped. Same record, same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..adapters import git
from ..adapters.browser import BROWSERS, browser_args, find_browser, screenshot

__all__ = ["BROWSERS", "BUDGET", "METRICS", "browser_args", "find_browser", "gather", "render", "screenshot", "write"]
from .report_attempts import render_attempts
from .report_events import render_events
from .report_svg import (
    BUDGET,
    METRICS,
    esc,
    fmt,
    label,
    render_budget,
    render_delta_heatmap,
    render_loss_chart,
    render_metric_chart,
    state_of,
)
from .report_tree import render_tree

SCHEMA_VERSION = 1
DEFAULT_OUT = Path(".lineage") / "report.html"  # git-ignored in every store: the tree stays clean


def gather(store=".") -> dict:
    """Everything the report shows, read from the store's record (see store/overview.py)."""
    from .. import api

    return api.report_data(store)


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px} .charts{display:flex;flex-wrap:wrap;gap:18px;overflow-x:auto} svg{background:#fff}
.charts>svg{flex-shrink:0}
.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top} th{background:#f5f5f5} .PASS{color:#2e7d32} .FAIL{color:#c62828}
.ABORTED{color:#757575} pre{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:10px;font-size:12px}
details{margin:6px 0} summary{cursor:pointer;font-weight:600} .problem{color:#c62828;font-weight:600}
.tree a{cursor:pointer} .tree a:hover rect,.tree a:hover circle{filter:brightness(.92)}
details.attempt{border:1px solid #e4e4e4;border-radius:4px;padding:4px 10px} .attempt-body{scroll-margin-top:3em}
.attempt-body:target{outline:2px solid #1565c0;outline-offset:6px} h4{font-size:13px;margin:12px 0 4px}
.attempt-body p{font-size:13px;margin:6px 0}
details.raw{margin:2px 0 0} details.raw summary{font-weight:normal;color:#1565c0;font-size:11px}
details.raw pre{margin:2px 0;max-width:900px} table.events td:nth-child(4){min-width:380px}
"""


def _candidate_table(data: dict) -> str:
    rows = []
    for c in data["candidates"]:
        m = c["metrics"] or {}
        state = state_of(c["verdict"])
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in (
            "HEAD" if c["head"] else "", esc(label(c)), f'<span class="{state}">{esc(c["verdict"])}</span>',
            "yes" if c["promoted"] else "", esc(c["parent"] or "base"), esc(fmt(c["composite"])),
            esc(fmt(m.get("recall"))), esc(fmt(m.get("generalize"))), esc(fmt(m.get("tone_drift"))),
            esc(fmt(m.get("law_violations"))), esc(", ".join(c["failed"])), esc(c["reason"] or ""),
            f'<code>{esc(c["commit"][:12])}</code>')) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("", "candidate", "verdict", "promoted", "parent", "score", "recall",
                                              "generalize", "tone drift", "law viol.", "failed", "reason", "commit"))
    return f"<table class=\"candidates\"><tr>{head}</tr>{''.join(rows)}</table>"


def render(data: dict) -> str:
    """The whole report as one HTML document: inline CSS and SVG, no script, nothing fetched."""
    head = data["head"]
    policy = data.get("policy") or {}
    n_pass = sum(c["verdict"] == "PASS" for c in data["candidates"])
    rollbacks = sum(h["kind"] == "rollback" for h in data["history"])
    charts = "".join(render_metric_chart(data, k, t, i) for k, t, i in METRICS)
    policy_line = ", ".join(f"{k} {fmt(policy.get(k))}" for k in
                            ("recall_tolerance", "generalize_gain", "max_tone_drift", "max_law_violations",
                             "delta_recall_tolerance")) if policy else "unreadable"
    problems = "".join(f'<p class="problem">{esc(p)}</p>' for p in data["problems"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>lineage report: {esc(data["store"])}</title><style>{CSS}</style></head>
<body>
<h1>lineage report: {esc(data["store"])}</h1>
<p class="meta">{esc(data["protected_branch"])} serves <b>{esc(head["generation"] or "no generation yet")}</b>
{f'(commit <code>{esc(head["commit"][:12])}</code>)' if head["commit"] else ""} ·
{len(data["candidates"])} candidates ({n_pass} PASS, {len(data["candidates"]) - n_pass} not) ·
{sum(h["kind"] == "promotion" for h in data["history"])} promotions · {rollbacks} rollbacks ·
{len(data["events"])} log events{f' (log <code>{esc(data["log_tip"][:12])}</code>)' if data["log_tip"] else ""}</p>
<p class="meta">policy on {esc(data["protected_branch"])}: {esc(policy_line)}</p>{problems}
<h2>Lineage tree</h2>
<p class="meta">columns are generations and rollbacks in the order they happened; the top line is
{esc(data["protected_branch"])}; a thick border marks the promoted candidate; hover for reasons, click for the
attempt's card, reasons and diff.</p>
<div class="scroll">{render_tree(data)}</div>
<h2>Metrics across generations</h2>
<p class="meta">circles: the candidate (filled when promoted, grey when the criterion did not apply, and then
not setting the axis); diamonds: its parent; dashed orange: the threshold its gate applied; green line: the served
line; dotted purple: the probe set changed from the candidate before.</p>
<div class="charts">{charts}</div>
<h2>Recall per delta</h2><div class="scroll">{render_delta_heatmap(data)}</div>
<h2>Training loss</h2><div class="scroll">{render_loss_chart(data)}</div>
<h2>Budget</h2><div class="scroll">{render_budget(data)}</div>
<h2>Candidates</h2><div class="scroll">{_candidate_table(data)}</div>
<h2>Attempts</h2>
<p class="meta">each attempt's gate reasons, its diff against the generation it was trained from, and its model
card; a box or node in the tree opens its attempt here.</p>{render_attempts(data)}
<h2>Evolution log</h2><div class="scroll">{render_events(data)}</div>
</body></html>
"""


# ------------------------------------------------------------------ writing, opening, screenshots


def write(data: dict, out: str | Path) -> Path:
    """Render data and write it to out (parents created); return the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path


def open_in_browser(path: str | Path) -> bool:
    """Open the report in the desktop's browser; False where there is no display to show it on."""
    import sys
    import webbrowser

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False  # a console browser would take over the terminal; print the path instead
    return webbrowser.open(Path(path).resolve().as_uri())


def dirties_tree(root: str | Path, path: str | Path) -> bool:
    """True when path lies in root's work tree and git does not ignore it (propose would refuse the tree)."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return not git.is_ignored(root, str(rel))
