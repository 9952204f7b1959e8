"""What a move needs once the replaced commit's allowed_signers lists anyone: the signed half of the arbiter.

Pure, over ``evidence.SignedEvidence`` (gathered with every signature already checked by
ssh-keygen under the replaced commit's allowed_signers):

- a promotion: the arbiter's verdict, the newest one about exactly this commit under the replaced
  commit's rules (its weights digest, policy commit, exam and sealed exam), must be PASS; and,
  unless that commit's policy has ``autonomy: auto`` and the risk rule says low, an ``approve``
  attestation signed with the approve role;
- a rollback: a ``rollback`` attestation signed with the propose or approve role; the approve role
  when main rolled back away from the target before;
- an approved change: a ``change`` attestation signed with the approve role.

Every refusal is proven by a case in ``tests/data/moves``.
"""

from __future__ import annotations

import yaml

from ..core.errors import ArbiterRefusedError
from ..core.hashes import parse_hashes_csv, weights_digest
from ..core.policy import Policy
from .attest import short
from .evidence import SIGNERS_FILE, AttestationSeen, MoveEvidence, SignedEvidence, VerdictSeen
from .signers import ACTION_ROLES


class ApprovalMissingError(ArbiterRefusedError):
    """A promotion that lacks only a valid approval by an approver (promote signs it for an approver)."""


def judge_signatures(ev: MoveEvidence, kind: str, generation: str | None,
                     claims_failed: tuple[str, ...] = ()) -> str | None:
    """What signs a move the structure allows as kind, or None when no signature is required (pure).

    claims_failed: the criteria the candidate's own numbers fail under the replaced commit's policy;
    they never refuse what the arbiter passed, but with no verdict they are the first reason given.

    Raises:
        ArbiterRefusedError: a signature the replaced commit's allowed_signers requires is missing
            or wrong (ApprovalMissingError: only the approval is missing).
    """
    signed = ev.signed
    if signed is None or not signed.required or kind not in ("promotion", "rollback", "change"):
        return None
    if kind == "promotion":
        return _promotion(ev, signed, generation, claims_failed)
    if kind == "rollback":
        target = ev.trailers["Rollback-To"]
        att = _signed_by(ev, signed, "rollback", "Roll back with 'lineage rollback' under a key that holds the "
                                                 "propose or approve role.")
        if ev.target_withdrawn and att.role != "approve":
            raise ArbiterRefusedError(ev.ref, f"{target} was rolled back away from before: going back to it needs an "
                                              f"approver's signature, not {att.signer}'s {att.role} key",
                                      f"An approver runs 'lineage rollback --to {target} --reason …' with their key.")
        return f"rollback signed by {att.signer} ({att.role})"
    att = _signed_by(ev, signed, "change", "Change with 'lineage change' under a key that holds the approve role.")
    return f"change signed by {att.signer}"


def _signed_by(ev: MoveEvidence, signed: SignedEvidence, action: str, hint: str) -> AttestationSeen:
    """The newest attestation of action that verifies in a role allowed to sign it (an approver's first)."""
    assert ev.new is not None
    ref, new, roles = ev.ref, ev.new[:12], ACTION_ROLES[action]
    found = [a for a in signed.attestations if a.action == action]
    good = [a for a in found if a.problem is None and a.role in roles]
    if good:
        return next((a for a in reversed(good) if a.role == "approve"), good[-1])
    if verified := [a for a in found if a.problem is None]:
        raise ArbiterRefusedError(ref, f"the {action} attestation of {new} is signed by {verified[-1].signer}'s "
                                       f"{verified[-1].role} key; only a key with the {' or '.join(roles)} role "
                                       "may sign it", hint)
    if found:
        raise ArbiterRefusedError(ref, f"the {action} attestation of {new} does not verify: {found[-1].problem}",
                                  hint)
    raise ArbiterRefusedError(ref, f"{SIGNERS_FILE} on {ev.protected} requires a signed {action} attestation and "
                                   f"the evolution log has none for {new}", hint)


def _promotion(ev: MoveEvidence, signed: SignedEvidence, generation: str | None,
               claims_failed: tuple[str, ...] = ()) -> str:
    """An arbiter's PASS about exactly this commit under the replaced commit's rules, and an approval."""
    assert ev.new is not None and ev.old is not None
    ref, new, old = ev.ref, ev.new[:12], ev.old[:12]
    evaluate = f"'lineage arbiter evaluate {signed.candidate or ev.new}'"
    passed, first = None, None
    for found in signed.verdicts:  # newest first: the arbiter's latest word under these rules decides
        try:
            _bind_verdict(ev, signed, found, evaluate)
        except ArbiterRefusedError as exc:
            first = first or exc
            continue
        if found.verdict != "PASS":
            raise ArbiterRefusedError(ref, f"the arbiter's verdict on {new} is {found.verdict}: "
                                           f"{'; '.join(found.reasons) or 'no reason given'}",
                                      "The arbiter's own numbers decide: train a better candidate.")
        passed = found
        break
    if passed is None:
        if first is not None:
            raise first
        if claims_failed:
            raise ArbiterRefusedError(ref, f"{generation} fails the gate under {ev.protected}'s policy: "
                                           f"{', '.join(claims_failed)} (by its own numbers; and no arbiter "
                                           f"verdict for {new} under the policy of {old})",
                                      "Train a better candidate.")
        raise ArbiterRefusedError(ref, f"no arbiter verdict for {new} under the policy of {old}: run {evaluate} "
                                       "as the arbiter",
                                  "The proposer's metrics are a claim; a promotion needs the arbiter's signed "
                                  "verdict (pushed to the hub by 'lineage arbiter watch').")
    policy = Policy.from_params(yaml.safe_load(ev.old_files.get("params.yaml") or "") or {})
    if policy.autonomy == "auto" and signed.risk == "low":
        return f"verdict PASS by {passed.arbiter}; no approval needed (autonomy auto, low risk)"
    why = f"autonomy {policy.autonomy}" if policy.autonomy != "auto" else \
        f"{signed.risk} risk: {'; '.join(signed.risk_reasons)}"
    # Every refusal here is ApprovalMissingError: an approver's own `lineage promote` signs what is missing.
    approvals = [a for a in signed.attestations if a.action == "approve"]
    if good := [a for a in approvals if a.problem is None and a.role == "approve"]:
        return f"verdict PASS by {passed.arbiter}; approved by {good[-1].signer}"
    hint = "An approver runs 'lineage proposal approve' (or 'lineage promote CANDIDATE') with their own key."
    if verified := [a for a in approvals if a.problem is None]:
        raise ApprovalMissingError(ref, f"the approve attestation of {new} is signed by {verified[-1].signer}'s "
                                        f"{verified[-1].role} key; only a key with the approve role may sign it", hint)
    if approvals:
        raise ApprovalMissingError(ref, f"the approve attestation of {new} does not verify: "
                                        f"{approvals[-1].problem}", hint)
    raise ApprovalMissingError(ref, f"no approval of {generation} ({new}) by an approver ({why}): an approver runs "
                                    f"'lineage proposal approve' or 'lineage promote {signed.candidate or ev.new}' "
                                    "with their key")


def _bind_verdict(ev: MoveEvidence, signed: SignedEvidence, found: VerdictSeen, evaluate: str) -> None:
    """Refuse a verdict that is not the arbiter's about exactly this commit under the replaced commit's rules."""
    assert ev.new is not None and ev.old is not None
    ref, new = ev.ref, ev.new[:12]
    if found.problem is not None:
        raise ArbiterRefusedError(ref, f"the verdict on {new} does not verify under {ev.protected}'s {SIGNERS_FILE}: "
                                       f"{found.problem}", "Only a key with the arbiter role signs verdicts.")
    if found.commit != ev.new:
        raise ArbiterRefusedError(ref, f"the verdict is about {short(found.commit)}, not {new}: run {evaluate} as "
                                       "the arbiter")
    weights = _weights_of(ev)
    if found.weights != weights:
        raise ArbiterRefusedError(ref, f"the verdict on {new} binds weights {short(found.weights)}, but the commit's "
                                       f"reports/train/hashes.csv gives {short(weights)}: run {evaluate} as the "
                                       "arbiter")
    if found.policy_commit != ev.old:
        raise ArbiterRefusedError(ref, f"the verdict on {new} was judged under the policy of "
                                       f"{short(found.policy_commit)}, not of {ev.old[:12]} ({ev.protected}'s tip): "
                                       f"run {evaluate} again as the arbiter")
    if found.exam != signed.exam:
        raise ArbiterRefusedError(ref, f"the verdict on {new} used exam {short(found.exam)}, but {ev.protected}'s "
                                       f"exam is {short(signed.exam)}: run {evaluate} again as the arbiter")
    if found.sealed_exam != signed.sealed_exam:
        raise ArbiterRefusedError(ref, f"the verdict on {new} used sealed exam {short(found.sealed_exam)}, but "
                                       f"{ev.protected} pins {short(signed.sealed_exam)} (rotated or expired): "
                                       f"run {evaluate} again as the arbiter")


def _weights_of(ev: MoveEvidence) -> str | None:
    """core.hashes.weights_digest of the commit's hashes.csv rows (what a verdict binds), or None."""
    try:
        return weights_digest(parse_hashes_csv(ev.new_files.get("reports/train/hashes.csv") or ""))
    except (ValueError, KeyError, TypeError):
        return None
