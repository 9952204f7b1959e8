"""The SSH forced command of a served hub: ``python -m lineage.guard.hub_ssh HUB NAME``.

sshd runs it for every login with a user's key (``authorized_keys``: ``command="…",restrict KEY``) and
puts what the client asked for in ``SSH_ORIGINAL_COMMAND``. Only ``git-upload-pack 'PATH'`` and
``git-receive-pack 'PATH'`` (or ``git upload-pack`` / ``git receive-pack``) for this hub run, as git's own
programs in the hub, with ``REMOTE_USER=NAME`` for the hooks; anything else is refused with one line,
``git push --receive-pack='git -c core.hooksPath=/dev/null receive-pack'`` included.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from ..adapters import git, git_remote
from . import hub_access

SERVICES = {"git-upload-pack": "upload-pack", "git-receive-pack": "receive-pack"}


def command(original: str, hub: Path) -> str | None:
    """The git service the client's command line asks for on this hub, or None when it asks for anything else."""
    try:
        words = shlex.split(original)
    except ValueError:
        return None
    if len(words) == 3 and words[0] == "git":
        words = [f"git-{words[1]}", words[2]]
    if len(words) != 2 or words[0] not in SERVICES:
        return None
    asked = words[1].rstrip("/")
    if asked.lstrip("/").removeprefix("~/") not in (hub.name, str(hub).lstrip("/")):
        return None
    return SERVICES[words[0]]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("lineage hub: refused: the forced command needs HUB NAME", file=sys.stderr)
        return 2
    hub, user = Path(argv[0]), argv[1]
    original = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    service = command(original, hub)
    if service is None:
        print(f"lineage hub: refused: {user} may only fetch from or push to {hub.name} with git "
              f"(asked for: {original or 'a shell'})", file=sys.stderr)
        return 1
    repo = git.open_bare(hub)
    if hub_access.role_of(repo, user) is None:
        print(f"lineage hub: refused: {user} has no role on this hub", file=sys.stderr)
        return 1
    git_remote.exec_pack(service, hub, {"REMOTE_USER": user})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
