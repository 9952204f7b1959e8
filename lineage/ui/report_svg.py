"""The report's pictures: inline SVG drawn by hand (metric charts, heatmap, loss, budget; the tree is in
report_tree.py) and the helpers they share.

Pure functions of the data `report.gather` returns; every string from the store is escaped.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from typing import Any

from ..store.overview import BUDGET

__all__ = ["BUDGET", "METRICS"]

METRICS = (("recall", "recall", False), ("generalize", "generalize", False),
           ("tone_drift", "tone drift", False), ("law_violations", "law violations", True))
COLOURS = {"PASS": "#2e7d32", "FAIL": "#c62828", "ABORTED": "#757575"}
FILLS = {"PASS": "#c8e6c9", "FAIL": "#ffcdd2", "ABORTED": "#e0e0e0"}
THRESHOLD = "#ef6c00"
PALETTE = ("#1565c0", "#6a1b9a", "#00838f", "#ad1457", "#4e342e", "#558b2f", "#283593", "#f9a825")


def finite(x) -> bool:
    """True for a real, finite number (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ------------------------------------------------------------------ render: helpers


def esc(value) -> str:
    """value as text safe in markup and in a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(x) -> str:
    """A number in four significant digits; – for nothing."""
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def state_of(verdict) -> str:
    """A class name safe to use in markup, whatever the tag said."""
    return verdict if verdict in COLOURS else "ABORTED"


def label(c: dict) -> str:
    """A candidate's name (G002-b)."""
    return c["name"] or f'{c["generation"]}-?'


def anchor(c: dict) -> str:
    """The id of a candidate's section on the page: its name in letters, digits and dashes, unique."""
    name = label(c)
    safe = re.sub(r"[^A-Za-z0-9-]", "_", name)
    # a name changed by the substitution could meet another one: its own digest keeps the id unique
    return f"attempt-{safe}" + ("" if safe == name else "-" + hashlib.sha256(name.encode()).hexdigest()[:10])


def figure(width: float, height: float, body: list[str], label: str, css_class: str, style: str = "") -> str:
    """An inline <svg> of width × height around body."""
    styled = f' style="{style}"' if style else ""
    return (f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}"{styled} role="img" aria-label="{esc(label)}">' + "".join(body)
            + "</svg>")


def text(x, y, s, size=11, anchor="start", weight="normal", fill="#222", extra="") -> str:
    """One <text>, its string escaped."""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}"{extra}>{esc(s)}</text>')


def short(s, n: int) -> str:
    """s on one line, cut to n characters."""
    s = " ".join(str(s or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


# ------------------------------------------------------------------ render: charts


def _axis(body, left, top, w, h, lo, hi, ticks=4, integer=False):
    for i in range(ticks + 1):
        v = lo + (hi - lo) * i / ticks
        y = top + h - h * i / ticks
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#eee"/>')
        body.append(text(left - 6, y + 4, f"{v:.0f}" if integer else f"{v:.3g}", 9, "end", fill="#666"))
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#999"/>')
    body.append(f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#999"/>')


PROBES = "#6a1b9a"  # the marker where the probe set changed


def _probe_changes(cands: list[dict]) -> list[tuple[int, str]]:
    """(i, why) where candidate i was judged on another probe set than the one before it in the chart."""
    out, before = [], None
    for i, c in enumerate(cands):
        digest = c.get("probes")
        if digest and before and digest != before[1]:
            out.append((i, f"probe set changed: {label(before[0])} was judged on {short(before[1], 19)}, "
                           f"{label(c)} on {short(digest, 19)}"))
        before = (c, digest) if digest else before
    return out


def render_metric_chart(data: dict, key: str, title: str, integer: bool) -> str:
    """One metric per candidate (filled: promoted), its parent value, the threshold it was judged by, and
    where the probe set changed. A value the gate did not judge (the first generation's tone drift) does
    not set the axis: past it, it sits greyed on the axis edge, its value in a note."""
    cands = [c for c in data["candidates"] if c["metrics"] and finite(c["metrics"].get(key))]
    slot, left, top, h = 64, 48, 30, 150
    w = max(240, slot * len(cands))
    values = [c["metrics"][key] for c in cands]
    crit: list[Any] = [next((k for k in c["criteria"] if k.get("name") == key), None) for c in cands]
    judged = [k is None or k.get("applicable", True) is not False for k in crit]
    thresholds = [k.get("threshold") if k and j and finite(k.get("threshold")) else None
                  for k, j in zip(crit, judged, strict=True)]
    parents = [(c["metrics"]["parent"] or {}).get(key) for c in cands]
    everything = [v for v, j in zip(values, judged, strict=True) if j] + thresholds + parents
    if key in ("recall", "generalize"):
        lo, hi = 0.0, 1.0
    else:
        lo, hi = 0.0, max([v for v in everything if finite(v)] + [0.1 if not integer else 4]) * 1.15
    y = lambda v: top + h - h * (min(max(v, lo), hi) - lo) / ((hi - lo) or 1)  # noqa: E731
    off = [(c, v) for c, v, j in zip(cands, values, judged, strict=True) if not j and not lo <= v <= hi]
    notes = [f'{"▲" if v > hi else "▼"} {label(c)} {fmt(v)}: not judged (exempt), off the axis' for c, v in off]
    body = [text(left, 16, title, 12, weight="bold")]
    _axis(body, left, top, w, h, lo, hi, integer=integer)
    for i, why in _probe_changes(cands):
        x = left + i * slot
        body.append(f'<g class="probe-change" data-candidate="{esc(label(cands[i]))}"><title>{esc(why)}</title>'
                    f'<line x1="{x}" y1="{top}" x2="{x}" y2="{top + h}" stroke="{PROBES}" stroke-width="1.5" '
                    'stroke-dasharray="2 3"/>'
                    + text(x - 3, top + 3, "probe set changed", 8, "end", fill=PROBES,
                           extra=f' transform="rotate(-90 {x - 3} {top + 3})"') + "</g>")
    steps = []
    for i, (_c, t) in enumerate(zip(cands, thresholds, strict=True)):
        if t is None:
            continue
        x1, x2 = left + i * slot + 6, left + (i + 1) * slot - 6
        steps.append(f"M{x1:.1f} {y(t):.1f} H{x2:.1f}")
        body.append(text(x2, y(t) - 3, f'{crit[i]["op"]} {fmt(t)}', 8, "end", fill=THRESHOLD))
    if steps:
        body.append(f'<path class="threshold" d="{" ".join(steps)}" stroke="{THRESHOLD}" stroke-width="2" '
                    'stroke-dasharray="5 3" fill="none"/>')
    served = [(left + i * slot + slot / 2, y(v))
              for i, (c, v) in enumerate(zip(cands, values, strict=True)) if c["promoted"]]
    if len(served) > 1:
        body.append('<polyline class="served-line" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in served)
                    + f'" fill="none" stroke="{COLOURS["PASS"]}" stroke-width="1.5"/>')
    for i, (c, v, p) in enumerate(zip(cands, values, parents, strict=True)):
        cx = left + i * slot + slot / 2
        state = state_of(c["verdict"])
        if finite(p):
            body.append(f'<rect x="{cx - 4:.1f}" y="{y(p) - 4:.1f}" width="8" height="8" fill="none" stroke="#999" '
                        f'transform="rotate(45 {cx:.1f} {y(p):.1f})"><title>parent {esc(fmt(p))}</title></rect>')
        fill = COLOURS[state] if c["promoted"] and judged[i] else "#fff"
        tip = f"{label(c)} {title} {fmt(v)}"
        tip += f', threshold {crit[i]["op"]} {fmt(thresholds[i])}' if thresholds[i] is not None else ""
        tip += "" if judged[i] else f' (not judged: {crit[i].get("note")})'
        outside = not judged[i] and not lo <= v <= hi
        kind = state + (" exempt" if not judged[i] else "") + (" off-axis" if outside else "")
        body.append(f'<circle class="point {kind}" '
                    f'data-candidate="{esc(label(c))}" cx="{cx:.1f}" cy="{y(v):.1f}" r="5" fill="{fill}" '
                    f'stroke="{COLOURS[state] if judged[i] else "#999"}" stroke-width="2"><title>{esc(tip)}</title>'
                    "</circle>")
        if outside:
            body.append(text(cx + 8, y(v) + 4, f'{"▲" if v > hi else "▼"} {fmt(v)}', 8, fill="#999"))
        body.append(text(cx, top + h + 14, label(c), 9, "middle", fill="#444"))
    for n, note in enumerate(notes):
        body.append(text(left, top + h + 30 + n * 12, note, 9, fill="#777", extra=' class="axis-note"'))
    if not cands:
        body.append(text(left + 10, top + h / 2, "no candidate has metrics yet", 11, fill="#888"))
    return figure(left + w + 12, top + h + 24 + 12 * len(notes), body, f"{title} per candidate",
                  f"metric-chart metric-{key}")


def render_delta_heatmap(data: dict) -> str:
    """Recall on each earlier delta per candidate: a forgotten era shows as a red cell, whatever the mean says."""
    cands = [c for c in data["candidates"] if c["metrics"]]
    deltas = sorted({d for c in cands for d in c["metrics"]["recall_by_delta"]})
    cell_w, cell_h, left, top = 74, 30, 130, 34
    body = [text(4, 14, "recall per delta (cell: child; below: change from parent)", 12, weight="bold")]
    for i, c in enumerate(cands):
        body.append(text(left + i * cell_w + cell_w / 2, top - 6, label(c), 10, "middle", fill="#444"))
    for r, d in enumerate(deltas):
        y = top + r * cell_h
        body.append(text(left - 6, y + cell_h / 2 + 4, short(d, 20), 10, "end", fill="#444"))
        for i, c in enumerate(cands):
            x = left + i * cell_w
            v = c["metrics"]["recall_by_delta"].get(d)
            pv = (c["metrics"]["parent"] or {}).get("recall_by_delta", {}).get(d)
            crit = next((k for k in c["criteria"] if k.get("name") == f"recall[{d}]"), None)
            failed = crit is not None and crit.get("applicable", True) and not crit.get("passed")
            if not finite(v):
                body.append(f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" fill="#f5f5f5"/>'
                            + text(x + cell_w / 2, y + cell_h / 2 + 4, "–", 10, "middle", fill="#aaa"))
                continue
            hue = max(0.0, min(1.0, v)) * 120
            change = f"{v - pv:+.2f}" if finite(pv) else "new"
            body.append(f'<g class="delta-cell" data-candidate="{esc(label(c))}" data-delta="{esc(d)}">'
                        f'<title>{esc(label(c))} recall on {esc(d)}: {esc(fmt(v))}'
                        f'{esc(", parent " + fmt(pv)) if finite(pv) else ""}{" (FAILED)" if failed else ""}</title>'
                        f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                        f'fill="hsl({hue:.0f},55%,72%)" stroke="{COLOURS["FAIL"] if failed else "none"}" '
                        f'stroke-width="3"/>' + text(x + cell_w / 2, y + 13, f"{v:.2f}", 10, "middle", "bold")
                        + text(x + cell_w / 2, y + 25, change, 8, "middle", fill="#333") + "</g>")
    if not deltas:
        body.append(text(left, top + 20, "no per-delta recall recorded yet", 11, fill="#888"))
    return figure(max(left + len(cands) * cell_w + 10, 420), top + max(len(deltas), 1) * cell_h + 10, body,
                "recall per delta", "delta-heatmap")


def render_loss_chart(data: dict) -> str:
    """Training loss per candidate (dashed: a run that did not complete)."""
    curves = [(c, c["loss_curve"]) for c in data["candidates"] if len(c["loss_curve"]) > 0]
    left, top, w, h = 48, 30, 520, 200
    body = [text(left, 16, "training loss", 12, weight="bold")]
    if not curves:
        body.append(text(left + 10, top + 40, "no loss curves recorded yet", 11, fill="#888"))
        return figure(left + w + 170, top + 60, body, "training loss", "loss-chart")
    steps = [s for _, pts in curves for s, _ in pts]
    losses = [v for _, pts in curves for _, v in pts]
    s_hi = max(steps) or 1
    lo, hi = min(losses), max(losses)
    lo, hi = (lo - 0.5, hi + 0.5) if hi == lo else (lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05)
    _axis(body, left, top, w, h, lo, hi)
    body.append(text(left + w, top + h + 24, f"step (max {s_hi:.0f})", 9, "end", fill="#666"))
    for i, (c, pts) in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        dashed = "" if c["budget_status"] == "COMPLETE" else ' stroke-dasharray="5 3"'
        points = " ".join(f"{left + w * s / s_hi:.1f},{top + h - h * (v - lo) / (hi - lo):.1f}" for s, v in pts)
        body.append(f'<polyline class="loss-curve" data-candidate="{esc(label(c))}" points="{points}" fill="none" '
                    f'stroke="{colour}" stroke-width="1.8"{dashed}><title>{esc(label(c))}: {len(pts)} points, '
                    f'final loss {esc(fmt(pts[-1][1]))}</title></polyline>')
        ly = top + 10 + i * 16
        body.append(f'<line x1="{left + w + 14}" y1="{ly}" x2="{left + w + 34}" y2="{ly}" stroke="{colour}" '
                    f'stroke-width="2"{dashed}/>' + text(left + w + 40, ly + 4, f'{label(c)} ({c["verdict"]})', 10))
    return figure(left + w + 170, max(top + h + 30, top + 20 + len(curves) * 16), body, "training loss", "loss-chart")


def render_budget(data: dict) -> str:
    """Budget used per candidate as a share of the limit it ran under; over the line is red."""
    cands = [c for c in data["candidates"] if any(finite(b["used"]) for b in c["budget"])]
    left, cell_w, row_h, top = 90, 150, 26, 34
    body = [text(4, 14, "budget used (share of the policy limit the run was held to)", 12, weight="bold")]
    for k, (_, _, unit) in enumerate(BUDGET):
        body.append(text(left + k * cell_w + 4, top - 8, unit, 10, fill="#444"))
    for r, c in enumerate(cands):
        y = top + r * row_h
        body.append(text(left - 6, y + 15, label(c), 10, "end", fill=COLOURS[state_of(c["verdict"])]))
        for k, b in enumerate(c["budget"]):
            x, used, limit = left + k * cell_w + 4, b["used"], b["limit"]
            bar_w = cell_w - 14
            if not finite(used):
                body.append(text(x, y + 15, "–", 10, fill="#aaa"))
                continue
            share = used / limit if finite(limit) and limit > 0 else None
            fill = COLOURS["FAIL"] if share is not None and share > 1 else "#1565c0"
            shown = min(share, 1.25) / 1.25 if share is not None else 0
            body.append(f'<g class="budget-bar" data-candidate="{esc(label(c))}" data-budget="{esc(b["name"])}">'
                        f'<title>{esc(label(c))} {esc(b["name"])}: {esc(fmt(used))} of {esc(fmt(limit))}</title>'
                        f'<rect x="{x}" y="{y + 3}" width="{bar_w}" height="18" fill="#f1f3f6"/>'
                        f'<rect x="{x}" y="{y + 3}" width="{bar_w * shown:.1f}" height="18" fill="{fill}"/>'
                        f'<line x1="{x + bar_w / 1.25:.1f}" y1="{y + 1}" x2="{x + bar_w / 1.25:.1f}" y2="{y + 23}" '
                        f'stroke="#222" stroke-width="1.5"/>'
                        + text(x + 3, y + 16, f"{fmt(used)}" + (f" ({share:.0%})" if share is not None else ""), 9,
                                fill="#000") + "</g>")
    if not cands:
        body.append(text(left, top + 20, "no budget usage recorded yet", 11, fill="#888"))
    return figure(left + len(BUDGET) * cell_w + 10, top + max(len(cands), 1) * row_h + 8, body, "budget used", "budget")


# ------------------------------------------------------------------ render: the page
