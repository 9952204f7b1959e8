"""shadow: HEAD and a candidate side by side on everyday prompts (offline parity)."""

from __future__ import annotations

from ..adapters import dvc
from ..pipeline.evaluate import load_probes
from ..store import refs, weights


def shadow(store, candidate: str, limit: int = 64) -> dict:
    """Run HEAD and a candidate side by side on everyday prompts; report parity and differences.

    Raises:
        UsageError: no such candidate.
    """
    from ..adapters import evaluate, model  # torch

    repo, root = store.repo, store.root
    commit = repo[refs.candidate_commit(repo, candidate)]
    cache = dvc.cache_dir(root)
    dirs = {}
    for label, source in (("head", store.tip()), ("candidate", commit)):
        target = root / ".lineage" / "shadow" / label
        dvc.materialise(cache, weights.child_md5(repo, source), target)
        dirs[label] = target
    probes = load_probes(root / "data" / "prepared" / "probes")
    prompts = [p["prompt"] for p in probes["recall"] + probes["generalize"]][:limit]
    a, tok = model.load(dirs["head"])
    b, _ = model.load(dirs["candidate"])
    result = evaluate.shadow_parity(a, b, tok, prompts, 16, 32)
    result["candidate"] = candidate
    return result
