"""Who pushes to a served hub: its users, their roles, the rules by role, and the hub's push log.

A hub served over HTTP (``lineage hub serve``) knows the pusher: the web server checks the user's
password against ``<hub>/lineage/passwd`` (htpasswd, SHA-512 crypt) and git's ``http-backend``
hands the user to the ``pre-receive`` hook as ``REMOTE_USER``. Each user holds one role, kept in the
hub's git config (``lineage-user.<name>.role``), the same three roles as the signing keys:

- only a **proposer** pushes ``refs/heads/candidates/*`` and frozen tags (``refs/tags/lineage/frozen/*``);
- only the **arbiter** pushes verdicts (``refs/lineage/verdicts/*``);
- the protected branch moves as the arbiter's rules say, whoever pushes (the signatures decide).

A push over the filesystem path has no ``REMOTE_USER`` and keeps the rules that hold for everyone.
The hub's log (``<hub>/lineage/pushes.jsonl``, one JSON line per ref update, appended under a
lock, never rewritten by lineage) records who pushed what, accepted or refused.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import sys
import time
from pathlib import Path

from ..adapters import git
from ..core import passwords
from ..core.errors import ArbiterRefusedError, UsageError
from .signers import ROLES

FOLDER = "lineage"
PASSWD = "passwd"
AUTHORIZED_KEYS = "authorized_keys"
HOST_KEY = "ssh_host_ed25519_key"
FORCED = 'command="{python} -m lineage.guard.hub_ssh {hub} {name}",restrict {key}'

PUSH_LOG = "pushes.jsonl"
ROLE_KEY = "lineage-user.{name}.role"
# Role names as people say them, and as the signing keys name them.
SPOKEN = {"propose": "proposer", "arbiter": "arbiter", "approve": "approver"}
ALIASES = {**{v: k for k, v in SPOKEN.items()}, **{k: k for k in ROLES}}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


def is_hub(path: Path) -> bool:
    """True when path is a bare repository that lineage made a hub (its pre-receive runs the arbiter)."""
    hook = path / "hooks" / "pre-receive"
    try:
        return (path / "HEAD").is_file() and (path / "objects").is_dir() and "lineage.guard.hub" in hook.read_text()
    except OSError:
        return False


def require_hub(path: str | Path) -> Path:
    """The hub at path, resolved.

    Raises:
        UsageError: path is not a lineage hub.
    """
    hub = Path(path).expanduser().resolve()
    if not is_hub(hub):
        raise UsageError(f"{hub} is not a lineage hub (no bare repository whose pre-receive runs lineage's arbiter)",
                         "Make one in a store with signers: 'lineage hub init PATH'.")
    return hub


def canonical_role(role: str) -> str:
    """propose, arbiter or approve, from any of their spellings.

    Raises:
        UsageError: not a role.
    """
    if role not in ALIASES:
        raise UsageError(f"unknown role {role!r}", "Roles: proposer, arbiter, approver.")
    return ALIASES[role]


def passwd_file(hub: Path) -> Path:
    return hub / FOLDER / PASSWD


def _read_passwd(hub: Path) -> list[tuple[str, str]]:
    path = passwd_file(hub)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        name, sep, hashed = line.partition(":")
        if sep and name:
            rows.append((name, hashed))
    return rows


def _write_passwd(hub: Path, rows: list[tuple[str, str]]) -> None:
    path = passwd_file(hub)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{name}:{hashed}\n" for name, hashed in rows))
    os.replace(tmp, path)  # the web server reads either the old file or the new one


def add_user(hub_path: str | Path, name: str, role: str, password: str) -> tuple[str, str]:
    """Give a new user a password and one role on the hub; return (name, the role as people say it).

    Raises:
        UsageError: not a hub, a bad name or role, an empty password, or a user the hub has already.
    """
    hub = require_hub(hub_path)
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"user name {name!r} must be letters, digits and . _ @ + - (at most 64)",
                         "Use a short name or an email address, e.g. ada or ada@example.com.")
    role = canonical_role(role)
    if not password:
        raise UsageError("the password is empty", "Give one on stdin, with --password-file FILE, or at the prompt.")
    rows = _read_passwd(hub)
    if any(existing == name for existing, _ in rows):
        held = git.config_get(hub, ROLE_KEY.format(name=name)) or "no role"
        raise UsageError(f"the hub has a user {name} already ({SPOKEN.get(held, held)})",
                         f"Remove it first: 'lineage hub user remove {hub} {name}'.")
    git.config_set(hub, ROLE_KEY.format(name=name), role)
    _write_passwd(hub, [*rows, (name, passwords.sha512_crypt(password))])
    return name, SPOKEN[role]


def keys_file(hub: Path) -> Path:
    return hub / FOLDER / AUTHORIZED_KEYS


def _key_owners(hub: Path) -> list[tuple[str, str]]:
    """(name, line) for every line of the hub's authorized_keys."""
    path = keys_file(hub)
    if not path.exists():
        return []
    found = re.compile(r'hub_ssh \S+ (\S+)"')
    return [(m.group(1), line) for line in path.read_text().splitlines() if (m := found.search(line))]


def add_ssh_key(hub_path: str | Path, name: str, role: str, public: str) -> tuple[str, str]:
    """Let user name log in over SSH with a public key, forced to the hub's git command; return (name, role).

    A user the hub has already keeps its password; its role must be the one given.

    Raises:
        UsageError: not a hub, a bad name, role or key, a key listed already, or a different role.
    """
    hub = require_hub(hub_path)
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"user name {name!r} must be letters, digits and . _ @ + - (at most 64)",
                         "Use a short name or an email address, e.g. ada or ada@example.com.")
    role = canonical_role(role)
    if re.search(r'[\s"\\]', str(hub)):
        raise UsageError(f"the hub's path {hub} has a space, quote or backslash, which a forced command cannot carry",
                         "Move the hub to a plain path (e.g. /srv/git/luna.git).")
    words = public.split()
    if len(words) < 2 or not words[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise UsageError("that is not an SSH public key", "Pass the user's .pub file ('ssh-ed25519 AAAA… comment').")
    key = " ".join(words[:2])
    for owner, line in _key_owners(hub):
        if key in line:
            raise UsageError(f"the hub lists this key already, for {owner}", "One key belongs to one user.")
    held = git.config_get(hub, ROLE_KEY.format(name=name))
    if held is not None and held != role:
        raise UsageError(f"the hub has a user {name} already, as its {SPOKEN.get(held, held)}",
                         "One user holds one role; pick another name for another role.")
    git.config_set(hub, ROLE_KEY.format(name=name), role)
    path = keys_file(hub)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    with open(path, "a") as out:
        out.write(FORCED.format(python=sys.executable, hub=hub, name=name, key=key) + "\n")
    os.chmod(path, 0o600)
    return name, SPOKEN[role]


def remove_user(hub_path: str | Path, name: str) -> None:
    """Take a user's password and role off the hub.

    Raises:
        UsageError: not a hub, or no such user.
    """
    hub = require_hub(hub_path)
    rows, keyed = _read_passwd(hub), _key_owners(hub)
    if not any(existing == name for existing, _ in rows) and not any(owner == name for owner, _ in keyed):
        raise UsageError(f"the hub has no user {name}", f"See them: 'lineage hub user list {hub}'.")
    _write_passwd(hub, [(n, h) for n, h in rows if n != name])
    if keyed:
        keys_file(hub).write_text("".join(line + "\n" for owner, line in keyed if owner != name))
    git.git(["config", "--unset-all", ROLE_KEY.format(name=name)], hub, check=False)


def users(hub_path: str | Path) -> list[tuple[str, str]]:
    """(name, role) for every user of the hub, by password or SSH key ('none' for one without a role)."""
    hub = require_hub(hub_path)
    names = list(dict.fromkeys([name for name, _ in _read_passwd(hub)] + [name for name, _ in _key_owners(hub)]))
    return [(name, SPOKEN.get(git.config_get(hub, ROLE_KEY.format(name=name)) or "", "none")) for name in names]


def role_of(repo, user: str) -> str | None:
    """The role the hub's config gives user (propose, arbiter, approve), or None."""
    try:
        role = repo.config[ROLE_KEY.format(name=user)]
    except KeyError:
        return None
    return role if role in ROLES else None


def check_pusher(user: str, role: str, old: str, new: str, ref: str) -> None:
    """Refuse a ref update the pusher's role does not allow (the rules for everyone are hub.check_update's)."""
    zero = "0" * 40
    if new == zero:
        return  # deletions: the rules for everyone decide
    if ref.startswith(("refs/heads/candidates/", "refs/tags/lineage/frozen/")) and role != "propose":
        what = "candidate branches" if ref.startswith("refs/heads/") else "frozen tags"
        raise ArbiterRefusedError(ref, f"{user} is the hub's {SPOKEN[role]}; only a proposer pushes {what}",
                                  "Push candidates with a proposer's credentials.")
    if ref.startswith("refs/lineage/verdicts/") and role != "arbiter":
        raise ArbiterRefusedError(ref, f"{user} is the hub's {SPOKEN[role]}; only the arbiter pushes verdicts",
                                  "Verdicts come from 'lineage arbiter watch' run with the arbiter's credentials.")


def pusher(environ) -> str:
    """Who pushes, for the log: the authenticated user, or 'path:<account>' for a push over the filesystem."""
    user = environ.get("REMOTE_USER")
    if user:
        return str(user)
    try:
        return f"path:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"path:uid{os.getuid()}"


def record(git_dir: str | Path, who: str, updates: list[list[str]], outcome: str, reason: str = "") -> None:
    """Append one line per ref update to the hub's push log (under an exclusive lock)."""
    folder = Path(git_dir) / FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = "".join(json.dumps({"time": stamp, "user": who, "ref": ref, "old": old, "new": new, "outcome": outcome,
                                **({"reason": reason} if reason else {})}, sort_keys=True) + "\n"
                    for old, new, ref in updates)
    with open(folder / PUSH_LOG, "a") as out:
        fcntl.flock(out, fcntl.LOCK_EX)
        out.write(lines)
        out.flush()
        os.fsync(out.fileno())


def read_log(hub_path: str | Path) -> list[dict]:
    """Every entry of the hub's push log, oldest first."""
    path = require_hub(hub_path) / FOLDER / PUSH_LOG
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
