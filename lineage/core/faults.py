"""Named fault points: where a test may kill lineage with SIGKILL to prove the store converges.

``point(name)`` does nothing unless the environment variable ``LINEAGE_FAULT`` names that point
when lineage starts; then the process kills itself with SIGKILL right there, as a power cut or an
OOM kill would: no ``finally``, no ``atexit``, no flush. ``POINTS`` lists every point in the order
an operation reaches them; tests/test_faults.py kills at each in turn and a test checks the list
against the calls in the source.
"""

from __future__ import annotations

import os
import signal

# One entry per step boundary, in the order each operation reaches them.
POINTS = (
    # propose: fork, log, run, push data, commit, freeze, go home
    "propose:branched",
    "propose:logged",
    "propose:reproduced",
    "propose:pushed",
    "propose:committed",
    "propose:frozen",
    # promote: journal, arbiter, one ref transaction (branch + tag + log), work tree, burn-in
    "promote:journaled",
    "promote:verified",
    "promote:moved",
    "promote:checked-out",
    "promote:burned-in",
    # rollback: journal, the commit object, one ref transaction (branch + log), work tree
    "rollback:journaled",
    "rollback:built",
    "rollback:moved",
    "rollback:checked-out",
    # push to the hub: DVC data first, then refs
    "push:data-pushed",
    "push:refs-pushed",
)

_ARMED = os.environ.get("LINEAGE_FAULT") or None


def point(name: str) -> None:
    """Die here with SIGKILL when LINEAGE_FAULT names this point; otherwise return at once."""
    if _ARMED is not None and _ARMED == name:
        os.kill(os.getpid(), signal.SIGKILL)
