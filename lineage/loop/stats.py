"""How the loop is doing, from the evolution log alone."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..store import ledger


@dataclass(frozen=True)
class LoopStats:
    """Counts and rates of the evolution loop."""

    windows: int
    refused_windows: int
    proposals: int
    promoted: int
    rejected: int
    rejected_by: dict = field(default_factory=dict)
    rollbacks: int = 0
    promotion_success_rate: float | None = None
    regression_rate: float | None = None
    mean_cycles_to_revert: float | None = None
    mean_seconds_to_revert: float | None = None
    plateau: str | None = None


def stats(store) -> LoopStats:
    """Proposals made, promoted, rejected (by which gate), rollbacks, rates, and a plateau note."""
    events = ledger.read(store.repo)
    kinds = Counter(e.event for e in events)
    rejected_by: Counter = Counter()
    for e in events:
        if e.event == "REJECT":
            for name in e.data.get("failed") or [e.data.get("reason") or "person"]:
                rejected_by[str(name)] += 1
    commits = [e for e in events if e.event == "COMMIT"]
    rollbacks = [e for e in events if e.event == "ROLLBACK"]
    reverted, cycles, seconds = 0, [], []
    for c in commits:
        later = next((r for r in rollbacks if r.timestamp > c.timestamp and r.data.get("from") == c.generation), None)
        if later:
            reverted += 1
            seconds.append(later.timestamp - c.timestamp)
            if later.data.get("cycle") is not None and c.data.get("cycle") is not None:
                cycles.append(later.data["cycle"] - c.data["cycle"])
    proposals = kinds["PROPOSE"]
    gains = [e.data.get("improvement") for e in events if e.event == "PROPOSAL"]
    windows = [e for e in events if e.event == "WINDOW_CLOSE"]
    plateau = None
    recent = [w.data.get("outcome") for w in windows[-2:]]
    if len(recent) == 2 and all(o == "no-proposal" for o in recent):
        plateau = "two windows in a row brought no gain: stop and fix the data"
    elif len(gains) >= 2 and all(g is not None and g <= 0.005 for g in gains[-2:]):
        plateau = "the last two proposals gained almost nothing: stop and fix the data"
    return LoopStats(
        windows=kinds["WINDOW_OPEN"], refused_windows=kinds["WINDOW_REFUSED"], proposals=proposals,
        promoted=len(commits), rejected=kinds["REJECT"], rejected_by=dict(rejected_by), rollbacks=len(rollbacks),
        promotion_success_rate=round(len(commits) / proposals, 4) if proposals else None,
        regression_rate=round(reverted / len(commits), 4) if commits else None,
        mean_cycles_to_revert=round(sum(cycles) / len(cycles), 2) if cycles else None,
        mean_seconds_to_revert=round(sum(seconds) / len(seconds), 1) if seconds else None,
        plateau=plateau)
