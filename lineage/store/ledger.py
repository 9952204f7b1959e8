"""The evolution log: an append-only ref, one commit per event.

Each event is canonical JSON in the commit message of a commit on ``refs/lineage/log`` whose only
parent is the previous event, over an empty tree. Appends move the ref with compare-and-swap
(``git update-ref NEW OLD``), so two writers never lose each other's events; the hub refuses any
update of the ref that does not descend from what it holds.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

from ..adapters import git, git_trees
from ..core.canonical import canonical_json
from ..core.errors import IntegrityError, StoreError
from .locks import lasting_lock

LOG_REF = "refs/lineage/log"
EVENTS = ("PROPOSE", "MANIFEST_FROZEN", "TRAIN_START", "TRAIN_COMPLETE", "BUDGET_EXCEEDED", "EVAL_COMPLETE",
          "ARBITER_VERIFY", "COMMIT", "REJECT", "ROLLBACK", "APPROVE", "WINDOW_OPEN", "WINDOW_REFUSED",
          "WINDOW_CLOSE", "PROPOSAL", "BURN_IN", "ATTEST", "SHADOW")
CSV_COLUMNS = ("gen", "parent", "weights_sha256", "tokenizer_sha256", "data_delta_sha256", "steps", "lr",
               "loss_final", "eval_recall", "eval_generalize", "eval_tone", "weight_change_%",
               "promoted_to_head", "timestamp")


@dataclass(frozen=True)
class Event:
    """One line of the fossil record."""

    event: str
    generation: str | None
    actor: str
    timestamp: float
    data: dict

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown event {self.event!r}")

    def to_dict(self) -> dict:
        return {"schema_version": 1, "event": self.event, "generation": self.generation, "actor": self.actor,
                "timestamp": self.timestamp, "data": self.data}

    @classmethod
    def from_dict(cls, d: dict) -> Event:
        return cls(d["event"], d.get("generation"), d.get("actor", "unknown"), float(d["timestamp"]),
                   d.get("data") or {})


def _actor(repo) -> str:
    try:
        return f'{repo.config["user.name"]} <{repo.config["user.email"]}>'
    except KeyError:
        return "lineage"


def build(store, event: str, generation: str | None, data: dict | None, parent: str | None) -> str:
    """Write the commit of one event on top of parent without moving the log (for a ref transaction)."""
    record = Event(event, generation, _actor(store.repo), round(time.time(), 3), data or {})
    message = canonical_json(record.to_dict()).decode() + "\n"
    return git_trees.write_empty_commit(store.repo, message, parent)


def append(store, event: str, generation: str | None, data: dict | None = None, retries: int = 60) -> str:
    """Append one event with compare-and-swap; retry when another writer got there first.

    Raises:
        StoreError: a stale lock is in the way, or the log kept moving.
    """
    for _ in range(retries):
        ref = store.repo.references.get(LOG_REF)
        old = str(ref.target) if ref is not None else None
        commit = build(store, event, generation, data, old)
        proc = git.update_ref(store.root, LOG_REF, commit, old, check=False)
        if proc.returncode == 0:
            return commit
        if "File exists" in proc.stderr:
            lasting = lasting_lock(store.root, proc.stderr)
            if lasting:  # not another writer's moment: a lock file that stays
                raise StoreError(f"could not append {event} to {LOG_REF}: {lasting}",
                                 "Run 'lineage repair' to clear a stale lock, then run again.")
        time.sleep(0.01 + random.random() * 0.05)  # jitter: ten writers at once must not retry in step
    raise StoreError(f"could not append {event} to {LOG_REF}: it kept moving", "Run again.")


def read(repo) -> list[Event]:
    """Every event, oldest first; checks the chain is linear and every line parses.

    Raises:
        IntegrityError: an event does not parse, or the log was merged.
    """
    ref = repo.references.get(LOG_REF)
    if ref is None:
        return []
    events = []
    commit = git.peel_commit(repo, ref.target)
    while True:
        try:
            events.append(Event.from_dict(json.loads(commit.message)))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{LOG_REF} event {str(commit.id)[:12]}", f"unreadable: {exc}") from None
        if len(commit.parents) > 1:
            raise IntegrityError(f"{LOG_REF} event {str(commit.id)[:12]}", "has two parents: the log was merged")
        if not commit.parents:
            break
        commit = commit.parents[0]
    events.reverse()
    return events


def live_shadow(repo, commit: str) -> dict | None:
    """The latest live parity `lineage serve --shadow` logged for a candidate commit (with its time), or None."""
    for event in reversed(read(repo)):
        data = event.data
        if event.event == "SHADOW" and data.get("commit") == commit and data.get("source") == "live":
            return {**data, "timestamp": event.timestamp}
    return None


def to_jsonl(events: list[Event]) -> str:
    """The events as evolution_log.jsonl: one canonical JSON object per line."""
    return "".join(canonical_json(e.to_dict()).decode() + "\n" for e in events)
