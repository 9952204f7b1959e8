"""Burn-in after every promotion: the served weights load and keep the smoke probes.

Always: every weights file of the served generation is safetensors by content (header checked,
O(1) in size). When the served commit holds `exam/burnin.jsonl` (smoke probes: a prompt and a
rule, as law items are written; stores made before the exam moved to main: `data/burnin.jsonl`),
the model is loaded and must answer each without breaking its rule. A failure makes `promote`
roll back by itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..adapters import git
from ..core.errors import LineageError, MalformedDataError
from ..core.exam import exam_path, parse_items
from ..core.safety import check_weights_dir

SMOKE = exam_path("burnin")
LEGACY_SMOKE = "data/burnin.jsonl"


def smoke_probes(root: Path) -> list[dict[str, Any]]:
    """The smoke probes the served commit (the protected tip) holds; empty when it holds none.

    Raises:
        MalformedDataError: a smoke probe file has a bad line (named).
    """
    repo = git.open_repo(root)
    tip = git.tip(repo, git.protected_branch(repo))
    blob = git.read_blob(repo, tip, SMOKE)
    if blob is not None:
        return parse_items("burnin", blob.decode("utf-8"), SMOKE)
    legacy = git.read_blob(repo, tip, LEGACY_SMOKE)
    if legacy is None:
        return []
    probes = [json.loads(line) for line in legacy.decode("utf-8").splitlines() if line.strip()]
    return [p for p in probes if isinstance(p, dict) and isinstance(p.get("prompt"), str)]


def run_burn_in(root: Path) -> str | None:
    """Return why the burn-in failed, or None when the served model passed."""
    child = root / "models" / "child"
    try:
        if not list(child.glob("*.safetensors")):
            return "the served weights are missing from models/child"
        check_weights_dir(child)
    except LineageError as exc:
        return str(exc)
    try:
        probes = smoke_probes(root)
    except (MalformedDataError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"the smoke probes are unreadable: {exc}".splitlines()[0]
    if not probes:
        return None
    from ..adapters import evaluate, model  # torch: loaded only when there are probes to answer

    try:
        lm, tok = model.load(child)
    except Exception as exc:  # any load failure is a burn-in failure, not a crash
        return f"the served model does not load: {exc}".splitlines()[0]
    outputs = evaluate.greedy(lm, tok, [p["prompt"] for p in probes], 16, 16)
    for probe, output in zip(probes, outputs, strict=False):
        if not output.strip():
            return f"empty answer to {probe['prompt']!r}"
        why = evaluate.law_check(output, probe.get("rule") or {})
        if why:
            return f"smoke probe {probe['prompt']!r}: {why} (answer {output.strip()!r})"
    return None
