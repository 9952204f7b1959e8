"""Entry point of the reference-transaction hook: run the arbiter on protected-branch moves.

The shell part of the hook (installed by `lineage init`) already filtered the lines, so this
only starts for moves of the protected branch.
"""

from __future__ import annotations

import sys

HOOK = """#!/bin/sh
# lineage: the arbiter checks every move of the protected branch; other refs pass on this
# shell fast path (no process is started for them).
[ "$1" = prepared ] || exit 0
hit=
while read -r old new ref; do
  case "$ref" in
    refs/heads/{branch}) hit="$hit$old $new
" ;;
  esac
done
[ -z "$hit" ] && exit 0
printf '%s' "$hit" | exec "{python}" -m lineage.hook "{branch}"
"""


def install(git_dir, branch: str) -> str:
    """Write the reference-transaction hook into git_dir/hooks; return its path."""
    import os
    from pathlib import Path

    hooks = Path(git_dir) / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    path = hooks / "reference-transaction"
    path.write_text(HOOK.replace("{branch}", branch).replace("{python}", sys.executable))
    os.chmod(path, 0o755)
    return str(path)


def main(argv: list[str]) -> int:
    from .adapters.git import open_repo
    from .arbiter import check_move
    from .errors import LineageError

    branch = argv[0] if argv else "main"
    repo = open_repo(".")
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
        try:
            check_move(repo, old, new, branch)
        except LineageError as exc:
            print(f"lineage: {exc}", file=sys.stderr)
            if exc.hint:
                print(f"lineage: hint: {exc.hint}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
