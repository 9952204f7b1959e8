"""The exam as a commit holds it (the protected tip's is the one that judges)."""

from __future__ import annotations

import json
from typing import Any

from ..adapters import git
from ..core.canonical import digest_bytes
from ..core.exam import KINDS, SEALED_PIN, Exam, exam_path, parse_items


def read_exam(repo, commit) -> Exam:
    """The visible exam in commit's tree (kinds without a file are empty).

    Raises:
        MalformedDataError: an exam file has a bad line (named).
    """
    items: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        blob = git.read_blob(repo, commit, exam_path(kind))
        items[kind] = parse_items(kind, blob.decode("utf-8"), exam_path(kind)) if blob is not None else []
    return Exam(items)


def sealed_pin(repo, commit) -> dict[str, Any] | None:
    """The sealed exam's pin (exam/sealed.json) in commit's tree, or None when there is none."""
    blob = git.read_blob(repo, commit, SEALED_PIN)
    if blob is None:
        return None
    data = json.loads(blob)
    return data if isinstance(data, dict) else None


def pin_digest(repo, commit) -> str | None:
    """The digest of the pin file itself (what a verdict binds), or None."""
    blob = git.read_blob(repo, commit, SEALED_PIN)
    return None if blob is None else digest_bytes(blob)
