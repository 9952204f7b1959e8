"""The report's evolution log: one readable row per event, its raw JSON behind a disclosure.

Each event kind names the one or two fields a reader wants (a promotion: the commit and who
approved it; a rollback: from, to and why; a rejection: the failed criteria and the reason); the
whole record stays one click away. Every string from the store is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from .report_svg import esc, finite, fmt, label, short

EVENTS_SHOWN = 300


def _commit(value) -> str:
    return str(value)[:12] if value else "–"


def _candidate(d: dict) -> str:
    return str(d.get("candidate") or d.get("branch") or "").removeprefix("candidates/")


def _reason(d: dict) -> str:
    return f": {d['reason']}" if d.get("reason") else ""


def _failed(d: dict) -> str:
    return ", ".join(map(str, d.get("failed") or []))


def _verdict(d: dict) -> str:
    scores = ", ".join(f"{k} {fmt(d[k])}" for k in ("recall", "generalize", "tone_drift") if finite(d.get(k)))
    return f"{d.get('verdict')}" + (f" ({scores})" if scores else "")


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _attest(d: dict) -> str:
    payload = _as_dict(d.get("payload"))
    return (f"{payload.get('action')} of {_commit(payload.get('commit'))} by {payload.get('signer')}, "
            + ("signed" if d.get("signature") else "unsigned"))


def _shadow(d: dict) -> str:
    return (f"{_candidate(d) or '?'} parity {fmt(d.get('parity'))} over {fmt(d.get('samples'))} samples"
            + (f", {d['failures']} failures" if d.get("failures") else ""))


# event kind -> the one or two fields that matter, as a phrase
SUMMARIES: dict[str, Callable[[dict], str]] = {
    "PROPOSE": lambda d: f"{_candidate(d)} from {d.get('parent') or 'the base'}"
                         + (f" with {', '.join(map(str, d['overrides']))}" if d.get("overrides") else ""),
    "MANIFEST_FROZEN": lambda d: f"manifest {short(d.get('manifest'), 20)}",
    "TRAIN_START": lambda d: ", ".join(f"{k} {fmt(v)}" for k, v in sorted(d.items()) if not isinstance(v, dict)),
    "TRAIN_COMPLETE": lambda d: f"{fmt(d.get('steps'))} steps, {fmt(d.get('tokens'))} tokens, "
                                f"final loss {fmt(d.get('loss_final'))}",
    "BUDGET_EXCEEDED": lambda d: str(d.get("reason") or "over budget"),
    "EVAL_COMPLETE": _verdict,
    "ARBITER_VERIFY": lambda d: f"{_candidate(d)} {d.get('verdict')}{_reason(d)}",
    "COMMIT": lambda d: f"{d.get('ref') or 'main'} → {d.get('candidate') or _commit(d.get('new'))} "
                        f"(commit {_commit(d.get('new'))}, was {_commit(d.get('old'))})"
                        + (f", approved by {d['approved_by']}" if d.get("approved_by") else ""),
    "REJECT": lambda d: (f"{_candidate(d)} " if _candidate(d) else "")
                        + (f"failed {_failed(d)}" if _failed(d) else "rejected") + _reason(d),
    "ROLLBACK": lambda d: f"{d.get('from') or '?'} → {d.get('to') or '?'}{_reason(d)}",
    "APPROVE": lambda d: f"{_candidate(d) or _commit(d.get('commit'))} by {d.get('approver')}{_reason(d)}",
    "WINDOW_OPEN": lambda d: f"cycle {fmt(d.get('cycle'))}, {len(d.get('candidates') or [])} candidates",
    "WINDOW_REFUSED": lambda d: str(d.get("reason") or ""),
    "WINDOW_CLOSE": lambda d: f"cycle {fmt(d.get('cycle'))}: {d.get('outcome')}",
    "PROPOSAL": lambda d: f"{_candidate(d)}, improvement {fmt(d.get('improvement'))}, risk {d.get('risk')}",
    "BURN_IN": lambda d: ("passed" if d.get("passed") else "FAILED") + _reason(d),
    "ATTEST": _attest,
    "SHADOW": _shadow,
}


def summary(event: dict, names: dict[str, str] | None = None) -> str:
    """The one or two fields of an event that matter, as a short phrase (empty when it has none).

    names maps commits to candidate names: a promotion's event names the commit only.
    """
    data = _as_dict(event.get("data"))
    if event.get("event") == "COMMIT" and not data.get("candidate") and (names or {}).get(str(data.get("new"))):
        data = {**data, "candidate": (names or {})[str(data.get("new"))]}
    describe = SUMMARIES.get(str(event.get("event")))
    try:
        return short(describe(data), 160) if describe else ""
    except (AttributeError, KeyError, TypeError, ValueError):
        return ""  # a malformed record still shows, raw, behind its disclosure


def _when(ts) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if finite(ts) else "–"


def render_events(data: dict) -> str:
    """The evolution log as a table: time, event, generation, what happened; the raw JSON behind a disclosure."""
    events = data["events"][-EVENTS_SHOWN:]
    if not events:
        return "<p class=\"meta\">the evolution log is empty</p>"
    note = (f"<p class=\"meta\">the last {EVENTS_SHOWN} of {len(data['events'])} events; "
            "all of them: <code>lineage log --format jsonl</code></p>") if len(data["events"]) > EVENTS_SHOWN else ""
    names = {c["commit"]: label(c) for c in data["candidates"]}
    rows = "".join(
        f'<tr class="event"><td>{esc(_when(e.get("timestamp")))}</td><td>{esc(e.get("event"))}</td>'
        f"<td>{esc(e.get('generation') or '')}</td><td>{esc(summary(e, names))}</td>"
        f'<td><details class="raw"><summary>JSON</summary><pre>{esc(json.dumps(e, sort_keys=True, indent=1))}</pre>'
        "</details></td></tr>" for e in events)
    return (note + '<table class="events"><tr><th>time (UTC)</th><th>event</th><th>generation</th>'
            "<th>what happened</th><th>record</th></tr>" + rows + "</table>")
