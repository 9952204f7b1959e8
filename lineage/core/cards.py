"""Human-facing renderings of a gate report: EVAL.md and a Hugging Face MODEL_CARD.md."""

from __future__ import annotations

from typing import Any, TypeGuard

from .canonical import digest_obj
from .gate import EPS, Criterion, GateReport
from .metrics import EvalMetrics

UNKNOWN = "unknown"
DIFFERS = "the candidate's own params.yaml policy differs and was ignored"
NARROW = 0.01  # a pass closer than this to its threshold is worth flagging as a risk


def _fmt(v: object) -> str:
    """A value for a table cell: floats to 4 places without trailing zeros, None as a dash."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        s = f"{v:.4f}".rstrip("0")
        return s + "0" if s.endswith(".") else s
    return str(v)


def _cell(v: object) -> str:
    # A pipe inside a cell would split the Markdown table.
    return _fmt(v).replace("|", "\\|")


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _result(c: Criterion) -> str:
    if not c.applicable:
        return "n.a."
    return "PASS" if c.passed else "FAIL"


def _policy_line(report: GateReport) -> list[str]:
    src = report.policy_source
    ref, commit = src.get("ref") or UNKNOWN, src.get("commit") or UNKNOWN
    lines = [f"Judged by the policy on `{ref}` at commit `{commit}` "
             f"(policy digest `{digest_obj(report.policy)}`)."]
    if src.get("candidate_policy_differs"):
        lines += ["", f"> **WARNING: {DIFFERS}.** The candidate was judged by the protected "
                  "branch's policy above, never by its own."]
    return lines


def render_eval_md(report: GateReport, metrics: EvalMetrics) -> str:
    """EVAL.md: verdict first, the policy that judged, then one table row per criterion."""
    if report.failed:
        head = f"**Verdict: FAIL** — failed: {', '.join(report.failed)}."
    else:
        n = sum(1 for c in report.criteria if c.applicable)
        head = f"**Verdict: PASS** — all {n} applicable criteria passed."
    lines = [f"# Gate report: {report.verdict}", "", head, "", *_policy_line(report), "",
             "| criterion | child | op threshold | parent | result |",
             "|---|---|---|---|---|"]
    for c in report.criteria:
        lines.append(f"| {_cell(c.name)} | {_cell(c.observed)} | {c.op} {_cell(c.threshold)} "
                     f"| {_cell(c.parent)} | {_result(c)} |")
    lines += ["", f"Composite score: child {_fmt(report.composite)}, "
              f"parent {_fmt(report.parent_composite)} "
              f"({_signed(report.composite - report.parent_composite)})."]
    notes = [f"- {c.name}: {c.note}" for c in report.criteria if c.note]
    if notes:
        lines += ["", "## Notes", "", *notes]
    ch, pa = metrics.child, metrics.parent
    lines += ["", "## Scores", "", "| metric | child | parent |", "|---|---|---|"]
    for name in ("recall", "generalize", "law_violations", "loss", "perplexity"):
        lines.append(f"| {name} | {_cell(getattr(ch, name))} | {_cell(getattr(pa, name))} |")
    gen = "a generation" if metrics.parent_is_generation else "the untrained base (first generation)"
    lines += ["", f"Parent is {gen}. Tone drift {_fmt(metrics.tone_drift)}; "
              f"eval took {_fmt(metrics.eval_seconds)} s."]
    return "\n".join(lines) + "\n"


# --- model card ---------------------------------------------------------------------------
# The card's metadata is plain data here; adapters/cards.py hands it to huggingface_hub's
# ModelCardData and EvalResult, which write the YAML (core stays free of the library).

LIBRARY = "transformers"
PIPELINE_TAG = "text-generation"
EXAM_DATASET = {"dataset_type": "lineage-exam", "dataset_name": "lineage exam"}


def _hub_id(base: object) -> str | None:
    # Only a Hub id belongs in base_model; a local path or a scratch model has no Hub page.
    if not isinstance(base, str) or not base.strip() or base.strip() == "scratch":
        return None
    if base.startswith(("/", ".", "~")) or "\\" in base or base.count("/") > 1:
        return None
    return base


def model_name(manifest: dict[str, Any]) -> str:
    """'store/G001-a': the store's model name and the attempt (or 'unknown' for either)."""
    store = manifest.get("store") or UNKNOWN
    return f"{store}/{manifest.get('generation') or UNKNOWN}"


def _base_model(metrics: EvalMetrics, manifest: dict[str, Any]) -> str | None:
    # A generation's base is its parent generation, named as that generation's own card names it
    # (store/G000); the first generation's base is the configured model when it has a Hub id.
    if metrics.parent_is_generation and manifest.get("parent_generation") and manifest.get("store"):
        return f"{manifest['store']}/{manifest['parent_generation']}"
    return _hub_id(manifest.get("base_model"))


def _eval_results(report: GateReport, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One result per numeric criterion, on the exam named by its digest."""
    revision = manifest.get("exam_digest") or report.hashes.get("probes") or UNKNOWN
    out = []
    for c in report.criteria:
        if not _numeric(c.observed):
            continue
        out.append({"task_type": PIPELINE_TAG, "task_name": "lineage gate", **EXAM_DATASET,
                    "dataset_revision": str(revision), "metric_type": c.name, "metric_name": c.name,
                    "metric_value": c.observed,
                    "metric_args": {"op": c.op, "threshold": c.threshold, "parent": c.parent,
                                    "applicable": c.applicable, "passed": c.passed}})
    return out


def card_metadata(report: GateReport, metrics: EvalMetrics, manifest: dict[str, Any]) -> dict[str, Any]:
    """The card's metadata as plain data, in huggingface_hub's ModelCardData field names.

    eval_results holds EvalResult keyword arguments; `datasets` are the deltas this generation added.
    """
    manifest = manifest if isinstance(manifest, dict) else {}
    meta: dict[str, Any] = {"model_name": model_name(manifest)}
    base = _base_model(metrics, manifest)
    if base:
        meta["base_model"] = base
        # Merged LoRA or full weights are a finetune; only shipped adapter weights are an adapter.
        meta["base_model_relation"] = "adapter" if manifest.get("weights_kind") == "adapter" else "finetune"
    if manifest.get("license"):
        meta["license"] = manifest["license"]
    meta["library_name"] = LIBRARY
    meta["pipeline_tag"] = PIPELINE_TAG
    data = manifest.get("data")
    data = data if isinstance(data, list) else []
    paths = [str(d["path"]) for d in data if isinstance(d, dict) and d.get("path")]
    if paths:
        meta["datasets"] = paths
    meta["tags"] = ["lineage"]
    meta["eval_results"] = _eval_results(report, manifest)
    return meta


def _parent(metrics: EvalMetrics, manifest: dict[str, Any]) -> str:
    phash = manifest.get("parent_hash") or UNKNOWN
    if metrics.parent_is_generation:
        return f"{manifest.get('parent_generation') or UNKNOWN} (`{phash}`)"
    return f"the base model {manifest.get('base_model') or UNKNOWN} (`{phash}`); this is the first generation"


def _data(manifest: dict[str, Any]) -> str:
    data = manifest.get("data")
    if not isinstance(data, list):
        return UNKNOWN
    if not data:
        return "none"
    parts = []
    for d in data:
        d = d if isinstance(d, dict) else {}
        sha = str(d.get("sha256") or UNKNOWN)
        parts.append(f"`{d.get('path') or UNKNOWN}` ({d.get('records', UNKNOWN)} records, "
                     f"sha256 `{sha[:12]}`)")
    return "; ".join(parts)


def _deltas(report: GateReport, metrics: EvalMetrics) -> str:
    ch, pa = metrics.child, metrics.parent
    parts = [f"{k} {_signed(getattr(ch, k) - getattr(pa, k))} ({_fmt(getattr(ch, k))} vs "
             f"{_fmt(getattr(pa, k))})" for k in ("recall", "generalize")]
    parts.append(f"law_violations {ch.law_violations - pa.law_violations:+d} "
                 f"({ch.law_violations} vs {pa.law_violations})")
    parts.append(f"tone_drift {_fmt(metrics.tone_drift)} from the parent")
    parts.append(f"composite {_signed(report.composite - report.parent_composite)}")
    return "; ".join(parts)


def _numeric(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _risks(report: GateReport, metrics: EvalMetrics) -> str:
    risks = []
    if report.failed:
        risks.append(f"failed the gate on {', '.join(report.failed)}: not promotable")
    if report.policy_source.get("candidate_policy_differs"):
        risks.append(DIFFERS)
    if not metrics.parent_is_generation:
        risks.append("first generation: judged on absolute floors, no parent voice to keep")
    for c in report.criteria:
        # Only scores in [0, 1] have a meaningful "narrow" margin; counts at 0 <= 0 are just fine.
        if not isinstance(c.observed, float) or c.name.startswith("budget.") or not _numeric(c.threshold):
            continue
        if c.applicable and c.passed and abs(c.observed - c.threshold) < NARROW:
            risks.append(f"{c.name} passed within {NARROW:g} of its threshold")
    if metrics.child.law_violations:
        risks.append(f"{metrics.child.law_violations} law violation(s) on the probes")
    return "; ".join(risks) or "none flagged by the gate"


def _regressions(report: GateReport) -> str:
    regs = []
    for c in report.criteria:
        if not (_numeric(c.observed) and _numeric(c.parent)):
            continue
        # Worse than the parent even when within tolerance: the card tells, the gate decides.
        worse = c.observed < c.parent - EPS if c.op == ">=" else c.observed > c.parent + EPS
        if c.op != "==" and worse:
            regs.append(f"{c.name} {_fmt(c.observed)} vs parent {_fmt(c.parent)}")
    return "; ".join(regs) or "none"


def _hashes(report: GateReport) -> str:
    parts = [f"{k} `{v}`" for k, v in sorted(report.hashes.items())]
    parts.append(f"gate report `{report.digest()}`")
    return "; ".join(parts)


def render_card_body(report: GateReport, metrics: EvalMetrics, manifest: dict[str, Any]) -> str:
    """MODEL_CARD.md's Markdown under the metadata: a title, one line, then exactly six bullets."""
    manifest = manifest if isinstance(manifest, dict) else {}
    gen = manifest.get("generation") or UNKNOWN
    method = manifest.get("method") or UNKNOWN
    finetune = manifest.get("finetune") or UNKNOWN
    seed = manifest.get("seed", UNKNOWN)
    bullets = [
        ("Parent", _parent(metrics, manifest)),
        ("Data added", _data(manifest)),
        ("Deltas", _deltas(report, metrics)),
        ("Risks", _risks(report, metrics)),
        ("Known regressions", _regressions(report)),
        ("Hashes", _hashes(report)),
    ]
    lines = ["", f"# {gen}", "",
             f"A generation of a lineage store, trained with method `{method}` "
             f"(finetune `{finetune}`, seed {seed}). Gate verdict: **{report.verdict}**.", ""]
    lines += [f"- **{k}:** {v}" for k, v in bullets]
    return "\n".join(lines) + "\n"
