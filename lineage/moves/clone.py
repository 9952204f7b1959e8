"""`lineage clone URL DIR`: a working store from a hub in one command.

A hub keeps its DVC remote in its config (``lineage.dvcRemote``, set by 'lineage hub init' or
'lineage hub dvc-remote'). Over HTTP a client cannot read the bare repository's config, but it can
fetch a ref with the same credentials as everything else: the hub advertises the remote on
``refs/lineage/hub`` (a commit whose message is JSON, published by 'lineage hub serve' and 'lineage hub
dvc-remote'). A hub reached by its path is read directly. Clone
reads it, clones the hub (its git remote is named ``hub``, so 'lineage push' and 'lineage pull' work
as they are), keeps the DVC remote in ``.dvc/config.local`` (never a tracked file), installs the local
hook, fetches the log and the verdicts, and pulls the served weights.

Credentials are git's own: a URL with ``user:password@``, a credential helper, or GIT_ASKPASS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..adapters import dvc, git, git_remote
from ..core.errors import UsageError
from ..guard import hub as hub_mod
from ..guard.hook import install
from ..store.refs import served_generation
from ..store.root import Store
from . import sync
from .init import FSYNC

REMOTE = "hub"


@dataclass(frozen=True)
class Cloned:
    """What `lineage clone` made."""

    path: str
    url: str
    dvc_remote: str
    protected_branch: str
    serves: str | None


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    return re.sub(r"^([a-z+]+://[^/:@]+):[^/@]*@", r"\1:***@", url)


def _why(stderr: str) -> str:
    lines = [ln.removeprefix("fatal: ").strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else "git said nothing"


def advertises(url: str) -> bool:
    """True when the hub at url advertises what clones need (refs/lineage/hub), read with git's credentials.

    Raises:
        UsageError: the hub cannot be read (wrong credentials, no such hub).
    """
    proc = git_remote.ls_remote(".", url, [hub_mod.HUB_REF])
    if proc.returncode != 0:
        why = _why(proc.stderr)
        hint = ("Check the user and password (in the URL as https://USER:PASSWORD@HOST/…, or a git credential "
                "helper)." if "Authentication failed" in why or "could not read Username" in why
                else "Check the URL: 'lineage hub serve' prints it.")
        raise UsageError(f"cannot read the hub at {redact(url)}: {why}", hint)
    return bool(proc.stdout.strip())


def _local_hub(url: str) -> Path | None:
    path = Path(url.removeprefix("file://")).expanduser()
    return path if "://" not in url.removeprefix("file://") and path.is_dir() else None


def clone(url: str, dest: str | Path, dvc_remote: str | None = None) -> Cloned:
    """Clone the hub at url into dest, set the DVC remote it advertises, install the hook, pull the weights.

    dvc_remote: use this DVC remote instead of the advertised one.

    Raises:
        UsageError: dest is not empty, the hub cannot be read, or it advertises no DVC remote (and none given).
    """
    target = Path(dest).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} exists and is not an empty directory", "Clone into a new directory.")
    local = _local_hub(url)
    if not dvc_remote and local is not None:  # a hub reached by its path: its config is readable
        dvc_remote = git.config_get(local, hub_mod.DVC_KEY)
    if not dvc_remote and not advertises(url):
        raise UsageError(f"the hub at {redact(url)} advertises no DVC remote, so its weights cannot be pulled",
                         "On the server: 'lineage hub dvc-remote PATH URL'; or give --dvc-remote URL here.")
    proc = git_remote.clone(url, target, REMOTE)
    if proc.returncode != 0:
        raise UsageError(f"git clone of {redact(url)} failed: {_why(proc.stderr)}")
    mirror = f"refs/remotes/{REMOTE}/lineage-hub"
    git.git(["fetch", "-q", REMOTE, f"+{hub_mod.HUB_REF}:{mirror}"], target, check=False)
    repo = git.open_repo(target)
    commit = git.ref_commit(repo, mirror)
    said = hub_mod.advertised(repo[commit].message) if commit else {}
    remote = dvc_remote or str(said.get("dvc_remote") or "")
    protected = str(said.get("protected_branch") or (git.config_get(local, git.PROTECTED_KEY) if local else None)
                    or git.DEFAULT_PROTECTED)
    repo.config[git.PROTECTED_KEY] = protected
    for key, value in FSYNC.items():
        repo.config[key] = value
    dvc.set_default_remote(target, remote, local=True)
    install(repo.path, protected)
    store = Store.open(target)
    sync.pull(store, REMOTE)
    tip = store.tip()
    return Cloned(str(target), redact(url), remote, protected, served_generation(tip) if tip is not None else None)
