"""How risky a proposal is: the rule lives in guard/risk.py, where the arbiter applies it too."""

from __future__ import annotations

from ..guard.risk import EVIDENCE_FILES, LOW_RISK_PARAMS, ChangedFile, classify_risk, flatten, gather, judge

__all__ = ["EVIDENCE_FILES", "LOW_RISK_PARAMS", "ChangedFile", "classify_risk", "flatten", "gather", "judge"]
