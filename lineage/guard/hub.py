"""The hub: a shared bare repository whose receive hook runs the arbiter for everyone.

Local hooks catch mistakes; a clone can delete them and pygit2 never runs them. The hub's
``pre-receive`` hook is where the rules hold against a user who tries to get around them:

- a hub serves a store with signers: ``init`` refuses a store whose protected branch lists no one
  in ``allowed_signers`` and pins the store's root commit (``lineage.rootCommit``); the first push
  must start from it, and the protected branch never arrives without signers;
- the protected branch moves only as the arbiter allows, signatures included (a promotion: the
  arbiter's signed verdict, pushed in the same push or before, and an approval; a rollback or an
  approved change: the attestation of a role allowed to sign it, in the pushed log); it is never
  deleted; its first push is replayed step by step;
- frozen and generation tags (``refs/tags/lineage/*``) are never moved or deleted;
- the evolution log (``refs/lineage/log``) only grows, linearly: every new log commit has exactly
  one parent, all the way back to what the hub holds;
- verdicts (``refs/lineage/verdicts/<commit>``) are created or grown, never rewound or deleted,
  and every new verdict commit must be a verdict about the commit its ref names, signed by a key
  with the arbiter role in the protected branch's ``allowed_signers``;
- candidate branches (``refs/heads/candidates/*``) are never deleted;
- any other tag naming a registry stage or version (GTO style: ``name#prod#3``, ``name@v1.2.0``) points
  at a commit the protected branch served (its first-parent history);
- ``refs/lineage/hub`` (what the hub advertises to clones: its DVC remote) is never pushed: the hub's
  owner sets it on the server ('lineage hub dvc-remote').

A hub served over HTTP also knows who pushes (``REMOTE_USER``): the rules by role are in hub_access.py,
and every ref update, accepted or refused, goes into the hub's push log.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..adapters import git, git_remote, git_trees
from ..core.errors import ArbiterRefusedError, LineageError, StoreError, UsageError
from ..store import registry
from . import hub_access, verdict
from .arbiter import check_signed_move
from .signers import SIGNERS_FILE, requires

ZERO = "0" * 40
ROOT_KEY = "lineage.rootCommit"
LOG_REF = "refs/lineage/log"
HUB_REF = "refs/lineage/hub"
DVC_KEY = "lineage.dvcRemote"
HOOK = """#!/bin/sh
# lineage hub: every pushed ref update goes through the arbiter (see lineage/hub.py).
exec "{python}" -m lineage.guard.hub
"""
POST_HOOK = """#!/bin/sh
# lineage hub: record who pushed each accepted ref update in the hub's push log.
exec "{python}" -m lineage.guard.hub post-receive
"""
# A tag that names a registry stage or version, as GTO writes them: name#stage#N, name#stage, name@v1.2.3.
REGISTRY_TAG = re.compile(r"#|@v?\d")


@dataclass(frozen=True)
class HubInit:
    path: str
    protected_branch: str
    remote_name: str | None


def init(path: str | Path, protected_branch: str = "main", store=None, name: str = "hub",
         dvc_remote: str | None = None) -> HubInit:
    """Create a bare hub for a store with signers: the arbiter in its pre-receive hook, its root pinned.

    dvc_remote: the DVC remote the hub advertises to clones, kept in its config as lineage.dvcRemote
    (None: none yet; 'lineage hub dvc-remote').

    Raises:
        UsageError: not in a store, or the store's protected branch lists no one in allowed_signers.
        StoreError: PATH exists and is not a bare repository.
    """
    tip = store.tip() if store is not None else None
    if tip is None or not requires(git.read_blob(store.repo, tip, SIGNERS_FILE)):
        where = f"{store.protected} lists no one in {SIGNERS_FILE}" if store is not None else "this is not a store"
        raise UsageError(f"a hub needs signers: {where}",
                         "In the store: 'lineage keys allow PRINCIPAL KEY.pub --role ROLE' for an approver, an "
                         "arbiter and a proposer, then 'lineage change --reason …'; then 'lineage hub init PATH'.")
    root_commit = str(list(git.first_parent_history(store.repo, tip.id))[-1].id)
    hub = Path(path).expanduser().resolve()
    if hub.exists() and any(hub.iterdir()) and not (hub / "HEAD").exists():
        raise StoreError(f"{hub} exists and is not a bare git repository", "Pick an empty or new directory.")
    hub.mkdir(parents=True, exist_ok=True)
    git.init(hub, protected_branch, bare=True)
    for key, value in (("lineage.protectedBranch", protected_branch), ("receive.denyNonFastForwards", "true"),
                       ("core.fsync", "reference,objects"), ("core.fsyncMethod", "fsync"),
                       ("receive.fsckObjects", "true"), (ROOT_KEY, root_commit)):
        git.config_set(hub, key, value)
    install_hooks(hub)
    if dvc_remote:  # published on refs/lineage/hub when the hub is served ('lineage hub serve')
        git.config_set(hub, DVC_KEY, dvc_remote)
    git_remote.set_remote(store.root, name, str(hub))
    return HubInit(str(hub), protected_branch, name)


def install_hooks(hub: Path) -> None:
    """Write the hub's pre-receive (the arbiter) and post-receive (the push log) hooks."""
    for name, text in (("pre-receive", HOOK), ("post-receive", POST_HOOK)):
        hook = hub / "hooks" / name
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(text.replace("{python}", sys.executable))
        os.chmod(hook, 0o755)


def advertise(hub: Path, dvc_remote: str) -> str:
    """Keep the DVC remote in the hub's config and publish it on refs/lineage/hub, where clones read it."""
    git.config_set(hub, DVC_KEY, dvc_remote)
    repo = git.open_bare(hub)
    message = json.dumps({"dvc_remote": dvc_remote, "protected_branch": _config(repo, "lineage.protectedBranch")
                          or "main"}, sort_keys=True)
    current = git.ref_commit(repo, HUB_REF)
    if current is not None and repo[current].message.strip() == message:
        return current
    commit = git_trees.write_empty_commit(repo, message + "\n", current)
    git.update_ref(hub, HUB_REF, commit, current)
    return commit


def advertised(message: str) -> dict:
    """What a hub's refs/lineage/hub commit says (empty when it is not the JSON advertise writes)."""
    try:
        data = json.loads(message)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


_FIRST_PARENTS: dict[tuple[str, str], set[str]] = {}  # per-process memo: a push checks many tags


def _first_parent_ids(repo, tip: str | None) -> set[str]:
    if not tip or tip == ZERO:
        return set()
    key = (repo.path, tip)
    _memo = _FIRST_PARENTS
    if key not in _memo:
        ids, commit = set(), git.peel_commit(repo, tip)
        while True:
            ids.add(str(commit.id))
            if not commit.parents:
                break
            commit = commit.parents[0]
        _memo[key] = ids
    return _memo[key]


def _check_new_tag(repo, new: str, ref: str, protected: str, main_tip: str | None) -> None:
    """A new record tag must say what its commit is: a generation main served, or a frozen candidate."""
    name = ref[len("refs/tags/lineage/"):]
    kind, _, label = name.partition("/")
    if kind not in ("gen", "frozen") or not label:
        raise ArbiterRefusedError(ref, "only lineage/gen/GNNN and lineage/frozen/GNNN-x tags belong under lineage/")
    if not git.is_annotated_tag(repo, new):
        raise ArbiterRefusedError(ref, "record tags are annotated tags, as lineage writes them")
    commit = git.peel_commit(repo, new)
    generation = git.trailers(commit.message).get("Generation")
    expected = label if kind == "gen" else label.rpartition("-")[0]
    if generation != expected:
        raise ArbiterRefusedError(ref, f"the tagged commit {str(commit.id)[:12]} is not {expected} "
                                       f"(its Generation: trailer says {generation or 'nothing'})")
    if kind == "gen" and str(commit.id) not in _first_parent_ids(repo, main_tip):
        raise ArbiterRefusedError(ref, f"{label} was never served: its commit is not on {protected}'s history",
                                  f"Push {protected} with the promotion in the same push (lineage push).")


def check_update(repo, old: str, new: str, ref: str, protected: str, logs=(), main_tip: str | None = None,
                 verdicts=(), root: str | None = None) -> None:
    """Refuse (ArbiterRefusedError) any ref update the hub must not accept.

    logs: the evolution-log tip this push brings, where the attestations of its moves are.
    main_tip: the protected branch as it will be after this push (for new generation tags and verdicts).
    verdicts: the verdict tips this push brings. root: the store's pinned root commit.
    """
    if ref == f"refs/heads/{protected}":
        # Once the hub holds the branch, the arbiter keeps signers on it (no change may empty the file).
        if old == ZERO and new != ZERO:
            # First push of the protected branch: from the pinned root, replayed move by move.
            chain = list(reversed(list(git.first_parent_history(repo, git.peel_commit(repo, new).id))))
            if root is None or str(chain[0].id) != root:
                raise ArbiterRefusedError(ref, f"the pushed history starts at {str(chain[0].id)[:12]}, not at the "
                                               f"store's root {(root or 'none pinned')[:12]} this hub serves",
                                          "Push the store the hub was made for ('lineage hub init' pins its root).")
            previous = None
            for commit in chain:
                check_signed_move(repo, previous, str(commit.id), protected, logs, verdicts)
                previous = str(commit.id)
            if not requires(git.read_blob(repo, chain[-1], SIGNERS_FILE)):
                raise ArbiterRefusedError(ref, f"a hub needs signers: {new[:12]} lists no one in {SIGNERS_FILE}",
                                          "Push the store whose approved change lists its approver, arbiter and "
                                          "proposer.")
            return
        check_signed_move(repo, old, new, protected, logs, verdicts)
        return
    if ref.startswith("refs/tags/lineage/"):
        if new == ZERO:
            raise ArbiterRefusedError(ref, "frozen tags are never deleted")
        if old != ZERO and old != new:
            raise ArbiterRefusedError(ref, "frozen tags are never moved")
        if old == ZERO:
            _check_new_tag(repo, new, ref, protected, main_tip)
        return
    if ref == LOG_REF:
        if new == ZERO:
            raise ArbiterRefusedError(ref, "the evolution log is never deleted")
        if old != ZERO and old != new and not git.descends(repo, new, old):
            raise ArbiterRefusedError(ref, "the evolution log is append-only; this update rewrites it",
                                      "Pull the hub's log, append on top of it, push again.")
        _check_linear(repo, old, new, ref)
        return
    if ref.startswith(verdict.VERDICTS_REF):
        _check_verdicts(repo, old, new, ref, main_tip)
        return
    if ref.startswith("refs/heads/candidates/") and new == ZERO:
        raise ArbiterRefusedError(ref, "candidate branches are never deleted on the hub")
    if ref == HUB_REF:
        raise ArbiterRefusedError(ref, "what the hub advertises is set on the server, never pushed",
                                  "On the server: 'lineage hub dvc-remote PATH URL'.")
    if ref.startswith("refs/tags/") and _is_model_tag(repo, ref, main_tip):
        # GTO's tags of the model main's dvc.yaml declares: never moved or deleted, on what main promoted.
        if why := registry.check_tag(repo, ref, old, new, main_tip):
            raise ArbiterRefusedError(ref, why, "lineage promote and rollback write these tags; push them with "
                                                "'lineage push'.")
        return
    if ref.startswith("refs/tags/") and new != ZERO and REGISTRY_TAG.search(ref[len("refs/tags/"):]):
        commit = git.try_peel_commit(repo, new)
        if commit is None or str(commit.id) not in _first_parent_ids(repo, main_tip):
            raise ArbiterRefusedError(ref, f"a registry tag must name a commit {protected} served; "
                                           f"{new[:12]} is not on {protected}'s first-parent history",
                                      f"Tag a generation {protected} serves (or served).")


def _is_model_tag(repo, ref: str, main_tip: str | None) -> bool:
    """A version or stage tag of the model the protected branch's dvc.yaml declares as a DVC artifact."""
    if not main_tip or main_tip == ZERO:
        return False
    name = registry.declared_name(git.read_blob(repo, git.peel_commit(repo, main_tip), "dvc.yaml"))
    return name is not None and registry.is_registry_tag(ref, name)


def _check_linear(repo, old: str, new: str, ref: str) -> None:
    """Every commit new adds to the log has exactly one parent (the first one none), back to old."""
    commit = git.peel_commit(repo, new)
    while str(commit.id) != old:
        if len(commit.parents) > 1 or (not commit.parents and old != ZERO):
            raise ArbiterRefusedError(ref, f"the evolution log only grows linearly: {str(commit.id)[:12]} has "
                                           f"{len(commit.parents)} parents", "Append events one after another "
                                                                             "('lineage pull', then push again).")
        if not commit.parents:
            return
        commit = commit.parents[0]


def _check_verdicts(repo, old: str, new: str, ref: str, main_tip: str | None) -> None:
    """A verdict ref grows by verdicts about its commit, each signed by an arbiter key main allows."""
    about = ref[len(verdict.VERDICTS_REF):]
    if new == ZERO:
        raise ArbiterRefusedError(ref, "verdicts are never deleted")
    if old != ZERO and old != new and not git.descends(repo, new, old):
        raise ArbiterRefusedError(ref, "verdicts are never rewound or rewritten; this update drops one",
                                  "Fetch the hub's verdicts ('lineage pull') and add on top of them.")
    signers = git.read_blob(repo, git.peel_commit(repo, main_tip), SIGNERS_FILE) if main_tip else None
    commit = git.peel_commit(repo, new)
    while str(commit.id) != old:
        found = verdict.Verdict.from_message(commit.message)
        sha = str(commit.id)[:12]
        if found is None or len(commit.parents) > 1:
            raise ArbiterRefusedError(ref, f"{sha} is not a verdict (one signed statement, one parent)")
        if found.commit != about:
            raise ArbiterRefusedError(ref, f"the verdict {sha} is about {str(found.commit)[:12]}, not {about[:12]}, "
                                           "the commit its ref names")
        if problem := verdict.check(found, signers):
            raise ArbiterRefusedError(ref, f"the verdict {sha} does not verify under the hub's {SIGNERS_FILE}: "
                                           f"{problem}", "Only a key with the arbiter role signs verdicts.")
        if not commit.parents:
            return
        commit = commit.parents[0]


def receive(lines: list[str], git_dir: str, environ=os.environ) -> int:
    """pre-receive: check every update; any refusal rejects the whole push (and goes into the push log).

    environ: REMOTE_USER there is who pushes over HTTP (the web server checked the password); without
    it (a push over the path) only the rules for everyone apply.
    """
    repo = git.open_bare(git_dir, environ.get("GIT_OBJECT_DIRECTORY"))
    protected = _config(repo, "lineage.protectedBranch") or "main"
    failed, reasons = 0, []
    updates = [line.split() for line in lines if line.strip()]
    user = environ.get("REMOTE_USER") or None
    role = hub_access.role_of(repo, user) if user else None
    if user and role is None:
        why = f"{user} has no role on this hub"
        print(f"lineage hub: refused: {why}", file=sys.stderr)
        print("lineage hub: hint: the hub's owner gives one: 'lineage hub user add NAME --role proposer|arbiter|"
              "approver'", file=sys.stderr)
        hub_access.record(git_dir, user, updates, "refused", why)
        return 1
    logs = [new for _old, new, ref in updates if ref == LOG_REF and new != ZERO]
    verdicts = [new for _old, new, ref in updates if ref.startswith(verdict.VERDICTS_REF) and new != ZERO]
    main_tip = next((new for _old, new, ref in updates if ref == f"refs/heads/{protected}"), None)
    if main_tip is None:
        current = repo.references.get(f"refs/heads/{protected}")
        main_tip = str(current.target) if current is not None else None
    main_tip = None if main_tip == ZERO else main_tip
    for old, new, ref in updates:
        try:
            if user and role:
                hub_access.check_pusher(user, role, old, new, ref)
            check_update(repo, old, new, ref, protected, logs, main_tip, verdicts, _config(repo, ROOT_KEY))
        except LineageError as exc:
            failed += 1
            reasons.append(str(exc))
            print(f"lineage hub: {exc}", file=sys.stderr)
            if exc.hint:
                print(f"lineage hub: hint: {exc.hint}", file=sys.stderr)
    if failed:
        hub_access.record(git_dir, hub_access.pusher(environ), updates, "refused", "; ".join(reasons))
    return 1 if failed else 0


def _config(repo, key: str) -> str | None:
    try:
        return repo.config[key]
    except KeyError:
        return None


def post_receive(lines: list[str], git_dir: str, environ=os.environ) -> int:
    """post-receive: record the updates git made, and who pushed them."""
    updates = [line.split() for line in lines if line.strip()]
    if updates:
        hub_access.record(git_dir, hub_access.pusher(environ), updates, "accepted")
    return 0


if __name__ == "__main__":
    _run = post_receive if sys.argv[1:] == ["post-receive"] else receive
    raise SystemExit(_run(sys.stdin.read().splitlines(), os.environ.get("GIT_DIR", ".")))
