"""lm-evaluation-harness against lineage's own evaluator, on a store's prepared probes.

    python bench/lm_eval_compare.py STORE [--model models/child] [--repeats 3]

Needs `pip install lm_eval==0.4.13` (not a lineage dependency: see bench/README.md for why).
Runs the exam's multiple-choice parts (recall, generalize) as lm-eval tasks over local JSONL
files (no network: a task YAML per probe set, `dataset_path: json`), scores the same weights with
lineage's `choice_accuracy`, and prints both accuracies and the wall time of each (median of
--repeats, the model loaded once per side, as the eval stage does). Writes
bench/results/lm_eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def lineage_side(model_dir: Path, probes: dict[str, list[dict]], batch_size: int) -> tuple[dict, float]:
    from lineage.adapters import evaluate
    from lineage.adapters.model import load

    model, tok = load(model_dir)
    started = time.perf_counter()
    scores = {kind: evaluate.choice_accuracy(model, tok, items, batch_size)[0] for kind, items in probes.items()}
    return scores, time.perf_counter() - started


def lm_eval_side(model_dir: Path, probe_files: dict[str, Path], batch_size: int) -> tuple[dict, float]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="lineage-lm-eval-") as tasks:
        for kind, path in probe_files.items():
            Path(tasks, f"lineage_{kind}.yaml").write_text(TASK.format(name=f"lineage_{kind}", path=path))
        lm = HFLM(pretrained=str(model_dir), batch_size=batch_size, device="cpu")
        manager = TaskManager(include_path=tasks)
        started = time.perf_counter()
        out = lm_eval.simple_evaluate(model=lm, tasks=[f"lineage_{k}" for k in probe_files], task_manager=manager,
                                      log_samples=False)
        took = time.perf_counter() - started
    assert out is not None
    return {k: out["results"][f"lineage_{k}"]["acc,none"] for k in probe_files}, took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--model", default="models/child", help="weights directory inside the store")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    store = args.store.resolve()
    files = {k: store / "data" / "prepared" / "probes" / f"{k}.jsonl" for k in ("recall", "generalize")}
    probes = {k: [json.loads(line) for line in p.read_text().splitlines() if line.strip()] for k, p in files.items()}
    ours, theirs, t_ours, t_theirs = {}, {}, [], []
    for _ in range(args.repeats):
        ours, took = lineage_side(store / args.model, probes, args.batch_size)
        t_ours.append(took)
        theirs, took = lm_eval_side(store / args.model, files, args.batch_size)
        t_theirs.append(took)
    result = {"lineage": ours, "lm_eval": theirs, "equal": ours == theirs,
              "probes": {k: len(v) for k, v in probes.items()},
              "seconds": {"lineage": statistics.median(t_ours), "lm_eval": statistics.median(t_theirs)},
              "ratio": statistics.median(t_theirs) / statistics.median(t_ours)}
    out = Path(__file__).parent / "results" / "lm_eval.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
