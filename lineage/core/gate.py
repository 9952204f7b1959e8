"""The gate: a pure judgement of a candidate's metrics and budget against a policy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .canonical import canonical_json, digest_bytes
from .errors import PolicyError
from .metrics import BudgetUsed, EvalMetrics, ModelScores, read_json
from .policy import (
    Check,
    MetricsProblems,
    Policy,
    Problems,
    build,
    check_bool,
    check_int,
    check_map,
    check_number,
    check_str,
    describe,
    normalise,
    record_dict,
)

SCHEMA_VERSION = 1
REPORT_FILE = "reports/gate.json"
EPS = 1e-9  # so that 0.9 >= 0.9 - 0.0 survives float arithmetic
OPS = (">=", "<=", "==")
VERDICTS = ("PASS", "FAIL")
WEIGHTS = {"recall": 0.4, "generalize": 0.4, "voice": 0.2}
FIRST_GEN_VOICE = "first generation: no parent voice to keep"

Value = float | int | str | None


def _value(v: Any, f: str, p: Problems) -> Value:
    """A criterion's observed/threshold/parent: a finite number, a string or null."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise p.bad(f, f"expected a finite number, a string or null, got {describe(v)}")
    return v  # not coerced: an int stays an int, so reports round-trip byte for byte


@dataclass(frozen=True)
class Criterion:
    """One rule's outcome: observed `op` threshold, with the parent's value for context."""

    name: str
    observed: Value
    op: str
    threshold: Value
    parent: Value
    passed: bool
    applicable: bool = True
    note: str = ""

    _CHECKS: ClassVar[dict[str, Check]] = {
        "name": lambda v, f, p: _nonempty(v, f, p),
        "observed": _value,
        "op": lambda v, f, p: check_str(v, f, p, OPS),
        "threshold": _value,
        "parent": _value,
        "passed": check_bool,
        "applicable": check_bool,
        "note": check_str,
    }

    def __post_init__(self) -> None:
        normalise(self, "criterion", MetricsProblems(REPORT_FILE))

    @classmethod
    def from_dict(cls, d: Any, file: str = REPORT_FILE, where: str = "criterion") -> Criterion:
        """Build from a mapping; MetricsError names file and field."""
        return build(cls, d, where, MetricsProblems(file))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, every key present."""
        return record_dict(self)


def _nonempty(v: Any, f: str, p: Problems) -> str:
    name = check_str(v, f, p)
    if not name:
        raise p.bad(f, "must not be empty")
    return name


def _criteria(v: Any, f: str, p: Problems) -> tuple[Criterion, ...]:
    if not isinstance(v, (list, tuple)):
        raise p.bad(f, f"expected a list, got {describe(v)}")
    out = tuple(c if isinstance(c, Criterion) else build(Criterion, c, f"{f}[{i}]", p)
                for i, c in enumerate(v))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise p.bad(f, "criterion names repeat")
    return out


def _names(v: Any, f: str, p: Problems) -> tuple[str | None, ...]:
    if not isinstance(v, (list, tuple)):
        raise p.bad(f, f"expected a list, got {describe(v)}")
    return tuple(check_str(x, f"{f}[{i}]", p) for i, x in enumerate(v))


def _policy_source(v: Any, f: str, p: Problems) -> dict[str, Any]:
    base: dict[str, Any] = {"ref": None, "commit": None, "candidate_policy_differs": False}
    if not isinstance(v, dict):
        raise p.bad(f, f"expected a mapping, got {describe(v)}")
    for k in v:
        if k not in base:
            raise p.bad(f"{f}.{k}", f"unknown key (known: {', '.join(base)})")
    out = {**base, **v}
    check_str(out["ref"], f"{f}.ref", p, nullable=True)
    check_str(out["commit"], f"{f}.commit", p, nullable=True)
    check_bool(out["candidate_policy_differs"], f"{f}.candidate_policy_differs", p)
    return out


def _policy_dict(v: Any, f: str, p: Problems) -> dict[str, Any]:
    # Stored normalised (every key present) so a report's policy digest equals Policy.digest().
    try:
        return (v if isinstance(v, Policy) else Policy.from_dict(v, where=f)).to_dict()
    except PolicyError as e:
        raise p.bad(e.field, e.problem) from None


@dataclass(frozen=True, kw_only=True)
class GateReport:
    """The gate's verdict with every criterion, scores, hashes judged and the policy used."""

    schema_version: int = SCHEMA_VERSION
    verdict: str
    criteria: tuple[Criterion, ...]
    failed: tuple[str, ...]
    composite: float
    parent_composite: float
    hashes: dict[str, str] = field(default_factory=dict)
    policy_source: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any]  # required: a verdict means nothing without the rules it was judged by

    _CHECKS: ClassVar[dict[str, Check]] = {
        "schema_version": lambda v, f, p: _schema(v, f, p),
        "verdict": lambda v, f, p: check_str(v, f, p, VERDICTS),
        "criteria": _criteria,
        "failed": _names,
        "composite": lambda v, f, p: check_number(v, f, p),
        "parent_composite": lambda v, f, p: check_number(v, f, p),
        "hashes": lambda v, f, p: check_map(v, f, p, check_str),
        "policy_source": _policy_source,
        "policy": _policy_dict,
    }

    def __post_init__(self) -> None:
        p = MetricsProblems(REPORT_FILE)
        normalise(self, "", p)
        self._consistent(p)

    def _consistent(self, p: Problems) -> None:
        # A report whose verdict does not follow from its own criteria is forged or broken.
        expected = tuple(c.name for c in self.criteria if c.applicable and not c.passed)
        if self.failed != expected:
            raise p.bad("failed", f"{list(self.failed)} does not match the criteria ({list(expected)})")
        if self.verdict != ("FAIL" if expected else "PASS"):
            raise p.bad("verdict", f"{self.verdict} contradicts the criteria")

    @classmethod
    def from_dict(cls, d: Any, file: str = REPORT_FILE) -> GateReport:
        """Build and validate a report dict; MetricsError on anything malformed."""
        p = MetricsProblems(file)
        return build(cls, d, "", p)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return record_dict(self)

    def canonical_bytes(self) -> bytes:
        """The bytes hashed for digest(): canonical JSON of to_dict()."""
        return canonical_json(self.to_dict())

    def digest(self) -> str:
        """'sha256:<hex>' of canonical_bytes()."""
        return digest_bytes(self.canonical_bytes())

    @property
    def passed(self) -> bool:
        """True when the verdict is PASS."""
        return self.verdict == "PASS"

    def criterion(self, name: str) -> Criterion:
        """The criterion with this name (KeyError if absent)."""
        for c in self.criteria:
            if c.name == name:
                return c
        raise KeyError(name)


def _schema(v: Any, f: str, p: Problems) -> int:
    version = check_int(v, f, p)
    if version != SCHEMA_VERSION:
        raise p.bad(f, f"unsupported schema_version {v}; this lineage reads {SCHEMA_VERSION}")
    return version


def load_gate_report(path: str | Path) -> GateReport:
    """Read and validate a gate report JSON file."""
    return GateReport.from_dict(read_json(path), file=str(path))


# --- judging ------------------------------------------------------------------------------


def composite(scores: ModelScores, tone_drift: float) -> float:
    """0.4·recall + 0.4·generalize + 0.2·(1 − tone_drift), rounded to 12 places."""
    w = WEIGHTS
    raw = w["recall"] * scores.recall + w["generalize"] * scores.generalize + w["voice"] * (1 - tone_drift)
    return round(raw, 12)  # strip float noise so equal inputs print and hash alike


def _clean(x: float) -> float:
    return round(x, 12)


def _at_least(name: str, observed: float, threshold: float, parent: Value, note: str = "") -> Criterion:
    return Criterion(name, observed, ">=", threshold, parent, observed >= threshold - EPS, True, note)


def _at_most(name: str, observed: float, threshold: float, parent: Value = None, note: str = "") -> Criterion:
    return Criterion(name, observed, "<=", threshold, parent, observed <= threshold + EPS, True, note)


def _unit_threshold(x: float) -> tuple[float, str]:
    # A parent at 0.99 with δ=0.02 would make the gate unpassable; cap at what a score can reach.
    if x > 1:
        return 1.0, "threshold capped at 1.0"
    return (0.0, "threshold floored at 0.0") if x < 0 else (_clean(x), "")


def _quality(policy: Policy, m: EvalMetrics) -> list[Criterion]:
    child, parent = m.child, m.parent
    out = []
    if m.parent_is_generation:
        t, cap = _unit_threshold(parent.recall - policy.recall_tolerance)
        out.append(_at_least("recall", child.recall, t, parent.recall,
                             _join(f"parent − ε ({policy.recall_tolerance:g})", cap)))
        # Per-delta: an average can hide one forgotten era, so every era the parent knew is checked.
        for delta in sorted(parent.recall_by_delta):
            pv = parent.recall_by_delta[delta]
            t = _clean(max(0.0, pv - policy.delta_recall_tolerance))
            has = delta in child.recall_by_delta
            out.append(_at_least(f"recall[{delta}]", child.recall_by_delta.get(delta, 0.0), t, pv,
                                 "" if has else "child has no score for this delta: counted as 0"))
        t, cap = _unit_threshold(parent.generalize + policy.generalize_gain)
        out.append(_at_least("generalize", child.generalize, t, parent.generalize,
                             _join(f"parent + δ ({policy.generalize_gain:g})", cap)))
        out.append(_at_most("tone_drift", m.tone_drift, policy.max_tone_drift))
    else:
        fg = policy.first_generation
        out.append(_at_least("recall", child.recall, fg.min_recall, parent.recall,
                             "first generation: absolute floor"))
        out.append(_at_least("generalize", child.generalize, fg.min_generalize, parent.generalize,
                             "first generation: absolute floor"))
        out.append(Criterion("tone_drift", m.tone_drift, "<=", policy.max_tone_drift, None,
                             True, False, FIRST_GEN_VOICE))
    out.append(_at_most("law_violations", child.law_violations, policy.max_law_violations,
                        parent.law_violations))
    if policy.min_shadow_parity is not None:
        if m.shadow_parity is None:
            # Fail closed: a policy that asks for shadow parity is not met by its absence.
            out.append(Criterion("shadow_parity", None, ">=", policy.min_shadow_parity, None,
                                 False, True, "policy requires shadow parity; eval did not measure it"))
        else:
            out.append(_at_least("shadow_parity", m.shadow_parity, policy.min_shadow_parity, None))
    return out


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _budget(policy: Policy, used: BudgetUsed) -> list[Criterion]:
    b = policy.budget
    out = [
        _at_most("budget.steps", used.steps, b.max_steps),
        _at_most("budget.tokens", used.tokens, b.max_tokens),
        _at_most("budget.wall_minutes", used.wall_minutes, b.max_wall_minutes),
        _at_most("budget.peak_memory_mb", used.peak_memory_mb, b.max_memory_mb),
        _at_most("budget.output_mb", used.output_mb, b.max_output_mb),
    ]
    ok = used.status == "COMPLETE"
    note = "" if ok else f"run {used.status}: {used.reason or 'no reason recorded'}"
    out.append(Criterion("budget.status", used.status, "==", "COMPLETE", None, ok, True, note))
    return out


def judge(policy: Policy, metrics: EvalMetrics, budget: BudgetUsed, *,
          hashes: dict[str, str] | None = None, policy_source: dict[str, Any] | None = None) -> GateReport:
    """Judge a candidate: pure and deterministic; PASS iff every applicable criterion passed."""
    criteria = tuple(_quality(policy, metrics) + _budget(policy, budget))
    failed = tuple(c.name for c in criteria if c.applicable and not c.passed)
    return GateReport(
        verdict="FAIL" if failed else "PASS",
        criteria=criteria,
        failed=failed,
        composite=composite(metrics.child, metrics.tone_drift),
        parent_composite=composite(metrics.parent, 0.0),
        hashes=dict(hashes or {}),
        policy_source=dict(policy_source or {}),
        policy=policy.to_dict(),
    )
