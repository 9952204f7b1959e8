"""push and pull: a store and its hub. Data goes before refs, so no ref points at missing weights."""

from __future__ import annotations

from dataclasses import dataclass

from ..adapters import dvc, git, git_remote
from ..core import faults
from ..core.errors import ArbiterRefusedError, IntegrityError, StoreError
from ..guard import verdict
from ..store import protected_state, registry, waiting

PUSH_REFSPECS = ["refs/heads/{protected}:refs/heads/{protected}", "refs/heads/candidates/*:refs/heads/candidates/*",
                 "refs/tags/lineage/*:refs/tags/lineage/*", "refs/lineage/log:refs/lineage/log"]
VERDICTS = "refs/lineage/verdicts/"
# What git says when a ref moved on the remote between its check and its update (a push lost a race).
LOST_RACE = ("atomic transaction failed", "failed to update ref", "cannot lock ref", "incorrect old value",
             "stale info", "fetch first")


@dataclass(frozen=True)
class PushResult:
    """What `lineage push` sent."""

    remote: str
    refs: list
    data_pushed: bool


def push(store, remote: str = "hub") -> PushResult:
    """Push DVC data first, then every lineage ref atomically; any rejected ref is an error.

    Raises:
        IntegrityError: a ref to push points at data the DVC remote lacks.
        ArbiterRefusedError: the hub refused a ref (nothing was pushed).
    """
    root = store.root
    # Data before refs: no ref on the hub may point at weights the DVC remote lacks. The refs
    # pushed are every branch and tag lineage keeps, so their data goes, not only the work tree's.
    dvc.push(root, everything=True, check=True)
    _check_remote_has_everything(store)
    faults.point("push:data-pushed")
    specs = [s.format(protected=store.protected) for s in PUSH_REFSPECS]
    specs = [s for s in specs if "*" in s or store.repo.references.get(s.split(":")[0]) is not None]
    specs += _verdict_specs(store, remote)
    specs += registry.tag_refspecs(root)  # GTO's version and stage tags travel with the branch they name
    proc = git_remote.push_atomic(root, remote, specs)
    faults.point("push:refs-pushed")
    rejected = [ln for ln in proc.stdout.splitlines() if ln.startswith("!")]
    if proc.returncode != 0 or rejected:
        reasons = [ln for ln in proc.stderr.splitlines() if "lineage hub:" in ln and "hint" not in ln]
        if not reasons and any(lost in proc.stdout + proc.stderr for lost in LOST_RACE):
            raise ArbiterRefusedError(f"{remote}", "another push changed the hub while this one was in flight "
                                                   "(git refused the ref updates; nothing was pushed)",
                                      "Run 'lineage pull' to see what won, then push again if there is still "
                                      "something to push.")
        raise ArbiterRefusedError(f"{remote}", (reasons[0].split("lineage hub: ", 1)[1] if reasons else
                                                (rejected[0] if rejected else proc.stderr.strip()[-200:])),
                                  "Nothing was pushed (atomic). Fix the refused ref and push again.")
    refs = [ln.split("\t")[1] for ln in proc.stdout.splitlines() if "\t" in ln and ln[:1] in "*+ -"]
    return PushResult(remote, refs, True)


def _verdict_specs(store, remote: str) -> list[str]:
    """Each local verdict ref the hub lacks or holds an ancestor of (an older one would be refused)."""
    repo, specs = store.repo, []
    for ref in git.refs_under(repo, VERDICTS):
        theirs = git.ref_commit(repo, f"refs/remotes/{remote}/verdicts/{ref.name[len(VERDICTS):]}")
        mine = str(ref.target)
        if theirs is None or (theirs != mine and git.descends(repo, mine, theirs)):
            specs.append(f"{ref.name}:{ref.name}")
    return specs


def _check_remote_has_everything(store) -> None:
    """Refuse to push refs while some data they point at is not in the DVC remote.

    ``dvc push`` only warns (and exits 0) about data that is neither in the local cache nor in
    the remote; pushing the refs then would publish generations nobody can restore.
    """
    missing, _ = dvc.remote_status(store.root, everything=True)
    absent = sorted(path for path, state in (missing or {}).items() if state in ("new", "missing"))
    if absent:
        err = IntegrityError(f"DVC remote lacks {', '.join(absent[:3])}{' …' if len(absent) > 3 else ''}",
                             "a ref to push points at data that is neither in the remote nor (all of it) "
                             "in the local cache; nothing was pushed to the hub")
        err.hint = "Fetch the data where it was trained ('dvc push -a -T' there), then run 'lineage push' again."
        raise err


def pull(store, remote: str = "hub") -> dict:
    """Fetch lineage refs and DVC data; fast-forward the protected branch through the local arbiter."""
    root, repo, protected = store.root, store.repo, store.protected
    git_remote.fetch(root, remote, [f"+refs/heads/*:refs/remotes/{remote}/*", "refs/tags/lineage/*:refs/tags/lineage/*",
                             f"+refs/lineage/log:refs/remotes/{remote}/lineage-log",
                             f"+{VERDICTS}*:refs/remotes/{remote}/verdicts/*",
                             *registry.tag_refspecs(root)])
    _adopt_verdicts(store, remote)
    moved = False
    theirs = git.ref_commit(repo, f"refs/remotes/{remote}/{protected}")
    mine = store.tip()
    if theirs is not None and mine is not None and theirs != str(mine.id):
        if store.on_protected():
            git.merge_ff_only(root, theirs)
        else:
            git.update_ref(root, store.protected_ref, theirs, str(mine.id))
        moved = True
    dvc.pull(root)
    waiting.restore(store)  # dvc's checkout drops the data of deltas that wait for the next propose
    protected_state.refresh(store)  # a fresh clone has none yet
    return {"remote": remote, "protected_moved": moved}


def _adopt_verdicts(store, remote: str) -> None:
    """Take the hub's verdicts into the local refs (created or fast-forwarded), so a later push only grows them.

    Where the two chains parted, the local ref stays: the arbiter reads the fetched copy too.
    """
    prefix = f"refs/remotes/{remote}/verdicts/"
    for ref in list(git.refs_under(store.repo, prefix)):
        try:
            verdict.adopt(store, ref.name[len(prefix):], str(ref.target))
        except StoreError:
            continue
