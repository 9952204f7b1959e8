"""Hook overhead: what the reference-transaction hook costs git commands that do not touch main.

In a store made by `lineage init` (nothing trained), time N `git commit --allow-empty` on a
non-protected branch and N `git checkout` between two non-protected branches, with the hook that
init installed, against the same commands in the same repo with `-c core.hooksPath=/dev/null`
(baseline). The two variants alternate, so drift on a shared machine hits both alike.
Target: < 10 ms extra per command. For information, one refused move of the protected branch
(`git update-ref refs/heads/main <non-generation commit>`, which starts Python and the arbiter).

Usage: python bench/hooks.py [--hook-iterations N] [--keep]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "hooks"
TARGET_EXTRA_MS = 10.0
NO_HOOKS = ["-c", "core.hooksPath=/dev/null"]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("hooks")
    g.add_argument("--hook-iterations", type=int, default=30, metavar="N",
                   help="commits and checkouts per variant (default 30)")
    g.add_argument("--refusals", type=int, default=5, metavar="N",
                   help="refused protected-branch moves to time (default 5)")


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def run(args) -> dict:
    n = args.hook_iterations
    with common.scratch_dir(NAME) as tmp:
        tmp = Path(tmp)
        common.isolate(tmp / "home")
        store = common.init_store(tmp / "store")
        hook = store / ".git" / "hooks" / "reference-transaction"
        if not hook.exists():
            raise RuntimeError(f"lineage init installed no hook at {hook}")
        git = lambda *a: common.sh(["git", *a], store)  # noqa: E731
        git("branch", "bench-a")
        git("branch", "bench-b")
        git("checkout", "-q", "bench-a")

        samples = {"commit": {"hook": [], "none": []}, "checkout": {"hook": [], "none": []}}
        for i in range(n):
            # alternate which variant goes first, so neither always runs on a warmer cache
            order = (("hook", []), ("none", NO_HOOKS)) if i % 2 == 0 else (("none", NO_HOOKS), ("hook", []))
            for variant, extra in order:
                samples["commit"][variant].append(
                    common.timed(["git", *extra, "commit", "-q", "--allow-empty", "-m", f"bench {variant} {i}"], store))
            for variant, extra in order:
                target = "bench-b" if git("symbolic-ref", "--short", "HEAD").stdout.strip() == "bench-a" else "bench-a"
                samples["checkout"][variant].append(common.timed(["git", *extra, "checkout", "-q", target], store))

        # How often git starts the hook per command (git 2.39 runs it for ref transactions, once per
        # phase; a checkout only rewrites the HEAD symref, which may not go through a transaction).
        calls = tmp / "hook-calls"
        real = hook.with_name("reference-transaction.real")
        hook.rename(real)
        hook.write_text(f'#!/bin/sh\necho "$1" >> "{calls}"\nexec "{real}" "$@"\n')
        hook.chmod(0o755)
        invocations = {}
        for case, cmd in (("commit", ["commit", "-q", "--allow-empty", "-m", "count"]),
                          ("checkout", ["checkout", "-q", "bench-b"]),
                          ("checkout back", ["checkout", "-q", "bench-a"])):
            calls.write_text("")
            git(*cmd)
            invocations[case] = calls.read_text().split()
        real.replace(hook)

        # A refused protected-branch move: a commit on top of main that is no generation.
        git("checkout", "-q", "bench-a")
        main_before = git("rev-parse", "main").stdout.strip()
        tree = git("rev-parse", "main^{tree}").stdout.strip()
        bogus = git("commit-tree", tree, "-p", main_before, "-m", "not a generation").stdout.strip()
        refusals, baseline_moves, reason = [], [], ""
        for i in range(args.refusals):
            start = time.perf_counter()
            proc = common.sh(["git", "update-ref", "refs/heads/main", bogus], store, check=False)
            refusals.append(time.perf_counter() - start)
            if proc.returncode == 0 or git("rev-parse", "main").stdout.strip() != main_before:
                raise RuntimeError("the hook did not refuse moving main to a non-generation commit: "
                                   "the protected branch moved (product bug)")
            reason = next((ln for ln in proc.stderr.splitlines() if ln.startswith("lineage:")), proc.stderr.strip())
            # baseline: the same update-ref of a non-protected ref (shell fast path)
            baseline_moves.append(common.timed(["git", "update-ref", f"refs/heads/scratch-{i}", bogus], store))

        # Housekeeping: `git pack-refs --all` (what `git gc` and auto-maintenance run first) prunes
        # each loose ref after copying it into packed-refs; the hook sees that as a deletion.
        packing = {}
        for variant, extra in (("hook", []), ("none", NO_HOOKS)):
            start = time.perf_counter()
            proc = common.sh(["git", *extra, "pack-refs", "--all"], store, check=False)
            packing[variant] = {"exit": proc.returncode, "ms": _ms(time.perf_counter() - start),
                                "stderr": next((ln for ln in proc.stderr.splitlines() if ln.startswith("lineage:")),
                                               proc.stderr.strip()[-300:])}

    rows = {}
    for case, variants in samples.items():
        hook_ms, none_ms = _ms(common.median(variants["hook"])), _ms(common.median(variants["none"]))
        rows[case] = {"hook_ms": hook_ms, "no_hook_ms": none_ms, "extra_ms": hook_ms - none_ms,
                      "ratio": hook_ms / none_ms, "target_extra_ms": TARGET_EXTRA_MS,
                      "within_target": hook_ms - none_ms < TARGET_EXTRA_MS,
                      "hook_samples_s": common.summary(variants["hook"]),
                      "no_hook_samples_s": common.summary(variants["none"])}
    refusal = {"median_ms": _ms(common.median(refusals)),
               "baseline_update_ref_other_branch_ms": _ms(common.median(baseline_moves)),
               "ratio": common.median(refusals) / common.median(baseline_moves),
               "samples_s": common.summary(refusals), "stderr": reason}
    result = {"iterations": n, "cases": rows, "hook_invocations": invocations, "protected_refusal": refusal,
              "pack_refs_all": packing}
    path = common.write_result(NAME, result)

    print(f"== hooks: reference-transaction hook overhead ({n} runs each, medians; "
          f"baseline = same repo with -c core.hooksPath=/dev/null)")
    print(common.table([[f"git {case}", f"{r['hook_ms']:.1f}", f"{r['no_hook_ms']:.1f}", f"{r['extra_ms']:+.1f}",
                         f"{r['ratio']:.2f}x", "yes" if r["within_target"] else "NO"]
                        for case, r in rows.items()],
                       ["command (non-protected branch)", "hook ms", "no hook ms", "extra ms", "ratio",
                        f"< {TARGET_EXTRA_MS:g} ms extra"]))
    print("hook started per command: " + "; ".join(f"{c}: {len(v)} ({', '.join(v) or 'none'})"
                                                  for c, v in invocations.items()))
    print(f"refused `git update-ref refs/heads/main <non-generation>`: {refusal['median_ms']:.0f} ms median "
          f"({refusal['ratio']:.0f}x an update-ref of another branch, "
          f"{refusal['baseline_update_ref_other_branch_ms']:.1f} ms); "
          f"git said: {reason}")
    hook_pack = packing["hook"]
    print(f"`git pack-refs --all` (run by git gc / auto-maintenance): with the hook exit {hook_pack['exit']}"
          + (f" -- REFUSED: {hook_pack['stderr']}" if hook_pack["exit"] else " (ok)")
          + f"; without hooks exit {packing['none']['exit']}")
    print(f"-> {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    return common.cli_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
