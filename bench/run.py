"""Benchmarks: wall time and peak memory of the pipeline on the bundled corpus.

Each case prints a ratio against a baseline measured in the same run (these machines are
noisy): `dvc repro train` against the same three stages run directly with python, so the ratio
is what DVC's bookkeeping costs on top of the training itself. Results go to bench/results/.
Usage: python bench/run.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def timed(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a child process tree, run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def fresh_store(base: Path) -> Path:
    store = base / "store"
    subprocess.run([sys.executable, "-m", "lineage", "-q", "init", str(store)], check=True, capture_output=True)
    return store


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    os.environ.update(DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1")
    os.environ["PATH"] = str(BIN) + os.pathsep + os.environ["PATH"]
    rows = {"dvc repro train": [], "direct stages (baseline)": [], "eval stage": []}
    peaks = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            store = fresh_store(Path(tmp) / "a")
            wall, peak = timed([str(BIN / "dvc"), "repro", "train"], store)
            rows["dvc repro train"].append(wall)
            peaks.append(peak)
            start = time.perf_counter()
            subprocess.run([str(BIN / "dvc"), "repro", "eval"], cwd=store, check=True, capture_output=True)
            rows["eval stage"].append(time.perf_counter() - start)
            base = fresh_store(Path(tmp) / "b")
            start = time.perf_counter()
            for stage in ("parent", "prepare", "train"):
                subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=base, check=True, capture_output=True)
            rows["direct stages (baseline)"].append(time.perf_counter() - start)
            shutil.rmtree(Path(tmp) / "a.dvc-remote", ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "median_seconds": med, "peak_rss_mib_dvc_repro_train": max(peaks),
              "ratio_dvc_vs_direct": med["dvc repro train"] / med["direct stages (baseline)"],
              "targets": {"dvc repro train": "<= 180 s, <= 4096 MiB", "eval": "< 60 s"}}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(result, indent=2))
    print(f"{'case':28} {'median s':>9}")
    for k, v in med.items():
        print(f"{k:28} {v:9.1f}")
    print(f"dvc repro train / direct stages: {result['ratio_dvc_vs_direct']:.2f}x; "
          f"peak RSS {max(peaks):.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
