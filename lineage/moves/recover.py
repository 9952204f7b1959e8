"""Recovery of killed commands, and `lineage repair`.

``recover`` runs once at the api boundary before each mutating verb (and for `lineage repair`):
it clears stale ref locks, then finishes or undoes every command whose journal outlived it:

- propose: a run whose outputs were complete is pushed, committed and frozen as it would have
  been; an earlier death freezes the candidate as ABORTED (the record keeps every attempt). The
  work tree goes back to the protected branch with the registered data still pending.
- promote and rollback moved the protected branch, their tag and their log event in one ref
  transaction, so those three moved together or not at all. After the move, recovery finishes the
  rest: the work tree, ``dvc checkout``, the burn-in (and its rollback).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from ..adapters import dvc, git
from ..store import journal, ledger, protected_state, refs, transaction, waiting
from ..store.journal import Operation
from ..store.locks import clear_stale_locks, describe_locks
from .promote import Promotion, finish_promote
from .propose import finish_propose, proposal_of
from .rollback import Rollback

log = logging.getLogger("lineage")


def recover(store) -> list[str]:
    """Finish or undo every command that died in this store; clear stale ref locks. Return what was done."""
    notes = clear_stale_locks(store.root)
    for op in journal.dead_journals(store):
        try:
            note, result = RECOVER[op.data["op"]](store, op)
        except BaseException:
            op.release()
            raise
        op.done()
        if result is not None:
            journal.remember_finished(op.data, result)
        if note:
            notes.append(note)
            log.info("recovered: %s", note)
    protected_state.refresh(store)  # a killed move may have moved the branch with hooks off, or not at all
    return notes


def _recover_propose(store, op: Operation):
    root, d = store.root, op.data
    candidate = f"{d['generation']}-{d['name']}"
    branch_tip = git.rev_parse(root, f"refs/heads/{d['branch']}")
    tag = refs.frozen_tag(d["generation"], d["name"])
    if branch_tip is None:  # died before the branch existed: nothing was written
        return "", None
    on_candidate = git.current_branch(root) == d["branch"]
    if git.rev_parse(root, f"refs/tags/{tag}") is not None:  # frozen already: only the way home was left
        if not on_candidate:
            transaction.keep_pending(root, d.get("pending") or {})  # whoever went home (evolve) may have dropped it
            dvc.checkout(root)  # and may have left the candidate's weights in the work tree
            waiting.restore(store)
            return f"propose {candidate}: frozen before the interruption; registered data kept pending", \
                proposal_of(store, d)
        transaction.go_home(store, d.get("pending") or {}, branch_tip)
        return f"propose {candidate}: frozen before the interruption; back on {d['protected']}", proposal_of(store, d)
    if d.get("phase") == "reproduced" and (branch_tip != d["base"] or on_candidate):
        finish_propose(store, op)  # the run was complete: push, commit, freeze as it would have
        return (f"propose {candidate}: finished after an interruption (data pushed, committed, frozen)",
                proposal_of(store, d))
    if on_candidate or git.current_branch(root) != d["protected"]:
        transaction.go_home(store, d.get("pending") or {}, None)
    frozen = {"schema_version": 1, "generation": d["generation"], "branch": d["branch"], "commit": branch_tip,
              "parent": d.get("parent"), "verdict": "ABORTED", "failed": ["interrupted"], "composite": None,
              "reason": "the run was interrupted before its candidate was committed"}
    git.tag(root, tag, branch_tip, json.dumps(frozen, sort_keys=True), env=store.env())
    ledger.append(store, "REJECT", d["generation"],
                  {"candidate": d["name"], "reason": "interrupted; frozen as ABORTED"})
    return f"propose {candidate}: interrupted before its commit; frozen as ABORTED", None


def _recover_promote(store, op: Operation):
    d = op.data
    if not d.get("durable"):
        return f"promote {d['candidate']}: interrupted before {d['protected']} moved; nothing changed", None
    if git.rev_parse(store.root, f"refs/heads/{d['protected']}") != d["new"]:
        # a later command moved on from this promotion (the burn-in's rollback, say) and owns the work tree
        kind = "rolled-back" if d.get("burn_in_failure") else d["kind"]
        return "", Promotion(d["generation"], kind, d["old"], d["new"], d["composite"])
    result = finish_promote(store, op)
    return f"promote {d['candidate']}: finished after an interruption ({d['protected']} at {d['new'][:12]})", result


def _recover_rollback(store, op: Operation):
    d = op.data
    if not d.get("durable"):
        return f"rollback to {d['to']}: interrupted before {d['protected']} moved; nothing changed", None
    result = Rollback(d["to"], d["frm"], d["new"], d["reason"])
    if git.rev_parse(store.root, f"refs/heads/{d['protected']}") != d["new"]:
        return "", result
    transaction.sync_work_tree(store, d["old"], d["new"])
    dvc.checkout(store.root)
    waiting.restore(store)
    return f"rollback to {d['to']}: finished after an interruption", result


RECOVER = {"propose": _recover_propose, "promote": _recover_promote, "rollback": _recover_rollback}


@dataclass(frozen=True)
class Repair:
    """What `lineage repair` did, what is still in the way, and moves lineage did not record."""

    recovered: list
    blocking: list
    unrecorded: list

    @property
    def ok(self) -> bool:
        return not self.blocking


def unrecorded_promotions(store) -> list[str]:
    """Promotions on the protected branch without their generation tag: plain git moves.

    lineage writes a promotion's tag and COMMIT event in one transaction, and tags travel with
    clones and pulls (the log does not always), so a missing tag is what marks a plain git move.
    """
    repo = store.repo
    out = []
    for generation, commit, kind in refs.promoted_history(repo, store.protected):
        if kind == "promotion" and repo.references.get(f"refs/tags/{refs.generation_tag(generation)}") is None:
            branch = next((n[len("refs/heads/"):] for n in repo.references if n.startswith("refs/heads/candidates/")
                           and repo.references[n].target == commit.id), str(commit.id)[:12])
            out.append(f"{store.protected} reached {generation} ({str(commit.id)[:12]}) by plain git, with no "
                       f"generation tag and no COMMIT event; 'lineage promote {branch}' records them and runs the "
                       "burn-in")
    return out


def repair(store) -> Repair:
    """Recover interrupted commands and clear stale locks; put main's files back after a refused git move;
    report locks a live process holds and promotions lineage did not record."""
    notes = recover(store)
    stray = transaction.stray_evidence(store)
    if stray:
        transaction.restore_evidence(store, stray)
        note = (f"put {store.protected}'s own {', '.join(sorted({p.split('/')[0] for p in stray}))} back: a git "
                "command the hook refused had left a candidate's files in the work tree (registered data kept)")
        log.info("%s", note)
        notes.append(note)
    return Repair(notes, describe_locks(store.root), unrecorded_promotions(store))
