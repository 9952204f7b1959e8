"""The report's lineage tree: generations and rollbacks as columns, the protected branch on top.

A pure function of the data `report.gather` returns; every string from the store is escaped. The
tree wraps into bands of at most `PER_BAND` columns and scales down to the page's width, so it
fits its picture however long the record. Every node links to its attempt's section on the page.
"""

from __future__ import annotations

from .report_svg import COLOURS, FILLS, anchor, esc, figure, fmt, label, short, state_of, text

PER_BAND = 8  # columns per band: eight fit a 1280-pixel page; more wrap into the next band
X0, STEP, ROW_H = 50, 140, 54  # the base's x, the distance between columns, between candidate rows
MAIN_Y, FIRST_Y, BAND_GAP = 96, 176, 18  # within a band: the main line, the first candidate row
HALO = ' paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round"'  # legible over lines


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


def _link(c: dict | None, inner: str) -> str:
    """inner as a link to c's section on the page (no link without a candidate)."""
    return f'<a href="#{esc(anchor(c))}">{inner}</a>' if c is not None else inner


def render_tree(data: dict) -> str:
    """Generations as columns, the protected branch on top, candidates below; HEAD and rollbacks marked."""
    cols = _columns(data)
    bands = [cols[i:i + PER_BAND] for i in range(0, len(cols), PER_BAND)] or [[]]
    band_of, x_of, tops, top = {}, {}, [], 0
    for b, band in enumerate(bands):
        tops.append(top)
        for k, col in enumerate(band):
            band_of[id(col)], x_of[id(col)] = b, X0 + 110 + k * STEP
        top += FIRST_Y + max([len(col["candidates"]) for col in band] + [1]) * ROW_H + 10 + BAND_GAP
    width, height = X0 + 110 + min(len(cols), PER_BAND) * STEP, top - BAND_GAP
    history, last = data["history"], len(data["history"]) - 1
    # history index -> (column index, band, x) of its node on the main line
    main_at = {col["main"]["index"]: (n, band_of[id(col)], x_of[id(col)]) for n, col in enumerate(cols) if col["main"]}
    promoted = {c["generation"]: c for c in data["candidates"] if c["promoted"]}
    lines, arcs, forks, nodes, boxes = [], [], [], [], []
    for b, band in enumerate(bands):
        y_main = tops[b] + MAIN_Y
        xs = [x for _, bb, x in main_at.values() if bb == b]
        later = any(bb > b for _, bb, _ in main_at.values())
        end = X0 + 110 + (len(band) - 0.5) * STEP if later else max(xs, default=X0)
        lines.append(f'<line class="main-line" x1="{X0 - (0 if b == 0 else 20)}" y1="{y_main}" x2="{end}" '
                     f'y2="{y_main}" stroke="#555" stroke-width="3"/>')
        lines.append(text(X0 - 30, y_main - 22, data["protected_branch"] if b == 0 else f'… {data["protected_branch"]}',
                          12, weight="bold", extra=' class="main-label"'))
        if b == 0:
            lines.append(f'<circle class="base" cx="{X0}" cy="{y_main}" r="8" fill="#fff" stroke="#555" '
                         'stroke-width="2"/>' + text(X0, y_main + 26, "base", 10, "middle", fill="#555",
                                                     extra=' class="main-label"'))
    for n, col in enumerate(cols):
        b, x = band_of[id(col)], x_of[id(col)]
        y_main = tops[b] + MAIN_Y
        rows = max([len(c["candidates"]) for c in bands[b]] + [1])
        if col["kind"] == "generation":
            nodes.append(text(x, tops[b] + FIRST_Y + rows * ROW_H + 6, col["key"], 11, "middle", "bold", "#444",
                              f' class="gen-label" data-generation="{esc(col["key"])}"'))
        h = col["main"]
        if h is not None:
            nodes.append(_main_node(data, h, x, y_main, h["index"] == last, promoted.get(h["generation"])))
            if h["kind"] == "rollback":
                back = next((main_at[j] for j in range(h["index"] - 1, -1, -1)
                             if history[j]["generation"] == h["generation"] and j in main_at), None)
                if back is not None:
                    # to the restored node, or to the band's start when it lies in a band above
                    target, end = (back[2], y_main - 20) if back[1] == b else (X0, y_main)
                    peak = y_main - 70
                    arcs.append(f'<path class="rollback-arc" d="M{x} {y_main - 20} C{x} {peak} {target} {peak} '
                                f'{target} {end}" fill="none" stroke="{COLOURS["FAIL"]}" stroke-width="2" '
                                'stroke-dasharray="6 4"/>')
        for j, c in enumerate(col["candidates"]):
            y = tops[b] + FIRST_Y + j * ROW_H
            # The candidate forked from the protected tip serving its parent just before its window.
            fork = next((main_at[k] for k in sorted((k for k, at in main_at.items() if at[0] < n), reverse=True)
                         if history[k]["generation"] == c["parent"]), None)
            if fork is not None or c["parent"] is None:
                # from the parent's node, or from the band's start when that node lies in a band above
                fx, fy = (fork[2], y_main + 20) if fork is not None and fork[1] == b else \
                    (X0, y_main + (8 if b == 0 else 0))
                forks.append(f'<path class="fork" d="M{fx} {fy} C{fx} {y + 4} {x - 70} {y + 4} {x - 55} {y + 4}" '
                             'fill="none" stroke="#999" stroke-width="1.5"/>')
            if c["promoted"] and h is not None:
                forks.append(f'<line class="promoted-link" x1="{x}" y1="{y - 14}" x2="{x}" y2="{y_main + 20}" '
                             f'stroke="{COLOURS["PASS"]}" stroke-width="3"/>')
            boxes.append(_link(c, _box(c, x, y)))
    # lines under nodes, nodes under boxes: nothing is drawn across a box or a node's label
    return figure(width, height, lines + arcs + forks + nodes + boxes, "lineage tree", "tree",
                  "max-width:100%;height:auto")


def _main_node(data: dict, h: dict, x: float, y: float, is_head: bool, attempt: dict | None) -> str:
    """A promotion or rollback on the protected branch, linked to the attempt it serves."""
    if h["kind"] == "rollback":
        node_label, fill, caption = f'↺ {h["generation"]}', "#fff3e0", ["rollback:", short(h["reason"], 22)]
    else:
        node_label, fill, caption = h["generation"], FILLS["PASS"], ["promoted"]
    tip = f'{h["kind"]} {h["generation"]} {h["commit"][:12]}'
    tip += (f' from {h["from"]}' if h["from"] else "") + (f': {h["reason"]}' if h["reason"] else "")
    node = (f'<g class="main-node {h["kind"]}{" head" if is_head else ""}" data-generation="{esc(h["generation"])}">'
            f'<title>{esc(tip)}</title><circle cx="{x}" cy="{y}" r="{22 if is_head else 19}" fill="{fill}" '
            f'stroke="#222" stroke-width="{4 if is_head else 1.5}"/>' + text(x, y + 4, node_label, 10, "middle", "bold")
            + "".join(text(x, y + 36 + 11 * k, line, 9, "middle", fill="#555", extra=HALO)
                      for k, line in enumerate(caption)) + "</g>")
    if is_head:
        node += (f'<g class="head-badge"><rect x="{x + 26}" y="{y - 9}" width="40" height="18" rx="3" fill="#222"/>'
                 + text(x + 46, y + 4, "HEAD", 10, "middle", "bold", "#fff") + "</g>")
    return _link(attempt, node)


def _box(c: dict, x: float, y: float) -> str:
    """A candidate's box: name, verdict, what failed or its score; a thick border when promoted."""
    state = state_of(c["verdict"])
    score = f'score {fmt(c["composite"])}' if c["composite"] is not None else ""
    tip = f'{label(c)} {c["verdict"]}, parent {c["parent"] or "base"}'
    tip += f', failed: {", ".join(c["failed"])}' if c["failed"] else ""
    tip += f', reason: {c["reason"]}' if c["reason"] else ""
    tip += f', composite {fmt(c["composite"])}' if c["composite"] is not None else ""
    return (f'<g class="candidate {state}" data-candidate="{esc(label(c))}" data-generation="{esc(c["generation"])}">'
            f'<title>{esc(tip)} (click: its card, reasons and diff)</title>'
            f'<rect x="{x - 55}" y="{y - 14}" width="110" height="36" rx="5" fill="{FILLS[state]}" '
            f'stroke="{COLOURS[state]}" stroke-width="{3 if c["promoted"] else 1.5}"/>'
            + text(x, y + 1, f'{label(c)}  {c["verdict"]}', 11, "middle", "bold", COLOURS[state])
            + text(x, y + 15, short(", ".join(c["failed"]) or score, 20), 9, "middle", fill="#444") + "</g>")
