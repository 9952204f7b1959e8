"""Signing keys and allowed_signers: who may promote and approve, in OpenSSH's own format.

An ``allowed_signers`` line is ``principals [options] keytype base64``; lineage's roles are
signature namespaces in its ``namespaces="…"`` option (none: every role), so ssh-keygen itself
refuses a key outside its roles. The file sits at the store root on the protected branch; the
signing key stays outside the store ($LINEAGE_SIGNING_KEY, git config lineage.signingKey, or
~/.config/lineage/signing_key).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

from ..adapters import git, ssh
from ..core.errors import UsageError

SIGNERS_FILE = "allowed_signers"
KEY_ENV = "LINEAGE_SIGNING_KEY"
ROLES = {"promote": "lineage-promote", "approve": "lineage-approve"}
ROLE_OF = {"promote": "promote", "rollback": "promote", "change": "approve", "approve": "approve"}


def namespace(action: str) -> str:
    """The signature namespace (role) an action is signed in."""
    return ROLES[ROLE_OF[action]]


def default_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "lineage" / "signing_key"


def signing_key(root: str | Path | None = None) -> Path | None:
    """The configured signing key: $LINEAGE_SIGNING_KEY, git's lineage.signingKey, the default file."""
    configured, source = os.environ.get(KEY_ENV), KEY_ENV
    if not configured and root is not None:
        configured, source = git.config_get(root, "lineage.signingKey") or "", "git config lineage.signingKey"
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise UsageError(f"{source} names {configured}, which is not a file",
                             "Point it at an SSH private key (or an agent key's .pub), or run 'lineage keys init'.")
        return path
    path = default_key_path()
    return path if path.is_file() else None


@dataclass(frozen=True)
class Signer:
    """One line of an allowed_signers file."""

    principals: tuple
    namespaces: tuple | None  # None: every namespace
    public: str
    line: int

    def roles(self) -> list[str]:
        return [r for r, ns in ROLES.items() if self.namespaces is None or ns in self.namespaces]


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


def signer_line(principal: str, public: str, roles=("promote", "approve")) -> str:
    """An allowed_signers line giving principal's key the roles."""
    return f'{principal} namespaces="{",".join(ROLES[r] for r in roles)}" {public}'


def principal_for(signers: bytes | None, public: str) -> str | None:
    """The first plain principal an allowed_signers file lists for a public key."""
    for entry in parse_signers((signers or b"").decode(errors="replace")):
        if entry.public.split()[:2] == public.split()[:2]:
            return next((p for p in entry.principals if "*" not in p and "?" not in p), None)
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


def keys_init(principal: str | None = None, path: str | Path | None = None, store=None) -> KeyInfo:
    """Create an ed25519 signing key (kept if one exists) and say which line lists it.

    store: the open Store this runs in, or None outside a store.
    """
    root = store.root if store is not None else None
    explicit = path or os.environ.get(KEY_ENV)  # where the key goes, even before it exists
    target = Path(explicit).expanduser() if explicit else (signing_key(root) or default_key_path())
    created = not target.exists()
    principal = principal or identity(root or ".")
    if created:
        ssh.generate(target, principal)
    public = ssh.public_key(target)
    return KeyInfo(str(target), public, ssh.fingerprint(public), signer_line(principal, public), created,
                   _roles_on_tip(store, public))


def _roles_on_tip(store, public: str) -> list:
    if store is None:
        return []
    blob = git.read_blob(store.repo, store.tip(), SIGNERS_FILE) or b""
    return sorted({r for e in parse_signers(blob.decode(errors="replace")) if e.public == public for r in e.roles()})


def keys_allow(store, principal: str, public_key: str, roles: list[str]) -> str:
    """Append an allowed_signers line to the work tree and stage it; 'lineage change' commits it."""
    root = store.root
    if not re.fullmatch(r"[^\s,\"*?]+", principal):
        raise UsageError(f"principal {principal!r} must be one word without commas or wildcards",
                         "Use an email address, e.g. alice@example.com.")
    if unknown := [r for r in roles if r not in ROLES]:
        raise UsageError(f"unknown role {unknown[0]!r}", f"Roles: {', '.join(ROLES)}.")
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
    line = signer_line(principal, " ".join(public.split()[:2]), roles)
    path.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")
    git.add(root, [SIGNERS_FILE])
    return line


def adopt(root: str | Path) -> str | None:
    """At init: list the configured signing key as promoter and approver in a new allowed_signers."""
    key, path = signing_key(root), Path(root) / SIGNERS_FILE
    if key is None or path.exists():
        return None
    line = signer_line(identity(root), ssh.public_key(key))
    path.write_text(f"# who may sign lineage promotions and approvals; change it only with 'lineage change'\n{line}\n")
    return line
