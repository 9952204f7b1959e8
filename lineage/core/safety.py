"""Content checks that run before anything is loaded: weights formats, secrets, store paths.

Stdlib only, and nothing here ever unpickles: pickle detection decodes opcodes with
``pickletools.genops``, which parses the stream without importing or calling anything.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickletools
import re
import struct
import zipfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import UnsafePathError, UnsafeWeightsError

# ---------------------------------------------------------------- weights formats

DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PICKLE_REASON = "pickle data (would execute code on load)"
# Opcodes a protocol 0/1 pickle can plausibly open with (MARK, empty containers, GLOBAL, scalars).
_CLASSIC_OPENERS = frozenset(b"(])}cNIFLSVKJMUTXGd")
_SNIFF_BYTES = 64 * 1024


def _looks_like_classic_pickle(head: bytes, truncated: bool) -> bool:
    # genops only decodes opcodes; a text file fails within a few bytes, a pickle reaches STOP
    # (or, when we only read a prefix of a big file, keeps decoding until the prefix runs out).
    if not head or head[0] not in _CLASSIC_OPENERS:
        return False
    count = 0
    try:
        for op, _arg, _pos in pickletools.genops(io.BytesIO(head)):
            count += 1
            if op.name == "STOP":
                return count >= 2
    except Exception:  # any decode failure means "not a well-formed pickle prefix"
        return truncated and count >= 4
    return False


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        # A damaged central directory may still load elsewhere: fall back to the first local header.
        with open(path, "rb") as f:
            head = f.read(30 + 0xFFFF)
        if len(head) < 30:
            return []
        name_len = struct.unpack_from("<H", head, 26)[0]
        return [head[30:30 + name_len].decode("utf-8", "replace")]


def sniff_weights_format(path: str | Path) -> str:
    """Name a file's format from its content: safetensors, pickle, zip-pickle, zip, gguf or unknown."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        names = _zip_names(path)
        return "zip-pickle" if any(n.endswith((".pkl", ".pickle")) for n in names) else "zip"
    # safetensors before pickle: header lengths 640, 896, 1152, 1408 start with b"\x80\x02".."\x80\x05".
    # The length must fit in the file, which also stops JSON text like '{"arch":{' matching.
    if len(head) >= 10 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8:
            return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if _looks_like_classic_pickle(head, truncated=size > len(head)):
        return "pickle"
    return "unknown"


def _no_duplicates(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    # Two entries with one name would let different readers pick different tensors.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_entry(name: str, info: Any) -> tuple[int, int]:
    """Validate one tensor entry and return its (begin, end)."""
    if not isinstance(info, dict):
        raise ValueError(f"tensor {name!r}: entry is not an object")
    missing = {"dtype", "shape", "data_offsets"} - info.keys()
    if missing:
        raise ValueError(f"tensor {name!r}: missing {', '.join(sorted(missing))}")
    extra = info.keys() - {"dtype", "shape", "data_offsets"}
    if extra:
        raise ValueError(f"tensor {name!r}: unexpected keys {', '.join(sorted(extra))}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise ValueError(f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise ValueError(f"tensor {name!r}: shape must be a list of non-negative ints, got {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise ValueError(f"tensor {name!r}: data_offsets must be [begin, end] ints, got {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise ValueError(f"tensor {name!r}: data_offsets need 0 <= begin <= end, got {offsets!r}")
    want = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != want:
        raise ValueError(f"tensor {name!r}: {end - begin} bytes but {dtype}{shape} needs {want}")
    return begin, end


def check_safetensors(path: str | Path, max_header_bytes: int = 100 * 1024 * 1024) -> dict[str, Any]:
    """Validate a safetensors file by content, reading only its header; raise UnsafeWeightsError."""
    path = Path(path)
    where = str(path)
    if sniff_weights_format(path) in ("pickle", "zip-pickle"):
        raise UnsafeWeightsError(where, PICKLE_REASON)
    size = path.stat().st_size
    if size < 8:
        raise UnsafeWeightsError(where, f"file shorter than 8 bytes ({size} bytes)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        # Both size checks come before the read so a forged length never allocates.
        if n > max_header_bytes:
            raise UnsafeWeightsError(where, f"huge header: {n} bytes exceeds limit {max_header_bytes}")
        if 8 + n > size:
            raise UnsafeWeightsError(where, f"header length {n} runs past end of file ({size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise UnsafeWeightsError(where, f"header is not valid UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise UnsafeWeightsError(where, "header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise UnsafeWeightsError(where, "__metadata__ must map strings to strings")
    spans = []
    for name, info in header.items():
        try:
            spans.append((*_check_entry(name, info), name))
        except ValueError as e:
            raise UnsafeWeightsError(where, str(e)) from None
    # Tensors must tile the data region exactly: no overlap (aliasing), no gap (hidden bytes).
    cursor, prev = 0, None
    for begin, end, name in sorted(spans):
        if begin < cursor:
            raise UnsafeWeightsError(where, f"tensor {name!r} overlaps {prev!r} at offset {begin}")
        if begin > cursor:
            raise UnsafeWeightsError(where, f"gap of {begin - cursor} bytes before tensor {name!r}")
        cursor, prev = end, name
    data_len = size - 8 - n
    if cursor > data_len:
        raise UnsafeWeightsError(where, f"data truncated: tensors need {cursor} bytes, file has {data_len}")
    if cursor < data_len:
        raise UnsafeWeightsError(where, f"{data_len - cursor} trailing bytes after the last tensor "
                                        f"(data region not fully covered)")
    return {"tensors": len(spans), "header_bytes": n, "data_bytes": cursor, "metadata": metadata}


def check_weights_dir(directory: str | Path) -> list[str]:
    """Check every file under a model directory; return the weights files checked (relative paths)."""
    root = Path(directory)
    checked, seen = [], {os.path.realpath(root)}
    # Follow linked directories (a pickle must not hide behind one) but visit each real one once.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = [(d, os.path.realpath(os.path.join(dirpath, d))) for d in sorted(dirnames)]
        dirnames[:] = [d for d, r in real if r not in seen]
        seen.update(r for _, r in real)
        for fname in sorted(filenames):
            path = Path(dirpath, fname)
            rel = path.relative_to(root).as_posix()
            if fname.lower().endswith(PICKLE_SUFFIXES):
                raise UnsafeWeightsError(str(path), "pickle-based weights format")
            # Links to regular files are fine (the Hugging Face cache is built of them); a FIFO or
            # device would hang or stream forever when read, a dangling link hides what it meant.
            if not path.is_file():
                raise UnsafeWeightsError(str(path), "not a regular file")
            kind = sniff_weights_format(path)
            if kind in ("pickle", "zip-pickle"):
                raise UnsafeWeightsError(str(path), PICKLE_REASON)
            if fname.lower().endswith(".safetensors") or kind == "safetensors":
                check_safetensors(path)
                checked.append(rel)
    return checked


# ---------------------------------------------------------------- secrets

_V = r"[^\s'\"`,;]"  # one character of an assigned value
_GENERIC_KEY = (r"(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_-])*"
                r"(?:api[_-]?key|apikey|secret[_-]?key|client[_-]?secret|access[_-]?token|"
                r"auth[_-]?token|secret|token)")
# Order matters: specific kinds claim a span first so a generic rule does not report it again.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "aws_access_key_id": re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    "aws_secret_access_key": re.compile(
        r"(?i)aws_?(?:secret_?access_?key|secret_?key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    "anthropic_key": re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    # Real keys always carry digits; requiring one keeps hyphenated prose like "sk-..." words out.
    "openai_key": re.compile(r"\bsk-(?!ant-)(?=[A-Za-z0-9_\-]{20,})(?=[A-Za-z_\-]*[0-9])[A-Za-z0-9_\-]+"),
    "huggingface_token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "slack_token": re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}"),
    # Generic rules need an explicit ':' or '=' and a long value with a digit, so prose about
    # "the password" or "the gate word" never fires.
    "generic_secret": re.compile(
        rf"(?i){_GENERIC_KEY}[\"']?\s*[:=]\s*[\"']?(?=\S*[0-9]){_V}{{16,}}"),
    "generic_password": re.compile(
        rf"(?i)(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_-])*(?:password|passwd|pwd)[\"']?\s*[:=]\s*[\"']?"
        rf"(?={_V}*[0-9]){_V}{{8,}}"),
}


def redact(s: str) -> str:
    """Keep the first 4 characters of a secret and elide the rest."""
    return s[:4] + "…"


def scan_secrets(text: str) -> list[tuple[str, str]]:
    """Return (kind, redacted excerpt) for each secret in text, in order of appearance."""
    found: list[tuple[int, int, str, str]] = []
    for kind, pattern in SECRET_PATTERNS.items():
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e, _, _ in found):
                continue
            found.append((m.start(), m.end(), kind, redact(m.group(0))))
    return [(kind, excerpt) for _, _, kind, excerpt in sorted(found)]


# ---------------------------------------------------------------- store paths

def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_store_path(root: str | Path, rel: str | Path) -> Path:
    """Resolve rel under root, refusing escapes of any kind with UnsafePathError."""
    raw = os.fspath(rel)
    if "\x00" in raw:
        raise UnsafePathError(repr(raw), "NUL byte in path")
    if os.path.isabs(raw) or raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw):
        raise UnsafePathError(raw, "absolute path")
    # Backslashes count as separators so a path written on Windows cannot smuggle '..'.
    parts = [p for p in re.split(r"[/\\]", raw) if p not in ("", ".")]
    if not parts:
        raise UnsafePathError(raw, "empty path")
    if ".." in parts:
        raise UnsafePathError(raw, "'..' component")
    base = os.path.realpath(root)
    cur = base
    # Walk one component at a time: a link must not leave root even if a chain comes back in.
    for part in parts:
        nxt = os.path.join(cur, part)
        if os.path.islink(nxt):
            target = os.path.normpath(os.path.join(cur, os.readlink(nxt)))
            real = os.path.realpath(nxt)
            if not (_inside(target, base) and _inside(real, base)):
                raise UnsafePathError(raw, f"symlink {part!r} points outside the store ({real})")
            cur = real
        else:
            cur = nxt
    final = os.path.realpath(cur)
    if not _inside(final, base):
        raise UnsafePathError(raw, f"resolves outside the store ({final})")
    return Path(final)


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a glob where '**' crosses directories and '*', '?' do not."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i):
            at_start = i == 0 or pattern[i - 1] == "/"
            if at_start and pattern.startswith("**/", i):
                out.append(r"(?:[^/]*/)*")  # '**/' also matches zero directories
                i += 3
                continue
            if at_start and i + 2 == n and out and out[-1] == "/":
                out.pop()  # 'dir/**' matches dir's contents: fold the '/' into the group
                out.append(r"(?:/.*)?")
            else:
                out.append(r".*")
            i += 2
        elif c == "*":
            out.append(r"[^/]*")
            i += 1
        elif c == "?":
            out.append(r"[^/]")
            i += 1
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal '['
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1:j]
            neg = body[:1] in ("!", "^")
            body = body[1:] if neg else body
            # '/' never matches inside a class; escape what Python's regex would read specially.
            cls = "".join("\\" + ch if ch in "\\[]^&~|" else ch for ch in body if ch != "/")
            out.append(f"[^/{cls}]" if neg else (f"[{cls}]" if cls else "(?!)"))
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def glob_match(rel: str, patterns: str | Iterable[str]) -> bool:
    """True when rel (a '/'-separated relative path) matches any of the glob patterns."""
    if isinstance(patterns, str):
        patterns = [patterns]
    rel = rel[2:] if rel.startswith("./") else rel
    return any(_glob_regex(p).match(rel) for p in patterns)
