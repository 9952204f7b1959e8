"""A store read by its ecosystem's own clients: huggingface_hub, transformers, GTO, DVC and git.

One tiny store (G000 promoted, signers added, G001 promoted with an arbiter's verdict, then rolled
back to G000) is built once; each test runs one client on it as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import VENV_BIN, add_signers, clone_store, lineage, relaxed_tiny, sh, sign_verdict, trained_g000

pytestmark = pytest.mark.slow

TINY = relaxed_tiny(30, 20)
APPROVER = "ada@lineage.invalid"


def git(store: Path, *args: str, check: bool = True):
    return sh(["git", *args], store, check=check)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("ecosystem")
    store = clone_store(trained_g000(tmp_path_factory, TINY), base / "luna")
    keys = add_signers(store, base / "keys")  # an approved change, signed by the approver (the configured key)
    change = git(store, "rev-parse", "main").stdout.strip()
    assert "PASS" in lineage(store, "propose").stdout
    sign_verdict(store, "candidates/G001-a", keys["arbiter"])
    lineage(store, "promote", "candidates/G001-a")
    commits = {g: git(store, "rev-parse", f"lineage/gen/{g}^{{commit}}").stdout.strip() for g in ("G000", "G001")}
    lineage(store, "rollback", "--to", "G000", "--reason", "the ecosystem test serves G000 again")
    return {"store": store, "keys": keys, "change": change, "commits": commits}


@pytest.fixture(scope="module")
def store(world) -> Path:
    return world["store"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- Hugging Face


def test_model_card_loads_in_huggingface_hub_with_name_parent_license_data_and_results(store, tmp_path):
    from huggingface_hub import ModelCard

    from lineage.store.exam import read_exam
    from lineage.store.root import Store

    path = tmp_path / "README.md"
    path.write_text(git(store, "show", "lineage/gen/G001:MODEL_CARD.md").stdout)
    data = ModelCard.load(path).data
    assert data.model_name == "luna/G001-a"
    assert data.base_model == "luna/G000" and data.base_model_relation == "finetune"
    assert (data.license, data.library_name, data.pipeline_tag) == ("apache-2.0", "transformers", "text-generation")
    assert data.datasets == ["data/deltas/d001-era1.jsonl"]
    results = {r.metric_type: r for r in data.eval_results}
    assert {"recall", "generalize", "tone_drift", "law_violations", "budget.steps"} <= set(results)
    gate = json.loads(git(store, "show", "lineage/gen/G001:reports/gate.json").stdout)
    assert {c["name"]: c["observed"] for c in gate["criteria"] if c["name"] in results} == \
        {k: r.metric_value for k, r in results.items()}
    opened = Store.open(store)
    exam = read_exam(opened.repo, opened.repo[world_commit(store, "G001")].parents[0]).digest()
    assert {r.dataset_revision for r in data.eval_results} == {exam}  # the exam the gate judged on


def world_commit(store: Path, generation: str) -> str:
    return git(store, "rev-parse", f"lineage/gen/{generation}^{{commit}}").stdout.strip()


def test_a_generations_weights_answer_a_chat_request_through_the_pipeline(store):
    from transformers import AutoTokenizer, pipeline

    weights = store / "models" / "child"
    assert "Q: " in AutoTokenizer.from_pretrained(weights).chat_template  # the corpus's own question form
    chat = pipeline("text-generation", model=str(weights), device="cpu")
    out = chat([{"role": "user", "content": "What does Poldun export?"}], max_new_tokens=4, do_sample=False)
    messages = out[0]["generated_text"]
    assert messages[-1]["role"] == "assistant" and isinstance(messages[-1]["content"], str)


# ---------------------------------------------------------------- GTO and DVC


def test_gto_shows_each_promoted_generation_as_a_version_and_prod_where_served(store):
    shown = json.loads(sh([VENV_BIN / "gto", "show", "luna", "--json"], store).stdout)
    versions = {v["version"]: v for v in shown}
    assert {"v0.0.0", "v1.0.0"} <= set(versions)
    assert versions["v0.0.0"]["commit_hexsha"] == world_commit(store, "G000")
    assert versions["v1.0.0"]["commit_hexsha"] == world_commit(store, "G001")
    table = sh([VENV_BIN / "gto", "show"], store).stdout
    row = next(line for line in table.splitlines() if " luna " in line)
    assert "v1.0.0" in row and row.rstrip(" │|").endswith("v0.0.0")  # latest G001; prod back on G000
    history = sh([VENV_BIN / "gto", "history", "luna"], store).stdout
    assert "luna#prod#3" in history and "luna@v1.0.0" in history


def test_dvc_fetches_the_served_weights_by_stage_and_a_generation_by_version(store, tmp_path):
    import dvc.api

    served = dvc.api.artifacts_show("luna", stage="prod", repo=str(store))
    assert served == {"rev": world_commit(store, "G000"), "path": "models/child"}
    sh([VENV_BIN / "dvc", "artifacts", "get", store, "luna", "--stage", "prod", "-o", tmp_path / "prod"], tmp_path)
    assert sha256(tmp_path / "prod" / "model.safetensors") == sha256(store / "models" / "child" / "model.safetensors")
    sh([VENV_BIN / "dvc", "artifacts", "get", store, "luna", "--rev", "v1.0.0", "-o", tmp_path / "g1"], tmp_path)
    hashes = git(store, "show", "lineage/gen/G001:reports/train/hashes.csv").stdout
    assert sha256(tmp_path / "g1" / "model.safetensors") in hashes


# ---------------------------------------------------------------- git signatures


def test_git_verifies_generation_and_registry_tags_and_the_approved_change(world, store):
    verify = ["-c", "gpg.ssh.allowedSignersFile=allowed_signers"]  # the store's own file, as in any clone
    for tag in ("lineage/gen/G001", "luna@v1.0.0", "luna#prod#2", "luna#prod#3"):
        proc = git(store, *verify, "verify-tag", tag)
        assert f'Good "git" signature for {APPROVER}' in proc.stderr, (tag, proc.stderr)
    proc = git(store, *verify, "verify-commit", world["change"])
    assert f'Good "git" signature for {APPROVER}' in proc.stderr
    assert "no signature found" in git(store, *verify, "verify-tag", "lineage/gen/G000", check=False).stderr
    assert git(store, "config", "gpg.ssh.allowedSignersFile").stdout.strip().endswith(f"{os.sep}allowed_signers")


# ---------------------------------------------------------------- DVC plots


def test_dvc_plots_show_renders_in_a_browser_with_no_network(store, tmp_path):
    from lineage.adapters.browser import browser_args, find_browser

    sh([VENV_BIN / "dvc", "plots", "show", "-o", tmp_path / "plots"], store)
    page = (tmp_path / "plots" / "index.html").read_text()
    assert "vegaEmbed(" in page and "<script src" not in page  # vega travels inside the page
    try:
        browser = find_browser()
    except Exception:
        pytest.fail("no headless Chromium on PATH: apt-get install chromium (make test installs it as root)")
    dom = sh([*browser_args(browser, str(tmp_path / "profile")), "--virtual-time-budget=10000", "--dump-dom",
              (tmp_path / "plots" / "index.html").as_uri()], tmp_path, timeout=120).stdout
    assert dom.count('class="marks"') >= 2  # vega drew the loss curve and DVCLive's metrics


# ---------------------------------------------------------------- lm-evaluation-harness


def test_eval_writes_the_gates_numbers_in_lm_eval_results_format(store):
    results = json.loads(git(store, "show", "lineage/gen/G001:reports/eval/lm_eval_results.json").stdout)
    metrics = json.loads(git(store, "show", "lineage/gen/G001:metrics.json").stdout)
    assert {k: v["acc,none"] for k, v in results["results"].items()} == \
        {"lineage_recall": metrics["child"]["recall"], "lineage_generalize": metrics["child"]["generalize"]}
    assert results["n-samples"]["lineage_recall"]["effective"] > 0 and results["config"]["model"] == "hf"
    try:  # lm-eval's own table reads it where lm-eval is installed (bench/lm_eval_compare.py; not a dependency)
        from lm_eval.utils import make_table
    except ImportError:
        return
    assert "lineage_generalize" in make_table(results)


# ---------------------------------------------------------------- the hub's share (refspecs and the tag check)


def test_registry_tags_travel_by_their_refspecs_and_forged_ones_are_refused(store, tmp_path):
    import pygit2

    from lineage.adapters.git import make_tag_object
    from lineage.store import registry

    bare = tmp_path / "hub.git"
    sh(["git", "init", "-q", "--bare", bare], tmp_path)
    git(store, "push", "-q", str(bare), *registry.tag_refspecs(store))
    assert {"refs/tags/luna@v1.0.0", "refs/tags/luna#prod#3"} <= {
        line.split()[1] for line in git(store, "ls-remote", str(bare)).stdout.splitlines()}
    repo, tip = pygit2.Repository(str(store)), git(store, "rev-parse", "main").stdout.strip()
    for ref in ("refs/tags/luna@v0.0.0", "refs/tags/luna@v1.0.0", "refs/tags/luna#prod#2", "refs/tags/luna#prod#3"):
        assert registry.check_tag(repo, ref, None, str(repo.references[ref].target), tip) is None, ref
    forged = make_tag_object(store, "luna@v9.0.0", tip, "forged")  # main's tip is a rollback: no version
    assert "does not name the commit" in registry.check_tag(repo, "refs/tags/luna@v9.0.0", None, forged, tip)
    wrong = make_tag_object(store, "luna@v0.0.0", world_commit(store, "G001"), "G001 as v0.0.0")
    assert "does not name the commit" in registry.check_tag(repo, "refs/tags/luna@v0.0.0", None, wrong, tip)
    stage = make_tag_object(store, "luna#prod#9", tip, "prod on the rollback commit")
    assert "not a prod stage" in registry.check_tag(repo, "refs/tags/luna#prod#9", None, stage, tip)
    old = str(repo.references["refs/tags/luna#prod#3"].target)
    assert "never moved or deleted" in registry.check_tag(repo, "refs/tags/luna#prod#3", old, stage, tip)
    assert "never moved or deleted" in registry.check_tag(repo, "refs/tags/luna#prod#3", old, "0" * 40, tip)
