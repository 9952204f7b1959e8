"""Moving refs together, and bringing the work tree along.

promote and rollback move the protected branch, their tag and their log event in one git ref
transaction, so the three moved together or not at all. The work tree then follows the branch
with a two-tree read-tree that keeps registered data (staged, not yet on any branch) staged.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from ..adapters import dvc, git
from ..core.errors import ArbiterRefusedError, DirtyTreeError, StoreError
from ..core.settings import OVERRIDES
from . import keys, ledger, protected_state, refs, waiting
from .locks import describe_locks, lasting_lock, work_tree_lock

# What a pipeline run leaves in the work tree; dropped when a command goes home.
PIPELINE_OUTPUTS = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", "reports", "data/.gitignore",
                    "data/prepared")


class RefMovedError(StoreError):
    """A compare-and-swap lost: the ref moved since it was read."""

    def __init__(self, ref: str, expected: str | None, actual: str | None, detail: str = "") -> None:
        self.ref, self.expected, self.actual = ref, expected, actual
        super().__init__(f"{ref} moved from {str(expected)[:12]} to {str(actual)[:12]} meanwhile", "Run again.")


def move_refs(store, updates: list[tuple[str, str, str | None]], event: str, generation: str | None,
              data: dict, retries: int = 60) -> None:
    """Move refs (name, new, expected old or None to create) and append one log event, in one transaction.

    git locks every ref, checks each expected value, runs the reference-transaction hook (the
    arbiter for the protected branch) and only then writes them all: a racing command finds
    the protected branch moved and nothing of ours written. When only the log moved (another
    command logged an event meanwhile), the event is rebuilt on the new log tip and retried.

    Raises:
        RefMovedError: a ref other than the log no longer holds its expected value.
        ArbiterRefusedError: the hook refused the move.
        StoreError: a lock is in the way.
    """
    root = store.root
    for attempt in range(retries):
        log_old = git.rev_parse(root, ledger.LOG_REF)
        log_new = ledger.build(store, event, generation, data, log_old)
        proc = git.update_refs(root, [*updates, (ledger.LOG_REF, log_new, log_old)])
        if proc.returncode == 0:
            if any(name == store.protected_ref for name, _new, _old in updates):
                protected_state.refresh(store)  # the hook did too, unless hooks are off
            return
        for name, _new, old in updates:
            if git.rev_parse(root, name) != old:
                raise RefMovedError(name, old, git.rev_parse(root, name), proc.stderr)
        lasting = lasting_lock(root, proc.stderr)
        if lasting:
            raise StoreError(f"cannot move {updates[0][0]}: {lasting}", "Run 'lineage repair', then run again.")
        if "File exists" in proc.stderr and attempt < retries - 1:
            time.sleep(0.01 + random.random() * 0.05)  # another writer holds a ref lock for a moment
            continue
        if git.rev_parse(root, ledger.LOG_REF) == log_old:
            # not a race: the hook refused, or a lock is in the way; let the caller's git say why
            refused = [ln for ln in proc.stderr.splitlines() if ln.startswith("lineage: refused")]
            if refused:
                raise ArbiterRefusedError(updates[0][0], refused[0].split(": ", 2)[-1])
            held = describe_locks(root)
            raise StoreError(f"git update-ref failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
                             + (f"; {held[0]}" if held else ""), "Run 'lineage repair', then run again.")
        time.sleep(0.01 + random.random() * 0.05)
    raise StoreError(f"could not append {event} to {ledger.LOG_REF}: it kept moving", "Run again.")


def make_tag(store, name: str, commit: str, message: str, when: int | None = None) -> str:
    """An annotated tag object for commit, written without its ref (the ref moves in a transaction).

    With a signing key configured the tag is signed as `git tag -s` signs (gpg.format=ssh), so
    `git verify-tag` checks it against an allowed-signers file that allows the key the `git` namespace.
    """
    return git.make_tag_object(store.root, name, commit, message, store.env(), when=when,
                               signing_key=keys.signing_key(store.root))


def sync_work_tree(store, old: str, new: str) -> None:
    """Bring the index and work tree from old to new when the protected branch is checked out.

    A two-tree read-tree keeps staged data not yet on the branch (registered deltas) staged.
    """
    if not store.on_protected():
        return
    if git.index_matches(store.root, new, exclude="data/deltas"):
        return  # already there
    git.read_tree_update(store.root, old, new)


def go_home(store, pending: dict, commit: str | None) -> None:
    """Leave a candidate branch for the protected one; keep registered data pending; drop run leftovers."""
    root = store.root
    git.checkout(root, store.protected, force=True)
    git.clean(root, PIPELINE_OUTPUTS)
    if pending:
        if commit and git.has_path(root, commit, next(iter(pending))):
            git.checkout_paths(root, commit, list(pending), check=False)
        else:
            for path, text in pending.items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(text)
            git.add(root, list(pending), check=False)
    dvc.checkout(root)
    waiting.restore(store)  # the checkout drops the data of deltas the candidate tracked and main does not


def keep_pending(root: Path, pending: dict) -> None:
    """Stage registered data again that is neither on the checked-out branch nor staged any more."""
    for path, text in pending.items():
        if git.show_file(root, "HEAD", path) == text:
            continue
        target = root / path
        if not target.exists() or target.read_text() != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git.add(root, [path])


# ---------------------------------------------------------------- a clean work tree

PENDING_DATA = ("data/deltas/",)


def is_pending_data(path: str) -> bool:
    """A registered delta waiting for its candidate: its .dvc file or the DVC-written .gitignore."""
    return path.startswith(PENDING_DATA) and (path.endswith(".dvc") or path.endswith("/.gitignore"))


def pending_data(store) -> list[str]:
    """Registered deltas waiting in the index for the next candidate."""
    return [p for p in git.work_tree_dirty(store.root) if is_pending_data(p)]


# A generation's evidence: lineage never stages it on the protected branch, so evidence that differs
# from main's in the index there was left by a git command the hook refused (git merge --ff-only
# rewrites the work tree and the index before the ref move the hook then refuses).
EVIDENCE = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", "reports/", OVERRIDES)


def is_evidence(path: str) -> bool:
    return path.startswith(EVIDENCE)


def stray_evidence(store) -> list[str]:
    """Paths a refused git move left staged on the checked-out protected branch.

    Evidence staged there can only come from such a move; when it is a candidate's, every other
    staged path holding that candidate's bytes (its params.yaml, say) came with it. Registered data
    waiting for its candidate is never counted.
    """
    if not store.on_protected():
        return []
    staged = [p for p in git.staged_paths(store.root) if not is_pending_data(p)]
    evidence = [p for p in staged if is_evidence(p)]
    if not evidence:
        return []
    index = git.index_ids(store.root)
    for ref in git.refs_under(store.repo, f"refs/heads/{refs.CANDIDATE_PREFIX}"):
        commit = git.peel_commit(store.repo, ref.target)
        if all(index.get(p) == git.entry_id(commit, p) for p in evidence):
            return [p for p in staged if p in index and index[p] == git.entry_id(commit, p)] + \
                [p for p in staged if p not in index]  # paths the candidate deleted
    return evidence


def restore_evidence(store, paths: list[str]) -> None:
    """Put main's own evidence back in the index and work tree (pending data stays as it is)."""
    head = store.tip()
    present = [p for p in paths if head is not None and git.read_blob(store.repo, head, p) is not None]
    absent = [p for p in paths if p not in present]
    if present:
        git.git(["checkout", "HEAD", "--", *present], cwd=store.root)
    if absent:
        git.git(["rm", "-q", "--cached", "-f", "--", *absent], cwd=store.root)
        for path in absent:
            (store.root / path).unlink(missing_ok=True)
    dvc.checkout(store.root)
    waiting.restore(store)


def require_clean(store, allow_outputs: bool = False) -> list[str]:
    """Refuse a work tree with changes of its own (registered data waiting is not one).

    allow_outputs: a pipeline run's outputs are not in the way (propose carries a `dvc repro` the
    user ran into its candidate); returns them.

    Raises:
        DirtyTreeError: naming the changed paths and, after a refused git move, the command that
            puts main's files back.
    """
    with work_tree_lock(store.git_dir, exclusive=False):  # never mid-way through another command's checkout
        dirty = [p for p in git.work_tree_dirty(store.root) if not is_pending_data(p)]
    stray = stray_evidence(store)
    if stray:
        err = DirtyTreeError(str(store.root), dirty)
        err.hint = ("A git command the hook refused (git merge --ff-only, say) left a candidate's files in the "
                    "work tree: run 'lineage repair' to put main's back.")
        raise err
    outputs = [p for p in dirty if p.startswith(PIPELINE_OUTPUTS)]
    if dirty and not (allow_outputs and len(outputs) == len(dirty)):
        raise DirtyTreeError(str(store.root), dirty)
    return outputs
