"""Shared helpers for the benchmarks: an isolated environment, timing, machine facts, results.

Every benchmark here measures a baseline in the same run and prints ratios (these machines are
shared and noisy, so an absolute number from another day means little), reports medians of
several runs, and writes bench/results/<name>.json (gitignored). None of them is a pass/fail
test: a target is stated next to the number, never asserted.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent
TEMPLATE_PARAMS = PROJECT / "lineage" / "template" / "params.yaml"

# Tiny scratch settings that train in seconds, and a policy relaxed so the gate judges the
# evidence, not the (meaningless) quality of a 30-step model. Same values as tests/test_promotion.py;
# max_output_mb is raised so synthetic generations of several GB stay within the budget honestly.
TINY = {
    "scratch": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4,
                "learning_rate": 0.003, "max_steps": 30},
    "train": {"max_steps": 20, "checkpoint_every": 1000},
    "policy": {"generalize_gain": -1.0, "max_tone_drift": 1.0, "recall_tolerance": 1.0,
               "delta_recall_tolerance": 1.0, "max_law_violations": 100,
               "first_generation": {"min_recall": 0.0, "min_generalize": 0.0},
               "budget": {"max_steps": 100, "max_output_mb": 65536.0}},
}

GITCONFIG = """\
[user]
\tname = lineage bench
\temail = bench@lineage.invalid
[init]
\tdefaultBranch = main
"""
LEAKY_VARS = ("LINEAGE_DEBUG", "LINEAGE_LOG", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE",
              "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
              "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "DVC_REMOTE")


def isolate(base: Path) -> None:
    """Make git, DVC and lineage in this process and its children ignore the user's set-up."""
    for var in LEAKY_VARS:
        os.environ.pop(var, None)
    base.mkdir(parents=True, exist_ok=True)
    gitconfig = base / "gitconfig"
    gitconfig.write_text(GITCONFIG)
    os.environ.update(DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1", GIT_CONFIG_GLOBAL=str(gitconfig),
                      GIT_CONFIG_NOSYSTEM="1", TOKENIZERS_PARALLELISM="false")
    if not os.environ.get("PATH", "").startswith(str(BIN) + os.pathsep):
        os.environ["PATH"] = str(BIN) + os.pathsep + os.environ.get("PATH", "")


def scratch_dir(prefix: str, keep: bool = False) -> tempfile.TemporaryDirectory | Path:
    """A temporary directory (removed on exit unless keep)."""
    if keep:
        return Path(tempfile.mkdtemp(prefix=f"lineage-bench-{prefix}-"))
    return tempfile.TemporaryDirectory(prefix=f"lineage-bench-{prefix}-")


def lineage_cmd(*args: str) -> list[str]:
    exe = BIN / "lineage"
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "lineage", *args]


def sh(args: list[str], cwd: Path | str, check: bool = True, env: dict | None = None,
       input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command, capture its output; on failure raise with both streams."""
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, input=input,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-4000:]}")
    return proc


def timed(args: list[str], cwd: Path | str, check: bool = True, env: dict | None = None) -> float:
    """Wall seconds of one command run to completion (output captured, not printed)."""
    start = time.perf_counter()
    sh(args, cwd, check=check, env=env)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summary(values: list[float]) -> dict:
    """Median, min, max and the raw samples (seconds)."""
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values),
            "samples": [round(v, 6) for v in values]}


def machine() -> dict:
    """What this ran on: cores, CPU model, RAM, load when it started (the machine may be shared)."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    git_version = sh(["git", "--version"], ".", check=False).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gib": mem_gib, "loadavg_1_5_15": load,
            "python": platform.python_version(), "platform": platform.platform(), "git": git_version}


def write_result(name: str, result: dict) -> Path:
    """bench/results/<name>.json, with the machine and the time of the run."""
    RESULTS.mkdir(exist_ok=True)
    result = {"bench": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def table(rows: list[list], header: list[str]) -> str:
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False)))  # noqa: E731
    return "\n".join([fmt(cells[0]), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells[1:]])


def tiny_params(extra: dict | None = None) -> str:
    """params.yaml text: the template with TINY (and extra) merged in."""
    import yaml

    params = yaml.safe_load(TEMPLATE_PARAMS.read_text())

    def merge(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(params, TINY)
    merge(params, extra or {})
    return yaml.safe_dump(params, sort_keys=False)


def init_store(path: Path, params_text: str | None = None) -> Path:
    """`lineage init` a store (params.yaml written first when given); nothing is trained."""
    path.mkdir(parents=True, exist_ok=True)
    if params_text is not None:
        (path / "params.yaml").write_text(params_text)
    sh(lineage_cmd("-q", "init", str(path)), path.parent)
    return path


def parse_size(text: str) -> int:
    """'10M', '1G', '512K', '200MB', '1234' -> bytes (powers of 1024)."""
    t = text.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def rmtree(path: Path) -> None:
    """Remove a tree that may hold read-only files (DVC cache, linked weights)."""
    def onerror(func, p, _exc):
        try:
            os.chmod(Path(p).parent, 0o755)
            os.chmod(p, 0o755)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


def cli_main(doc: str, add_arguments, run, argv: list[str] | None = None) -> int:
    """The standalone entry point every case shares: parse its options, run it."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_arguments(ap)
    run(ap.parse_args(argv))
    return 0
