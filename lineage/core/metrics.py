"""What the eval stage measures (metrics.json) and what training used (train_metrics.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .errors import MetricsError
from .policy import (
    Check,
    MetricsProblems,
    Problems,
    build,
    check_bool,
    check_int,
    check_map,
    check_number,
    check_str,
    nested,
    normalise,
    record_dict,
)

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
BUDGET_FILE = "reports/train_metrics.json"
STATUSES = ("COMPLETE", "FAILED")
# Probe scores are fractions; numerical noise this close to [0, 1] is clamped, not refused.
SLACK = 1e-9


def _score(v: Any, f: str, p: Problems) -> float | None:
    return check_number(v, f, p, 0, 1, slack=SLACK)


def _nonneg(v: Any, f: str, p: Problems) -> float | None:
    return check_number(v, f, p, 0)


def _nonneg_int(v: Any, f: str, p: Problems) -> int:
    return check_int(v, f, p, 0)


def _diagnostic(v: Any, f: str, p: Problems) -> float | None:
    # loss/perplexity are shown, never judged: a diverged run's NaN must still be recorded.
    return check_number(v, f, p, finite=False, nullable=True)


def _schema(v: Any, f: str, p: Problems) -> int:
    version = check_int(v, f, p)
    if version != SCHEMA_VERSION:
        raise p.bad(f, f"unsupported schema_version {version}; this lineage reads {SCHEMA_VERSION}")
    return version


# Reading is lenient about extra keys: the eval stage may add diagnostics the gate ignores.
def _problems(file: str) -> MetricsProblems:
    return MetricsProblems(file, strict=False)


@dataclass(frozen=True, kw_only=True)
class ModelScores:
    """One model's probe scores (child or parent)."""

    recall: float
    generalize: float
    recall_by_delta: dict[str, float] = field(default_factory=dict)
    law_violations: int
    loss: float | None = None
    perplexity: float | None = None

    _CHECKS: ClassVar[dict[str, Check]] = {
        "recall": _score,
        "generalize": _score,
        "recall_by_delta": lambda v, f, p: check_map(v, f, p, _score),
        "law_violations": _nonneg_int,
        "loss": _diagnostic,
        "perplexity": _diagnostic,
    }

    def __post_init__(self) -> None:
        normalise(self, "", _problems(METRICS_FILE))

    @classmethod
    def from_dict(cls, d: Any, file: str = METRICS_FILE, where: str = "") -> ModelScores:
        """Build from a mapping; MetricsError names file and dotted field."""
        return build(cls, d, where, _problems(file))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, every key present."""
        return record_dict(self)


@dataclass(frozen=True, kw_only=True)
class EvalMetrics:
    """Everything the eval stage writes: child and parent scores, voice drift, timing."""

    schema_version: int = SCHEMA_VERSION
    child: ModelScores
    parent: ModelScores
    parent_is_generation: bool
    tone_drift: float
    eval_seconds: float | None = None
    # Optional: only judged when policy.min_shadow_parity is set.
    shadow_parity: float | None = None

    _CHECKS: ClassVar[dict[str, Check]] = {
        "schema_version": _schema,
        "child": nested(ModelScores),
        "parent": nested(ModelScores),
        "parent_is_generation": check_bool,
        "tone_drift": _score,
        "eval_seconds": lambda v, f, p: check_number(v, f, p, 0, nullable=True),
        "shadow_parity": lambda v, f, p: check_number(v, f, p, 0, 1, slack=SLACK, nullable=True),
    }

    def __post_init__(self) -> None:
        normalise(self, "", _problems(METRICS_FILE))

    @classmethod
    def from_dict(cls, d: Any, file: str = METRICS_FILE) -> EvalMetrics:
        """Build from metrics.json's dict; MetricsError names file and dotted field."""
        return build(cls, d, "", _problems(file))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in metrics.json's shape."""
        return record_dict(self)


@dataclass(frozen=True, kw_only=True)
class BudgetUsed:
    """What one training run consumed, and whether it completed."""

    steps: int
    tokens: int
    wall_minutes: float
    peak_memory_mb: float
    output_mb: float
    status: str
    reason: str | None = None

    _CHECKS: ClassVar[dict[str, Check]] = {
        "steps": _nonneg_int,
        "tokens": _nonneg_int,
        "wall_minutes": _nonneg,
        "peak_memory_mb": _nonneg,
        "output_mb": _nonneg,
        "status": lambda v, f, p: check_str(v, f, p, STATUSES),
        "reason": lambda v, f, p: check_str(v, f, p, nullable=True),
    }

    def __post_init__(self) -> None:
        normalise(self, "", _problems(BUDGET_FILE))

    @classmethod
    def from_dict(cls, d: Any, file: str = BUDGET_FILE) -> BudgetUsed:
        """Build from train_metrics.json's dict; MetricsError names file and field."""
        return build(cls, d, "", _problems(file))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, every key present."""
        return record_dict(self)


def read_json(path: str | Path) -> Any:
    """Load a JSON file; a missing or unparsable file is a MetricsError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MetricsError(str(path), "", "missing") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise MetricsError(str(path), "", f"not valid JSON: {e}") from None


def load_eval_metrics(path: str | Path) -> EvalMetrics:
    """Read and validate a metrics.json file."""
    return EvalMetrics.from_dict(read_json(path), file=str(path))


def load_budget_used(path: str | Path) -> BudgetUsed:
    """Read and validate a train_metrics.json file."""
    return BudgetUsed.from_dict(read_json(path), file=str(path))
