"""git's remotes and transports: naming remotes, clone, fetch, atomic push, ls-remote, and the two
server sides a hub runs (git http-backend for HTTP, upload-pack/receive-pack as an SSH forced command).

Split from git.py, which keeps the local repository; both run git through ``git.git``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..core.errors import StoreError
from .git import git


def remotes(cwd: str | Path) -> list[str]:
    return git(["remote"], cwd=cwd).stdout.split()


def set_remote(cwd: str | Path, name: str, url: str) -> None:
    """Add (or replace) a git remote."""
    git(["remote", "remove", name], cwd=cwd, check=False)
    git(["remote", "add", name, url], cwd=cwd)


def remote_refs(cwd: str | Path, remote: str) -> dict[str, str]:
    """ref -> commit (annotated tags peeled) on a remote.

    Raises:
        StoreError: the remote cannot be listed.
    """
    listed = git(["ls-remote", remote], cwd=cwd, check=False)
    if listed.returncode != 0:
        raise StoreError(f"cannot list the refs of git remote '{remote}': "
                         f"{(listed.stderr.strip().splitlines() or ['unreachable'])[-1]}")
    peeled: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        sha, ref = line.split("\t")
        peeled[ref.removesuffix("^{}")] = sha  # the peeled line of an annotated tag comes last
    return peeled


def http_backend() -> str:
    """The path of git's own smart-HTTP CGI program, git-http-backend."""
    return str(Path(git(["--exec-path"], cwd=".").stdout.strip()) / "git-http-backend")


def exec_pack(service: str, repository: str | Path, env: dict) -> None:
    """Replace this process with git's upload-pack or receive-pack on repository (an SSH forced command)."""
    if service not in ("upload-pack", "receive-pack"):
        raise ValueError(service)
    os.execvpe("git", ["git", service, str(repository)], {**os.environ, **env})


def clone(url: str, dest: str | Path, origin: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """git clone URL DEST with the remote named origin; never raises (the caller reads why it failed)."""
    return git(["clone", "-q", "--origin", origin, url, str(dest)], cwd=".", check=False,
               env={**_no_prompt(), **(env or {})})


def ls_remote(cwd: str | Path, url: str, refs: list[str]) -> subprocess.CompletedProcess:
    """git ls-remote URL REFS; never raises."""
    return git(["ls-remote", url, *refs], cwd=cwd, check=False, env=_no_prompt())


def _no_prompt() -> dict:
    """Without a terminal on stdin, git must fail on missing credentials rather than wait at a prompt."""
    return {} if os.isatty(0) else {"GIT_TERMINAL_PROMPT": "0"}


def fetch(cwd: str | Path, remote: str, refspecs: list[str]) -> None:
    git(["fetch", "-q", remote, *refspecs], cwd=cwd)


def push_atomic(cwd: str | Path, remote: str, refspecs: list[str]) -> subprocess.CompletedProcess:
    """git push --atomic --porcelain; never raises (the caller reads what was refused)."""
    return git(["push", "--atomic", "--porcelain", remote, *refspecs], cwd=cwd, check=False)
