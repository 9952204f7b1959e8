"""The gate: data-file cases, report round-trip, malformed metrics, composite, renderings."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from lineage.adapters.cards import render as render_card
from lineage.core.cards import DIFFERS, card_metadata, render_card_body, render_eval_md
from lineage.core.errors import MetricsError
from lineage.core.gate import Criterion, GateReport, composite, judge, load_gate_report
from lineage.core.metrics import BudgetUsed, EvalMetrics, ModelScores, load_eval_metrics
from lineage.core.policy import Policy

CASES = sorted((Path(__file__).parent / "data" / "gates").glob("*.yaml"))

METRICS = {
    "schema_version": 1,
    "child": {"recall": 0.93, "generalize": 0.85, "recall_by_delta": {"d000-era0": 0.95, "d001-era1": 0.9},
              "law_violations": 0, "loss": 2.1, "perplexity": 8.2},
    "parent": {"recall": 0.92, "generalize": 0.6, "recall_by_delta": {"d000-era0": 0.94, "d001-era1": 0.9},
               "law_violations": 0, "loss": 2.3, "perplexity": 9.9},
    "parent_is_generation": True,
    "tone_drift": 0.021,
    "eval_seconds": 31.5,
}
BUDGET = {"steps": 1500, "tokens": 12_000_000, "wall_minutes": 7.5, "peak_memory_mb": 3000.0,
          "output_mb": 200.0, "status": "COMPLETE", "reason": None}
HASHES = {"child_weights": "sha256:" + "a" * 64, "parent_weights": "sha256:" + "b" * 64,
          "probes": "sha256:" + "c" * 64, "manifest": "sha256:" + "d" * 64, "policy_commit": "0" * 40}
SOURCE = {"ref": "main", "commit": "0" * 40, "candidate_policy_differs": False}
MANIFEST = {"generation": "G013-a", "parent_generation": "G012", "parent_hash": "sha256:" + "b" * 64,
            "data": [{"path": "data/era1.jsonl", "sha256": "e" * 64, "records": 120}],
            "base_model": "Qwen/Qwen2.5-0.5B", "method": "sft", "finetune": "lora", "seed": 7}


def _report(metrics=METRICS, budget=BUDGET, source=SOURCE, policy=None):
    m = EvalMetrics.from_dict(copy.deepcopy(metrics))
    return judge(policy or Policy(), m, BudgetUsed.from_dict(dict(budget)),
                 hashes=HASHES, policy_source=source), m


def test_there_are_enough_cases():
    assert len(CASES) >= 12


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_gate_case(path):
    case = yaml.safe_load(path.read_text())
    report = judge(Policy.from_dict(case["policy"]), EvalMetrics.from_dict(case["metrics"]),
                   BudgetUsed.from_dict(case["budget"]))
    exp = case["expected"]
    assert report.verdict == exp["verdict"], report.failed
    assert list(report.failed) == exp["failed"]
    for name in exp.get("not_applicable", []):
        c = report.criterion(name)
        assert not c.applicable and c.passed
    for name, note in exp.get("notes", {}).items():
        assert report.criterion(name).note == note
    # every report the gate writes must read back as itself
    assert GateReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_criteria_carry_observed_threshold_and_parent():
    report, _ = _report()
    c = report.criterion("recall")
    assert (c.observed, c.op, c.threshold, c.parent, c.passed) == (0.93, ">=", 0.87, 0.92, True)
    assert report.criterion("recall[d000-era0]").threshold == pytest.approx(0.84)
    assert report.criterion("budget.status").observed == "COMPLETE"
    assert [c.name for c in report.criteria][:4] == ["recall", "recall[d000-era0]", "recall[d001-era1]",
                                                     "generalize"]


def test_shadow_parity_judged_when_measured():
    policy = Policy.from_dict({"min_shadow_parity": 0.9})
    ok, _ = _report({**METRICS, "shadow_parity": 0.95}, policy=policy)
    low, _ = _report({**METRICS, "shadow_parity": 0.85}, policy=policy)
    assert ok.verdict == "PASS" and low.failed == ("shadow_parity",)


def test_judge_is_pure():
    m = EvalMetrics.from_dict(copy.deepcopy(METRICS))
    b = BudgetUsed.from_dict(dict(BUDGET))
    hashes = dict(HASHES)
    r1 = judge(Policy(), m, b, hashes=hashes, policy_source=SOURCE)
    hashes["child_weights"] = "changed"
    r2 = judge(Policy(), m, b, hashes=HASHES, policy_source=SOURCE)
    assert r1 == r2 and r1.hashes["child_weights"] == HASHES["child_weights"]
    assert m == EvalMetrics.from_dict(copy.deepcopy(METRICS))


# --- report round-trip and digest ---------------------------------------------------------


def test_report_round_trip_and_stable_digest(tmp_path):
    report, _ = _report()
    again, _ = _report()
    d = report.to_dict()
    assert d["schema_version"] == 1 and d["hashes"] == HASHES and d["policy_source"] == SOURCE
    assert d["policy"] == Policy().to_dict()
    back = GateReport.from_dict(json.loads(json.dumps(d)))
    assert back == report and back.to_dict() == d
    assert back.canonical_bytes() == report.canonical_bytes() == again.canonical_bytes()
    assert report.digest() == again.digest() and report.digest().startswith("sha256:")
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(d, indent=2))
    assert load_gate_report(path).digest() == report.digest()


def test_digest_changes_with_what_was_judged():
    report, _ = _report()
    other = judge(Policy(), EvalMetrics.from_dict(copy.deepcopy(METRICS)), BudgetUsed.from_dict(BUDGET),
                  hashes={**HASHES, "child_weights": "sha256:" + "f" * 64}, policy_source=SOURCE)
    assert other.digest() != report.digest()


def test_report_policy_digest_matches_policy():
    from lineage.core.canonical import digest_obj
    report, _ = _report(policy=Policy.from_dict({"recall_tolerance": 0.1}))
    assert digest_obj(report.policy) == Policy.from_dict({"recall_tolerance": 0.1}).digest()


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(verdict="MAYBE"), "verdict"),
    (lambda d: d.update(verdict="FAIL"), "verdict"),
    (lambda d: d.update(failed=["recall"]), "failed"),
    (lambda d: d["criteria"][0].pop("op"), "criteria[0].op"),
    (lambda d: d["criteria"][0].update(passed="yes"), "criteria[0].passed"),
    (lambda d: d["criteria"][0].update(observed=[1]), "criteria[0].observed"),
    (lambda d: d["criteria"][1].update(name="recall"), "criteria"),
    (lambda d: d.update(composite="high"), "composite"),
    (lambda d: d.pop("policy"), "policy"),
    (lambda d: d["policy"].update(recall_tolerance=3), "policy.recall_tolerance"),
    (lambda d: d["hashes"].update(child_weights=None), "hashes.child_weights"),
    (lambda d: d["policy_source"].update(branch="main"), "policy_source.branch"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d.update(schema_version=2), "schema_version"),
])
def test_malformed_report_names_the_field(mutate, field):
    report, _ = _report()
    d = report.to_dict()
    mutate(d)
    with pytest.raises(MetricsError) as e:
        GateReport.from_dict(d, file="reports/gate.json")
    assert e.value.field == field and e.value.file == "reports/gate.json"


def test_forged_pass_is_refused():
    report, _ = _report({**METRICS, "tone_drift": 0.5})
    d = report.to_dict()
    d["verdict"], d["failed"] = "PASS", []
    with pytest.raises(MetricsError, match="failed"):
        GateReport.from_dict(d)


# --- malformed metrics --------------------------------------------------------------------


def _metrics_with(path: str, value):
    d = copy.deepcopy(METRICS)
    *parents, last = path.split(".")
    node = d
    for k in parents:
        node = node[k]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return d


@pytest.mark.parametrize("path, value, problem", [
    ("child.recall", KeyError, "missing"),
    ("parent.generalize", KeyError, "missing"),
    ("child", KeyError, "missing"),
    ("parent_is_generation", KeyError, "missing"),
    ("tone_drift", KeyError, "missing"),
    ("child.recall", "0.9", "expected a number"),
    ("child.recall", True, "expected a number"),
    ("child.recall", 1.5, "impossible"),
    ("parent.generalize", -0.2, "impossible"),
    ("child.law_violations", 1.0, "expected an integer"),
    ("child.law_violations", -1, "impossible"),
    ("child.law_violations", False, "expected an integer"),
    ("parent_is_generation", "yes", "expected true or false"),
    ("tone_drift", 1.2, "impossible"),
    ("tone_drift", float("nan"), "finite"),
    ("child.recall_by_delta", [0.9], "expected a mapping"),
    ("parent", "G012", "expected a mapping"),
    ("schema_version", 2, "unsupported"),
])
def test_malformed_metrics_name_the_field(path, value, problem):
    with pytest.raises(MetricsError) as e:
        EvalMetrics.from_dict(_metrics_with(path, value), file="eval/metrics.json")
    assert e.value.field == path and e.value.file == "eval/metrics.json"
    assert problem in e.value.problem
    assert str(e.value).startswith(f"eval/metrics.json: {path}: ")


def test_malformed_delta_score_names_the_delta():
    with pytest.raises(MetricsError) as e:
        EvalMetrics.from_dict(_metrics_with("parent.recall_by_delta.d001-era1", 2.0))
    assert e.value.field == "parent.recall_by_delta.d001-era1" and e.value.file == "metrics.json"


def test_metrics_tolerate_float_noise_and_extra_keys():
    m = EvalMetrics.from_dict({**_metrics_with("tone_drift", -1e-12), "probe_counts": {"recall": 40}})
    assert m.tone_drift == 0.0
    assert EvalMetrics.from_dict(m.to_dict()) == m
    nan = EvalMetrics.from_dict(_metrics_with("child.loss", float("nan")))  # diverged, still recorded
    assert nan.child.loss != nan.child.loss


def test_metrics_file_errors(tmp_path):
    with pytest.raises(MetricsError, match="missing"):
        load_eval_metrics(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(MetricsError, match="not valid JSON"):
        load_eval_metrics(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    assert load_eval_metrics(tmp_path / "metrics.json").child.recall == 0.93


@pytest.mark.parametrize("field, value, problem", [
    ("steps", KeyError, "missing"),
    ("steps", 10.5, "expected an integer"),
    ("tokens", True, "expected an integer"),
    ("wall_minutes", "7", "expected a number"),
    ("output_mb", -1.0, "impossible"),
    ("status", "DONE", "not one of"),
    ("reason", 3, "expected a string"),
])
def test_malformed_budget_names_the_field(field, value, problem):
    d = dict(BUDGET)
    if value is KeyError:
        del d[field]
    else:
        d[field] = value
    with pytest.raises(MetricsError) as e:
        BudgetUsed.from_dict(d)
    assert (e.value.file, e.value.field) == ("reports/train_metrics.json", field)
    assert problem in e.value.problem


def test_budget_round_trip():
    b = BudgetUsed.from_dict(BUDGET)
    assert BudgetUsed.from_dict(b.to_dict()) == b and b.to_dict() == BUDGET


# --- composite ----------------------------------------------------------------------------


def test_composite_formula():
    s = ModelScores(recall=0.9, generalize=0.7, law_violations=0)
    assert composite(s, 0.1) == pytest.approx(0.4 * 0.9 + 0.4 * 0.7 + 0.2 * 0.9)
    assert composite(ModelScores(recall=1, generalize=1, law_violations=0), 0) == 1.0
    report, m = _report()
    assert report.composite == pytest.approx(0.4 * 0.93 + 0.4 * 0.85 + 0.2 * (1 - 0.021))
    assert report.parent_composite == pytest.approx(0.4 * 0.92 + 0.4 * 0.6 + 0.2)


def test_direct_construction_validates():
    with pytest.raises(MetricsError):
        ModelScores(recall=2.0, generalize=0.5, law_violations=0)
    with pytest.raises(MetricsError):
        Criterion("recall", 0.9, "=>", 0.8, None, True)


# --- renderings ---------------------------------------------------------------------------


def test_eval_md_table_and_policy_line():
    report, m = _report({**METRICS, "tone_drift": 0.3})
    md = render_eval_md(report, m)
    assert md.startswith("# Gate report: FAIL")
    assert "**Verdict: FAIL** — failed: tone_drift." in md
    assert "| criterion | child | op threshold | parent | result |" in md
    assert "| recall | 0.93 | >= 0.87 | 0.92 | PASS |" in md
    assert "| tone_drift | 0.3 | <= 0.05 | — | FAIL |" in md
    assert "| budget.status | COMPLETE | == COMPLETE | — | PASS |" in md
    assert f"`main` at commit `{'0' * 40}`" in md and DIFFERS not in md


def test_eval_md_warns_when_candidate_policy_differs_and_shows_na():
    first = _metrics_with("parent_is_generation", False)
    report, m = _report(first, source={**SOURCE, "candidate_policy_differs": True})
    md = render_eval_md(report, m)
    assert "WARNING: the candidate's own params.yaml policy differs and was ignored" in md
    assert "| n.a. |" in md and "first generation: no parent voice to keep" in md


def render_model_card(report, m, manifest) -> str:
    """MODEL_CARD.md as the gate stage writes it: core's data through huggingface_hub."""
    return render_card(card_metadata(report, m, manifest), render_card_body(report, m, manifest))


def _front(card: str) -> tuple[dict, str]:
    _, front, body = card.split("---\n", 2)
    return yaml.safe_load(front), body


def _load(tmp_path, card: str):
    from huggingface_hub import ModelCard

    path = tmp_path / "MODEL_CARD.md"
    path.write_text(card)
    return ModelCard.load(path).data


def test_model_card_loads_in_huggingface_hub_with_its_fields(tmp_path):
    report, m = _report()
    manifest = {**MANIFEST, "store": "luna", "license": "apache-2.0", "exam_digest": "sha256:" + "f" * 64}
    data = _load(tmp_path, render_model_card(report, m, manifest))
    assert data.model_name == "luna/G013-a"
    assert data.base_model == "luna/G012"  # the parent generation, named as its own card names it
    assert data.base_model_relation == "finetune"  # merged LoRA is a finetune, not an adapter
    assert (data.license, data.library_name, data.pipeline_tag) == ("apache-2.0", "transformers", "text-generation")
    assert data.datasets == ["data/era1.jsonl"] and data.tags == ["lineage"]
    results = {r.metric_type: r for r in data.eval_results}
    assert {k: r.metric_value for k, r in results.items() if not k.startswith("budget.")} == {
        "recall": 0.93, "generalize": 0.85, "tone_drift": 0.021, "law_violations": 0,
        "recall[d000-era0]": 0.95, "recall[d001-era1]": 0.9}  # one result per criterion
    assert {r.dataset_revision for r in data.eval_results} == {"sha256:" + "f" * 64}
    assert results["recall"].metric_args["threshold"] == pytest.approx(0.87)
    assert "budget.status" not in results  # not a number


def test_model_card_base_model_of_a_first_generation(tmp_path):
    first = _metrics_with("parent_is_generation", False)
    report, m = _report(first)
    data = _load(tmp_path, render_model_card(report, m, {**MANIFEST, "store": "luna", "weights_kind": "adapter"}))
    assert data.base_model == "Qwen/Qwen2.5-0.5B" and data.base_model_relation == "adapter"
    data = _load(tmp_path, render_model_card(report, m, {**MANIFEST, "base_model": "/models/llama"}))
    assert data.base_model is None and data.get("base_model_relation") is None  # a local path is not a Hub id


def test_model_card_six_bullets_and_regressions():
    worse = _metrics_with("child.recall", 0.9)
    report, m = _report(worse)
    card = render_model_card(report, m, MANIFEST)
    _, body = _front(card)
    bullets = [line for line in body.splitlines() if line.startswith("- ")]
    assert [b.split(":**")[0] for b in bullets] == [
        "- **Parent", "- **Data added", "- **Deltas", "- **Risks", "- **Known regressions", "- **Hashes"]
    text = dict(b[4:].split(":** ", 1) for b in bullets)
    assert text["Parent"].startswith("G012")
    assert "data/era1.jsonl" in text["Data added"] and "120 records" in text["Data added"]
    assert "recall -0.0200" in text["Deltas"]
    assert text["Known regressions"] == "recall 0.9 vs parent 0.92"
    assert HASHES["child_weights"] in text["Hashes"] and report.digest() in text["Hashes"]


def test_model_card_handles_a_sparse_manifest():
    report, m = _report()
    card = render_model_card(report, m, {})
    meta, body = _front(card)
    assert "base_model" not in meta and meta["model-index"][0]["name"] == "unknown/unknown"
    assert "- **Parent:** unknown" in body and "- **Data added:** unknown" in body
    assert "- **Known regressions:** none" in body


def test_model_card_flags_narrow_passes_only_for_scores():
    report, m = _report(_metrics_with("child.recall", 0.875))
    risks = next(line for line in render_model_card(report, m, MANIFEST).splitlines() if line.startswith("- **Risks"))
    assert risks == "- **Risks:** recall passed within 0.01 of its threshold"
    report, m = _report()
    assert "- **Risks:** none flagged by the gate" in render_model_card(report, m, MANIFEST)


def test_lm_eval_results_carry_the_childs_choice_accuracies_per_task():
    from lineage.core.lmeval import lm_eval_results

    out = lm_eval_results(METRICS, {"recall": 36, "generalize": 12, "tone": 4}, "models/child", "sha256:" + "f" * 64)
    assert out["results"] == {
        "lineage_recall": {"alias": "lineage_recall", "acc,none": 0.93, "acc_stderr,none": "N/A"},
        "lineage_generalize": {"alias": "lineage_generalize", "acc,none": 0.85, "acc_stderr,none": "N/A"}}
    assert out["n-samples"]["lineage_generalize"] == {"original": 12, "effective": 12}
    assert out["configs"]["lineage_recall"]["dataset_revision"] == "sha256:" + "f" * 64
    assert lm_eval_results(METRICS, {}, "m")["results"] == {}  # no items, no task
