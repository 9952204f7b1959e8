"""Human-facing renderings of a gate report: EVAL.md and a Hugging Face MODEL_CARD.md."""

from __future__ import annotations

from typing import Any, TypeGuard

import yaml

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


class _IndentDumper(yaml.SafeDumper):
    """Indent list items under their key, so the card body holds the only top-level bullets."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _hub_id(base: object) -> str | None:
    # Only a Hub id belongs in base_model; a local path or a scratch model has no Hub page.
    if not isinstance(base, str) or not base.strip() or base.strip() == "scratch":
        return None
    if base.startswith(("/", ".", "~")) or "\\" in base or base.count("/") > 1:
        return None
    return base


def _front_matter(report: GateReport, metrics: EvalMetrics, manifest: dict[str, Any]) -> str:
    ch = metrics.child
    meta: dict[str, Any] = {}
    base = _hub_id(manifest.get("base_model"))
    if base:
        meta["base_model"] = base
        # Merged LoRA or full weights are a finetune; only shipped adapter weights are an adapter.
        meta["base_model_relation"] = "adapter" if manifest.get("weights_kind") == "adapter" else "finetune"
    meta["tags"] = ["lineage"]
    values = [("recall", ch.recall), ("generalize", ch.generalize),
              ("tone_drift", metrics.tone_drift), ("law_violations", ch.law_violations)]
    meta["model-index"] = [{
        "name": str(manifest.get("generation") or UNKNOWN),
        "results": [{
            "task": {"type": "text-generation", "name": "lineage gate evaluation"},
            "dataset": {"type": "lineage-probes", "name": "lineage probes"},
            "metrics": [{"type": k, "name": k, "value": v} for k, v in values],
        }],
    }]
    body = yaml.dump(meta, Dumper=_IndentDumper, sort_keys=False, allow_unicode=True)
    return f"---\n{body}---\n"


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


def render_model_card(report: GateReport, metrics: EvalMetrics, manifest: dict[str, Any]) -> str:
    """MODEL_CARD.md: Hugging Face front matter, then exactly six bullets."""
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
    lines = [_front_matter(report, metrics, manifest), f"# {gen}", "",
             f"A generation of a lineage store, trained with method `{method}` "
             f"(finetune `{finetune}`, seed {seed}). Gate verdict: **{report.verdict}**.", ""]
    lines += [f"- **{k}:** {v}" for k, v in bullets]
    return "\n".join(lines) + "\n"
