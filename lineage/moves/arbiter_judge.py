"""The arbiter's judgement over what it measured (pure): claims, overlap, the sealed rule, the verdict.

``judge`` takes main's policy, the arbiter's own metrics, the candidate's claims and the overlap
found, and returns what failed and why. The gate itself is ``core.gate.judge`` on the arbiter's
numbers; the budget is the candidate's claim (the arbiter cannot re-run training), except the
output size, which the arbiter reads from the weights it checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core import sealed
from ..core.gate import GateReport
from ..core.gate import judge as gate_judge
from ..core.metrics import BudgetUsed, EvalMetrics
from ..core.overlap import TrainingIndex, checked_text
from ..core.policy import Policy

# (label, path into metrics.json, decimals) of every number a candidate claims and the arbiter measures
CLAIMED = (("recall", ("child", "recall"), 2), ("generalize", ("child", "generalize"), 2),
           ("parent recall", ("parent", "recall"), 2), ("parent generalize", ("parent", "generalize"), 2),
           ("tone_drift", ("tone_drift",), 4), ("shadow_parity", ("shadow_parity",), 2))
COUNTED = (("law_violations", ("child", "law_violations")), ("parent law_violations", ("parent", "law_violations")))
SHOWN_OVERLAPS = 3


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def divergences(claimed: Any, measured: dict[str, Any], tolerance: float) -> list[str]:
    """Every claimed number further than tolerance from the arbiter's, named: 'claimed recall 1.00, measured 0.42'.

    Counts (law violations) must agree exactly; per-delta recall is compared delta by delta.
    """
    if not isinstance(claimed, dict):
        return ["the candidate claims no readable metrics.json"]
    out: list[str] = []
    for label, path, places in CLAIMED:
        said, got = _number(_get(claimed, path)), _number(_get(measured, path))
        if said is None and got is None:
            continue
        if said is None or got is None or abs(said - got) > tolerance + 1e-9:
            out.append(f"claimed {label} {_show(said, places)}, measured {_show(got, places)}")
    for label, path in COUNTED:
        said, got = _number(_get(claimed, path)), _number(_get(measured, path))
        if said != got:
            out.append(f"claimed {label} {_show(said, 0)}, measured {_show(got, 0)}")
    for who in ("child", "parent"):
        mine = _get(measured, (who, "recall_by_delta")) or {}
        theirs = _get(claimed, (who, "recall_by_delta"))
        theirs = theirs if isinstance(theirs, dict) else {}
        prefix = "" if who == "child" else "parent "
        for delta in sorted(set(mine) | set(theirs)):
            said, got = _number(theirs.get(delta)), _number(mine.get(delta))
            if said is None or got is None or abs(said - got) > tolerance + 1e-9:
                out.append(f"claimed {prefix}recall[{delta}] {_show(said, 2)}, measured {_show(got, 2)}")
    return out


def _show(value: float | None, places: int) -> str:
    return "none" if value is None else f"{value:.{places}f}"


def output_divergence(claimed_mb: float, measured_mb: float, tolerance: float) -> str | None:
    """The claimed output size against the checked weights' (tolerance relative, at least tolerance MB)."""
    if abs(claimed_mb - measured_mb) > tolerance * max(measured_mb, 1.0) + 1e-9:
        return f"claimed output_mb {claimed_mb:.3f}, measured {measured_mb:.3f}"
    return None


def overlaps(items: list[tuple[str, str, dict[str, Any]]], records: list[tuple[str, int, str]]) -> list[str]:
    """Each exam item (source, kind, item) that a new delta's training record overlaps, named with both sides."""
    if not items or not records:
        return []
    index = TrainingIndex(text for _, _, text in records)
    found = []
    for source, kind, item in items:
        text = checked_text(kind, item)
        if text is None:
            continue
        hit = index.find(text)
        if hit is not None:
            path, line, _ = records[hit.record]
            question = str(item.get("prompt") if kind == "generalize" else item.get("text"))
            found.append(f"{source} {kind} item {question.strip()[:60]!r} overlaps {path}:{line} ({hit.how()})")
    return found


@dataclass(frozen=True)
class Judgement:
    """The verdict the arbiter signs, with what failed and why."""

    verdict: str
    failed: list[str]
    reasons: list[str]
    report: GateReport
    gains: dict[str, float | None]
    divergences: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)


def _criterion_reason(c: Any) -> str:
    observed = "none" if c.observed is None else c.observed
    return f"{c.name}: {observed} {c.op} {c.threshold} failed" + (f" ({c.note})" if c.note else "")


def judge(policy: Policy, metrics: dict[str, Any], budget: dict[str, Any], output_mb: float, claimed: Any,
          sealed_scores: dict[str, Any] | None, overlap: list[str], hashes: dict[str, str],
          policy_source: dict[str, Any], unasked: list[str]) -> Judgement:
    """Judge a candidate on the arbiter's own numbers under main's policy (pure).

    budget: the candidate's reports/train/metrics.json (a claim), its output size replaced by the
    checked weights'; sealed_scores: the sealed generalize accuracies, None without a pinned sealed
    exam; unasked: new deltas the visible exam asks no generalize question about.
    """
    claimed_mb = _number(budget.get("output_mb"))
    used = BudgetUsed.from_dict({**budget, "output_mb": output_mb})
    report = gate_judge(policy, EvalMetrics.from_dict(metrics), used, hashes=hashes, policy_source=policy_source)
    failed = list(report.failed)
    reasons = [_criterion_reason(c) for c in report.criteria if c.applicable and not c.passed]
    child, parent = metrics["child"]["generalize"], metrics["parent"]["generalize"]
    gains: dict[str, float | None] = {"visible": round(child - parent, 6), "sealed": None,
                                      "margin": policy.sealed_margin}
    if sealed_scores is not None and sealed_scores.get("items"):
        visible, hidden = sealed.gains(child, parent, sealed_scores["child"], sealed_scores["parent"])
        gains["sealed"] = hidden
        why = sealed.sealed_rule(visible, hidden, policy.sealed_margin)
        if why:
            failed.append("sealed")
            reasons.append(why)
    named = divergences(claimed, metrics, policy.claim_tolerance)
    size = output_divergence(claimed_mb, output_mb, policy.claim_tolerance) if claimed_mb is not None else \
        "the candidate claims no output_mb"
    if size:
        named.append(size)
    if named:
        failed.append("claims")
        reasons.append(f"its claims diverge from what the arbiter measured: {'; '.join(named)}")
    if overlap:
        failed.append("overlap")
        shown = "; ".join(overlap[:SHOWN_OVERLAPS]) + (f" (and {len(overlap) - SHOWN_OVERLAPS} more)"
                                                        if len(overlap) > SHOWN_OVERLAPS else "")
        reasons.append(f"its new data holds the exam: {shown}")
    if unasked:
        failed.append("exam")
        reasons.append(f"the exam on main asks no generalize question about {', '.join(unasked)}")
    return Judgement("FAIL" if failed else "PASS", failed, reasons, report, gains, named, overlap)
