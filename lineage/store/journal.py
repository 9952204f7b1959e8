"""The journal of a mutating command, durable step by step, so a killed command can be finished.

A command that changes the store (propose, promote, rollback) first writes a journal,
``.git/lineage/operations/<id>.json``, and holds an ``flock`` on ``<id>.lock`` for as long as it
runs. The kernel drops that lock when the process dies, SIGKILL included, so a journal whose lock
can be taken belongs to a dead command; ``moves.recover`` finishes or undoes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.errors import StoreError

JOURNALS = Path("lineage") / "operations"  # inside the git directory: never part of a work tree

# (journal, result) of commands recovery finished in this process: a re-run of the very command
# that was killed returns what the original would have returned.
_finished: list[tuple[dict, Any]] = []


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

    def __init__(self, store, path: Path, data: dict, handle=None) -> None:
        self.store, self.path, self.data, self._handle = store, path, data, handle

    @property
    def root(self) -> Path:
        return Path(self.store.root)

    @classmethod
    def begin(cls, store, kind: str, data: dict) -> Operation:
        folder = store.git_dir / JOURNALS
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{kind}-{uuid.uuid4().hex[:8]}"
        handle = open(folder / f"{name}.lock", "w")
        fcntl.flock(handle, fcntl.LOCK_EX)  # held until this process ends, however it ends
        op = cls(store, folder / f"{name}.json", {"op": kind, "pid": os.getpid(), "started": time.time(), **data},
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
def operation(store, kind: str, keep_on_error: bool = False, **data) -> Iterator[Operation]:
    """Journal a command; on an exception keep the journal when recovery has work left to do.

    Recovery has work left once the command set ``durable`` (it moved a ref), or always when
    keep_on_error is set (propose: an interrupted candidate is still frozen).
    """
    op = Operation.begin(store, kind, data)
    try:
        yield op
    except BaseException:
        if keep_on_error or op.data.get("durable"):
            op.release()
        else:
            op.done()
        raise
    op.done()


def dead_journals(store) -> Iterator[Operation]:
    """Each journal whose command is no longer running, oldest first, its lock held by the caller.

    Raises:
        StoreError: a journal cannot be read.
    """
    folder = store.git_dir / JOURNALS
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
        yield Operation(store, journal, data, handle)


def running_commands(git_dir: Path) -> list[str]:
    """Live lineage commands in this store, by their journals' held locks."""
    folder = Path(git_dir) / JOURNALS
    running = []
    for lock in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    data = json.loads(lock.with_suffix(".json").read_text())
                    running.append(f"{data['op']} by pid {data['pid']}")
                except (OSError, ValueError, KeyError):
                    running.append(f"pid unknown, {lock.name}")
    return running


def remember_finished(data: dict, result: Any) -> None:
    """Keep what recovery finished for a killed command, for its re-run to return."""
    _finished.append((data, result))


def finished(kind: str, **match) -> Any | None:
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
