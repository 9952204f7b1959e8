"""The policy: defaults, unknown keys, types, impossible thresholds, digest."""

from __future__ import annotations

import pytest

from lineage.core.errors import PolicyError, UsageError
from lineage.core.policy import Budget, DataRules, FirstGeneration, Policy, load_policy

DEFAULTS = {
    "schema_version": 1,
    "recall_tolerance": 0.05,
    "generalize_gain": 0.02,
    "max_tone_drift": 0.05,
    "max_law_violations": 0,
    "delta_recall_tolerance": 0.10,
    "first_generation": {"min_recall": 0.9, "min_generalize": 0.8},
    "min_shadow_parity": None,
    "autonomy": "manual",
    "sealed_margin": 0.2,
    "claim_tolerance": 0.02,
    "budget": {"max_steps": 2000, "max_wall_minutes": 10.0, "max_tokens": 20_000_000,
               "max_memory_mb": 4096, "max_output_mb": 512.0},
    "data": {"whitelist": ["data/**/*.jsonl"], "forbidden": ["**/secrets/**", "**/*.key", "**/.env"],
             "max_record_chars": 8000},
}


def test_defaults():
    assert Policy().to_dict() == DEFAULTS
    assert Policy.from_dict({}) == Policy.from_dict(None) == Policy()
    assert Policy.from_params({}) == Policy.from_params({"policy": None}) == Policy()
    assert Policy.from_params({"train": {"lr": 1e-4}, "policy": {}}) == Policy()


def test_partial_sections_keep_other_defaults():
    p = Policy.from_params({"policy": {"budget": {"max_steps": 10}, "first_generation": {"min_recall": 0.5}}})
    assert p.budget == Budget(max_steps=10)
    assert p.first_generation == FirstGeneration(min_recall=0.5, min_generalize=0.8)
    assert p.data == DataRules() and p.recall_tolerance == 0.05


def test_round_trip_and_normalised_types():
    p = Policy.from_dict({"recall_tolerance": 0, "max_tone_drift": 1, "autonomy": "auto",
                          "min_shadow_parity": 0.95, "data": {"whitelist": ["x/*.jsonl"], "forbidden": []}})
    assert p.recall_tolerance == 0.0 and isinstance(p.recall_tolerance, float)
    assert p.data.whitelist == ("x/*.jsonl",) and p.data.forbidden == ()
    assert Policy.from_dict(p.to_dict()) == p
    assert p.to_dict()["data"]["whitelist"] == ["x/*.jsonl"]


def test_negative_generalize_gain_is_allowed():
    assert Policy.from_dict({"generalize_gain": -0.5}).generalize_gain == -0.5


@pytest.mark.parametrize("policy, field, suggestion", [
    ({"recal_tolerance": 0.1}, "policy.recal_tolerance", "recall_tolerance"),
    ({"budget": {"max_step": 10}}, "policy.budget.max_step", "max_steps"),
    ({"data": {"whitelists": []}}, "policy.data.whitelists", "whitelist"),
    ({"first_generation": {"min_recal": 0.5}}, "policy.first_generation.min_recal", "min_recall"),
])
def test_unknown_key_suggests(policy, field, suggestion):
    with pytest.raises(PolicyError) as e:
        Policy.from_params({"policy": policy})
    assert e.value.field == field and e.value.problem == "unknown key"
    assert e.value.hint == f"Did you mean '{suggestion}'?"


def test_unknown_key_without_a_close_match_lists_known():
    with pytest.raises(PolicyError) as e:
        Policy.from_dict({"zzzz": 1})
    assert "Known keys:" in e.value.hint and "recall_tolerance" in e.value.hint


def test_error_is_a_usage_error_naming_file_and_field():
    with pytest.raises(UsageError) as e:
        Policy.from_dict({"recall_tolerance": "lots"}, file="main:params.yaml")
    assert e.value.exit_code == 2
    assert str(e.value) == "main:params.yaml: policy.recall_tolerance: expected a number, got string 'lots'"


@pytest.mark.parametrize("policy, field, expected", [
    ({"recall_tolerance": True}, "policy.recall_tolerance", "expected a number, got boolean true"),
    ({"recall_tolerance": "0.05"}, "policy.recall_tolerance", "expected a number"),
    ({"generalize_gain": None}, "policy.generalize_gain", "expected a number, got null"),
    ({"max_tone_drift": [0.1]}, "policy.max_tone_drift", "expected a number"),
    ({"max_law_violations": 0.0}, "policy.max_law_violations", "expected an integer"),
    ({"max_law_violations": False}, "policy.max_law_violations", "expected an integer"),
    ({"min_shadow_parity": "high"}, "policy.min_shadow_parity", "expected a number or null"),
    ({"autonomy": True}, "policy.autonomy", "expected a string"),
    ({"schema_version": "1"}, "policy.schema_version", "expected an integer"),
    ({"budget": 5}, "policy.budget", "expected a mapping"),
    ({"budget": {"max_steps": 2000.0}}, "policy.budget.max_steps", "expected an integer"),
    ({"budget": {"max_steps": True}}, "policy.budget.max_steps", "expected an integer"),
    ({"budget": {"max_tokens": "2e7"}}, "policy.budget.max_tokens", "expected an integer"),
    ({"budget": {"max_wall_minutes": False}}, "policy.budget.max_wall_minutes", "expected a number"),
    ({"first_generation": []}, "policy.first_generation", "expected a mapping"),
    ({"data": {"whitelist": "data/*.jsonl"}}, "policy.data.whitelist", "expected a list"),
    ({"data": {"forbidden": [1]}}, "policy.data.forbidden[0]", "expected a non-empty glob"),
    ({"data": {"max_record_chars": "8000"}}, "policy.data.max_record_chars", "expected an integer"),
])
def test_wrong_types(policy, field, expected):
    with pytest.raises(PolicyError) as e:
        Policy.from_dict(policy)
    assert e.value.field == field
    assert expected in e.value.problem


def test_policy_section_must_be_a_mapping():
    with pytest.raises(PolicyError) as e:
        Policy.from_params({"policy": ["recall_tolerance"]})
    assert e.value.field == "policy"
    with pytest.raises(PolicyError):
        Policy.from_params("policy: {}")


@pytest.mark.parametrize("policy, field", [
    ({"recall_tolerance": 1.5}, "policy.recall_tolerance"),
    ({"recall_tolerance": -0.01}, "policy.recall_tolerance"),
    ({"delta_recall_tolerance": 2}, "policy.delta_recall_tolerance"),
    ({"max_tone_drift": -0.1}, "policy.max_tone_drift"),
    ({"max_tone_drift": 1.01}, "policy.max_tone_drift"),
    ({"generalize_gain": 1.5}, "policy.generalize_gain"),
    ({"generalize_gain": -2}, "policy.generalize_gain"),
    ({"generalize_gain": float("nan")}, "policy.generalize_gain"),
    ({"max_law_violations": -1}, "policy.max_law_violations"),
    ({"first_generation": {"min_recall": 1.2}}, "policy.first_generation.min_recall"),
    ({"first_generation": {"min_generalize": -0.1}}, "policy.first_generation.min_generalize"),
    ({"min_shadow_parity": 1.1}, "policy.min_shadow_parity"),
    ({"autonomy": "yolo"}, "policy.autonomy"),
    ({"schema_version": 2}, "policy.schema_version"),
    ({"budget": {"max_steps": 0}}, "policy.budget.max_steps"),
    ({"budget": {"max_tokens": -5}}, "policy.budget.max_tokens"),
    ({"budget": {"max_wall_minutes": 0.0}}, "policy.budget.max_wall_minutes"),
    ({"budget": {"max_wall_minutes": float("inf")}}, "policy.budget.max_wall_minutes"),
    ({"budget": {"max_memory_mb": 0}}, "policy.budget.max_memory_mb"),
    ({"budget": {"max_output_mb": -1}}, "policy.budget.max_output_mb"),
    ({"data": {"whitelist": []}}, "policy.data.whitelist"),
    ({"data": {"whitelist": ["  "]}}, "policy.data.whitelist[0]"),
    ({"data": {"max_record_chars": 0}}, "policy.data.max_record_chars"),
])
def test_impossible_thresholds(policy, field):
    with pytest.raises(PolicyError) as e:
        Policy.from_dict(policy)
    assert e.value.field == field


def test_direct_construction_validates():
    with pytest.raises(PolicyError) as e:
        Budget(max_steps=0)
    assert e.value.field == "policy.budget.max_steps"
    with pytest.raises(PolicyError):
        Policy(recall_tolerance=2.0)
    with pytest.raises(PolicyError):
        Policy(budget={"max_stepz": 1})
    assert Policy(budget={"max_steps": 5}).budget.max_steps == 5


def test_digest_stable():
    d = Policy().digest()
    assert d.startswith("sha256:") and len(d) == len("sha256:") + 64
    assert d == Policy.from_dict({}).digest() == Policy.from_dict(Policy().to_dict()).digest()
    # spelling does not matter, values do
    assert Policy.from_dict({"recall_tolerance": 0}).digest() == Policy.from_dict({"recall_tolerance": 0.0}).digest()
    assert Policy.from_dict({"recall_tolerance": 0.06}).digest() != d
    # Pinned: the arbiter compares digests across versions, so defaults must not drift silently.
    assert d == PINNED_DEFAULT_DIGEST


# Changed once on purpose: sealed_margin and claim_tolerance joined the policy with the arbiter.
PINNED_DEFAULT_DIGEST = "sha256:6e81edbe51cf82d8e48f09f98cab6c547a40357ec1881d8185fbd0b6782228cd"


def test_load_policy(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 0.0001\npolicy:\n  recall_tolerance: 0.1\n  autonomy: auto\n")
    p = load_policy(path)
    assert p.recall_tolerance == 0.1 and p.autonomy == "auto"
    path.write_text("policy:\n  recal_tolerance: 0.1\n")
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    assert e.value.file == str(path)
    path.write_text("policy: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(path)
    with pytest.raises(PolicyError, match="file not found"):
        load_policy(tmp_path / "nope.yaml")
