"""`lineage arbiter watch HUB`: the arbiter's loop over a hub.

HUB is a path, a git remote name or a URL; a served hub (``lineage hub serve``) takes the arbiter's own
credentials the way git takes any: ``http://arbiter:PASSWORD@host/luna.git``, or a credential helper.

Each pass fetches the hub (its branches, frozen tags and verdicts, into ``refs/lineage/watch/``, so
nothing of the arbiter's own store moves), evaluates every frozen candidate whose parent is the
hub's main and that has no verdict under that policy (the same commit judged against the same
main), stores the signed verdict and pushes its ref to the hub. A candidate that cannot be judged
(stale, weights missing, tampered) is reported once per watch and skipped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ..adapters import git
from ..core.errors import LineageError
from ..guard import verdict
from ..moves import arbiter
from ..moves.clone import redact

WATCH = "refs/lineage/watch/"


@dataclass(frozen=True)
class Seen:
    """One line of the watch: a verdict given, or a candidate that could not be judged."""

    candidate: str
    commit: str
    verdict: str | None
    line: str
    evaluation: arbiter.Evaluation | None = None


def fetch(store, hub: str) -> str | None:
    """Fetch the hub's branches, frozen tags and verdicts under refs/lineage/watch/; return its main's commit."""
    protected = store.protected
    git.git(["fetch", "-q", "--no-tags", hub, f"+refs/heads/*:{WATCH}heads/*",
             f"+refs/tags/lineage/frozen/*:{WATCH}frozen/*", f"+{verdict.VERDICTS_REF}*:{WATCH}verdicts/*"], store.root)
    store.reopen()
    return git.ref_commit(store.repo, f"{WATCH}heads/{protected}")


def frozen(store) -> list[dict[str, Any]]:
    """The hub's frozen candidates (their tags' JSON), oldest generation first."""
    rows = []
    for ref in git.refs_under(store.repo, f"{WATCH}frozen/"):
        try:
            data = json.loads(store.repo[ref.target].message)
        except (ValueError, AttributeError, KeyError):
            continue
        if isinstance(data, dict) and isinstance(data.get("commit"), str):
            rows.append(data)
    return sorted(rows, key=lambda r: (str(r.get("generation", "")), str(r.get("branch", ""))))


def judged(store, commit: str, main: str) -> bool:
    """True when the hub or this store holds a verdict on commit under main's policy."""
    hub_tip = git.ref_commit(store.repo, f"{WATCH}verdicts/{commit}")
    return verdict.for_policy(verdict.read(store.repo, commit, (hub_tip,) if hub_tip else ()), main) is not None


def one_pass(store, hub: str, home=None, refused: set[str] | None = None, progress=None) -> list[Seen]:
    """Evaluate what is waiting on the hub once; return one Seen per candidate handled."""
    refused = refused if refused is not None else set()
    main = fetch(store, hub)
    out: list[Seen] = []
    if main is None:
        return out
    for row in frozen(store):
        commit, name = row["commit"], str(row.get("branch") or row.get("generation") or row["commit"][:12])
        node = git.try_peel_commit(store.repo, commit)
        if node is None or [str(p.id) for p in node.parents] != [main] or commit in refused:
            continue
        if row.get("reason") or row.get("verdict") not in ("PASS", "FAIL") or judged(store, commit, main):
            continue  # a run that failed left no weights to judge; a judged one is judged
        try:
            done = arbiter.evaluate(store, commit, home, push=hub, main_commit=main, progress=progress, name=name)
        except LineageError as exc:
            refused.add(commit)
            out.append(Seen(name, commit, None, f"{name}: not judged: {exc}"))
            continue
        failed = f" ({', '.join(done.failed)})" if done.failed else ""
        out.append(Seen(name, commit, done.verdict,
                        f"{name}: {done.verdict}{failed} -> {done.ref} pushed to {redact(hub)}", done))
    return out


def watch(store, hub: str, home=None, once: bool = False, interval: float = 60.0, echo=None,
          progress=None) -> list[Seen]:
    """Run passes until interrupted (once: a single pass); each line goes to echo as it comes."""
    refused: set[str] = set()
    everything: list[Seen] = []
    while True:
        for seen in one_pass(store, hub, home, refused, progress):
            everything.append(seen)
            if echo:
                echo(seen.line)
        if once:
            return everything
        time.sleep(max(interval, 1.0))
