"""The arbiter's private directory: its secret seed and the sealed exam, never inside a store.

Default ``$XDG_CONFIG_HOME/lineage/arbiter`` (``~/.config/lineage/arbiter``; ``$LINEAGE_ARBITER_HOME``
or ``--home`` elsewhere), mode 0700:

    seed           the secret seed the bundled corpus's sealed exam is drawn with (hex)
    sealed.jsonl   the sealed exam: generalize items, one JSON object a line
    sealed.json    the pin of the sealed exam as last written into a store (what main should hold)

The store only ever sees the pin (``exam/sealed.json``): a digest, a count, a date and who made it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..adapters import git, ssh
from ..core import sealed
from ..core.canonical import canonical_json
from ..core.errors import MalformedDataError, UsageError
from ..core.exam import SEALED_PIN, render_items
from ..guard import signers
from ..store.exam import sealed_pin

HOME_ENV = "LINEAGE_ARBITER_HOME"
SEED = "seed"
SEALED = "sealed.jsonl"
PIN = "sealed.json"
SEALED_HINT = ('Each line of a sealed exam is a generalize item: {"delta": "era1", "prompt": "Q: …\\nA:", '
               '"choices": [" a", " b"], "answer": 0}.')


def home_dir(home: str | Path | None = None) -> Path:
    """The arbiter's directory: home, $LINEAGE_ARBITER_HOME, else $XDG_CONFIG_HOME/lineage/arbiter."""
    if home:
        return Path(home).expanduser()
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "lineage" / "arbiter"


def _private(path: Path, store=None) -> Path:
    if store is not None and path.resolve().is_relative_to(store.root.resolve()):
        raise UsageError(f"{path} is inside the store: the sealed exam must never be",
                         "Keep the arbiter's directory outside every store (the default is "
                         "$XDG_CONFIG_HOME/lineage/arbiter).")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_sealed(home: Path) -> list[dict[str, Any]] | None:
    """The sealed exam the arbiter holds, or None when it holds none.

    Raises:
        MalformedDataError: the file has a bad line (named).
    """
    path = home / SEALED
    if not path.is_file():
        return None
    try:
        return sealed.parse(path.read_text(), str(path))
    except MalformedDataError as exc:
        exc.hint = SEALED_HINT
        raise


@dataclass(frozen=True)
class Sealing:
    """A sealed exam made (init) or imported (seal), and its pin written into the store."""

    home: str
    digest: str
    items: int
    seed_created: bool
    pin_path: str | None      # the store path of the staged pin, None when main pins it already
    pin: dict[str, Any]
    deltas: list[str]


def init(store, home: str | Path | None = None) -> Sealing:
    """Make the arbiter's directory (seed kept if there is one), derive the bundled corpus's sealed exam, pin it."""
    path = _private(home_dir(home), store)
    seed_file = path / SEED
    created = not seed_file.is_file() or not seed_file.read_text().strip()
    if created:
        _write_private(seed_file, secrets.token_hex(32) + "\n")
    items = sealed.derive(seed_file.read_text().strip())
    return _keep(store, path, items, created)


def seal(store, file: str | Path, home: str | Path | None = None) -> Sealing:
    """Import a sealed exam a person provides (generalize items naming their delta), pin it.

    Raises:
        UsageError: no such file, or it holds no item.
        MalformedDataError: a bad line (named).
    """
    source = Path(file).expanduser()
    if not source.is_file():
        raise UsageError(f"{file}: no such file", "Give a JSONL file of generalize items (delta, prompt, choices, "
                                                  "answer).")
    try:
        items = sealed.parse(source.read_text(), str(file))
    except MalformedDataError as exc:
        exc.hint = SEALED_HINT
        raise
    if not items:
        raise UsageError(f"{file} holds no sealed item", "A sealed exam needs at least one generalize item.")
    return _keep(store, _private(home_dir(home), store), items, False)


def _keep(store, path: Path, items: list[dict[str, Any]], seed_created: bool) -> Sealing:
    """Write the sealed exam into the arbiter's directory and its pin into the store (staged)."""
    _write_private(path / SEALED, render_items(items))
    digest = sealed.digest(items)
    deltas = sorted({str(i["delta"]) for i in items})
    pinned = sealed_pin(store.repo, store.tip()) if store.tip() is not None else None
    if pinned is not None and pinned.get("digest") == digest:
        _write_private(path / PIN, canonical_json(pinned).decode() + "\n")
        return Sealing(str(path), digest, len(items), seed_created, None, pinned, deltas)
    created_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pin = sealed.pin(items, created_at, principal(store))
    text = json.dumps(pin, indent=2, sort_keys=True) + "\n"
    _write_private(path / PIN, text)
    target = store.root / SEALED_PIN
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    git.add(store.root, [SEALED_PIN])
    return Sealing(str(path), digest, len(items), seed_created, SEALED_PIN, pin, deltas)


def principal(store) -> str:
    """Who the arbiter is in this store: its key's principal in main's allowed_signers, else git's user.email."""
    try:
        key = signers.signing_key(store.root)
    except UsageError:
        key = None
    tip = store.tip()
    listed = git.read_blob(store.repo, tip, signers.SIGNERS_FILE) if tip is not None else None
    if key is not None and listed:
        found = signers.principal_for(listed, ssh.public_key(key))
        if found:
            return found
    return signers.identity(store.root)
