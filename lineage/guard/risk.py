"""How risky a proposed promotion is, for `policy.autonomy: auto`: gather the diff, then judge it.

In guard because the arbiter (promote, the hook, the hub) applies it: a promotion needs no
approval when the replaced commit's policy says `autonomy: auto` and this rule says low.

low: data and weights (and sampling choices) only; medium: training params changed; high: the
policy or anything else (code, stages) changed; blocked: a secret in an added line.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from ..adapters import git
from ..core.safety import scan_secrets
from ..core.settings import OVERRIDES, merge_params

LOW_RISK_PARAMS = {"seed", "data.strategy", "data.replay_fraction"}
EVIDENCE_FILES = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md")


@dataclass(frozen=True)
class ChangedFile:
    """One changed path of a candidate, with the lines it adds (None when binary)."""

    path: str
    added: str | None


def gather(repo, old_id: str, new_id: str) -> tuple[list[ChangedFile], dict, dict]:
    """(changed files, params before, params after) of a candidate against the protected tip.

    Before: the tip's params.yaml, the store's settings (not the served generation's overrides);
    after: what the candidate trained with, its params.yaml with its overrides.yaml merged on top.
    """
    old, new = repo[old_id], repo[new_id]
    files = [ChangedFile(path, added) for path, added in git.added_text(repo, old, new)]
    before = yaml.safe_load(git.read_blob(repo, old, "params.yaml") or b"") or {}
    after = yaml.safe_load(git.read_blob(repo, new, "params.yaml") or b"") or {}
    overrides = yaml.safe_load(git.read_blob(repo, new, OVERRIDES) or b"") or {}
    return files, before, merge_params(after, overrides)


def judge(files: list[ChangedFile], before: dict, after: dict) -> tuple[str, list[str]]:
    """(level, reasons) from the changed files and the params on either side (pure)."""
    reasons, level = [], "low"
    params_seen = False
    for changed in files:
        path = changed.path
        if changed.added is not None:
            found = scan_secrets(changed.added)
            if found:
                return "blocked", [f"secret in {path} ({found[0][0]})"]
        if path in ("params.yaml", OVERRIDES):
            if params_seen:
                continue
            params_seen = True
            if before.get("policy") != after.get("policy"):
                return "high", ["edits the policy"]
            flat_before, flat_after = flatten(before), flatten(after)
            moved = {k for k in set(flat_before) | set(flat_after) if flat_before.get(k) != flat_after.get(k)}
            params = sorted(moved - LOW_RISK_PARAMS)
            if params:
                level = "medium"
                reasons.append(f"training params changed: {', '.join(params)}")
        elif not (path in EVIDENCE_FILES or path.startswith("reports/") or path.startswith("data/")):
            return "high", [f"changes {path}"]
    return level, reasons or ["data and weights only"]


def classify_risk(repo, old_id: str, new_id: str) -> tuple[str, list[str]]:
    """low: data and weights (and sampling choices) only; medium: training params; high: anything else."""
    return judge(*gather(repo, old_id, new_id))


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested params as dotted keys."""
    out = {}
    for key, value in (d or {}).items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
