"""Signing keys and allowed_signers: the three roles, in OpenSSH's own format.

An ``allowed_signers`` line is ``principals [options] keytype base64``; lineage's roles are
signature namespaces in its ``namespaces="…"`` option, so ssh-keygen itself refuses a key
outside its role:

- **propose** (``lineage-propose``): the loop or a person who trains candidates; signs rollbacks
  to a generation not withdrawn before;
- **arbiter** (``lineage-arbiter``): signs verdicts (see verdict.py);
- **approve** (``lineage-approve``): a person; signs approvals of candidates, approved changes and
  any rollback.

One key holds one role: ``keys allow`` refuses a key already listed, and the arbiter refuses an
approved change whose file lists a key twice or gives a line two roles. The file sits at the
store root on the protected branch; the signing key stays outside the store
($LINEAGE_SIGNING_KEY, git config lineage.signingKey, or ~/.config/lineage/signing_key).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

from ..adapters import git, ssh
from ..core.errors import UsageError
from ..store.keys import KEY_ENV as KEY_ENV
from ..store.keys import default_key_path as default_key_path
from ..store.keys import signing_key as signing_key

SIGNERS_FILE = "allowed_signers"
GIT_NAMESPACE = "git"  # what `git tag -s` / `git commit -S` sign in with gpg.format=ssh
ROLES = {"propose": "lineage-propose", "arbiter": "lineage-arbiter", "approve": "lineage-approve"}
# The roles whose key may sign each attested action (the first that a key holds signs).
ACTION_ROLES = {"approve": ("approve",), "change": ("approve",), "rollback": ("propose", "approve")}
VERB = {"approve": "approve", "change": "approve", "rollback": "roll back"}


def namespace(role: str) -> str:
    """The signature namespace of a role."""
    return ROLES[role]


@dataclass(frozen=True)
class Signer:
    """One line of an allowed_signers file."""

    principals: tuple
    namespaces: tuple | None  # None: every namespace
    public: str
    line: int

    def roles(self) -> list[str]:
        """The lineage roles this line gives (a line without namespaces= gives every one)."""
        return [r for r, ns in ROLES.items() if self.namespaces is None or ns in self.namespaces]

    @property
    def key(self) -> str:
        """'type base64', the key as compared."""
        return " ".join(self.public.split()[:2])


def parse_signers(text: str) -> list[Signer]:
    """The lines of an allowed_signers file that name a key (ssh-keygen stays the judge)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        tokens = re.findall(r'(?:[^\s"]|"[^"]*")+', line.strip())
        if not tokens or tokens[0].startswith("#") or len(tokens) < 3:
            continue
        options, rest = (None, tokens[1:]) if _is_key_type(tokens[1]) else (tokens[1], tokens[2:])
        if len(rest) < 2 or not _is_key_type(rest[0]):
            continue
        spaces = None
        for option in re.findall(r'(?:[^,"]|"[^"]*")+', options or ""):
            if option.lower().startswith("namespaces="):
                spaces = tuple(option.split("=", 1)[1].strip('"').split(","))
        out.append(Signer(tuple(tokens[0].split(",")), spaces, f"{rest[0]} {rest[1]}", n))
    return out


def _is_key_type(token: str) -> bool:
    return token.startswith(("ssh-", "ecdsa-", "sk-")) or token.endswith("@openssh.com")


def signer_line(principal: str, public: str, roles=("approve",)) -> str:
    """An allowed_signers line giving principal's key the roles (lineage writes one role a line).

    The key is allowed git's own namespace too, so this file serves as git's gpg.ssh.allowedSignersFile:
    `git verify-tag` checks the tags lineage signs with it (no lineage role is a `git` signature).
    """
    return f'{principal} namespaces="{",".join([*(ROLES[r] for r in roles), GIT_NAMESPACE])}" {public}'


def principal_for(signers: bytes | None, public: str) -> str | None:
    """The first plain principal an allowed_signers file lists for a public key."""
    for entry in parse_signers((signers or b"").decode(errors="replace")):
        if entry.public.split()[:2] == public.split()[:2]:
            return next((p for p in entry.principals if "*" not in p and "?" not in p), None)
    return None


def roles_of(signers: bytes | None, public: str) -> list[str]:
    """Every role an allowed_signers file gives a public key, in ROLES order."""
    held = {r for e in parse_signers((signers or b"").decode(errors="replace"))
            if e.key == " ".join(public.split()[:2]) for r in e.roles()}
    return [r for r in ROLES if r in held]


def one_key_one_role(text: str) -> str | None:
    """The first way an allowed_signers text breaks 'one key, one role', or None (pure)."""
    seen: dict[str, int] = {}
    for entry in parse_signers(text):
        if entry.key in seen:
            return (f"line {entry.line} lists the key of line {seen[entry.key]} again "
                    f"({', '.join(entry.principals)})")
        seen[entry.key] = entry.line
        if entry.namespaces is None:
            return f"line {entry.line} ({', '.join(entry.principals)}) has no namespaces=, which gives every role"
        lineage_roles = [ns for ns in entry.namespaces if ns in ROLES.values()]
        if len(lineage_roles) > 1:
            return f"line {entry.line} ({', '.join(entry.principals)}) gives one key {', '.join(lineage_roles)}"
    return None


def requires(signers: bytes | None) -> TypeGuard[bytes]:
    """True when an allowed_signers file lists anyone: from then on every move must be signed."""
    if not signers:
        return False
    return bool(parse_signers(signers.decode(errors="replace")))


def identity(root) -> str:
    """The principal to record for this user: git's user.email."""
    return git.config_get(root, "user.email") or "lineage@localhost"


# ---------------------------------------------------------------- keys


@dataclass(frozen=True)
class KeyInfo:
    """A signing key and the allowed_signers line that lists it."""

    path: str
    public: str
    fingerprint: str
    line: str
    created: bool
    roles_on_tip: list = field(default_factory=list)
    role: str = "approve"


def keys_init(principal: str | None = None, path: str | Path | None = None, store=None,
              role: str = "approve") -> KeyInfo:
    """Create an ed25519 signing key (kept if one exists) and say which line would list it as role.

    store: the open Store this runs in, or None outside a store.
    """
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", f"Roles: {', '.join(ROLES)}.")
    root = store.root if store is not None else None
    explicit = path or os.environ.get(KEY_ENV)  # where the key goes, even before it exists
    target = Path(explicit).expanduser() if explicit else (signing_key(root) or default_key_path())
    created = not target.exists()
    principal = principal or identity(root or ".")
    if created:
        ssh.generate(target, principal)
    public = ssh.public_key(target)
    return KeyInfo(str(target), public, ssh.fingerprint(public), signer_line(principal, public, [role]), created,
                   _roles_on_tip(store, public), role)


def _roles_on_tip(store, public: str) -> list:
    if store is None:
        return []
    return roles_of(git.read_blob(store.repo, store.tip(), SIGNERS_FILE), public)


def keys_allow(store, principal: str, public_key: str, role: str) -> str:
    """Append an allowed_signers line giving a key one role to the work tree and stage it.

    'lineage change' (signed by an approver) commits it.

    Raises:
        UsageError: a bad principal, role or key, or a key allowed_signers lists already (one key, one role).
    """
    root = store.root
    if not re.fullmatch(r"[^\s,\"*?]+", principal):
        raise UsageError(f"principal {principal!r} must be one word without commas or wildcards",
                         "Use an email address, e.g. alice@example.com.")
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", f"Roles: {', '.join(ROLES)}.")
    candidate = Path(public_key).expanduser()
    public = ssh.public_key(candidate) if candidate.exists() else public_key.strip()
    if len(public.split()) < 2 or not _is_key_type(public.split()[0]):
        raise UsageError(f"{public_key!r} is neither a key file nor an SSH public key",
                         "Pass a .pub file or 'ssh-ed25519 AAAA…'.")
    try:
        ssh.fingerprint(" ".join(public.split()[:2]))  # a malformed key fails here, not at signing time
    except ValueError:
        raise UsageError(f"{public_key!r} is not a valid SSH public key",
                         "Pass a .pub file or 'ssh-ed25519 AAAA…'.") from None
    path = root / SIGNERS_FILE
    text = path.read_text() if path.exists() else ""
    key = " ".join(public.split()[:2])
    for entry in parse_signers(text):
        if entry.key == key:
            held = ", ".join(entry.roles()) or "no lineage role"
            raise UsageError(f"allowed_signers already lists key {ssh.fingerprint(key)} (line {entry.line}, "
                             f"{', '.join(entry.principals)}: {held}); one key holds one role",
                             "Make a separate key for each role: 'lineage keys init --path FILE --role ROLE'.")
    line = signer_line(principal, key, [role])
    path.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")
    git.add(root, [SIGNERS_FILE])
    return line


def adopt(root: str | Path) -> str | None:
    """At init: list the configured signing key as the store's first approver in a new allowed_signers."""
    key, path = signing_key(root), Path(root) / SIGNERS_FILE
    if key is None or path.exists():
        return None
    line = signer_line(identity(root), ssh.public_key(key), ["approve"])
    path.write_text("# who may propose, judge (arbiter) and approve; one key, one role; change it only with "
                    f"'lineage change'\n{line}\n")
    return line
