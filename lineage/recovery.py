"""Crash safety: a journal per mutating command, recovery of killed ones, stale ref locks.

A command that changes the store (propose, promote, rollback) first writes a journal,
``.git/lineage/operations/<id>.json``, and holds an ``flock`` on ``<id>.lock`` for as long as it
runs. The kernel drops that lock when the process dies, SIGKILL included, so a journal whose lock
can be taken belongs to a dead command. ``recover`` (run before every mutating command, and by
``lineage repair``) finishes such a command or undoes what it had started:

- propose: a run whose outputs were complete is pushed, committed and frozen as it would have
  been; an earlier death freezes the candidate as ABORTED (the record keeps every attempt). The
  work tree goes back to the protected branch with the registered data still pending.
- promote and rollback move the protected branch, their tag and their log event in one git ref
  transaction, so those three moved together or not at all. After the move, recovery finishes the
  rest: the work tree, ``dvc checkout``, the burn-in (and its rollback).

A ``*.lock`` file left in the git directory by a killed git process blocks every later ref
update. ``ref_locks`` reports each with its age and the processes that could hold it; only a lock
no live git, DVC or lineage process in this store could hold is removed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError

log = logging.getLogger("lineage")

JOURNALS = Path("lineage") / "operations"  # inside the git directory: never part of a work tree
STALE_AFTER_S = 2.0                        # git holds a ref lock for milliseconds
PIPELINE_OUTPUTS = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", "reports", "data/.gitignore",
                    "data/prepared")
_recovering = False
_finished: list[tuple[dict, object]] = []  # (journal, result) of commands recovery finished in this process


def _git_dir(root: Path) -> Path:
    from .adapters.git import open_repo

    return Path(open_repo(root).path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


class Operation:
    """The journal of one running command; ``update`` makes each step durable before the next."""

    def __init__(self, root: Path, path: Path, data: dict, handle=None) -> None:
        self.root, self.path, self.data, self._handle = root, path, data, handle

    @classmethod
    def begin(cls, root: Path, kind: str, data: dict) -> "Operation":
        folder = _git_dir(root) / JOURNALS
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{kind}-{uuid.uuid4().hex[:8]}"
        handle = open(folder / f"{name}.lock", "w")
        fcntl.flock(handle, fcntl.LOCK_EX)  # held until this process ends, however it ends
        op = cls(root, folder / f"{name}.json", {"op": kind, "pid": os.getpid(), "started": time.time(), **data},
                 handle)
        _write_durably(op.path, op.data)
        return op

    def update(self, **data) -> None:
        self.data.update(data)
        _write_durably(self.path, self.data)

    def release(self) -> None:
        """Stop holding the journal (it stays for recovery)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def done(self) -> None:
        """The command finished: drop the journal."""
        self.path.unlink(missing_ok=True)
        self.path.with_suffix(".lock").unlink(missing_ok=True)
        self.release()


@contextmanager
def operation(root: Path, kind: str, keep_on_error: bool = False, **data):
    """Journal a command; on an exception keep the journal when recovery has work left to do.

    Recovery has work left once the command set ``durable`` (it moved a ref), or always when
    keep_on_error is set (propose: an interrupted candidate is still frozen).
    """
    op = Operation.begin(Path(root), kind, data)
    try:
        yield op
    except BaseException:
        if keep_on_error or op.data.get("durable"):
            op.release()
        else:
            op.done()
        raise
    op.done()


def _dead_journals(root: Path):
    """Yield (Operation, lock handle) for each journal whose command is no longer running, oldest first."""
    folder = _git_dir(root) / JOURNALS
    if not folder.is_dir():
        return
    for lock in sorted(folder.glob("*.lock")):
        handle = open(lock, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue  # its command is alive
        journal = lock.with_suffix(".json")
        try:
            data = json.loads(journal.read_text())
        except FileNotFoundError:
            # finished a moment ago, or died before writing it (then the lock is only litter)
            try:
                if time.time() - lock.stat().st_mtime > 60:
                    lock.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            handle.close()
            continue
        except ValueError:
            data = None
        if data is None:  # a torn temp file is never renamed in place, so this is not ours
            handle.close()
            raise StoreError(f"unreadable journal {journal}", "Move it away and run 'lineage repair' again.")
        yield Operation(root, journal, data, handle)


def recover(root: str | Path) -> list[str]:
    """Finish or undo every command that died in this store; clear stale ref locks. Return what was done."""
    global _recovering
    if _recovering:  # a command recovery itself runs (the rollback of a failed burn-in)
        return []
    root = Path(root)
    notes = clear_stale_locks(root)
    _recovering = True
    try:
        for op in _dead_journals(root):
            try:
                note, result = RECOVER[op.data["op"]](root, op)
            except BaseException:
                op.release()
                raise
            op.done()
            if result is not None:
                _finished.append((op.data, result))
            if note:
                notes.append(note)
                log.info("recovered: %s", note)
    finally:
        _recovering = False
    return notes


def finished(kind: str, **match) -> object | None:
    """The result of a command of this kind recovery just finished, when it is the one being re-run.

    Re-running a killed command is how a user asks for it to complete: the re-run returns what
    the original would have returned instead of doing it a second time (a second rollback, say).
    A value of None in match matches anything. A result is handed out once.
    """
    for i in range(len(_finished) - 1, -1, -1):
        data, result = _finished[i]
        if data["op"] == kind and all(v is None or data.get(k) == v for k, v in match.items()):
            del _finished[i]
            return result
    return None


@contextmanager
def work_tree_lock(root: Path, exclusive: bool):
    """Keep a clean-tree check from seeing the instant between a ref move and its work tree update.

    promote and rollback hold it exclusively from their ref transaction until the work tree
    follows; the clean-tree check of every command holds it shared. The kernel drops it with
    the process, so a killed command never leaves it behind.
    """
    path = _git_dir(root) / "lineage" / "worktree.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


# ------------------------------------------------------------------------------ git helpers

def _git(args, root, **kw):
    from .adapters.git import git

    return git(args, cwd=root, **kw)


def _ref(root: Path, name: str) -> str | None:
    proc = _git(["rev-parse", "-q", "--verify", f"{name}^{{}}" if name.startswith("refs/tags/") else name], root,
                check=False)
    return proc.stdout.strip() or None


def _on_branch(root: Path, branch: str) -> bool:
    return _git(["symbolic-ref", "-q", "HEAD"], root, check=False).stdout.strip() == f"refs/heads/{branch}"


def move_refs(root: Path, updates: list[tuple[str, str, str | None]], event: str, generation: str | None,
              data: dict, retries: int = 60) -> None:
    """Move refs (name, new, expected old or None to create) and append one log event, in one transaction.

    git locks every ref, checks each expected value, runs the reference-transaction hook (the
    arbiter for the protected branch) and only then writes them all: a racing command finds
    the protected branch moved and nothing of ours written. When only the log moved (another
    command logged an event meanwhile), the event is rebuilt on the new log tip and retried.

    Raises:
        RefMovedError: a ref other than the log no longer holds its expected value.
    """
    from . import ledger

    zero = "0" * 40
    for attempt in range(retries):
        log_old = _ref(root, ledger.LOG_REF)
        log_new = ledger.build(root, event, generation, data, log_old)
        lines = [f"update {name} {new} {old or zero}\n" for name, new, old in updates]
        lines.append(f"update {ledger.LOG_REF} {log_new} {log_old or zero}\n")
        proc = _git(["update-ref", "--stdin"], root, check=False, input="".join(lines))
        if proc.returncode == 0:
            return
        for name, _new, old in updates:
            if _ref(root, name) != old:
                raise RefMovedError(name, old, _ref(root, name), proc.stderr)
        lasting = lasting_lock(root, proc.stderr)
        if lasting:
            raise StoreError(f"cannot move {updates[0][0]}: {lasting}", "Run 'lineage repair', then run again.")
        if "File exists" in proc.stderr and attempt < retries - 1:
            time.sleep(0.01 + random.random() * 0.05)  # another writer holds a ref lock for a moment
            continue
        if _ref(root, ledger.LOG_REF) == log_old:
            # not a race: the hook refused, or a lock is in the way; let the caller's git say why
            refused = [ln for ln in proc.stderr.splitlines() if ln.startswith("lineage: refused")]
            if refused:
                from .errors import ArbiterRefusedError

                raise ArbiterRefusedError(updates[0][0], refused[0].split(": ", 2)[-1])
            held = describe_locks(root)
            raise StoreError(f"git update-ref failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
                             + (f"; {held[0]}" if held else ""), "Run 'lineage repair', then run again.")
        time.sleep(0.01 + random.random() * 0.05)
    raise StoreError(f"could not append {event} to {ledger.LOG_REF}: it kept moving", "Run again.")


class RefMovedError(StoreError):
    """A compare-and-swap lost: the ref moved since it was read."""

    def __init__(self, ref: str, expected: str | None, actual: str | None, detail: str = "") -> None:
        self.ref, self.expected, self.actual = ref, expected, actual
        super().__init__(f"{ref} moved from {str(expected)[:12]} to {str(actual)[:12]} meanwhile", "Run again.")


def make_tag(root: Path, name: str, commit: str, message: str) -> str:
    """An annotated tag object for commit, written without its ref (the ref moves in a transaction)."""
    from .promotion import _env

    env = _env(root)
    ident = _git(["var", "GIT_COMMITTER_IDENT"], root, env=env).stdout.strip()
    body = f"object {commit}\ntype commit\ntag {name}\ntagger {ident}\n\n{message}\n"
    return _git(["mktag"], root, input=body).stdout.strip()


def sync_work_tree(root: Path, protected: str, old: str, new: str) -> None:
    """Bring the index and work tree from old to new when the protected branch is checked out.

    A two-tree read-tree keeps staged data not yet on the branch (registered deltas) staged.
    """
    if not _on_branch(root, protected):
        return
    if _git(["diff-index", "--cached", "--quiet", new, "--", ".", ":!data/deltas"], root, check=False).returncode == 0:
        return  # already there
    _git(["read-tree", "-m", "-u", old, new], root)


def _dvc_checkout(root: Path) -> None:
    from .adapters import dvc

    dvc.dvc(["checkout", "-q", "--force"], cwd=root, check=False)


# ------------------------------------------------------------------------------ per command

def go_home(root: Path, protected: str, pending: dict, commit: str | None) -> None:
    """Leave a candidate branch for the protected one; keep registered data pending; drop run leftovers."""
    _git(["checkout", "-q", "-f", protected], root)
    _git(["clean", "-fdqx", "--", *PIPELINE_OUTPUTS], root, check=False)
    if pending:
        carried = commit and _git(["cat-file", "-e", f"{commit}:{next(iter(pending))}"], root,
                                  check=False).returncode == 0
        if carried:
            _git(["checkout", commit, "--", *pending], root, check=False)
        else:
            for path, text in pending.items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(text)
            _git(["add", "--", *pending], root, check=False)
    _dvc_checkout(root)


def _keep_pending(root: Path, pending: dict) -> None:
    """Stage registered data again that is neither on the checked-out branch nor staged any more."""
    for path, text in pending.items():
        committed = _git(["show", f"HEAD:{path}"], root, check=False)
        if committed.returncode == 0 and committed.stdout == text:
            continue
        target = root / path
        if not target.exists() or target.read_text() != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        _git(["add", "--", path], root)


def _recover_propose(root: Path, op: Operation):
    from . import ledger
    from .promotion import FROZEN_TAG, _env, finish_propose, proposal_of

    d = op.data
    candidate = f"{d['generation']}-{d['name']}"
    branch_tip = _ref(root, f"refs/heads/{d['branch']}")
    tag = f"refs/tags/{FROZEN_TAG}{candidate}"
    if branch_tip is None:  # died before the branch existed: nothing was written
        return "", None
    if _ref(root, tag) is not None:  # frozen already: only the way home was left
        if not _on_branch(root, d["branch"]):
            _keep_pending(root, d.get("pending") or {})  # whoever went home (evolve) may have dropped it
            _dvc_checkout(root)  # and may have left the candidate's weights in the work tree
            return f"propose {candidate}: frozen before the interruption; registered data kept pending", \
                proposal_of(root, d)
        go_home(root, d["protected"], d.get("pending") or {}, branch_tip)
        return f"propose {candidate}: frozen before the interruption; back on {d['protected']}", proposal_of(root, d)
    if d.get("phase") == "reproduced" and (branch_tip != d["base"] or _on_branch(root, d["branch"])):
        finish_propose(root, op)  # the run was complete: push, commit, freeze as it would have
        return (f"propose {candidate}: finished after an interruption (data pushed, committed, frozen)",
                proposal_of(root, d))
    if _on_branch(root, d["branch"]) or not _on_branch(root, d["protected"]):
        go_home(root, d["protected"], d.get("pending") or {}, None)
    frozen = {"schema_version": 1, "generation": d["generation"], "branch": d["branch"], "commit": branch_tip,
              "parent": d.get("parent"), "verdict": "ABORTED", "failed": ["interrupted"], "composite": None,
              "reason": "the run was interrupted before its candidate was committed"}
    _git(["tag", "-a", tag[len("refs/tags/"):], "-m", json.dumps(frozen, sort_keys=True), branch_tip], root,
         env=_env(root))
    ledger.append(root, "REJECT", d["generation"], {"candidate": d["name"], "reason": "interrupted; frozen as ABORTED"})
    return f"propose {candidate}: interrupted before its commit; frozen as ABORTED", None


def _recover_promote(root: Path, op: Operation):
    from .promotion import Promotion, finish_promote

    d = op.data
    if not d.get("durable"):
        return f"promote {d['candidate']}: interrupted before {d['protected']} moved; nothing changed", None
    if _ref(root, f"refs/heads/{d['protected']}") != d["new"]:
        # a later command moved on from this promotion (the burn-in's rollback, say) and owns the work tree
        kind = "rolled-back" if d.get("burn_in_failure") else d["kind"]
        return "", Promotion(d["generation"], kind, d["old"], d["new"], d["composite"])
    result = finish_promote(root, op)
    return f"promote {d['candidate']}: finished after an interruption ({d['protected']} at {d['new'][:12]})", result


def _recover_rollback(root: Path, op: Operation):
    from .promotion import Rollback

    d = op.data
    if not d.get("durable"):
        return f"rollback to {d['to']}: interrupted before {d['protected']} moved; nothing changed", None
    result = Rollback(d["to"], d["frm"], d["new"], d["reason"])
    if _ref(root, f"refs/heads/{d['protected']}") != d["new"]:
        return "", result
    sync_work_tree(root, d["protected"], d["old"], d["new"])
    _dvc_checkout(root)
    return f"rollback to {d['to']}: finished after an interruption", result


RECOVER = {"propose": _recover_propose, "promote": _recover_promote, "rollback": _recover_rollback}


# ------------------------------------------------------------------------------ stale ref locks

@dataclass(frozen=True)
class RefLock:
    """A git ``*.lock`` file in the git directory and who could be holding it."""

    path: str
    age_s: float
    holders: list  # "git (pid 123)"; None when /proc cannot tell

    @property
    def stale(self) -> bool:
        return self.holders == [] and self.age_s >= STALE_AFTER_S

    def describe(self) -> str:
        if self.stale:
            return (f"{self.path} is left over from a killed git process (age {self.age_s:.0f} s, "
                    "no process holds it)")
        if self.holders:
            return f"{self.path} is held by {', '.join(self.holders)}"
        return f"{self.path} is {self.age_s:.1f} s old; cannot tell whether a process holds it"


def ref_locks(root: str | Path) -> list[RefLock]:
    """Every ref, packed-refs, HEAD or index lock in the store's git directory."""
    git_dir = _git_dir(Path(root))
    found = [p for p in (git_dir / "refs").rglob("*.lock")]
    found += [git_dir / n for n in ("packed-refs.lock", "HEAD.lock", "index.lock") if (git_dir / n).exists()]
    if not found:
        return []
    holders = _processes_in(Path(root).resolve(), git_dir.resolve())
    now = time.time()
    out = []
    for path in sorted(found):
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue  # its git finished meanwhile
        out.append(RefLock(str(path.relative_to(git_dir.parent)), age, holders))
    return out


def _processes_in(root: Path, git_dir: Path) -> list | None:
    """git, DVC or lineage processes working in this store (not this one), or None without /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    me = os.getpid()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        name = os.path.basename(args[0].decode(errors="replace")) if args and args[0] else ""
        line = b" ".join(args).decode(errors="replace")
        if not (name.startswith("git") or "lineage" in line or "dvc" in line):
            continue
        inside = cwd == root or root in cwd.parents or cwd == git_dir or git_dir in cwd.parents
        if not inside:
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                environ = []
            inside = any(v.startswith(b"GIT_DIR=") and Path(v[8:].decode(errors="replace")).resolve() == git_dir
                         for v in environ)
        if inside:
            found.append(f"{name or '?'} (pid {entry.name})")
    return found


def lasting_lock(root: str | Path, stderr: str) -> str | None:
    """The lock git could not take, described, when it has stood too long to be another writer's moment."""
    match = re.search(r"Unable to create '([^']+\.lock)': File exists", stderr)
    if not match:
        return None
    try:
        age = time.time() - Path(match.group(1)).stat().st_mtime
    except FileNotFoundError:
        return None  # gone already: it was a racing writer
    if age < STALE_AFTER_S:
        return None
    try:
        rel = str(Path(match.group(1)).resolve().relative_to(_git_dir(Path(root)).resolve().parent))
    except ValueError:
        rel = match.group(1)
    return next((lock.describe() for lock in ref_locks(root) if lock.path == rel), f"{rel} is in the way")


def describe_locks(root: str | Path) -> list[str]:
    """One line per lock in the way."""
    return [lock.describe() for lock in ref_locks(root)]


def clear_stale_locks(root: str | Path) -> list[str]:
    """Remove each lock no live process could hold; say which (one line each). Refuse nothing else."""
    notes = []
    git_dir = _git_dir(Path(root))
    for lock in ref_locks(root):
        if not lock.stale:
            continue
        (git_dir.parent / lock.path).unlink(missing_ok=True)
        note = f"removed stale lock {lock.path}: a killed git process left it (age {lock.age_s:.0f} s, no process held it)"
        log.warning("%s", note)
        notes.append(note)
    return notes


@dataclass(frozen=True)
class Repair:
    """What `lineage repair` did, what is still in the way, and moves lineage did not record."""

    recovered: list
    blocking: list
    unrecorded: list

    @property
    def ok(self) -> bool:
        return not self.blocking


def unrecorded_promotions(root: Path) -> list[str]:
    """Promotions on the protected branch without their generation tag: plain git moves.

    lineage writes a promotion's tag and COMMIT event in one transaction, and tags travel with
    clones and pulls (the log does not always), so a missing tag is what marks a plain git move.
    """
    from .adapters.git import open_repo, protected_branch
    from .promotion import GENERATION_TAG
    from .record import promoted_history

    repo = open_repo(root)
    protected = protected_branch(repo)
    out = []
    for generation, commit, kind in promoted_history(repo, protected):
        if kind == "promotion" and repo.references.get(f"refs/tags/{GENERATION_TAG}{generation}") is None:
            branch = next((n[len("refs/heads/"):] for n in repo.references if n.startswith("refs/heads/candidates/")
                           and repo.references[n].target == commit.id), str(commit.id)[:12])
            out.append(f"{protected} reached {generation} ({str(commit.id)[:12]}) by plain git, with no generation "
                       f"tag and no COMMIT event; 'lineage promote {branch}' records them and runs the burn-in")
    return out


def repair(store=".") -> Repair:
    """Recover interrupted commands and clear stale locks; report locks a live process holds."""
    from .api import find_store

    root = find_store(store)
    notes = recover(root)
    return Repair(notes, describe_locks(root), unrecorded_promotions(root))
