"""Our own sha256 record of a generation's files (hashes.csv), and hashing files fast.

DVC trusts a read-only cache file without rehashing it, so every generation carries
``reports/train/hashes.csv`` (path, sha256, bytes) written by the train stage; whoever loads,
serves or verifies the weights re-hashes them against it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .canonical import digest_obj, sha256_file
from .errors import IntegrityError

HASHES = "hashes.csv"
FIELDS = ["path", "sha256", "bytes"]


def hash_dir(path: Path, skip: tuple[str, ...] = (HASHES,)) -> list[dict[str, Any]]:
    """sha256 and size of every file under path, sorted by relative path."""
    rows = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel in skip:
            continue
        rows.append({"path": rel, "sha256": sha256_file(file), "bytes": file.stat().st_size})
    return rows


def hashes_csv(rows: list[dict[str, Any]]) -> str:
    """The text of a hashes.csv for rows of hash_dir."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def parse_hashes_csv(text: str) -> list[dict[str, Any]]:
    """Rows of a hashes.csv text."""
    return [{"path": r["path"], "sha256": r["sha256"], "bytes": int(r["bytes"])}
            for r in csv.DictReader(io.StringIO(text))]


def weights_digest(rows: list[dict[str, Any]]) -> str:
    """One digest for a whole generation: the canonical list of (path, sha256)."""
    return digest_obj([[r["path"], r["sha256"]] for r in rows])


def check_against(path: Path, expected: list[dict[str, Any]], what: str) -> None:
    """Re-hash files and compare with our own sha256 record (DVC trusts its read-only cache)."""
    actual = {r["path"]: r["sha256"] for r in hash_dir(path)}
    for row in expected:
        got = actual.get(row["path"])
        if got is None:
            raise IntegrityError(f"{what}/{row['path']}", "missing")
        if got != row["sha256"]:
            raise IntegrityError(f"{what}/{row['path']}", f"sha256 {got[:12]}… != recorded {row['sha256'][:12]}…")


def sha256_unbuffered(path: Path) -> str:
    """Hex sha256 of a big file, read in 4 MiB blocks into one buffer (hashlib releases the GIL)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def sha256_files(paths: list[Path]) -> dict[Path, str]:
    """sha256 of each file, on up to one thread per core."""
    workers = max(1, min(len(paths), os.cpu_count() or 1))
    if workers == 1:
        return {p: sha256_unbuffered(p) for p in paths}
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(paths, pool.map(sha256_unbuffered, paths), strict=True))
