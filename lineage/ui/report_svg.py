"""The report's pictures: inline SVG drawn by hand (tree, metric charts, heatmap, loss, budget).

Pure functions of the data `report.gather` returns; every string from the store is escaped.
"""

from __future__ import annotations

import html
import math
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
    return html.escape("" if value is None else str(value), quote=True)


def fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def state_of(verdict) -> str:
    """A class name safe to use in markup, whatever the tag said."""
    return verdict if verdict in COLOURS else "ABORTED"


def label(c: dict) -> str:
    return c["name"] or f'{c["generation"]}-?'


def _svg(width: float, height: float, body: list[str], label: str, css_class: str) -> str:
    return (f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{esc(label)}">' + "".join(body) + "</svg>")


def _text(x, y, s, size=11, anchor="start", weight="normal", fill="#222", extra="") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}"{extra}>{esc(s)}</text>')


def short(s, n: int) -> str:
    s = " ".join(str(s or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


# ------------------------------------------------------------------ render: the tree


def _columns(data: dict) -> list[dict]:
    """Generations and rollbacks in the order they happened; promotions sit in their generation's column."""
    cols: list[dict] = []
    by_gen: dict[str, dict] = {}
    for c in data["candidates"]:
        col = by_gen.get(c["generation"])
        if col is None:
            col = by_gen[c["generation"]] = {"kind": "generation", "key": c["generation"], "time": c["time"],
                                              "candidates": [], "main": None}
            cols.append(col)
        col["time"] = min(col["time"], c["time"])
        col["candidates"].append(c)
    for i, h in enumerate(data["history"]):
        col = by_gen.get(h["generation"]) if h["kind"] == "promotion" else None
        if col is not None and col["main"] is None:
            col["main"] = {**h, "index": i}
        else:
            cols.append({"kind": h["kind"], "key": h["generation"], "time": h["time"], "candidates": [],
                         "main": {**h, "index": i}})
    order = {"generation": 0, "promotion": 1, "rollback": 2}
    return sorted(cols, key=lambda col: (col["time"], order[col["kind"]], str(col["key"])))


def render_tree(data: dict) -> str:
    """Generations as columns, the protected branch on top, candidates below; HEAD and rollbacks marked."""
    cols = _columns(data)
    x0, step, y_main, y_first, row_h = 50, 140, 96, 176, 54
    xs = [x0 + 110 + i * step for i in range(len(cols))]
    rows = max([len(col["candidates"]) for col in cols] + [1])
    width, height = x0 + 110 + len(cols) * step, y_first + rows * row_h + 10
    last = len(data["history"]) - 1
    main_x = {col["main"]["index"]: x for col, x in zip(cols, xs, strict=True) if col["main"]}
    body = [f'<line x1="{x0}" y1="{y_main}" x2="{max(main_x.values(), default=x0)}" y2="{y_main}" stroke="#555" '
            'stroke-width="3"/>',
            _text(x0 - 30, y_main - 22, data["protected_branch"], 12, weight="bold"),
            f'<circle class="base" cx="{x0}" cy="{y_main}" r="8" fill="#fff" stroke="#555" stroke-width="2"/>',
            _text(x0, y_main + 26, "base", 10, "middle", fill="#555")]
    for col, x in zip(cols, xs, strict=True):
        if col["kind"] == "generation":
            body.append(_text(x, height - 4, col["key"], 11, "middle", "bold", "#444",
                              f' class="gen-label" data-generation="{esc(col["key"])}"'))
        h = col["main"]
        if h is None:
            continue
        if h["kind"] == "rollback":
            target = next((main_x[j] for j in range(h["index"] - 1, -1, -1)
                           if data["history"][j]["generation"] == h["generation"] and j in main_x), None)
            if target is not None:
                top, peak = y_main - 20, y_main - 70
                body.append(f'<path class="rollback-arc" d="M{x} {top} C{x} {peak} {target} {peak} {target} {top}" '
                            f'fill="none" stroke="{COLOURS["FAIL"]}" stroke-width="2" stroke-dasharray="6 4"/>')
            node_label, fill, caption = f'↺ {h["generation"]}', "#fff3e0", f'rollback: {short(h["reason"], 22)}'
        else:
            node_label, fill, caption = h["generation"], FILLS["PASS"], "promoted"
        is_head = h["index"] == last
        tip = f'{h["kind"]} {h["generation"]} {h["commit"][:12]}'
        tip += (f' from {h["from"]}' if h["from"] else "") + (f': {h["reason"]}' if h["reason"] else "")
        body.append(f'<g class="main-node {h["kind"]}{" head" if is_head else ""}" '
                    f'data-generation="{esc(h["generation"])}"><title>{esc(tip)}</title>'
                    f'<circle cx="{x}" cy="{y_main}" r="{22 if is_head else 19}" fill="{fill}" stroke="#222" '
                    f'stroke-width="{4 if is_head else 1.5}"/>'
                    + _text(x, y_main + 4, node_label, 10, "middle", "bold")
                    + _text(x, y_main + 36, caption, 9, "middle", fill="#555") + "</g>")
        if is_head:
            body.append(f'<g class="head-badge"><rect x="{x + 26}" y="{y_main - 9}" width="40" height="18" rx="3" '
                        f'fill="#222"/>' + _text(x + 46, y_main + 4, "HEAD", 10, "middle", "bold", "#fff") + "</g>")
    history = data["history"]
    for _ci, (col, x) in enumerate(zip(cols, xs, strict=True)):
        for j, c in enumerate(col["candidates"]):
            y = y_first + j * row_h
            # The candidate forked from the protected tip serving its parent just before its window.
            fork = next((main_x[h] for h in sorted((k for k, xv in main_x.items() if xv < x), reverse=True)
                         if history[h]["generation"] == c["parent"]), x0 if c["parent"] is None else None)
            if fork is not None:
                body.append(f'<path class="fork" d="M{fork} {y_main + 20} C{fork} {y + 4} {x - 70} {y + 4} {x - 55} '
                            f'{y + 4}" fill="none" stroke="#999" stroke-width="1.5"/>')
            if c["promoted"] and col["main"] is not None:
                body.append(f'<line x1="{x}" y1="{y - 14}" x2="{x}" y2="{y_main + 20}" stroke="{COLOURS["PASS"]}" '
                            'stroke-width="3"/>')
            state = state_of(c["verdict"])
            score = f'score {fmt(c["composite"])}' if c["composite"] is not None else ""
            tip = f'{label(c)} {c["verdict"]}, parent {c["parent"] or "base"}'
            tip += f', failed: {", ".join(c["failed"])}' if c["failed"] else ""
            tip += f', reason: {c["reason"]}' if c["reason"] else ""
            tip += f', composite {fmt(c["composite"])}' if c["composite"] is not None else ""
            body.append(f'<g class="candidate {state}" data-candidate="{esc(label(c))}" '
                        f'data-generation="{esc(c["generation"])}"><title>{esc(tip)}</title>'
                        f'<rect x="{x - 55}" y="{y - 14}" width="110" height="36" rx="5" fill="{FILLS[state]}" '
                        f'stroke="{COLOURS[state]}" stroke-width="{3 if c["promoted"] else 1.5}"/>'
                        + _text(x, y + 1, f'{label(c)}  {c["verdict"]}', 11, "middle", "bold", COLOURS[state])
                        + _text(x, y + 15, short(", ".join(c["failed"]) or score, 20), 9, "middle", fill="#444")
                        + "</g>")
    return _svg(width, height, body, "lineage tree", "tree")


# ------------------------------------------------------------------ render: charts


def _axis(body, left, top, w, h, lo, hi, ticks=4, integer=False):
    for i in range(ticks + 1):
        v = lo + (hi - lo) * i / ticks
        y = top + h - h * i / ticks
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#eee"/>')
        body.append(_text(left - 6, y + 4, f"{v:.0f}" if integer else f"{v:.3g}", 9, "end", fill="#666"))
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#999"/>')
    body.append(f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#999"/>')


def render_metric_chart(data: dict, key: str, title: str, integer: bool) -> str:
    """One metric per candidate (filled: promoted), its parent value, and the threshold it was judged by."""
    cands = [c for c in data["candidates"] if c["metrics"] and finite(c["metrics"].get(key))]
    slot, left, top, h = 64, 48, 30, 150
    w = max(240, slot * len(cands))
    values = [c["metrics"][key] for c in cands]
    crit: list[Any] = [next((k for k in c["criteria"] if k.get("name") == key), None) for c in cands]
    thresholds = [k.get("threshold") if k and finite(k.get("threshold")) else None for k in crit]
    parents = [(c["metrics"]["parent"] or {}).get(key) for c in cands]
    everything = [v for v in values + thresholds + parents if finite(v)]
    if key in ("recall", "generalize"):
        lo, hi = 0.0, 1.0
    else:
        lo, hi = 0.0, max(everything + [0.1 if not integer else 4]) * 1.15
    y = lambda v: top + h - h * (v - lo) / ((hi - lo) or 1)  # noqa: E731
    body = [_text(left, 16, title, 12, weight="bold")]
    _axis(body, left, top, w, h, lo, hi, integer=integer)
    steps = []
    for i, (_c, t) in enumerate(zip(cands, thresholds, strict=True)):
        if t is None:
            continue
        x1, x2 = left + i * slot + 6, left + (i + 1) * slot - 6
        steps.append(f"M{x1:.1f} {y(t):.1f} H{x2:.1f}")
        body.append(_text(x2, y(t) - 3, f'{crit[i]["op"]} {fmt(t)}', 8, "end", fill=THRESHOLD))
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
        judged = crit[i] is None or crit[i].get("applicable", True)
        if finite(p):
            body.append(f'<rect x="{cx - 4:.1f}" y="{y(p) - 4:.1f}" width="8" height="8" fill="none" stroke="#999" '
                        f'transform="rotate(45 {cx:.1f} {y(p):.1f})"><title>parent {esc(fmt(p))}</title></rect>')
        fill = COLOURS[state] if c["promoted"] and judged else "#fff"
        tip = f"{label(c)} {title} {fmt(v)}"
        tip += f', threshold {crit[i]["op"]} {fmt(thresholds[i])}' if thresholds[i] is not None else ""
        tip += "" if judged else f' (not judged: {crit[i].get("note")})'
        body.append(f'<circle class="point {state}" data-candidate="{esc(label(c))}" cx="{cx:.1f}" cy="{y(v):.1f}" '
                    f'r="5" fill="{fill}" stroke="{COLOURS[state] if judged else "#999"}" stroke-width="2">'
                    f'<title>{esc(tip)}</title></circle>')
        body.append(_text(cx, top + h + 14, label(c), 9, "middle", fill="#444"))
    if not cands:
        body.append(_text(left + 10, top + h / 2, "no candidate has metrics yet", 11, fill="#888"))
    return _svg(left + w + 12, top + h + 24, body, f"{title} per candidate", f"metric-chart metric-{key}")


def render_delta_heatmap(data: dict) -> str:
    """Recall on each earlier delta per candidate: a forgotten era shows as a red cell, whatever the mean says."""
    cands = [c for c in data["candidates"] if c["metrics"]]
    deltas = sorted({d for c in cands for d in c["metrics"]["recall_by_delta"]})
    cell_w, cell_h, left, top = 74, 30, 130, 34
    body = [_text(4, 14, "recall per delta (cell: child; below: change from parent)", 12, weight="bold")]
    for i, c in enumerate(cands):
        body.append(_text(left + i * cell_w + cell_w / 2, top - 6, label(c), 10, "middle", fill="#444"))
    for r, d in enumerate(deltas):
        y = top + r * cell_h
        body.append(_text(left - 6, y + cell_h / 2 + 4, short(d, 20), 10, "end", fill="#444"))
        for i, c in enumerate(cands):
            x = left + i * cell_w
            v = c["metrics"]["recall_by_delta"].get(d)
            pv = (c["metrics"]["parent"] or {}).get("recall_by_delta", {}).get(d)
            crit = next((k for k in c["criteria"] if k.get("name") == f"recall[{d}]"), None)
            failed = crit is not None and crit.get("applicable", True) and not crit.get("passed")
            if not finite(v):
                body.append(f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" fill="#f5f5f5"/>'
                            + _text(x + cell_w / 2, y + cell_h / 2 + 4, "–", 10, "middle", fill="#aaa"))
                continue
            hue = max(0.0, min(1.0, v)) * 120
            change = f"{v - pv:+.2f}" if finite(pv) else "new"
            body.append(f'<g class="delta-cell" data-candidate="{esc(label(c))}" data-delta="{esc(d)}">'
                        f'<title>{esc(label(c))} recall on {esc(d)}: {esc(fmt(v))}'
                        f'{esc(", parent " + fmt(pv)) if finite(pv) else ""}{" (FAILED)" if failed else ""}</title>'
                        f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                        f'fill="hsl({hue:.0f},55%,72%)" stroke="{COLOURS["FAIL"] if failed else "none"}" '
                        f'stroke-width="3"/>' + _text(x + cell_w / 2, y + 13, f"{v:.2f}", 10, "middle", "bold")
                        + _text(x + cell_w / 2, y + 25, change, 8, "middle", fill="#333") + "</g>")
    if not deltas:
        body.append(_text(left, top + 20, "no per-delta recall recorded yet", 11, fill="#888"))
    return _svg(max(left + len(cands) * cell_w + 10, 420), top + max(len(deltas), 1) * cell_h + 10, body,
                "recall per delta", "delta-heatmap")


def render_loss_chart(data: dict) -> str:
    """Training loss per candidate (dashed: a run that did not complete)."""
    curves = [(c, c["loss_curve"]) for c in data["candidates"] if len(c["loss_curve"]) > 0]
    left, top, w, h = 48, 30, 520, 200
    body = [_text(left, 16, "training loss", 12, weight="bold")]
    if not curves:
        body.append(_text(left + 10, top + 40, "no loss curves recorded yet", 11, fill="#888"))
        return _svg(left + w + 170, top + 60, body, "training loss", "loss-chart")
    steps = [s for _, pts in curves for s, _ in pts]
    losses = [v for _, pts in curves for _, v in pts]
    s_hi = max(steps) or 1
    lo, hi = min(losses), max(losses)
    lo, hi = (lo - 0.5, hi + 0.5) if hi == lo else (lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05)
    _axis(body, left, top, w, h, lo, hi)
    body.append(_text(left + w, top + h + 24, f"step (max {s_hi:.0f})", 9, "end", fill="#666"))
    for i, (c, pts) in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        dashed = "" if c["budget_status"] == "COMPLETE" else ' stroke-dasharray="5 3"'
        points = " ".join(f"{left + w * s / s_hi:.1f},{top + h - h * (v - lo) / (hi - lo):.1f}" for s, v in pts)
        body.append(f'<polyline class="loss-curve" data-candidate="{esc(label(c))}" points="{points}" fill="none" '
                    f'stroke="{colour}" stroke-width="1.8"{dashed}><title>{esc(label(c))}: {len(pts)} points, '
                    f'final loss {esc(fmt(pts[-1][1]))}</title></polyline>')
        ly = top + 10 + i * 16
        body.append(f'<line x1="{left + w + 14}" y1="{ly}" x2="{left + w + 34}" y2="{ly}" stroke="{colour}" '
                    f'stroke-width="2"{dashed}/>' + _text(left + w + 40, ly + 4, f'{label(c)} ({c["verdict"]})', 10))
    return _svg(left + w + 170, max(top + h + 30, top + 20 + len(curves) * 16), body, "training loss", "loss-chart")


def render_budget(data: dict) -> str:
    """Budget used per candidate as a share of the limit it ran under; over the line is red."""
    cands = [c for c in data["candidates"] if any(finite(b["used"]) for b in c["budget"])]
    left, cell_w, row_h, top = 90, 150, 26, 34
    body = [_text(4, 14, "budget used (share of the policy limit the run was held to)", 12, weight="bold")]
    for k, (_, _, unit) in enumerate(BUDGET):
        body.append(_text(left + k * cell_w + 4, top - 8, unit, 10, fill="#444"))
    for r, c in enumerate(cands):
        y = top + r * row_h
        body.append(_text(left - 6, y + 15, label(c), 10, "end", fill=COLOURS[state_of(c["verdict"])]))
        for k, b in enumerate(c["budget"]):
            x, used, limit = left + k * cell_w + 4, b["used"], b["limit"]
            bar_w = cell_w - 14
            if not finite(used):
                body.append(_text(x, y + 15, "–", 10, fill="#aaa"))
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
                        + _text(x + 3, y + 16, f"{fmt(used)}" + (f" ({share:.0%})" if share is not None else ""), 9,
                                fill="#000") + "</g>")
    if not cands:
        body.append(_text(left, top + 20, "no budget usage recorded yet", 11, fill="#888"))
    return _svg(left + len(BUDGET) * cell_w + 10, top + max(len(cands), 1) * row_h + 8, body, "budget used", "budget")


# ------------------------------------------------------------------ render: the page
