"""The HTML lineage report: gather the store's record into plain data, render one self-contained page.

`gather` reads only what the store recorded: frozen candidate tags, each candidate's committed
evidence (gate report, metrics, budget used, loss curve, model card), the protected branch's
first-parent history (promotions and rollbacks) and the evolution log. `render` turns that data
into one HTML file with hand-written inline SVG: no script, no network, no external font, and every
string from the store escaped. Same record, same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .errors import UsageError
from .report_svg import (BUDGET, METRICS, _e, _finite, _fmt, _label, _short, _state, render_budget,
                         render_delta_heatmap, render_loss_chart, render_metric_chart, render_tree)

SCHEMA_VERSION = 1
DEFAULT_OUT = Path(".lineage") / "report.html"  # git-ignored in every store: the tree stays clean
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
EVENTS_SHOWN = 300


# ------------------------------------------------------------------ gather


def _own_blob(repo, commit, path: str) -> bytes | None:
    """path's bytes in commit, unless inherited unchanged from its first parent (not this run's evidence)."""
    try:
        entry = commit.tree[path]
    except KeyError:
        return None
    if commit.parents:
        try:
            if commit.parents[0].tree[path].id == entry.id:
                return None
        except KeyError:
            pass
    obj = repo[entry.id]
    return obj.data if obj.type_str == "blob" else None


def _own_json(repo, commit, path: str):
    blob = _own_blob(repo, commit, path)
    if blob is None:
        return None
    try:
        return json.loads(blob)
    except ValueError:
        return None


def _policy_at(repo, commit) -> dict | None:
    """The policy in commit's params.yaml (what the gate and the budget read from the protected tip)."""
    import yaml

    from .adapters.git import read_blob
    from .errors import LineageError
    from .policy import Policy

    try:
        return Policy.from_params(yaml.safe_load(read_blob(repo, commit, "params.yaml") or b"")).to_dict()
    except (LineageError, yaml.YAMLError):
        return None


def _loss_curve(repo, commit, failure: dict | None) -> list:
    data = _own_json(repo, commit, "reports/train/loss_curve.json") or {}
    points = [(p.get("step"), p.get("loss")) for p in data.get("loss") or [] if isinstance(p, dict)]
    if not points and failure:
        points = [tuple(p[:2]) for p in failure.get("loss_curve") or [] if isinstance(p, list) and len(p) >= 2]
    return [[s, v] for s, v in points if _finite(s) and _finite(v)]


def _candidate(repo, row: dict, times: dict) -> dict:
    commit = repo[row["commit"]]
    gate = _own_json(repo, commit, "reports/gate.json")
    metrics = _own_json(repo, commit, "metrics.json")
    train = _own_json(repo, commit, "reports/train/metrics.json")
    failure = _own_json(repo, commit, "reports/train_failure.record.json")
    card = _own_blob(repo, commit, "MODEL_CARD.md")
    policy = (gate or {}).get("policy") or (_policy_at(repo, commit.parents[0]) if commit.parents else None)
    used = {k: (train or {}).get(k) for k, _, _ in BUDGET} if train else (failure or {}).get("budget_used") or {}
    limits = (policy or {}).get("budget") or {}
    budget = [{"name": k, "used": used.get(k), "limit": limits.get(lim), "unit": unit} for k, lim, unit in BUDGET]
    child, parent = (metrics or {}).get("child") or {}, (metrics or {}).get("parent") or {}
    scores = None
    if metrics:
        scores = {"recall": child.get("recall"), "generalize": child.get("generalize"),
                  "tone_drift": metrics.get("tone_drift"), "law_violations": child.get("law_violations"),
                  "recall_by_delta": child.get("recall_by_delta") or {},
                  "parent": {"recall": parent.get("recall"), "generalize": parent.get("generalize"),
                             "law_violations": parent.get("law_violations"),
                             "recall_by_delta": parent.get("recall_by_delta") or {}}}
    name = row.get("branch", "").split("/", 1)[-1]
    return {"generation": row.get("generation"), "name": name, "branch": row.get("branch"),
            "commit": row["commit"], "parent": row.get("parent"), "verdict": row.get("verdict"),
            "failed": list(row.get("failed") or []), "reason": row.get("reason"),
            "composite": row.get("composite"), "promoted": bool(row.get("promoted")), "head": bool(row.get("head")),
            "subject": commit.message.strip().splitlines()[0] if commit.message.strip() else "",
            "time": times.get(row.get("generation"), commit.commit_time),
            "metrics": scores, "criteria": list((gate or {}).get("criteria") or []),
            "budget": budget, "budget_status": (train or failure or {}).get("status"),
            "loss_curve": _loss_curve(repo, commit, failure), "card": card.decode("utf-8", "replace") if card else None}


def gather(store=".") -> dict:
    """Everything the report shows, read from the store's record, as plain JSON-ready data."""
    from . import ledger
    from .adapters import git
    from .api import find_store
    from .arbiter import _generation_of
    from .errors import IntegrityError
    from .promotion import frozen_candidates
    from .record import promoted_history

    root = find_store(store)
    repo = git.open_repo(root)
    protected = git.protected_branch(repo)
    tip = git.tip(repo, protected)
    problems = []
    try:
        events = ledger.read(root)
    except IntegrityError as exc:
        events, problems = [], [str(exc)]
    proposed, rolled = {}, {}
    for e in events:
        if e.event == "PROPOSE" and e.generation:
            proposed.setdefault(e.generation, e.timestamp)
        elif e.event == "ROLLBACK" and e.data.get("commit"):
            rolled[e.data["commit"]] = e.timestamp
    candidates = []
    for row in frozen_candidates(root):
        try:
            candidates.append(_candidate(repo, row, proposed))
        except (KeyError, ValueError, TypeError):
            problems.append(f"the frozen tag of {row.get('branch')!r} names a commit this store lacks: "
                            f"{row.get('commit')!r}")
    history = []
    for generation, commit, kind in promoted_history(repo, protected):
        info = git.trailers(commit.message)
        history.append({"generation": generation, "kind": kind, "commit": str(commit.id),
                        "from": info.get("Rollback-From"), "reason": info.get("Reason"),
                        "time": rolled.get(str(commit.id), commit.commit_time)})
    log_ref = repo.references.get(ledger.LOG_REF)
    return {"schema_version": SCHEMA_VERSION, "store": root.name, "protected_branch": protected,
            "head": {"generation": _generation_of(repo, tip) if tip else None, "commit": str(tip.id) if tip else None},
            "log_tip": str(log_ref.target) if log_ref is not None else None,
            "policy": _policy_at(repo, tip) if tip else None,
            "candidates": candidates, "history": history,
            "events": [e.to_dict() for e in events], "problems": problems}


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px} .charts{display:flex;flex-wrap:wrap;gap:18px} svg{background:#fff}
.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top} th{background:#f5f5f5} .PASS{color:#2e7d32} .FAIL{color:#c62828}
.ABORTED{color:#757575} pre{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:10px;font-size:12px}
details{margin:6px 0} summary{cursor:pointer;font-weight:600} .problem{color:#c62828;font-weight:600}
"""


def _when(ts) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if _finite(ts) else "–"


def _candidate_table(data: dict) -> str:
    rows = []
    for c in data["candidates"]:
        m = c["metrics"] or {}
        state = _state(c["verdict"])
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in (
            "HEAD" if c["head"] else "", _e(_label(c)), f'<span class="{state}">{_e(c["verdict"])}</span>',
            "yes" if c["promoted"] else "", _e(c["parent"] or "base"), _e(_fmt(c["composite"])),
            _e(_fmt(m.get("recall"))), _e(_fmt(m.get("generalize"))), _e(_fmt(m.get("tone_drift"))),
            _e(_fmt(m.get("law_violations"))), _e(", ".join(c["failed"])), _e(c["reason"] or ""),
            f'<code>{_e(c["commit"][:12])}</code>')) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("", "candidate", "verdict", "promoted", "parent", "score", "recall",
                                              "generalize", "tone drift", "law viol.", "failed", "reason", "commit"))
    return f"<table class=\"candidates\"><tr>{head}</tr>{''.join(rows)}</table>"


def _events_table(data: dict) -> str:
    events = data["events"][-EVENTS_SHOWN:]
    note = (f"<p class=\"meta\">the last {EVENTS_SHOWN} of {len(data['events'])} events; "
            "all of them: <code>lineage log --format jsonl</code></p>") if len(data["events"]) > EVENTS_SHOWN else ""
    rows = "".join(f"<tr><td>{_e(_when(e.get('timestamp')))}</td><td>{_e(e.get('event'))}</td>"
                   f"<td>{_e(e.get('generation') or '')}</td>"
                   f"<td><code>{_e(_short(json.dumps(e.get('data'), sort_keys=True), 240))}</code></td></tr>"
                   for e in events)
    return (note + "<table class=\"events\"><tr><th>time (UTC)</th><th>event</th><th>generation</th><th>data</th></tr>"
            + rows + "</table>") if events else "<p class=\"meta\">the evolution log is empty</p>"


def _cards(data: dict) -> str:
    out = []
    for c in data["candidates"]:
        if not c["card"]:
            continue
        opened = " open" if c["head"] else ""
        out.append(f'<details class="card" data-candidate="{_e(_label(c))}"{opened}><summary>{_e(_label(c))} '
                   f'<span class="{_state(c["verdict"])}">{_e(c["verdict"])}</span>'
                   f'{" — promoted" if c["promoted"] else ""}{" — HEAD" if c["head"] else ""}</summary>'
                   f"<pre>{_e(c['card'])}</pre></details>")
    return "".join(out) or "<p class=\"meta\">no model cards yet</p>"


def render(data: dict) -> str:
    """The whole report as one HTML document: inline CSS and SVG, no script, nothing fetched."""
    head = data["head"]
    policy = data.get("policy") or {}
    n_pass = sum(c["verdict"] == "PASS" for c in data["candidates"])
    rollbacks = sum(h["kind"] == "rollback" for h in data["history"])
    charts = "".join(render_metric_chart(data, k, t, i) for k, t, i in METRICS)
    policy_line = ", ".join(f"{k} {_fmt(policy.get(k))}" for k in
                            ("recall_tolerance", "generalize_gain", "max_tone_drift", "max_law_violations",
                             "delta_recall_tolerance")) if policy else "unreadable"
    problems = "".join(f'<p class="problem">{_e(p)}</p>' for p in data["problems"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>lineage report: {_e(data["store"])}</title><style>{CSS}</style></head>
<body>
<h1>lineage report: {_e(data["store"])}</h1>
<p class="meta">{_e(data["protected_branch"])} serves <b>{_e(head["generation"] or "no generation yet")}</b>
{f'(commit <code>{_e(head["commit"][:12])}</code>)' if head["commit"] else ""} ·
{len(data["candidates"])} candidates ({n_pass} PASS, {len(data["candidates"]) - n_pass} not) ·
{sum(h["kind"] == "promotion" for h in data["history"])} promotions · {rollbacks} rollbacks ·
{len(data["events"])} log events{f' (log <code>{_e(data["log_tip"][:12])}</code>)' if data["log_tip"] else ""}</p>
<p class="meta">policy on {_e(data["protected_branch"])}: {_e(policy_line)}</p>{problems}
<h2>Lineage tree</h2>
<p class="meta">columns are generations and rollbacks in the order they happened; the top line is
{_e(data["protected_branch"])}; a thick border marks a promoted candidate; hover for reasons.</p>
<div class="scroll">{render_tree(data)}</div>
<h2>Metrics across generations</h2>
<p class="meta">circles: the candidate (filled when promoted, grey when the criterion did not apply); diamonds: its
parent; dashed orange: the threshold its gate applied; green line: the served line.</p>
<div class="charts">{charts}</div>
<h2>Recall per delta</h2><div class="scroll">{render_delta_heatmap(data)}</div>
<h2>Training loss</h2><div class="scroll">{render_loss_chart(data)}</div>
<h2>Budget</h2><div class="scroll">{render_budget(data)}</div>
<h2>Candidates</h2><div class="scroll">{_candidate_table(data)}</div>
<h2>Model cards</h2>{_cards(data)}
<h2>Evolution log</h2><div class="scroll">{_events_table(data)}</div>
</body></html>
"""


# ------------------------------------------------------------------ writing, opening, screenshots


def write(data: dict, out: str | Path) -> Path:
    """Render data and write it to out (parents created); return the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path


def find_browser() -> str:
    """A headless-capable Chromium on PATH.

    Raises:
        UsageError: none is installed.
    """
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise UsageError(f"--png needs a headless Chromium, and none is on PATH (looked for {', '.join(BROWSERS)})",
                     "Install one (Debian/Ubuntu: apt-get install chromium; macOS: brew install --cask chromium), "
                     "or leave out --png.")


def browser_args(browser: str, profile: str) -> list[str]:
    # --no-sandbox: Chromium refuses to start as root or in most containers without it; the page it
    # opens is our own script-free file, and networking is off.
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-extensions", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}"]


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 1600,
               timeout: float = 120) -> Path:
    """Render html_path in headless Chromium and save the top width×height of the page as a PNG.

    Raises:
        UsageError: no Chromium on PATH.
        LineageError: Chromium ran but wrote no picture.
    """
    from .errors import LineageError

    browser = find_browser()
    png = Path(png_path).resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="lineage-chromium-") as profile:
        try:
            proc = subprocess.run(browser_args(browser, profile) + [
                f"--window-size={width},{height}", f"--screenshot={png}", Path(html_path).resolve().as_uri()],
                capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LineageError(f"{browser} took more than {timeout:.0f}s to take the screenshot",
                               "Run it again, or leave out --png.") from None
    if not png.exists() or png.stat().st_size == 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise LineageError(f"{browser} wrote no screenshot: {detail}",
                           "Check that it runs headless, or leave out --png.")
    return png


def open_in_browser(path: str | Path) -> bool:
    """Open the report in the desktop's browser; False where there is no display to show it on."""
    import sys
    import webbrowser

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False  # a console browser would take over the terminal; print the path instead
    return webbrowser.open(Path(path).resolve().as_uri())


def dirties_tree(root: str | Path, path: str | Path) -> bool:
    """True when path lies in root's work tree and git does not ignore it (propose would refuse the tree)."""
    from .adapters.git import git

    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return git(["check-ignore", "-q", "--", str(rel)], cwd=root, check=False).returncode != 0
