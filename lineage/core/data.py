"""Data records and the data gate: parse deltas, refuse what must not reach training, sample replay.

A delta is a JSONL file of training records: ``text`` or ``prompt`` + ``completion``. A delta
never carries probes: the exam belongs to the protected branch (core/exam.py), so a ``kind: probe``
record is refused (deltas an earlier generation learned before this rule keep theirs, unused).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import DataGateError, MalformedDataError, NotWhitelistedError, SecretFoundError, UnsafePathError
from .safety import check_store_path, glob_match, scan_secrets

if TYPE_CHECKING:
    from .policy import DataRules

TRAIN_KINDS = {"narrative", "qa", "voice", "law", "text"}
PROBE_KINDS = {"recall", "generalize", "tone", "law"}
DELTA_RE = re.compile(r"^d(\d{3})-[A-Za-z0-9_.-]+\.jsonl$")
STRATEGIES = ("uniform", "recent_weighted", "high_score_weighted")
PROBE_HINT = "exam items belong on main: 'lineage exam add FILE' then 'lineage change'"


@dataclass(frozen=True)
class Delta:
    """One registered data delta: its id, path, hash, records and the line each record is on."""

    id: str
    path: str
    sha256: str
    records: tuple[dict[str, Any], ...]
    lines: tuple[int, ...] = ()

    @property
    def train_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") != "probe"]

    def train_lines(self) -> list[tuple[int, dict[str, Any]]]:
        """(line, record) of each training record (line 0 when unknown)."""
        lines = self.lines or (0,) * len(self.records)
        return [(n, r) for n, r in zip(lines, self.records, strict=True) if r.get("kind") != "probe"]


def _fail(path: str, line: int, problem: str) -> NoReturn:
    raise MalformedDataError(path, line, problem)


def validate_record(rec: Any, path: str, line: int, max_chars: int, legacy_probes: bool = False) -> dict[str, Any]:
    """Check one parsed line; raise MalformedDataError naming file and line.

    A probe record is refused (DataGateError with the way to add it to the exam) unless
    legacy_probes: a delta learned before deltas lost their probes keeps them, never read.
    """
    if not isinstance(rec, dict):
        _fail(path, line, "not a JSON object")
    kind = rec.get("kind", "text")
    if kind == "probe" and not legacy_probes:
        raise DataGateError(f"{path}:{line}: a delta cannot carry exam probes (kind: probe)", PROBE_HINT)
    source = rec.get("source")
    if not isinstance(source, str) or not source:
        _fail(path, line, "missing 'source' (a string naming where the record came from)")
    if source.startswith("/") or ".." in source.split("/") or "\\" in source:
        raise UnsafePathError(f"{path}:{line} source {source!r}", "source escapes the store")
    score = rec.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        _fail(path, line, "'score' must be a number")
    if kind == "probe":
        probe = rec.get("probe")
        if probe not in PROBE_KINDS:
            _fail(path, line, f"probe kind {probe!r} is not one of {sorted(PROBE_KINDS)}")
        if probe in ("recall", "generalize"):
            choices, answer = rec.get("choices"), rec.get("answer")
            if not isinstance(rec.get("prompt"), str) or not isinstance(choices, list) or len(choices) < 2 \
                    or not all(isinstance(c, str) for c in choices) \
                    or isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
                _fail(path, line, f"{probe} probe needs 'prompt', 'choices' (>=2 strings) and 'answer' (an index)")
        elif probe == "tone" and not isinstance(rec.get("text"), str):
            _fail(path, line, "tone probe needs 'text'")
        elif probe == "law":
            rule = rec.get("rule")
            if not isinstance(rec.get("prompt"), str) or not isinstance(rule, dict) or not rule \
                    or set(rule) - {"must_match", "must_not_match"}:
                _fail(path, line, "law probe needs 'prompt' and 'rule' with must_match / must_not_match")
            for pattern in rule.values():
                try:
                    re.compile(pattern)
                except (re.error, TypeError):
                    _fail(path, line, f"law rule pattern {pattern!r} is not a valid regex")
    else:
        if kind not in TRAIN_KINDS:
            _fail(path, line, f"kind {kind!r} is not one of {sorted(TRAIN_KINDS)}")
        has_text = isinstance(rec.get("text"), str)
        has_pair = isinstance(rec.get("prompt"), str) and isinstance(rec.get("completion"), str)
        if not (has_text or has_pair):
            _fail(path, line, "needs 'text' or both 'prompt' and 'completion'")
    size = sum(len(v) for v in rec.values() if isinstance(v, str))
    if size > max_chars:
        _fail(path, line, f"record has {size} characters, over policy.data.max_record_chars={max_chars}")
    return rec


def _strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value, nested ones included (a secret in 'choices' is still one)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def read_delta(root: Path, rel: str, rules: DataRules, legacy_probes: bool = False) -> Delta:
    """Apply the data gate to one delta file and parse it (legacy_probes: see validate_record)."""
    import hashlib

    if glob_match(rel, list(rules.forbidden)):
        raise UnsafePathError(rel, f"matches a forbidden pattern {list(rules.forbidden)}")
    if not glob_match(rel, list(rules.whitelist)):
        raise NotWhitelistedError(rel, list(rules.whitelist))
    full = check_store_path(root, rel)
    raw = full.read_bytes()
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        _fail(rel, raw[:exc.start].count(b"\n") + 1, f"not valid UTF-8 (byte {raw[exc.start]:#04x})")
    records, lines = [], []
    # Split on newlines only: str.splitlines() also breaks at U+2028, U+0085, … which JSON
    # strings may hold raw, and would then refuse a valid line and misnumber the rest.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            _fail(rel, number, f"unparsable JSON ({exc.msg})")
        rec = validate_record(rec, rel, number, rules.max_record_chars, legacy_probes)
        for value in _strings(rec):
            found = scan_secrets(value)
            if found:
                raise SecretFoundError(rel, number, found[0][0])
        records.append(rec)
        lines.append(number)
    return Delta(delta_id_of(rel), rel, hashlib.sha256(raw).hexdigest(), tuple(records), tuple(lines))


def delta_id_of(rel: str) -> str:
    """The id of a delta file: its stem ('d001-era1' for data/deltas/d001-era1.jsonl)."""
    return Path(rel).stem


def list_deltas(root: Path, deltas_dir: Path) -> list[str]:
    """Relative paths of every data file in the deltas directory, sorted (delta order)."""
    base = root / deltas_dir
    if not base.exists():
        return []
    out = []
    for path in sorted(base.rglob("*")):
        if path.name in (".gitignore",) or path.suffix == ".dvc":
            continue
        if path.is_dir() and not path.is_symlink():
            continue
        out.append(path.relative_to(root).as_posix())
    return out


def training_text(rec: dict[str, Any]) -> str:
    """The text a record contributes to causal-LM training."""
    text: str = rec["text"] if "text" in rec else rec["prompt"] + rec["completion"]
    return text


def sample_replay(deltas: list[Delta], count: int, strategy: str, seed: int) -> list[dict[str, Any]]:
    """Sample `count` training records from earlier deltas, without replacement.

    uniform: every record alike; recent_weighted: later deltas weigh more;
    high_score_weighted: weight by the record's score ("karma").
    """
    if strategy not in STRATEGIES:
        raise ValueError(strategy)
    pool = [(i, r) for i, d in enumerate(deltas) for r in d.train_records]
    if count <= 0 or not pool:
        return []
    rng = random.Random(seed)

    def weight(i: int, r: dict[str, Any]) -> float:
        if strategy == "recent_weighted":
            return float(i + 1)
        if strategy == "high_score_weighted":
            return max(float(r.get("score", 0.0)), 1e-6)
        return 1.0

    # Efraimidis–Spirakis: key u^(1/w), keep the largest keys.
    keyed = sorted(((rng.random() ** (1.0 / weight(i, r)), n) for n, (i, r) in enumerate(pool)), reverse=True)
    return [pool[n][1] for _, n in keyed[:min(count, len(pool))]]
