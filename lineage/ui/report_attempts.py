"""The report's attempts: one closed section per candidate with its gate's reasons, its diff against its parent
and its model card.

A node of the tree links to its section's body by id (`report_svg.anchor`); following the link opens
the section (a browser expands a closed <details> around the target of a fragment), so the page
needs no script. Every string from the store is escaped.
"""

from __future__ import annotations

from .report_svg import anchor, esc, finite, fmt, label, state_of


def _result(passed, applicable) -> str:
    if applicable is False:
        return '<span class="ABORTED">n.a.</span>'
    if passed is None:
        return "–"
    return '<span class="PASS">pass</span>' if passed else '<span class="FAIL">FAIL</span>'


def _change(x) -> str:
    return f"{x:+.4g}" if finite(x) else "–"


def _table(head: list[str], rows: list[list[str]], css_class: str) -> str:
    """rows are markup already escaped."""
    return (f'<table class="{css_class}"><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows) + "</table>")


def _reasons(c: dict) -> str:
    failed = ", ".join(c["failed"])
    verdict = f'<span class="{state_of(c["verdict"])}">{esc(c["verdict"])}</span>'
    why = (f"failed {esc(failed)}" if failed else "every applicable criterion held" if c["verdict"] == "PASS"
           else "no criterion recorded")
    text = f'<p class="reasons">{verdict}: {why}{": " + esc(c["reason"]) if c["reason"] else ""}</p>'
    if not c["criteria"]:
        return text
    rows = [[esc(k.get("name")), esc(fmt(k.get("observed"))), esc(f'{k.get("op")} {fmt(k.get("threshold"))}'),
             esc(fmt(k.get("parent"))), _result(k.get("passed"), k.get("applicable")), esc(k.get("note") or "")]
            for k in c["criteria"]]
    return text + _table(["criterion", "observed", "rule", "parent", "", "note"], rows, "criteria")


def _diff(c: dict) -> str:
    d = c.get("diff")
    if d is None:
        return ('<p class="meta">trained from the base: no parent to compare with</p>' if c["parent"] is None
                else f'<p class="meta">its parent {esc(c["parent"])} is not in the record: nothing to compare</p>')
    a, b = d["a"], d["b"]
    rows = [[esc(k["name"]), esc(fmt(k["a"])), esc(fmt(k["b"])), esc(_change(k["change"])),
             esc("" if k["op"] is None else f'{k["op"]} {fmt(k["threshold"])}'), _result(k["passed"], k["applicable"])]
            for k in d["criteria"]]
    out = [f"<h4>against its parent {esc(a)}</h4>",
           _table(["criterion", a, b, "change", f"threshold ({b})", ""], rows, "diff")]
    if d.get("same_exam") is False:
        out.append(f'<p class="meta">{esc(a)} and {esc(b)} were judged on different probe sets: their generalize '
                   "scores are not the same exam</p>")
    ta, tb = d["training"]["a"], d["training"]["b"]
    out.append("<p>training: " + esc(", ".join(f"{k} {fmt(ta.get(k))} → {fmt(tb.get(k))}" for k in ta)) + "</p>")
    added = ", ".join(f"{x['delta']} ({x['records']} records)" for x in d["data_added"]) or "none"
    out.append(f"<p>data added: {esc(added)}</p>")
    params = "; ".join(f"{k} {v['a']} → {v['b']}" for k, v in d["params"].items()) or "none"
    out.append(f"<p>params changed: {esc(params)}</p>")
    out.append(f'<p class="meta">weights are not compared here: <code>lineage diff {esc(a)} {esc(b)}</code></p>')
    return "".join(out)


def _section(c: dict) -> str:
    opened = " open" if c["head"] else ""
    card = (f'<details class="card" data-candidate="{esc(label(c))}" open><summary>model card</summary>'
            f"<pre>{esc(c['card'])}</pre></details>") if c["card"] else \
        '<p class="meta">no model card: the run did not reach the gate</p>'
    return (f'<details class="attempt" data-candidate="{esc(label(c))}"{opened}><summary>{esc(label(c))} '
            f'<span class="{state_of(c["verdict"])}">{esc(c["verdict"])}</span>'
            f'{" — promoted" if c["promoted"] else ""}{" — HEAD" if c["head"] else ""}'
            f' <span class="meta">from {esc(c["parent"] or "the base")}</span></summary>'
            f'<div class="attempt-body" id="{esc(anchor(c))}">'
            f'<p class="meta">{esc(c["branch"])} · commit <code>{esc(c["commit"][:12])}</code> · '
            f'{esc(c["subject"])}</p>'
            f"{_reasons(c)}{_diff(c)}{card}</div></details>")


def render_attempts(data: dict) -> str:
    """Every attempt's section: its card, its gate's reasons and its diff against its parent; HEAD's open."""
    return "".join(_section(c) for c in data["candidates"]) or '<p class="meta">no attempts yet</p>'
