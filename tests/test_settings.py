"""params.yaml settings: defaults, unknown keys with did-you-mean, wrong types, and the stage's one line."""

from __future__ import annotations

import pytest
import yaml
from conftest import PROJECT, error_lines, read_params, stage

from lineage.core.errors import ParamsError, PolicyError, UsageError
from lineage.core.policy import Policy
from lineage.core.settings import SCHEMA, Settings, load_yaml, parse_overrides


def test_empty_params_take_every_default():
    settings = Settings.from_dict({})
    assert settings["base"] == "scratch"
    assert settings["train"]["method"] == "cpt"
    assert set(settings.values) == set(SCHEMA)


def test_project_params_yaml_is_valid_and_complete():
    raw = load_yaml(PROJECT / "params.yaml")
    settings = Settings.from_dict(raw)
    Policy.from_params(raw)
    # Every setting the schema knows is spelled out in the shipped params.yaml.
    for section, spec in SCHEMA.items():
        assert section in raw
        if isinstance(spec, dict):
            assert set(raw[section]) <= set(spec)
    assert settings["train"]["learning_rate"] == raw["train"]["learning_rate"]


@pytest.mark.parametrize("raw, field, suggestion", [
    ({"trian": {"max_steps": 10}}, "trian", "train"),
    ({"train": {"learnig_rate": 0.01}}, "train.learnig_rate", "learning_rate"),
    ({"scratch": {"hiden_size": 64}}, "scratch.hiden_size", "hidden_size"),
    ({"sed": 3}, "sed", "seed"),
    ({"data": {"strategie": "uniform"}}, "data.strategie", "strategy"),
])
def test_unknown_key_names_the_field_and_suggests_the_closest(raw, field, suggestion):
    with pytest.raises(ParamsError) as info:
        Settings.from_dict(raw)
    err = info.value
    assert err.field == field
    assert "unknown key" in str(err)
    assert str(err).startswith(f"params.yaml: {field}:")
    assert err.hint == f"Did you mean '{suggestion}'?"
    assert isinstance(err, UsageError) and err.exit_code == 2


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    with pytest.raises(ParamsError) as info:
        Settings.from_dict({"train": {"zzzzzz": 1}})
    assert "Known keys:" in info.value.hint and "max_steps" in info.value.hint


def test_unknown_policy_key_suggests_the_closest():
    with pytest.raises(PolicyError) as info:
        Policy.from_params({"policy": {"budget": {"max_stpes": 5}}})
    assert info.value.field == "policy.budget.max_stpes"
    assert info.value.hint == "Did you mean 'max_steps'?"


@pytest.mark.parametrize("raw, field, words", [
    ({"train": {"max_steps": "many"}}, "train.max_steps", "expected int"),
    ({"train": {"max_steps": 1.5}}, "train.max_steps", "expected int"),
    ({"train": {"max_steps": True}}, "train.max_steps", "expected int"),
    ({"train": {"learning_rate": "fast"}}, "train.learning_rate", "expected float"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate", "must be positive"),
    ({"train": {"max_steps": -1}}, "train.max_steps", "negative"),
    ({"train": {"batch_size": 0}}, "train.batch_size", "at least 1"),
    ({"train": {"method": "dpo"}}, "train.method", "not one of"),
    ({"train": {"backend": "tpu"}}, "train.backend", "not one of"),
    ({"data": {"strategy": "random"}}, "data.strategy", "not one of"),
    ({"seed": "1234"}, "seed", "expected int"),
    ({"base": 7}, "base", "expected str"),
    ({"scratch": {"hidden_size": 66, "num_heads": 4}}, "scratch.hidden_size", "multiple of scratch.num_heads"),
    ({"train": 5}, "train", "expected a mapping"),
    ({"train": []}, "train", "expected a mapping"),
])
def test_wrong_types_and_values_name_the_field(raw, field, words):
    with pytest.raises(ParamsError) as info:
        Settings.from_dict(raw)
    assert info.value.field == field
    assert words in str(info.value)
    assert str(info.value).startswith(f"params.yaml: {field}: ")


def test_integers_are_accepted_for_floats():
    settings = Settings.from_dict({"train": {"learning_rate": 1}, "data": {"replay_fraction": 2}})
    assert settings["train"]["learning_rate"] == 1.0 and isinstance(settings["train"]["learning_rate"], float)
    assert settings["data"]["replay_fraction"] == 2.0


def test_exponent_floats_read_as_floats():
    # DVC reads params.yaml as YAML 1.2, where 1e-3 is a float; PyYAML reads it as a string.
    raw = yaml.safe_load("train:\n  learning_rate: 1e-3\n")
    assert Settings.from_dict(raw)["train"]["learning_rate"] == 0.001


def test_load_yaml_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError) as info:
        load_yaml(bad)
    assert str(bad) in str(info.value) and "not valid YAML" in str(info.value)
    bad.write_text("- a\n- list\n")
    with pytest.raises(ParamsError, match="top level must be a mapping"):
        load_yaml(bad)
    with pytest.raises(ParamsError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_parse_overrides_nests_dotted_keys():
    assert parse_overrides(["train.learning_rate=0.01", "seed=7", "train.method=sft"]) == \
        {"train": {"learning_rate": 0.01, "method": "sft"}, "seed": 7}
    with pytest.raises(ParamsError):
        parse_overrides(["train.learning_rate"])


@pytest.mark.parametrize("edit, field, hint", [
    (lambda p: p.update(trian=p.pop("train")), "trian", "Did you mean 'train'?"),
    (lambda p: p["train"].update(learnig_rate=p["train"].pop("learning_rate")), "train.learnig_rate",
     "Did you mean 'learning_rate'?"),
])
def test_stage_prints_one_error_line_for_a_bad_key(store, edit, field, hint):
    params = read_params(store)
    edit(params)
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    code, out, err = stage(store, "parent")

    assert code == 2
    errors = error_lines(err)
    assert errors == [f"error: params.yaml: {field}: unknown key"], err
    assert f"hint: {hint}" in err.splitlines()
    assert "Traceback" not in err
    assert not (store / "models" / "parent").exists()


def test_stage_prints_one_error_line_for_a_wrong_type(store):
    params = read_params(store)
    params["train"]["max_steps"] = "lots"
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    code, _, err = stage(store, "parent")

    assert code == 2
    assert error_lines(err) == ["error: params.yaml: train.max_steps: expected int, got str 'lots'"], err


def test_stage_prints_one_error_line_for_a_bad_policy_key(prepared_store):
    params = read_params(prepared_store)
    params["policy"]["budget"]["max_stpes"] = 5
    (prepared_store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    code, _, err = stage(prepared_store, "prepare")

    assert code == 2
    assert error_lines(err) == ["error: params.yaml: policy.budget.max_stpes: unknown key"], err
    assert "hint: Did you mean 'max_steps'?" in err
