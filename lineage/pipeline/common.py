"""What every stage shares: store paths, the protected policy (from store.rules), the error boundary."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ..adapters import warm
from ..core.errors import LineageError
from ..store.rules import ProtectedPolicy, protected_policy

__all__ = ["ProtectedPolicy", "protected_policy", "run_stage", "log"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

log = logging.getLogger("lineage")

DELTAS = Path("data/deltas")
PREPARED = Path("data/prepared")
PROBES = PREPARED / "probes"
PARENT_DIR = Path("models/parent")
PARENT_INFO = Path("reports/parent.json")
CHILD_DIR = Path("models/child")
TRAIN_REPORTS = Path("reports/train")
TRAIN_FAILURE = Path("reports/train_failure.json")
METRICS = Path("metrics.json")
EVAL_REPORTS = Path("reports/eval")
GATE_REPORT = Path("reports/gate.json")
CHECKPOINTS = Path(".lineage/checkpoints")


def run_stage(main) -> int:
    """Run a stage function; turn a LineageError into one line and its exit code.

    With a warm server named in $LINEAGE_WARM (adapters/warm.py) the stage runs in a fork of it.
    """
    delegated = warm.delegate(sys.argv[0], sys.argv)
    if delegated is not None:
        return delegated
    logging.basicConfig(level=os.environ.get("LINEAGE_LOG", "INFO"), format="%(message)s", stream=sys.stderr)
    try:
        main()
        return 0
    except LineageError as exc:
        if os.environ.get("LINEAGE_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
