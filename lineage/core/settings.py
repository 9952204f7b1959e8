"""Store settings read once from params.yaml: typed, defaulted, unknown keys refused.

The `policy:` section is parsed by :mod:`lineage.core.policy`; everything else lives here.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ParamsError, unknown_key_error

# Each leaf: (type or tuple of types, default, allowed values or None).
SCHEMA: dict[str, Any] = {
    "base": (str, "scratch", None),
    "seed": (int, 1234, None),
    "scratch": {
        "vocab_size": (int, 1024, None),
        "hidden_size": (int, 256, None),
        "intermediate_size": (int, 512, None),
        "num_layers": (int, 4, None),
        "num_heads": (int, 4, None),
        "max_position": (int, 256, None),
        "learning_rate": (float, 0.001, None),
        "max_steps": (int, 600, None),
    },
    "data": {
        "replay_fraction": (float, 1.0, None),
        "strategy": (str, "uniform", ("uniform", "recent_weighted", "high_score_weighted")),
    },
    "train": {
        "method": (str, "cpt", ("cpt", "sft", "distill")),
        "backend": (str, "auto", ("auto", "transformers", "unsloth")),
        "finetune": (str, "full", ("full", "lora")),
        "lora_r": (int, 16, None),
        "lora_alpha": (int, 32, None),
        "lora_dropout": (float, 0.0, None),
        "learning_rate": (float, 0.0003, None),
        "max_steps": (int, 300, None),
        "batch_size": (int, 16, None),
        "max_length": (int, 64, None),
        "warmup_steps": (int, 10, None),
        "scheduler": (str, "cosine", ("cosine", "linear", "constant")),
        "checkpoint_every": (int, 100, None),
        "distill_alpha": (float, 0.5, None),
        "distill_beta": (float, 0.4, None),
        "distill_gamma": (float, 0.1, None),
        "distill_temperature": (float, 2.0, None),
    },
    "evolve": {
        "evo_period_cycles": (int, 1, None),
        "cooldown_cycles": (int, 0, None),
        "min_new_examples": (int, 1, None),
        "min_new_score": (float, 0.0, None),
        "k": (int, 3, None),
        "max_concurrent_experiments": (int, 3, None),
        "strategies": (str, "recent_weighted,uniform,high_score_weighted", None),
    },
    "eval": {
        "max_new_tokens": (int, 16, None),
        "batch_size": (int, 32, None),
    },
    "card": {
        "license": (str, "apache-2.0", None),
    },
    # lineage serve; read from the protected branch's tip (like the policy), so a change to it is approved
    "serve": {
        "port": (int, 8000, None),
        "bind": (str, "127.0.0.1", None),
        "max_prompt_chars": (int, 8000, None),      # a longer prompt is answered 400, never truncated
        "max_new_tokens": (int, 256, None),         # the cap on a request's max_tokens
        "poll_seconds": (float, 1.0, None),         # how often the server looks at the protected branch
        "shadow_rate": (float, 0.25, None),         # share of live requests mirrored to a shadow candidate
        "shadow_flush_every": (int, 20, None),      # mirrored answers per SHADOW event in the log
        "burn_in_seconds": (float, 60.0, None),     # the live burn-in window after a promotion's cut-over
        "burn_in_min_requests": (int, 5, None),     # requests before the error rate is judged
        "burn_in_max_error_rate": (float, 0.05, None),
        "burn_in_max_p99_ms": (float, 0.0, None),   # p99 inference latency limit; 0: not judged
        "min_live_samples": (int, 0, None),         # promote needs this many logged live shadow answers; 0: off
        "min_live_parity": (float, 0.0, None),      # ... agreeing at least this share
    },
}
POSITIVE = {"seed": False}
SECTIONS_ELSEWHERE = {"policy"}  # parsed by lineage.policy
# Floats in exponent form that YAML 1.2 (DVC's reader) takes for numbers but PyYAML leaves as strings.
EXPONENT_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+")


def _check(path: str, value: Any, spec: tuple[Any, Any, tuple[str, ...] | None]) -> Any:
    typ, default, allowed = spec
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is float and isinstance(value, str) and EXPONENT_FLOAT.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, typ):
        raise ParamsError(path, f"expected {typ.__name__}, got {type(value).__name__} {value!r}")
    if allowed and value not in allowed:
        raise ParamsError(path, f"{value!r} is not one of {', '.join(allowed)}",
                          f"Set '{path}' to one of: {', '.join(allowed)}.")
    if isinstance(value, (int, float)) and path != "seed" and value < 0:
        raise ParamsError(path, f"must not be negative, got {value}")
    return value


def _merge(schema: dict[str, Any], given: dict[str, Any], prefix: str) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise ParamsError(prefix.rstrip(".") or "params", f"expected a mapping, got {type(given).__name__}")
    out = {}
    for key in given:
        if key not in schema and not (not prefix and key in SECTIONS_ELSEWHERE):
            raise unknown_key_error(ParamsError, f"{prefix}{key}",
                                    list(schema) + ([] if prefix else list(SECTIONS_ELSEWHERE)))
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        if isinstance(spec, dict):
            section = given.get(key)
            out[key] = _merge(spec, {} if section is None else section, path + ".")
        else:
            out[key] = _check(path, given[key], spec) if key in given else spec[1]
    return out


@dataclass(frozen=True)
class Settings:
    """All of params.yaml but the policy, validated."""

    values: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Settings:
        raw = raw or {}
        values = _merge(SCHEMA, raw, "")
        train = values["train"]
        if train["max_steps"] < 0:
            raise ParamsError("train.max_steps", "must be >= 0")
        for key in ("batch_size", "max_length"):
            if train[key] < 1:
                raise ParamsError(f"train.{key}", "must be at least 1")
        if train["learning_rate"] <= 0:
            raise ParamsError("train.learning_rate", "must be positive")
        serve = values["serve"]
        if not 0 <= serve["port"] <= 65535:
            raise ParamsError("serve.port", f"{serve['port']} is not a TCP port (0-65535)")
        if max(serve["shadow_rate"], serve["burn_in_max_error_rate"], serve["min_live_parity"]) > 1:
            raise ParamsError("serve", "shadow_rate, burn_in_max_error_rate and min_live_parity are shares from 0 to 1")
        if serve["poll_seconds"] <= 0 or serve["max_prompt_chars"] < 1 or serve["max_new_tokens"] < 1:
            raise ParamsError("serve", "poll_seconds, max_prompt_chars and max_new_tokens must be positive")
        if values["scratch"]["hidden_size"] % values["scratch"]["num_heads"]:
            raise ParamsError("scratch.hidden_size", "must be a multiple of scratch.num_heads")
        return cls(values=values, raw=raw)

    @classmethod
    def load(cls, path: str | Path = "params.yaml") -> Settings:
        """The settings a run uses: path, with the candidate's overrides.yaml beside it merged on top."""
        return cls.from_dict(run_params(path))


# A candidate's -S overrides, on top of params.yaml. params.yaml holds the store's settings and
# changes only by a person's approved change; overrides.yaml is one run's own, rewritten by every
# propose (empty without -S). On the protected branch it records what the served generation
# trained with; it never becomes the next candidate's default.
OVERRIDES = "overrides.yaml"


def merge_params(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of params with overrides merged in, section by section."""
    out = copy.deepcopy(params)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_params(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def run_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """params.yaml at path with the overrides.yaml beside it (when there is one) merged on top."""
    path = Path(path)
    params = load_yaml(path)
    beside = path.parent / OVERRIDES
    return merge_params(params, load_yaml(beside)) if beside.is_file() else params


def overrides_text(overrides: dict[str, Any], candidate: str) -> str:
    """overrides.yaml as propose writes it on a candidate: what it is, then the overrides (or {})."""
    head = (f"# The -S overrides {candidate} trained with, on top of params.yaml (written by lineage propose).\n"
            "# params.yaml stays the store's settings: the next propose starts from it alone.\n")
    return head + (yaml.safe_dump(overrides, sort_keys=False) if overrides else "{}\n")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file in any error."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError("params", f"{path} not found", "Run 'lineage init' to write a default params.yaml.",
                          file=str(path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError("params", f"not valid YAML: {exc}".splitlines()[0], file=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError("params", "top level must be a mapping", file=str(path))
    return data


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ['train.learning_rate=0.01', …] into a nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParamsError(pair, "override must look like key.sub=value")
        key, value = pair.split("=", 1)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out
