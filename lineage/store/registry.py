"""The store's model in a GTO registry: a DVC artifact in dvc.yaml, and GTO's tags for the serving stage.

GTO (and DVC's `dvc artifacts`, and DVC Studio) read a model registry from two things: an
``artifacts:`` entry in ``dvc.yaml`` at the tagged commit, and annotated git tags named in GTO's
format. lineage writes both itself, in GTO's exact format, so that GTO need not be imported:

- ``init`` declares the model (``<name>: {type: model, path: models/child}``) from the store's
  first commit; a commit whose dvc.yaml declares no artifact is never registered (GTO could not
  read it back).
- a promotion of generation G{N} registers version ``v{N}.0.0`` (``<name>@v7.0.0`` for G007: the
  generation number is the major version, since any generation may change behaviour) and assigns
  the ``prod`` stage (``<name>#prod#<counter>``), in the same ref transaction as the branch;
- a rollback assigns ``prod`` back to the restored generation's version (a new ``#prod#<counter>``
  tag at that version's commit), so `gto show` names the generation served.

GTO orders events by tag time (seconds): a stage tag is dated at least one second after the
artifact's latest stage tag, so a rollback right after a promotion still reads as the later event.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import yaml

from ..adapters import git
from . import refs, transaction

ARTIFACT_PATH = "models/child"
STAGE = "prod"
NAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-/_]*[a-zA-Z0-9])?$")  # gto.constants.name
COUNTER_RE = re.compile(r"#(\d+)$")
TAGGED_TIME = re.compile(r"^tagger .* (\d+) [+-]\d{4}$", re.M)


def name_for(directory: str) -> str:
    """A valid artifact name from a store directory's name ('My Store' -> 'my-store')."""
    name = re.sub(r"[^a-z0-9-_]+", "-", directory.lower()).strip("-_")
    return name if NAME_RE.match(name) else "model"


def artifacts_yaml(name: str) -> str:
    """The ``artifacts:`` section init appends to dvc.yaml for a store's model."""
    return ("\n# The model in a GTO / DVC model registry (gto show, dvc artifacts get): lineage/store/registry.py\n"
            + yaml.safe_dump({"artifacts": {name: {"type": "model", "path": ARTIFACT_PATH,
                                                   "desc": "a lineage store's served generation",
                                                   "labels": ["lineage"]}}}, sort_keys=False))


def declared_name(dvc_yaml: bytes | str | None) -> str | None:
    """The model artifact a dvc.yaml declares, or None."""
    try:
        doc = yaml.safe_load(dvc_yaml or "") or {}
    except yaml.YAMLError:
        return None
    artifacts = doc.get("artifacts") if isinstance(doc, dict) else None
    if not isinstance(artifacts, dict):
        return None
    for name, spec in artifacts.items():
        if isinstance(spec, dict) and spec.get("type") == "model" and NAME_RE.match(str(name)):
            return str(name)
    return None


def model_name(root: Path) -> str:
    """The store's model name: the artifact its dvc.yaml declares, else one from the directory's name."""
    path = root / "dvc.yaml"
    declared = declared_name(path.read_text()) if path.is_file() else None
    return declared or name_for(root.resolve().name)


def version_of(generation: str) -> str:
    """GTO's semantic version of a generation: G007 -> v7.0.0."""
    match = refs.GEN_RE.fullmatch(generation)
    if match is None:
        raise ValueError(f"not a generation: {generation!r}")
    return f"v{int(match.group(1))}.0.0"


def version_tag(name: str, generation: str) -> str:
    return f"{name}@{version_of(generation)}"


def _stage_tags(repo, name: str) -> list[str]:
    prefix = f"refs/tags/{name}#"
    return [r for r in repo.references if r.startswith(prefix)]


def _next_counter(repo, name: str) -> int:
    # As GTO's name_tag: one more than the highest counter any tag of the artifact carries.
    counters = [int(m.group(1)) for r in repo.references if r.startswith((f"refs/tags/{name}#", f"refs/tags/{name}@"))
                if (m := COUNTER_RE.search(r))]
    return max(counters, default=0) + 1


def _not_before(repo, name: str) -> int:
    latest = 0
    for ref in _stage_tags(repo, name):
        obj = repo[repo.references[ref].target]
        found = TAGGED_TIME.search(obj.read_raw().decode(errors="replace")) if obj.type_str == "tag" else None
        latest = max(latest, int(found.group(1)) if found else 0)
    return max(int(time.time()), latest + 1) if latest else 0


def _tag(store, name: str, commit: str, message: str, when: int = 0) -> tuple[str, str, None]:
    return (f"refs/tags/{name}", transaction.make_tag(store, name, commit, message, when or None), None)


def promotion_tags(store, generation: str, commit: str) -> list[tuple[str, str, None]]:
    """GTO's version and prod-stage tags for a promoted commit (none when its dvc.yaml declares no model)."""
    repo = store.repo
    name = declared_name(git.read_blob(repo, git.peel_commit(repo, commit), "dvc.yaml"))
    if name is None:
        return []
    version = version_of(generation)
    out = []
    if f"refs/tags/{name}@{version}" not in repo.references:
        out.append(_tag(store, f"{name}@{version}", commit, f"Registering artifact {name} version {version}"))
    out.append(_tag(store, f"{name}#{STAGE}#{_next_counter(repo, name)}", commit,
                    f"Assigning stage {STAGE} to artifact {name} version {version}", _not_before(repo, name)))
    return out


def rollback_tags(store, generation: str) -> list[tuple[str, str, None]]:
    """A prod-stage tag giving the stage back to a generation's registered version (none if unregistered)."""
    repo = store.repo
    name = declared_name(git.read_blob(repo, store.tip(), "dvc.yaml"))
    if name is None:
        return []
    version = version_of(generation)
    commit = git.ref_commit(repo, f"refs/tags/{name}@{version}")
    if commit is None:
        return []
    return [_tag(store, f"{name}#{STAGE}#{_next_counter(repo, name)}", commit,
                 f"Assigning stage {STAGE} to artifact {name} version {version}", _not_before(repo, name))]


# ---------------------------------------------------------------- travelling to and guarded by the hub


def tag_refspecs(root: Path) -> list[str]:
    """The refspecs that carry the model's GTO tags (`lineage push` / `pull` add them to their own)."""
    name = model_name(root)
    return [f"refs/tags/{name}@*:refs/tags/{name}@*", f"refs/tags/{name}#*:refs/tags/{name}#*"]


def is_registry_tag(ref: str, name: str) -> bool:
    return ref.startswith((f"refs/tags/{name}@", f"refs/tags/{name}#"))


def check_tag(repo, ref: str, old: str | None, new: str | None, main_tip: str | None) -> str | None:
    """Why the hub must refuse this update of a GTO tag of the model main declares, or None (gather + judge).

    Like lineage's own tags: never moved or deleted, annotated; a version tag `<name>@vN.0.0` points
    at the commit main promoted as GNNN; a `prod` stage tag points at a commit some version tag of the
    same push or before names (GTO reads the stage's version from its commit).
    """
    zero = {None, "0" * 40}
    if old not in zero:
        return "registry tags are never moved or deleted" if new != old else None
    if new in zero or main_tip is None:
        return None
    if not git.is_annotated_tag(repo, new):
        return "registry tags are annotated tags, as GTO and lineage write them"
    name = declared_name(git.read_blob(repo, git.peel_commit(repo, main_tip), "dvc.yaml"))
    label = ref[len(f"refs/tags/{name}"):] if name and is_registry_tag(ref, name) else ""
    commit = str(git.peel_commit(repo, new).id)
    promoted = {}  # commit -> the generation main promoted there (rollbacks promote nothing)
    for c in git.first_parent_history(repo, git.peel_commit(repo, main_tip).id):
        info = git.trailers(c.message)
        if "Generation" in info and "Rollback-To" not in info and "Approved-Change" not in info:
            promoted[str(c.id)] = info["Generation"]
    if label.startswith("@"):
        generation = promoted.get(commit)
        if generation is None or label != f"@{version_of(generation)}":
            return f"{ref[len('refs/tags/'):]} does not name the commit main promoted as that version"
        return None
    if label.startswith(f"#{STAGE}#") and commit in promoted:
        return None
    return f"{ref[len('refs/tags/'):]} is not a {STAGE} stage of a generation main promoted"
