"""Warm stages: `dvc repro` of a first generation with the stages forked from a warm server vs in
their own processes.

In a tiny store (bench/common.TINY: a few seconds of real training), time `dvc repro -f` of the
whole pipeline (parent, prepare, train, eval, gate) N times with every stage in its own Python
process (baseline: what `lineage propose` does by default) and N times with $LINEAGE_WARM naming a
warm server (lineage/adapters/warm.py), alternated so drift on a shared machine hits both alike.
The server's own start-up (its one-off imports) is timed apart. The weights digest of every run
is compared: a warm run must train the same weights. Target: warm <= 0.5x cold for this tiny store
(the imports of torch, transformers and TRL dominate its stages).

Usage: python bench/warm.py [--warm-repeats N] [--warm-keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "warm"
TARGET_RATIO = 0.5


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("warm")
    g.add_argument("--warm-repeats", type=int, default=3, metavar="N",
                   help="dvc repro runs per variant (default 3)")
    g.add_argument("--warm-keep", action="store_true", help="keep the scratch store")


def _weights(store: Path) -> str:
    return json.loads((store / "reports" / "train" / "metrics.json").read_text())["weights_sha256"]


def run(args: argparse.Namespace) -> dict:
    scratch = common.scratch_dir(NAME, args.warm_keep)
    base = Path(scratch.name if hasattr(scratch, "name") else scratch)
    common.isolate(base / "env")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    store = common.init_store(base / "luna", common.tiny_params())
    sock = base / "warm.sock"
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "lineage.adapters.warm", "serve", str(sock)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None and "ready" in server.stdout.readline()
        server_start = time.perf_counter() - started
        cold, warm, digests = [], [], set()
        for _ in range(args.warm_repeats):
            for variant, samples in (("cold", cold), ("warm", warm)):
                env = {"LINEAGE_WARM": str(sock)} if variant == "warm" else {"LINEAGE_WARM": ""}
                samples.append(common.timed([str(common.BIN / "dvc"), "repro", "-f"], store, env=env))
                digests.add(_weights(store))
    finally:
        server.terminate()
        server.wait(timeout=60)
    ratio = common.median(warm) / common.median(cold)
    print(common.table([["cold (a process per stage)", f"{common.median(cold):.1f} s", "1.00"],
                        ["warm (forked from a server)", f"{common.median(warm):.1f} s", f"{ratio:.2f}"]],
                       ["dvc repro -f, first generation, tiny store", "median", "ratio"]))
    print(f"warm server start-up (one-off imports): {server_start:.1f} s; "
          f"same weights in every run: {'yes' if len(digests) == 1 else 'NO'}; target ratio <= {TARGET_RATIO}")
    result = {"cold": common.summary(cold), "warm": common.summary(warm), "ratio": ratio,
              "server_start_s": server_start, "same_weights": len(digests) == 1, "target_ratio": TARGET_RATIO}
    common.write_result(NAME, result)
    if not args.warm_keep and hasattr(scratch, "cleanup"):
        common.rmtree(base)
    return result


if __name__ == "__main__":
    raise SystemExit(common.cli_main(__doc__, add_arguments, run))
