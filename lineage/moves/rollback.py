"""rollback: a forward commit on the protected branch restoring an earlier promoted generation."""

from __future__ import annotations

from dataclasses import dataclass

from ..adapters import dvc, git, git_trees
from ..core import faults
from ..core.errors import ArbiterRefusedError, IntegrityError, UsageError
from ..core.settings import OVERRIDES
from ..guard.arbiter import check_signed_move
from ..guard.attest import attest
from ..store import journal, refs, registry, transaction, waiting, weights
from ..store.locks import work_tree_lock

# What a rollback restores from the generation it names (evidence only, never code or policy): its
# record, with the -S overrides it trained with. params.yaml is not among them: promotions never
# change it (overrides.yaml holds a run's own), so it is what a person last approved.
RESTORED = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", "reports", OVERRIDES)


@dataclass(frozen=True)
class Rollback:
    """A forward commit on the protected branch restoring an earlier generation."""

    to: str
    frm: str | None
    commit: str
    reason: str


def rollback(store, reason: str, to: str | None = None, cycle: int | None = None) -> Rollback:
    """Restore a previously promoted generation as a new commit on the protected branch.

    Raises:
        UsageError: no reason, nothing earlier to go back to, or `to` is already served.
        ArbiterRefusedError: `to` was never promoted, or the branch moved meanwhile.
        IntegrityError: the target's weights are neither cached nor in the DVC remote.
    """
    if not reason or not reason.strip():
        raise UsageError("a rollback needs a reason", "Pass --reason TEXT.")
    transaction.require_clean(store)
    done = journal.finished("rollback", reason=reason, to=to)
    if done is not None:
        return done  # this very command was killed and recovery has just finished it
    repo, root = store.repo, store.root
    tip = store.tip()
    current = refs.served_generation(tip) if tip else None
    promoted: list = []  # (generation, commit) along the first-parent history, newest first
    served: list[str] = []  # generations main served, newest first, rollbacks included
    for commit in git.first_parent_history(repo, tip.id):
        info = git.trailers(commit.message)
        gen = info.get("Generation")
        if served_here := info.get("Rollback-To") or gen:
            served.append(served_here)
        if gen and "Rollback-To" not in info and not any(g == gen for g, _ in promoted):
            promoted.append((gen, commit))
    if to is None:
        # the generation served just before the current one
        earlier = [g for g in served if g != current]
        if not earlier:
            raise UsageError("there is no earlier promoted generation to roll back to")
        to = earlier[0]
    target = dict(promoted).get(to)
    if target is None:
        raise ArbiterRefusedError(store.protected_ref, f"{to} was never promoted on {store.protected}",
                                  "Roll back only to a generation listed as promoted by 'lineage log'.")
    if to == current:
        raise UsageError(f"{to} is already the served generation")
    try:  # the target's weights, not the work tree's
        weights.ensure_cached(root, target, weights.child_md5(repo, target), f"{to} weights")
    except IntegrityError:
        raise IntegrityError(f"{to} weights", "not in the local cache nor the DVC remote; cannot restore") from None
    if not store.on_protected():
        git.checkout(root, store.protected)
    old = str(tip.id)
    with journal.operation(store, "rollback", protected=store.protected, old=old, to=to, frm=current, reason=reason,
                           cycle=cycle) as op:
        faults.point("rollback:journaled")
        # The restoring commit is built from trees, not the index: nothing moves until the transaction.
        message = (f"rollback: {current} -> {to}\n\n{reason.strip()}\n\n"
                   f"Rollback-From: {current}\nRollback-To: {to}\nReason: {' '.join(reason.split())}")
        commit = git.commit_tree(root, git_trees.tree_with(repo, tip, target, RESTORED), old, message, store.env())
        op.update(new=commit)
        faults.point("rollback:built")
        attest(store, commit, "rollback")  # signed and logged before anything moves
        check_signed_move(repo, old, commit, store.protected)  # the hook judges again; this says why, with a hint
        with work_tree_lock(store.git_dir, exclusive=True):
            try:
                # GTO: the prod stage goes back to the restored generation's version
                updates = [(store.protected_ref, commit, old), *registry.rollback_tags(store, to)]
                transaction.move_refs(store, updates, "ROLLBACK", to,
                                      {"from": current, "to": to, "reason": reason, "commit": commit, "cycle": cycle})
            except transaction.RefMovedError as exc:
                raise ArbiterRefusedError(store.protected_ref, f"the protected branch moved while rolling back "
                                          f"(now {str(exc.actual)[:12]})", "Run the rollback again.") from None
            op.update(durable=True)
            faults.point("rollback:moved")
            transaction.sync_work_tree(store, old, commit)
        dvc.checkout(root)
        waiting.restore(store)  # registered data waiting for a candidate stays
        faults.point("rollback:checked-out")
    return Rollback(to, current, commit, reason)
