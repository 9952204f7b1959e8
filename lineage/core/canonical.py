"""Canonical bytes and algorithm-tagged digests for anything hashed or signed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def canonical_json(obj: Any) -> bytes:
    """Serialise with sorted keys and no whitespace: the bytes we hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_bytes(data: bytes) -> str:
    """Return 'sha256:<hex>' of data."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_obj(obj: Any) -> str:
    """Return the tagged digest of an object's canonical bytes."""
    return digest_bytes(canonical_json(obj))


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str | Path, obj: Any, pretty: bool = True) -> None:
    """Write JSON atomically (temp file + rename), pretty for humans unless asked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(obj, sort_keys=True, indent=2) + "\n" if pretty else canonical_json(obj).decode()
    tmp.write_text(data)
    tmp.replace(path)
