"""The promotion policy: gate thresholds, training budget and data rules from params.yaml."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import yaml

from .canonical import digest_obj
from .errors import MetricsError, PolicyError, unknown_key_error

SCHEMA_VERSION = 1
AUTONOMY = ("manual", "auto")


# --- field checks, shared by policy, metrics and gate ------------------------------------


class Problems:
    """Turns a bad field into the caller's error type; the base raises PolicyError."""

    def __init__(self, file: str = "params.yaml") -> None:
        self.file = file

    def bad(self, field_: str, problem: str) -> Exception:
        """Error for a field with a wrong type or an impossible value."""
        return PolicyError(field_, problem, file=self.file)

    def unknown(self, field_: str, known: Collection[str]) -> Exception | None:
        """Error for an unknown key, or None to tolerate it."""
        return unknown_key_error(PolicyError, field_, known, file=self.file)


class MetricsProblems(Problems):
    """Problems in a metrics or report file: MetricsError naming file and dotted field."""

    def __init__(self, file: str, strict: bool = True) -> None:
        super().__init__(file)
        self.strict = strict

    def bad(self, field_: str, problem: str) -> Exception:
        """Error for a missing, mistyped or out-of-range field."""
        return MetricsError(self.file, field_, problem)

    def unknown(self, field_: str, known: Collection[str]) -> Exception | None:
        """Error for an unknown key when strict; tolerated otherwise."""
        if not self.strict:
            return None
        return MetricsError(self.file, field_, f"unknown key (known: {', '.join(sorted(known))})")


Check = Callable[[Any, str, Problems], Any]


class Record(Protocol):
    """A frozen dataclass whose fields are checked by its _CHECKS (Policy, Budget, EvalMetrics, …)."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    _CHECKS: ClassVar[dict[str, Check]]


R = TypeVar("R", bound=Record)


def join(where: str, name: str) -> str:
    """Dotted field name under a prefix."""
    return f"{where}.{name}" if where else name


def describe(v: object) -> str:
    """Name a value and its type for an error message."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, str):
        return f"string {v!r}"
    if isinstance(v, (int, float)):
        return f"number {v!r}"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, (list, tuple)):
        return "a list"
    return type(v).__name__


def check_number(v: Any, f: str, p: Problems, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, finite: bool = True, slack: float = 0.0,
                 nullable: bool = False) -> float | None:
    """Return v as a float within [lo, hi]; values within `slack` outside are clamped."""
    if v is None and nullable:
        return None
    # PyYAML reads 1e-3 (no dot) as a string while DVC reads it as a number: accept that form.
    if isinstance(v, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", v.strip()):
        v = float(v)
    # bool is an int subclass in Python, but `true` in YAML is never a threshold.
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise p.bad(f, f"expected a number{' or null' if nullable else ''}, got {describe(v)}")
    x = float(v)
    if not finite:
        return x
    if not math.isfinite(x):
        raise p.bad(f, f"must be a finite number, got {v!r}")
    # Numerical noise (a mean of JS divergences at -1e-18) must not break a gate.
    if lo is not None and lo - slack <= x < lo and not lo_open:
        x = float(lo)
    if hi is not None and hi < x <= hi + slack:
        x = float(hi)
    _check_range(x, f, p, lo, hi, lo_open)
    return x


def check_int(v: Any, f: str, p: Problems, lo: int | None = None, *, lo_open: bool = False) -> int:
    """Return v as an int >= lo (> lo if lo_open)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise p.bad(f, f"expected an integer, got {describe(v)}")
    _check_range(v, f, p, lo, None, lo_open)
    return v


def _check_range(x: float, f: str, p: Problems, lo: float | None, hi: float | None, lo_open: bool) -> None:
    low_bad = lo is not None and (x <= lo if lo_open else x < lo)
    if low_bad or (hi is not None and x > hi):
        if hi is None:
            span = f"{'>' if lo_open else '>='} {lo:g}"
        else:
            span = f"within {'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise p.bad(f, f"{x!r} is impossible: must be {span}")


def check_str(v: Any, f: str, p: Problems, choices: Collection[str] | None = None, *,
              nullable: bool = False) -> str | None:
    """Return v as a string, one of `choices` when given."""
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        raise p.bad(f, f"expected a string{' or null' if nullable else ''}, got {describe(v)}")
    if choices is not None and v not in choices:
        raise p.bad(f, f"{v!r} is not one of {', '.join(choices)}")
    return v


def check_bool(v: Any, f: str, p: Problems) -> bool:
    """Return v if it is a real boolean (not 0/1, not 'yes')."""
    if not isinstance(v, bool):
        raise p.bad(f, f"expected true or false, got {describe(v)}")
    return v


def check_map(v: Any, f: str, p: Problems, value: Check) -> dict[str, Any]:
    """Return a fresh dict of string keys, each value passed through `value`."""
    if not isinstance(v, dict):
        raise p.bad(f, f"expected a mapping, got {describe(v)}")
    out = {}
    for k, x in v.items():
        if not isinstance(k, str) or not k:
            raise p.bad(f, f"keys must be non-empty strings, got {describe(k)}")
        out[k] = value(x, join(f, k), p)
    return out


def check_globs(v: Any, f: str, p: Problems, *, nonempty: bool = False) -> tuple[str, ...]:
    """Return a tuple of non-empty glob strings."""
    if not isinstance(v, (list, tuple)):
        raise p.bad(f, f"expected a list of glob strings, got {describe(v)}")
    for i, g in enumerate(v):
        if not isinstance(g, str) or not g.strip():
            raise p.bad(f"{f}[{i}]", f"expected a non-empty glob string, got {describe(g)}")
    if nonempty and not v:
        raise p.bad(f, "is empty: nothing could ever be trained on")
    return tuple(v)


def nested(cls: type[Record]) -> Check:
    """Check for a field holding a nested record: an instance, or a mapping built into one."""
    def check(v: Any, f: str, p: Problems) -> Any:
        return v if isinstance(v, cls) else build(cls, v, f, p)
    return check


def build(cls: type[R], d: Any, where: str, p: Problems) -> R:
    """Check a mapping against cls._CHECKS and construct cls: the shared from_dict."""
    if not isinstance(d, dict):
        raise p.bad(where or "(top level)", f"expected a mapping, got {describe(d)}")
    checks = cls._CHECKS
    for k in d:
        if k not in checks:
            err = p.unknown(join(where, str(k)), list(checks))
            if err is not None:
                raise err
    values = {}
    for fd in fields(cls):
        if fd.name in d:
            values[fd.name] = checks[fd.name](d[fd.name], join(where, fd.name), p)
        elif fd.default is MISSING and fd.default_factory is MISSING:
            raise p.bad(join(where, fd.name), "missing")
    return cls(**values)


def normalise(obj: Record, where: str, p: Problems) -> None:
    """Validate a frozen record's own fields in place (types coerced, e.g. int → float)."""
    for name, check in obj._CHECKS.items():
        object.__setattr__(obj, name, check(getattr(obj, name), join(where, name), p))


def plain(obj: Any) -> Any:
    """A record as JSON-ready plain data: nested records as dicts, tuples as lists."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (list, tuple)):
        return [plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: plain(x) for k, x in obj.items()}
    return obj


def record_dict(obj: Record) -> dict[str, Any]:
    """All dataclass fields of a record as plain data."""
    return {fd.name: plain(getattr(obj, fd.name)) for fd in fields(obj)}


# --- the policy ---------------------------------------------------------------------------


def _unit(v: Any, f: str, p: Problems) -> float | None:
    return check_number(v, f, p, 0, 1)


def _positive(v: Any, f: str, p: Problems) -> float | None:
    return check_number(v, f, p, 0, lo_open=True)


def _positive_int(v: Any, f: str, p: Problems) -> int:
    return check_int(v, f, p, 0, lo_open=True)


def _schema(v: Any, f: str, p: Problems) -> int:
    version = check_int(v, f, p)
    if version != SCHEMA_VERSION:
        raise p.bad(f, f"unsupported schema_version {version}; this lineage reads {SCHEMA_VERSION}")
    return version


@dataclass(frozen=True)
class Budget:
    """Hard limits on one training run; a breach ends the run FAILED."""

    max_steps: int = 2000
    max_wall_minutes: float = 10.0
    max_tokens: int = 20_000_000
    max_memory_mb: int = 4096
    max_output_mb: float = 512.0

    _CHECKS: ClassVar[dict[str, Check]] = {
        "max_steps": _positive_int,
        "max_wall_minutes": _positive,
        "max_tokens": _positive_int,
        "max_memory_mb": _positive_int,
        "max_output_mb": _positive,
    }

    def __post_init__(self) -> None:
        normalise(self, "policy.budget", Problems())

    @classmethod
    def from_dict(cls, d: Any, where: str = "policy.budget", file: str = "params.yaml") -> Budget:
        """Build from a mapping; absent keys take defaults."""
        return build(cls, d, where, Problems(file))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, every key present."""
        return record_dict(self)


@dataclass(frozen=True)
class DataRules:
    """Which data files may reach training, and how long one record may be."""

    whitelist: tuple[str, ...] = ("data/**/*.jsonl",)
    forbidden: tuple[str, ...] = ("**/secrets/**", "**/*.key", "**/.env")
    max_record_chars: int = 8000

    _CHECKS: ClassVar[dict[str, Check]] = {
        "whitelist": lambda v, f, p: check_globs(v, f, p, nonempty=True),
        "forbidden": check_globs,
        "max_record_chars": _positive_int,
    }

    def __post_init__(self) -> None:
        normalise(self, "policy.data", Problems())

    @classmethod
    def from_dict(cls, d: Any, where: str = "policy.data", file: str = "params.yaml") -> DataRules:
        """Build from a mapping; absent keys take defaults."""
        return build(cls, d, where, Problems(file))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, globs as lists."""
        return record_dict(self)


@dataclass(frozen=True)
class FirstGeneration:
    """Absolute floors used when the parent is the untrained base, not a generation."""

    min_recall: float = 0.9
    min_generalize: float = 0.8

    _CHECKS: ClassVar[dict[str, Check]] = {"min_recall": _unit, "min_generalize": _unit}

    def __post_init__(self) -> None:
        normalise(self, "policy.first_generation", Problems())

    @classmethod
    def from_dict(cls, d: Any, where: str = "policy.first_generation",
                  file: str = "params.yaml") -> FirstGeneration:
        """Build from a mapping; absent keys take defaults."""
        return build(cls, d, where, Problems(file))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, every key present."""
        return record_dict(self)


@dataclass(frozen=True)
class Policy:
    """The rules a candidate is judged by; read from the protected branch, never the candidate."""

    schema_version: int = SCHEMA_VERSION
    recall_tolerance: float = 0.05
    generalize_gain: float = 0.02
    max_tone_drift: float = 0.05
    max_law_violations: int = 0
    delta_recall_tolerance: float = 0.10
    first_generation: FirstGeneration = field(default_factory=FirstGeneration)
    min_shadow_parity: float | None = None
    # the arbiter: how far a visible generalize gain may outrun the sealed one, and how far a
    # candidate's claimed numbers may stray from the arbiter's own measurement
    sealed_margin: float = 0.2
    claim_tolerance: float = 0.02
    autonomy: str = "manual"
    budget: Budget = field(default_factory=Budget)
    data: DataRules = field(default_factory=DataRules)

    _CHECKS: ClassVar[dict[str, Check]] = {
        "schema_version": _schema,
        "recall_tolerance": _unit,
        # A negative gain is allowed: a policy may accept a small generalisation loss.
        "generalize_gain": lambda v, f, p: check_number(v, f, p, -1, 1),
        "max_tone_drift": _unit,  # JS divergence in base 2 lives in [0, 1]
        "max_law_violations": lambda v, f, p: check_int(v, f, p, 0),
        "delta_recall_tolerance": _unit,
        "first_generation": nested(FirstGeneration),
        "min_shadow_parity": lambda v, f, p: check_number(v, f, p, 0, 1, nullable=True),
        "sealed_margin": _unit,
        "claim_tolerance": _unit,
        "autonomy": lambda v, f, p: check_str(v, f, p, AUTONOMY),
        "budget": nested(Budget),
        "data": nested(DataRules),
    }

    def __post_init__(self) -> None:
        normalise(self, "policy", Problems())

    @classmethod
    def from_dict(cls, d: Any, where: str = "policy", file: str = "params.yaml") -> Policy:
        """Build from the `policy:` mapping; absent keys take defaults, unknown keys fail."""
        return build(cls, {} if d is None else d, where, Problems(file))

    @classmethod
    def from_params(cls, params: Any, file: str = "params.yaml") -> Policy:
        """Read the `policy` key of a whole params.yaml dict (missing → defaults)."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise PolicyError("(top level)", f"expected a mapping, got {describe(params)}", file=file)
        return cls.from_dict(params.get("policy"), "policy", file)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with every key, nested sections included."""
        return record_dict(self)

    def digest(self) -> str:
        """Canonical 'sha256:<hex>' of to_dict(); equal policies share a digest."""
        return digest_obj(self.to_dict())


def load_policy(path: str | Path) -> Policy:
    """Read a params.yaml file and return its policy."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PolicyError("policy", "file not found", file=str(path)) from None
    except yaml.YAMLError as e:
        raise PolicyError("(file)", f"not valid YAML: {e}", file=str(path)) from None
    return Policy.from_params(params, file=str(path))
