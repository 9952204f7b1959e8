"""Burn-in after every promotion: the served weights load and keep the smoke probes.

Always: every weights file of the served generation is safetensors by content (header checked,
O(1) in size). When the protected branch holds `data/burnin.jsonl` (smoke probes: a prompt and a
rule, as law probes are written), the model is loaded and must answer each without breaking its
rule. A failure makes `promote` roll back by itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import LineageError
from ..core.safety import check_weights_dir

SMOKE = Path("data/burnin.jsonl")


def run_burn_in(root: Path) -> str | None:
    """Return why the burn-in failed, or None when the served model passed."""
    child = root / "models" / "child"
    try:
        if not list(child.glob("*.safetensors")):
            return "the served weights are missing from models/child"
        check_weights_dir(child)
    except LineageError as exc:
        return str(exc)
    smoke = root / SMOKE
    if not smoke.exists():
        return None
    probes = [json.loads(line) for line in smoke.read_text().splitlines() if line.strip()]
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
