"""promote: fast-forward the protected branch to a gated candidate, then check out and burn in.

In a store with signers the arbiter also requires the arbiter's signed verdict and (unless the
policy's autonomy allows) an approver's signed approval; promote signs nothing of its own, except
the approval when the configured key is an approver's and the approval is all that is missing.
The branch, the generation tag and the COMMIT event move in one ref transaction (compare-and-swap):
all or none. After the move the work tree follows, the weights are checked out and the burn-in
runs; a failed burn-in rolls back by itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..adapters import dvc, git, ssh
from ..core import faults
from ..core.errors import ArbiterRefusedError
from ..guard.arbiter import ApprovalMissingError, Decision, check_signed_move
from ..guard.attest import attest
from ..guard.signers import SIGNERS_FILE, roles_of, signing_key
from ..store import journal, ledger, refs, registry, transaction, waiting
from ..store.journal import Operation
from ..store.locks import work_tree_lock
from ..store.rules import protected_serve_settings
from .burnin import run_burn_in
from .rollback import rollback


@dataclass(frozen=True)
class Promotion:
    """A move of the protected branch."""

    generation: str
    kind: str
    old: str
    new: str
    composite: float | None = None


def promote(store, candidate: str, approved_by: str | None = None, cycle: int | None = None,
            burn_in: bool = True) -> Promotion:
    """Fast-forward the protected branch to a gated candidate (compare-and-swap), then check out.

    Raises:
        UsageError: no such candidate.
        ArbiterRefusedError: the arbiter refused the move, or another promotion won the race.
        DirtyTreeError: the work tree has changes of its own.
    """
    transaction.require_clean(store)
    repo = store.repo
    new = refs.candidate_commit(repo, candidate)
    old = str(store.tip().id)
    done = journal.finished("promote", new=new)
    if done is not None:
        return done  # this very command was killed and recovery has just finished it
    if new == old:
        return _record_plain_git_promotion(store, candidate, new, approved_by, cycle, burn_in)
    refusal = live_parity_refusal(store, candidate, new)
    if refusal:
        ledger.append(store, "ARBITER_VERIFY", refs.generation_of_name(candidate),
                      {"candidate": candidate, "commit": new, "verdict": "REFUSED", "reason": refusal})
        raise ArbiterRefusedError(store.protected_ref, refusal,
                                  f"Serve it as a shadow under live traffic first: lineage serve --shadow {candidate}")
    with journal.operation(store, "promote", candidate=candidate, protected=store.protected, old=old, new=new,
                           approved_by=approved_by, cycle=cycle, burn_in=burn_in) as op:
        faults.point("promote:journaled")
        planted = None
        try:
            decision = check_as_approver(store, old, new, approved_by)
            assert decision.generation is not None  # a move from the tip to a candidate names its generation
            tag = refs.generation_tag(decision.generation)
            planted = git.ref_commit(repo, f"refs/tags/{tag}")
            if planted is not None and planted != new:
                raise ArbiterRefusedError(
                    f"refs/tags/{tag}", f"already points at {planted[:12]}, not at the "
                    f"candidate {new[:12]}: a generation tag made outside 'lineage promote'",
                    f"Inspect it (git show {tag}); delete it locally (git tag -d {tag}) if the hub does not hold "
                    "it, then promote again.")
        except ArbiterRefusedError as exc:
            ledger.append(store, "ARBITER_VERIFY", refs.generation_of_name(candidate),
                          {"candidate": candidate, "commit": new, "verdict": "REFUSED", "reason": exc.reason})
            raise
        ledger.append(store, "ARBITER_VERIFY", decision.generation,
                      {"candidate": candidate, "commit": new, "verdict": "PASS", "composite": decision.composite})
        faults.point("promote:verified")
        updates: list[tuple[str, str, str | None]] = [(store.protected_ref, new, old)]
        if planted is None:
            message = json.dumps({"generation": decision.generation, "commit": new, "previous": old,
                                  "approved_by": approved_by})
            updates.append((f"refs/tags/{tag}", transaction.make_tag(store, tag, new, message), None))
        updates += registry.promotion_tags(store, decision.generation, new)  # GTO: version and prod stage
        with work_tree_lock(store.git_dir, exclusive=True):
            try:
                # compare-and-swap: git refuses if the tip moved since we read it (a racing promoter).
                transaction.move_refs(store, updates, "COMMIT", decision.generation,
                                      {"old": old, "new": new, "ref": store.protected, "approved_by": approved_by,
                                       "cycle": cycle})
            except transaction.RefMovedError as exc:
                raise ArbiterRefusedError(
                    store.protected_ref, f"the protected branch moved while promoting (now {str(exc.actual)[:12]})",
                    "Another promotion won; re-gate the candidate with 'lineage propose'.") from None
            op.update(durable=True, generation=decision.generation, kind=decision.kind, composite=decision.composite)
            faults.point("promote:moved")
            transaction.sync_work_tree(store, old, new)
        return finish_promote(store, op)


def live_parity_refusal(store, candidate: str, commit: str) -> str | None:
    """Why main's serve.min_live_samples / min_live_parity refuse the candidate, or None (also when unset).

    Checked by `lineage promote` (and so by proposal approve and autonomy), not by the hook: the
    evolution log is a record, not evidence the arbiter signs.
    """
    serve = protected_serve_settings(store.repo, store.protected)
    samples, need = serve["min_live_samples"], serve["min_live_parity"]
    if not samples:
        return None
    live = ledger.live_shadow(store.repo, commit)
    if live is None or live["samples"] < samples:
        return (f"{candidate} has {0 if live is None else live['samples']} live shadow answers in the log; "
                f"serve.min_live_samples asks for {samples}")
    if live["parity"] < need:
        return f"{candidate}'s live shadow parity {live['parity']} is below serve.min_live_parity {need}"
    return None


def check_as_approver(store, old: str, new: str, approved_by: str | None) -> Decision:
    """The arbiter's check of a promotion; an approver's configured key signs the approval it lacks.

    Raises:
        ArbiterRefusedError: the move is refused (ApprovalMissingError: no approver's key is configured).
    """
    try:
        return check_signed_move(store.repo, old, new, store.protected)
    except ApprovalMissingError:
        key = signing_key(store.root)
        signers = git.read_blob(store.repo, git.peel_commit(store.repo, old), SIGNERS_FILE)
        if key is None or "approve" not in roles_of(signers, ssh.public_key(key)):
            raise
    attest(store, new, "approve", approved_by or store.person())  # running promote with an approve key approves
    return check_signed_move(store.repo, old, new, store.protected)


def _record_plain_git_promotion(store, candidate: str, new: str, approved_by, cycle, burn_in: bool) -> Promotion:
    """The protected branch already holds the candidate: record what a plain git merge skipped.

    `git merge --ff-only` passes the hook's arbiter but writes no generation tag, no COMMIT event,
    no weights and no burn-in. Promoting the same candidate again adds them (once), after the
    arbiter has judged the move once more. lineage writes the tag and the event in one
    transaction, and tags travel with every clone, so a tagged generation is recorded already.
    """
    repo = store.repo
    commit = repo[new]
    parent = str(commit.parents[0].id) if commit.parents else None
    generation = refs.served_generation(commit)
    assert parent is not None and generation is not None  # the tip is a candidate: a generation on a parent
    tag = f"refs/tags/{refs.generation_tag(generation)}"
    if repo.references.get(tag) is not None:
        return Promotion(generation, "already-promoted", parent, new)
    decision = check_signed_move(repo, parent, new, store.protected)
    with journal.operation(store, "promote", candidate=candidate, protected=store.protected, old=parent, new=new,
                           approved_by=approved_by, cycle=cycle, burn_in=burn_in) as op:
        message = json.dumps({"generation": decision.generation, "commit": new, "previous": parent,
                              "approved_by": approved_by})
        updates: list[tuple[str, str, str | None]] = [
            (tag, transaction.make_tag(store, tag[len("refs/tags/"):], new, message), None)]
        updates += registry.promotion_tags(store, generation, new)
        transaction.move_refs(store, updates, "COMMIT", decision.generation,
                              {"old": parent, "new": new, "ref": store.protected, "approved_by": approved_by,
                               "cycle": cycle, "recorded_after": "a plain git move"})
        op.update(durable=True, generation=decision.generation, kind=decision.kind, composite=decision.composite)
        return finish_promote(store, op)


def finish_promote(store, op: Operation) -> Promotion:
    """After the move: work tree, weights, burn-in (rolling back on failure); also what recovery resumes."""
    d = op.data
    transaction.sync_work_tree(store, d["old"], d["new"])
    dvc.checkout(store.root)
    waiting.restore(store)  # registered data the promoted generation does not hold keeps waiting
    faults.point("promote:checked-out")
    generation = d["generation"]
    failure = None
    if d["burn_in"]:
        fresh = "burn_in_failure" not in d
        if fresh:
            op.update(burn_in_failure=run_burn_in(store.root), burn_in_logged=False)
        failure = d["burn_in_failure"]
        if not d["burn_in_logged"]:
            # resumed after a death between the append and the mark: the event may be there already
            if fresh or not any(e.event == "BURN_IN" and e.generation == generation and e.timestamp >= d["started"]
                                and not e.data.get("live")  # lineage serve's own burn-in is not this one
                                for e in ledger.read(store.repo)):
                ledger.append(store, "BURN_IN", generation, {"passed": failure is None, "reason": failure,
                                                             "cycle": d["cycle"]})
            op.update(burn_in_logged=True)
        faults.point("promote:burned-in")
        if failure:
            if git.rev_parse(store.root, store.protected_ref) == d["new"]:
                rollback(store, f"burn-in failed: {failure}", None, cycle=d["cycle"])
            return Promotion(generation, "rolled-back", d["old"], d["new"], d["composite"])
    return Promotion(generation, d["kind"], d["old"], d["new"], d["composite"])
