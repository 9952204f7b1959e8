"""The loop's open proposal: shown to a person, approved (promoted through the arbiter) or rejected."""

from __future__ import annotations

import json

from ..core.canonical import write_json
from ..core.errors import LineageError, UsageError
from ..guard.attest import attest
from ..moves.promote import promote
from ..store import ledger
from .evolve import PROPOSAL


def proposal_show(store) -> dict:
    """The proposal the last window wrote.

    Raises:
        UsageError: there is none.
    """
    path = store.root / PROPOSAL
    if not path.exists():
        raise UsageError("there is no proposal", "Run 'lineage evolve' first.")
    proposal = json.loads(path.read_text())
    proposal["live_shadow"] = ledger.live_shadow(store.repo, proposal["commit"])
    return proposal


def proposal_decide(store, approve: bool, reason: str | None = None) -> dict:
    """Approve (promote through the arbiter, approval recorded) or reject (reason recorded).

    Raises:
        UsageError: the proposal is not open, or a rejection has no reason.
        LineageError: the proposal is blocked (a secret in its diff).
    """
    proposal = proposal_show(store)
    if proposal["status"] != "open":
        raise UsageError(f"the proposal for {proposal['candidate']} is already {proposal['status']}",
                         "Run 'lineage evolve' for a new one.")
    if proposal.get("risk") == "blocked" and approve:
        raise LineageError(f"{proposal['candidate']} is blocked: {'; '.join(proposal['risk_reasons'])}",
                           "Remove the secret and train a new candidate.")
    if approve:
        who = store.person()
        # with a signing key the approval is signed, and refused if allowed_signers does not let it approve
        signed = attest(store, proposal["commit"], "approve", approved_by=who)
        ledger.append(store, "APPROVE", proposal["window"], {"candidate": proposal["candidate"], "approver": who,
                                                             "signed_by": signed.payload["key"] if signed else None})
        promote(store, proposal["candidate"], approved_by=who, cycle=proposal.get("cycle"))
        proposal["status"] = "promoted"
    else:
        if not reason:
            raise UsageError("a rejection needs a reason", "Pass --reason TEXT.")
        ledger.append(store, "REJECT", proposal["window"], {"candidate": proposal["candidate"], "reason": reason,
                                                             "by": "person"})
        proposal["status"] = "rejected"
        proposal["reason"] = reason
    proposal.pop("live_shadow", None)
    write_json(store.root / PROPOSAL, proposal)
    return proposal
