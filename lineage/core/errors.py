"""Typed errors. Every error builds its own message and carries its data.

Hierarchy::

    LineageError                      base; exit code 3 (store error) unless noted
    ├── UsageError                    bad arguments or params (exit 2)
    │   ├── ParamsError               params.yaml: unknown key, wrong type
    │   ├── PolicyError               policy: unknown key, impossible threshold
    │   ├── RolledBackRecipeError     propose would train exactly a rolled-back generation's recipe
    │   └── BadRequestError           lineage serve: a malformed or oversized HTTP request (HTTP 400)
    ├── StoreError                    the store itself is missing or inconsistent
    │   ├── NotAStoreError
    │   ├── DirtyTreeError
    │   ├── InitConflictError
    │   └── ServeError                lineage serve cannot start (port in use, nothing served)
    ├── DataGateError                 data refused before training (exit 1)
    │   ├── UnsafePathError
    │   ├── SecretFoundError
    │   └── MalformedDataError
    ├── UnsafeWeightsError            weights not safetensors by content (exit 1)
    ├── BudgetExceededError           a training budget limit tripped (exit 1)
    ├── MetricsError                  metrics or probes missing/malformed
    ├── GateRejectedError             a candidate failed its gate (exit 1)
    ├── ArbiterRefusedError           a move of the protected branch refused (exit 1)
    └── IntegrityError                verify found a mismatch (exit 1)

The CLI maps each class to one line plus ``hint`` and to ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Collection
from difflib import get_close_matches
from typing import Any, TypeVar


class LineageError(Exception):
    """Base of every error lineage raises on purpose."""

    exit_code = 3
    hint = ""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint


class UsageError(LineageError):
    """The command or its arguments are wrong."""

    exit_code = 2


class ParamsError(UsageError):
    """params.yaml has an unknown key, a wrong type or a bad value."""

    def __init__(self, field: str, problem: str, hint: str = "", file: str = "params.yaml") -> None:
        self.file, self.field, self.problem = file, field, problem
        super().__init__(f"{file}: {field}: {problem}", hint or f"Fix '{field}' in {file}.")


_P = TypeVar("_P", bound="ParamsError")


def unknown_key_error(cls: type[_P], field: str, known: Collection[str], file: str = "params.yaml") -> _P:
    """Build an unknown-key error with a did-you-mean hint."""
    name = field.rsplit(".", 1)[-1]
    close = get_close_matches(name, list(known), n=1)
    hint = f"Did you mean '{close[0]}'?" if close else f"Known keys: {', '.join(sorted(known))}."
    return cls(field, "unknown key", hint, file=file)


class PolicyError(ParamsError):
    """The policy section is unknown, mistyped or impossible."""


class RolledBackRecipeError(UsageError):
    """propose would train exactly the recipe of a generation the protected branch rolled back."""

    def __init__(self, generation: str, reason: str | None) -> None:
        self.generation, self.reason = generation, reason
        why = reason or "none given"
        super().__init__(f"this recipe is exactly {generation}'s, which was rolled back (reason: {why})",
                         "Change something (new data with 'lineage data add', or -S seed=N) or pass --again to "
                         "train it anyway.")


class StoreError(LineageError):
    """The store is missing or inconsistent."""


class NotAStoreError(StoreError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path} is not a lineage store", "Run 'lineage init' first.")


class DirtyTreeError(StoreError):
    def __init__(self, path: str, files: list[str]) -> None:
        self.path, self.files = path, files
        shown = ", ".join(files[:5]) + (" …" if len(files) > 5 else "")
        super().__init__(
            f"work tree {path} has uncommitted changes: {shown}",
            "Commit or stash them, then run again.",
        )


class InitConflictError(StoreError):
    def __init__(self, path: str, problem: str, hint: str) -> None:
        self.path = path
        super().__init__(f"cannot init {path}: {problem}", hint)


class DataGateError(LineageError):
    """Data refused by the data gate before it reaches training."""

    exit_code = 1


class UnsafePathError(DataGateError):
    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(
            f"data path refused: {path}: {reason}",
            "Register data with 'lineage data add FILE' so it lives inside the store.",
        )


class NotWhitelistedError(DataGateError):
    def __init__(self, path: str, whitelist: list[str]) -> None:
        self.path, self.whitelist = path, whitelist
        super().__init__(
            f"data source not whitelisted: {path}",
            f"Put it under one of {whitelist} or extend policy.data.whitelist on the protected branch.",
        )


class SecretFoundError(DataGateError):
    def __init__(self, path: str, line: int, kind: str) -> None:
        self.path, self.line, self.kind = path, line, kind
        super().__init__(
            f"secret found in {path}:{line} ({kind})",
            "Remove the secret from the data and register it again.",
        )


class MalformedDataError(DataGateError):
    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        super().__init__(
            f"{path}:{line}: {problem}",
            "Each line must be a JSON object with 'text' or 'prompt'+'completion', 'source' and 'score'.",
        )


class UnsafeWeightsError(LineageError):
    """A weights file is not safetensors by content, or is malformed."""

    exit_code = 1

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(
            f"refusing weights {path}: {reason}",
            "Only safetensors weights are accepted; convert the model with safetensors first.",
        )


class BudgetExceededError(LineageError):
    """A training budget limit tripped; the run is recorded FAILED."""

    exit_code = 1

    # Set by the training adapter: what the run used, for the FAILED record.
    usage: dict[str, Any]
    loss_curve: list[Any]

    def __init__(self, limit: str, used: Any, allowed: Any) -> None:
        self.limit, self.used, self.allowed = limit, used, allowed
        key = limit.split()[0]
        super().__init__(
            f"budget exceeded: {limit} used {used} > allowed {allowed}",
            f"Raise policy.budget.{key} in params.yaml on the protected branch (git add params.yaml, then "
            "'lineage change --reason …'), or train less (lineage propose -S train.max_steps=N).",
        )


class MetricsError(LineageError):
    """Metrics or probe files are missing or malformed."""

    def __init__(self, file: str, field: str, problem: str) -> None:
        self.file, self.field, self.problem = file, field, problem
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {problem}", "Re-run 'dvc repro' to regenerate it.")


class GateRejectedError(LineageError):
    exit_code = 1

    def __init__(self, candidate: str, failed: list[str]) -> None:
        self.candidate, self.failed = candidate, failed
        super().__init__(f"{candidate} failed the gate: {', '.join(failed)}",
                         "Inspect the gate report; train a new candidate.")


class ArbiterRefusedError(LineageError):
    exit_code = 1

    def __init__(self, ref: str, reason: str, hint: str = "") -> None:
        self.ref, self.reason = ref, reason
        super().__init__(f"refused to move {ref}: {reason}",
                         hint or "Promote only gated candidates with 'lineage promote'.")


class IntegrityError(LineageError):
    exit_code = 1

    def __init__(self, what: str, problem: str) -> None:
        self.what, self.problem = what, problem
        super().__init__(f"integrity check failed: {what}: {problem}",
                         "Restore the file from the DVC remote ('dvc pull --force') or investigate tampering.")


class BadRequestError(UsageError):
    """An HTTP request to `lineage serve` the server refuses (400): the server keeps serving."""

    def __init__(self, problem: str, param: str | None = None, code: str = "invalid_request") -> None:
        self.problem, self.param, self.code = problem, param, code
        super().__init__(problem)


class ServeError(StoreError):
    """`lineage serve` cannot start: the port is taken, or the protected branch serves nothing."""
