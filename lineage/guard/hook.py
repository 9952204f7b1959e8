"""Entry point of the reference-transaction hook: run the arbiter on protected-branch moves.

The shell part of the hook (installed by `lineage init`) already filtered the lines, so this
only starts for moves of the protected branch: once when a move is prepared (the arbiter judges
it; a refusal aborts it) and once when it is committed (.lineage/protected.yaml, DVC's change
detector, notes what the branch now holds: store/protected_state.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..adapters.git import open_repo
from ..core.errors import LineageError
from ..store import protected_state
from ..store.root import Store
from .arbiter import check_signed_move

HOOK = ("""#!/bin/sh
# lineage: the arbiter checks every move of the protected branch, and once one is committed
# .lineage/protected.yaml notes what the branch holds; other refs pass on this shell fast path
# (no process is started for them).
case "$1" in prepared|committed) ;; *) exit 0 ;; esac
hit=
while read -r old new ref; do
  case "$ref" in
    refs/heads/{branch}) [ "$old" = "$new" ] && """
        """[ "$new" != 0000000000000000000000000000000000000000 ] || hit="$hit$old $new
" ;;
  esac
done
[ -z "$hit" ] && exit 0
printf '%s' "$hit" | exec "{python}" -m lineage.guard.hook "{branch}" "$1"
""")


def install(git_dir, branch: str) -> str:
    """Write the reference-transaction hook into git_dir/hooks; return its path."""
    hooks = Path(git_dir) / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    path = hooks / "reference-transaction"
    path.write_text(HOOK.replace("{branch}", branch).replace("{python}", sys.executable))
    os.chmod(path, 0o755)
    return str(path)


def _packing(repo, old: str, branch: str) -> bool:
    """True when a 'deletion' is git removing the loose ref it has just written to packed-refs.

    git reports that step as a delete to this hook. A packed entry with the very same value means
    the branch keeps pointing where it did. (Local hooks catch mistakes; the hub enforces.)
    """
    packed = Path(repo.path) / "packed-refs"
    if set(old) == {"0"} or not packed.exists():
        return False
    # Only 'git pack-refs' (also run by gc) may do this; a real delete reports the same line.
    pid = os.getppid()
    for _ in range(4):  # python <- sh (pipeline subshell) <- sh (hook) <- git pack-refs
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if args and args[0].endswith(b"git"):
            if b"pack-refs" not in args[1:3]:
                return False
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    else:
        return False
    current = repo.references.get(f"refs/heads/{branch}")
    return current is not None and str(current.target) == old and \
        f"{old} refs/heads/{branch}" in packed.read_text().splitlines()


def note_move(repo, branch: str) -> int:
    """After a committed move of the protected branch: rewrite .lineage/protected.yaml if it changed.

    The move is done whatever happens here (git ignores this phase's exit status); a file left stale
    only makes DVC's status wrong until `lineage propose` or any lineage move rewrites it.
    """
    if repo.workdir is None:
        return 0  # a bare repository has no work tree to run DVC in
    try:
        protected_state.refresh(Store(Path(repo.workdir), repo, branch))
    except Exception as exc:  # a bad dvc.lock or params.yaml on the branch, a full disk: warn, never fail
        print(f"lineage: {protected_state.STATE_FILE} not rewritten: {exc}", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    """Judge each protected-branch move git reports on stdin; exit 1 (git aborts) on the first refusal.

    With `committed` as the second argument the moves are done: note them, judge nothing.
    """
    branch = argv[0] if argv else "main"
    repo = open_repo(".")
    if argv[1:2] == ["committed"]:
        sys.stdin.read()
        return note_move(repo, branch)
    for line in sys.stdin.read().splitlines():
        if not line.strip():
            continue
        old, new = line.split()[:2]
        if set(old) == {"0"}:
            # git passes a zero old value when the caller gave none (update-ref, branch -f):
            # judge against what the branch really holds.
            current = repo.references.get(f"refs/heads/{branch}")
            if current is not None:
                old = str(current.target)
        if set(new) == {"0"} and _packing(repo, old, branch):
            continue  # git pack-refs/gc moving the ref into packed-refs: the branch does not move
        try:
            check_signed_move(repo, old, new, branch)
        except LineageError as exc:
            print(f"lineage: {exc}", file=sys.stderr)
            if exc.hint:
                print(f"lineage: hint: {exc.hint}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
