"""DVC calls in-process: what lineage's data operations cost through DVC's Python API against the
dvc CLI they replaced.

In a tiny store with a promoted G000 (its weights in the cache and the remote), three sequences a
command makes, each timed as one whole fresh process so that Python's start and DVC's import count:

    propose's tail   push the run's data, then check main's outputs out again (propose, after the pipeline)
    verify's reads   the DVC cache directory, four times (verify's checks)
    status --remote  the default remote's URL and what the remote lacks (status, push, gc)

Baseline: the same sequence as the dvc CLI commands lineage ran before (`dvc push -q`, `dvc checkout
-q --force`, `dvc cache dir`, `dvc remote default` + `dvc remote list`, `dvc status --cloud --json`),
one process each, started from one Python process. The variants alternate, so drift on a shared
machine hits both alike. Target: at most half the baseline for each sequence.

Usage: python bench/dvc_calls.py [--dvc-repeats N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "dvc_calls"
TARGET_RATIO = 0.5
DVC = str(common.BIN / "dvc")

CLI = {
    "propose's tail": [[DVC, "push", "-q"], [DVC, "checkout", "-q", "--force"]],
    "verify's reads": [[DVC, "cache", "dir"]] * 4,
    "status --remote": [[DVC, "remote", "default"], [DVC, "remote", "list"], [DVC, "status", "--cloud", "--json"]],
}
API = {
    "propose's tail": "assert dvc.push(root); dvc.checkout(root)",
    "verify's reads": "for _ in range(4): dvc.cache_dir(root)",
    "status --remote": "assert dvc.default_remote_url(root); assert dvc.remote_status(root)[0] is not None",
}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("dvc_calls")
    g.add_argument("--dvc-repeats", type=int, default=7, metavar="N", help="runs of each variant (default 7)")


def _cli(commands: list[list[str]], store: Path) -> str:
    """A Python process that runs the dvc commands one after another, as lineage used to."""
    return ("import subprocess, sys\n"
            f"for cmd in {commands!r}:\n"
            f"    subprocess.run(cmd, cwd={str(store)!r}, check=True, capture_output=True)\n")


def _api(code: str, store: Path) -> str:
    return f"from pathlib import Path\nfrom lineage.adapters import dvc\nroot = Path({str(store)!r})\n{code}\n"


def run(args) -> dict:
    n = args.dvc_repeats
    with common.scratch_dir(NAME) as tmp:
        tmp = Path(tmp)
        common.isolate(tmp / "home")
        store = common.init_store(tmp / "store", common.tiny_params())
        common.sh(common.lineage_cmd("propose"), store)
        common.sh(common.lineage_cmd("promote", "candidates/G000-a"), store)
        samples: dict[str, dict[str, list[float]]] = {case: {"cli": [], "api": []} for case in CLI}
        for i in range(n):
            for case in CLI:
                order = (("cli", _cli(CLI[case], store)), ("api", _api(API[case], store)))
                for variant, code in order if i % 2 == 0 else order[::-1]:
                    start = time.perf_counter()
                    common.sh([sys.executable, "-c", code], store)
                    samples[case][variant].append(time.perf_counter() - start)
        if common.sh(common.lineage_cmd("verify"), store, check=False).returncode != 0:
            raise RuntimeError("lineage verify failed after the runs: a data operation broke the store")

    rows = {}
    for case, variants in samples.items():
        cli, api = common.median(variants["cli"]), common.median(variants["api"])
        rows[case] = {"api_s": api, "cli_s": cli, "ratio": api / cli, "target_ratio": TARGET_RATIO,
                      "within_target": api / cli <= TARGET_RATIO, "processes_before": len(CLI[case]),
                      "api_samples_s": common.summary(variants["api"]),
                      "cli_samples_s": common.summary(variants["cli"])}
    result = {"repeats": n, "cases": rows}
    path = common.write_result(NAME, result)
    print(f"== dvc_calls: DVC's Python API in-process vs the dvc CLI ({n} runs each, medians, each a whole "
          "fresh process; baseline = the dvc commands lineage ran before)")
    print(common.table([[case, str(r["processes_before"]), f"{r['cli_s']:.2f}", f"{r['api_s']:.2f}",
                         f"{r['ratio']:.2f}x", "yes" if r["within_target"] else "NO"] for case, r in rows.items()],
                       ["sequence", "dvc processes before", "CLI s", "in-process s", "ratio",
                        f"<= {TARGET_RATIO:g}x"]))
    print(f"-> {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    return common.cli_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
