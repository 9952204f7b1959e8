"""DVC adapter: DVC's Python API for the data operations, the dvc CLI for `dvc repro` (its stages'
progress streams to the user), the cache layout for reads.

The only module that starts dvc or imports it; each function names the one DVC operation it does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..core.errors import IntegrityError, StoreError

if TYPE_CHECKING:
    from dvc.repo import Repo

log = logging.getLogger("lineage")

ENV = {"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}


def dvc_bin() -> str:
    """The dvc executable next to this Python, else the one on PATH."""
    here = Path(sys.executable).with_name("dvc")
    return str(here) if here.exists() else "dvc"


def dvc(args: list[str], cwd: str | Path, check: bool = True, capture: bool = True,
        echo=None) -> subprocess.CompletedProcess:
    """Run the dvc CLI; raise StoreError naming DVC's last error line on failure.

    echo: a function given each progress line of the stages (`train: 30/300 steps …`) as it
    comes, while the whole output is still captured for the result.
    """
    env = {**os.environ, **ENV}
    # Stage commands run 'python …': make it this interpreter, whatever PATH says.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if echo is not None:
        return _dvc_echo(args, cwd, env, check, echo)
    proc = subprocess.run([dvc_bin(), *args], cwd=cwd, env=env, text=True,
                          capture_output=capture)
    if check and proc.returncode != 0:
        lines = [ln for ln in ((proc.stderr or "") + (proc.stdout or "")).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln or "error:" in ln]
        raise StoreError(f"dvc {args[0]} failed: {(errors or lines or ['exit ' + str(proc.returncode)])[-1].strip()}")
    return proc


STAGE_LINE = ("parent:", "prepare:", "train:", "eval:", "gate:", "error:", "Running stage")


def _dvc_echo(args, cwd, env, check, echo) -> subprocess.CompletedProcess:
    """Run dvc with stderr merged into stdout, echoing the stages' progress lines as they come."""
    env = {**env, "LINEAGE_PROGRESS": env.get("LINEAGE_PROGRESS") or "stream"}
    proc = subprocess.Popen([dvc_bin(), *args], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, bufsize=1)
    lines = []
    assert proc.stdout is not None  # stdout=PIPE
    for line in proc.stdout:
        lines.append(line)
        if line.lstrip().startswith(STAGE_LINE):
            echo("  " + line.strip())
    proc.wait()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), "")
    if check and proc.returncode != 0:
        raise StoreError(f"dvc {args[0]} failed: {(lines or ['exit ' + str(proc.returncode)])[-1].strip()}")
    return done


def lock_outs(lock_text: bytes | str | None) -> dict[str, dict[str, dict]]:
    """Map stage -> out path -> {md5, size, nfiles, hash} from dvc.lock text."""
    if not lock_text:
        return {}
    data = yaml.safe_load(lock_text) or {}
    out: dict[str, dict[str, dict]] = {}
    for stage, body in (data.get("stages") or {}).items():
        out[stage] = {o["path"]: o for o in body.get("outs", [])}
    return out


def cache_dir(root: str | Path) -> Path:
    """The DVC cache directory of the store (honours a configured cache.dir), as `dvc cache dir` prints
    it: read through DVC's own Config in this process (a dvc process would cost a third of a second)."""
    config = _config(root)
    configured = config["cache"].get("dir") if config is not None else None
    return Path(configured) if configured else Path(os.path.abspath(Path(root) / ".dvc" / "cache"))


def _config(root: str | Path):
    """The store's DVC configuration, every level merged as the dvc CLI reads it; None when it does not
    parse (the CLI would stop there with a config error)."""
    from dvc.config import Config, ConfigError

    try:
        return Config(dvc_dir=str(Path(root) / ".dvc"))
    except ConfigError:
        return None


def cache_path(cache: Path, md5: str) -> Path:
    """Where DVC 3 keeps an object with this md5 ('.dir' suffix included for trees)."""
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def dir_listing(cache: Path, md5_dir: str) -> list[dict]:
    """Entries {relpath, md5} of a cached directory object."""
    path = cache_path(cache, md5_dir)
    if not path.is_file():
        raise IntegrityError(f"DVC cache object {md5_dir}", "missing from the local cache")
    entries = json.loads(path.read_text())
    # The listing comes from the cache or the DVC remote, which git does not check: a relpath that
    # leaves the directory would make materialise() write anywhere (a stage script, a hook).
    for entry in entries if isinstance(entries, list) else [None]:
        rel = entry.get("relpath") if isinstance(entry, dict) else None
        parts = rel.replace("\\", "/").split("/") if isinstance(rel, str) else []
        if not isinstance(rel, str) or not parts or rel.startswith(("/", "\\")) or "\x00" in rel or ".." in parts \
                or "" in parts or not isinstance(entry, dict) or not isinstance(entry.get("md5"), str):
            raise IntegrityError(f"DVC cache object {md5_dir}", f"lists {rel!r}, a path outside its directory "
                                                                "or no path at all (a tampered cache or remote)")
    return entries


def materialise(cache: Path, md5_dir: str, dest: Path, read_only: bool = True) -> list[str]:
    """Link (or copy) a cached directory's files into dest; return relative paths."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    names = []
    for entry in dir_listing(cache, md5_dir):
        src = cache_path(cache, entry["md5"])
        if not src.is_file():
            raise IntegrityError(f"{entry['relpath']} ({entry['md5']})", "missing from the local DVC cache")
        target = dest / entry["relpath"]
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError:
            shutil.copy2(src, target)
        if read_only:
            os.chmod(target, 0o444)
        names.append(entry["relpath"])
    return names


# ---------------------------------------------------------------- named operations


def init(root: Path, cache_types: str, settings: dict[str, str] | None = None) -> None:
    """dvc init, analytics off, the cache linked rather than copied where the file system allows,
    and any further `section.option` settings of .dvc/config (shared through git)."""
    if not (root / ".dvc").is_dir():
        from dvc.repo import Repo

        Repo.init(str(root)).close()  # what `dvc init` runs, without its process
    configure(root, {"core.analytics": "false", "cache.type": cache_types, **(settings or {})})


def configure(root: Path, settings: dict[str, str], level: str = "repo") -> None:
    """Set `section.option` values in one of the store's DVC config files, through DVC's own Config
    (what `dvc config` does, validated the same way), in this process: one `dvc config` process per
    setting would cost about half a second each."""
    from dvc.config import Config

    config = Config(dvc_dir=str(root / ".dvc"), validate=False)
    with config.edit(level) as conf:
        for key, value in settings.items():
            section, option = key.split(".", 1)
            conf.setdefault(section, {})[option] = value


def set_default_remote(root: Path, url: str, local: bool) -> None:
    """The default remote 'origin' (local=True: in .dvc/config.local, not shared through git), set as
    `dvc remote add -f -d origin URL` sets it."""
    from dvc.config import Config

    config = Config(dvc_dir=str(root / ".dvc"), validate=False)
    with config.edit("local" if local else "repo") as conf:
        conf["remote"]["origin"] = {"url": url}
        conf["core"]["remote"] = "origin"


def default_remote_url(root: Path) -> str | None:
    """The URL of the default remote, or None (what `dvc remote default` and `dvc remote list` say,
    read through DVC's Config in this process)."""
    config = _config(root)
    if config is None:
        return None
    name = config["core"].get("remote")
    url = config["remote"].get(name, {}).get("url") if name else None
    return str(url) if url else None


@contextmanager
def _repo(root: str | Path) -> Iterator[Repo]:
    """The store's DVC Repo, opened in this process and as quiet as `dvc … -q`.

    The data operations below call DVC's Python API, the very functions the CLI commands run: a
    dvc process costs about 0.6 s to start, the same call in-process a fifth of that once DVC is
    imported, and one propose or promote makes several."""
    from dvc.logger import set_loggers_level
    from dvc.repo import Repo

    with set_loggers_level(logging.CRITICAL), Repo(str(root)) as repo:
        yield repo


def _reason(exc: BaseException) -> str:
    """DVC's own reason on one line (its messages put the fix on lines of their own)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def add(root: Path, path: str) -> None:
    """Track a file with DVC (writes path.dvc and a .gitignore beside it), as `dvc add` does.

    Raises:
        StoreError: naming DVC's reason.
    """
    try:
        with _repo(root) as repo:
            repo.add([str(Path(root).resolve() / path)])
    except Exception as exc:  # the CLI turns any failure into one error line: so do we
        raise StoreError(f"dvc add failed: {_reason(exc)}") from None


def repro(root: Path, echo=None) -> subprocess.CompletedProcess:
    """dvc repro of the whole pipeline; never raises (the caller reads the stage's error line)."""
    return dvc(["repro"], cwd=root, check=False, echo=echo)


def push(root: Path, everything: bool = False, check: bool = False) -> bool:
    """Send data to the default remote: the work tree's, or (everything) every branch's and tag's.
    False when DVC could not.

    Raises:
        StoreError: check, and the push failed (naming DVC's reason).
    """
    try:
        with _repo(root) as repo:
            repo.push(all_branches=everything, all_tags=everything)
    except Exception as exc:  # the CLI turns any failure into exit 1: so do we
        if check:
            raise StoreError(f"dvc push failed: {_reason(exc)}") from None
        log.debug("dvc push failed: %s", _reason(exc))
        return False
    return True


def pull(root: Path) -> bool:
    """Fetch and check out the work tree's data from the default remote (what is missing stays
    missing); False when DVC could not."""
    try:
        with _repo(root) as repo:
            repo.pull(allow_missing=True)
    except Exception as exc:  # best effort, as `dvc pull --allow-missing` whose exit status nobody read
        log.debug("dvc pull: %s", _reason(exc))
        return False
    return True


def checkout(root: Path) -> None:
    """Make the work tree's DVC outputs match dvc.lock (best effort: missing data stays missing)."""
    try:
        with _repo(root) as repo:
            repo.checkout(force=True)
    except Exception as exc:  # best effort, as `dvc checkout --force` whose exit status nobody read
        log.debug("dvc checkout: %s", _reason(exc))


def remote_status(root: Path, everything: bool = False) -> tuple[dict | None, str]:
    """(outputs not in the remote, or None when it cannot be asked, with DVC's reason), what
    `dvc status --cloud --json` reports.

    Raises:
        StoreError: everything, and DVC could not ask the remote.
    """
    try:
        with _repo(root) as repo:
            return repo.status(cloud=True, all_branches=everything, all_tags=everything) or {}, ""
    except Exception as exc:  # the CLI turns any failure into exit 1 and one error line
        if everything:
            raise StoreError(f"dvc status failed: {_reason(exc)}") from None
        return None, _reason(exc)


def gc(root: Path, keep: list[str], cloud: bool, dry_run: bool) -> str:
    """dvc gc keeping what keep names; return DVC's own report text."""
    args = ["gc", *keep, "--force", *(["--cloud"] if cloud else []), *(["--dry"] if dry_run else [])]
    proc = dvc(args, cwd=root)
    return proc.stdout + proc.stderr


def fetch_rev(root: Path, rev: str, what: str | None = None, target: str = "models/child") -> None:
    """Fetch one output of a commit from the DVC remote into the cache (DVC's Python API).

    Raises:
        IntegrityError: DVC could not fetch it.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            repo.fetch(targets=[target], revs=[rev], workspace=False)
    except DvcException as exc:
        raise IntegrityError(what or f"{target} of {rev[:12]}",
                             f"its weights could not be fetched from the DVC remote ({exc})") from None
