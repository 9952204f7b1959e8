"""The eval stage's scores in lm-evaluation-harness's results format (what `lm_eval --output_path` writes).

lineage keeps its own evaluator (bench/README.md: lm-eval gives the same recall and generalize on the
bundled corpus but adds ~340 MB of dependencies and ~3x the evaluation time); the results are exported
in lm-eval's layout so tools that read lm-eval output (its make_table, leaderboards, dashboards) read
a generation's scores too. The multiple-choice parts are tasks `lineage_recall` and
`lineage_generalize` scored by `acc` (likelihood ranking of the choices, as lm-eval's
multiple_choice output type does); sealed items, when the arbiter runs them, are `lineage_sealed`.
"""

from __future__ import annotations

from typing import Any

TASKS = ("recall", "generalize", "sealed")


def lm_eval_results(metrics: dict[str, Any], samples: dict[str, int], model_path: str,
                    exam_digest: str | None = None) -> dict[str, Any]:
    """lm-eval's results dict for the child's choice accuracies in metrics (metrics.json's layout).

    samples: how many items each probe set had (recall, generalize, optionally sealed).
    """
    child = metrics.get("child", {})
    results: dict[str, Any] = {}
    for kind in TASKS:
        value = child.get(kind)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and samples.get(kind):
            results[f"lineage_{kind}"] = {"alias": f"lineage_{kind}", "acc,none": value, "acc_stderr,none": "N/A"}
    names = list(results)
    return {
        "results": results,
        "group_subtasks": {name: [] for name in names},
        "configs": {name: {"task": name, "output_type": "multiple_choice", "num_fewshot": 0,
                           "dataset_path": "json", "dataset_revision": exam_digest,
                           "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
                    for name in names},
        "versions": {name: 1.0 for name in names},
        "n-shot": {name: 0 for name in names},
        "higher_is_better": {name: {"acc": True} for name in names},
        "n-samples": {name: {"original": samples[name[len("lineage_"):]], "effective": samples[name[len("lineage_"):]]}
                      for name in names},
        "config": {"model": "hf", "model_args": f"pretrained={model_path}", "batch_size": None,
                   "limit": None, "bootstrap_iters": 0},
        "model_name": model_path,
        "lineage": {"evaluator": "lineage.adapters.evaluate.choice_accuracy", "exam_digest": exam_digest,
                    "tone_drift": metrics.get("tone_drift"), "law_violations": child.get("law_violations")},
    }
