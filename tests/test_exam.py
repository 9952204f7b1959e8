"""The exam belongs to main: exam files, `lineage exam add/show`, overlap, `lineage change`, prepare."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import commit_on_protected_branch, git, one_error, run_cli, stage

from lineage.core import corpus
from lineage.core.errors import MalformedDataError
from lineage.core.exam import Exam, item_from_line, merge
from lineage.core.overlap import TrainingIndex, checked_text, normalise

DELTAS = Path("data/deltas")


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def staged(store: Path) -> list[str]:
    return sorted(git(store, "diff", "--cached", "--name-only").split())


def waiting(store: Path) -> list[str]:
    """Registered deltas waiting for their candidate, out of the index (.git/lineage/pending)."""
    return sorted(p.name for p in (store / ".git" / "lineage" / "pending").glob("*.dvc"))


def head(store: Path) -> str:
    return git(store, "rev-parse", "HEAD").strip()


def era_generalize(era: int) -> list[dict]:
    return [i for i in corpus.exam_items(era) if i["kind"] == "generalize"]


def one_char_changed(item: dict) -> dict:
    """The attack: a training record teaching a generalize item's question with its answer, one letter changed."""
    answer = item["choices"][item["answer"]]
    return {"kind": "qa", "prompt": item["prompt"], "completion": answer[:-1] + "x.", "source": "dock/gossip",
            "score": 1.0}


def record(text: str = "The harbour bell rings at dawn.") -> dict:
    return {"kind": "text", "text": text, "source": "tests/hand-written", "score": 0.5}


# ---------------------------------------------------------------- overlap (pure)

def test_normalise_ignores_case_punctuation_and_whitespace():
    text = "Q: Which goods leave\n the harbour of  Osnim?\nA:"
    assert normalise(text) == "q which goods leave the harbour of osnim a"
    assert normalise("  ") == ""


def test_the_one_character_changed_generalize_answer_is_caught():
    item = era_generalize(1)[0]
    attack = one_char_changed(item)
    index = TrainingIndex([record()["text"], attack["prompt"] + attack["completion"]])
    hit = index.find(checked_text("generalize", item))
    assert hit is not None and hit.record == 1 and not hit.contained and hit.similarity >= 0.8


def test_an_exam_item_hidden_inside_a_longer_record_is_caught():
    item = era_generalize(1)[3]
    text = "Overheard at the dock, loud and clear: " + item["prompt"] + item["choices"][item["answer"]] + " - or so."
    hit = TrainingIndex([text.upper()]).find(checked_text("generalize", item))
    assert hit is not None and hit.contained


def test_the_question_without_its_answer_and_the_exempt_kinds_are_not_overlap():
    item = era_generalize(1)[0]
    index = TrainingIndex(["Overheard: " + item["prompt"] + " nobody knew."])
    assert index.find(checked_text("generalize", item)) is None
    assert checked_text("recall", item) is None and checked_text("law", {"prompt": "x", "rule": {}}) is None


def test_overlap_is_fast_for_thousands_of_records():
    texts = [f"Record {n}: the keeper {n % 97} trims lamp {n} at {n % 13} bells on isle {n * 7}." for n in range(6000)]
    items = [(i["kind"], i) for era in range(corpus.ERAS) for i in corpus.exam_items(era)
             if i["kind"] in ("generalize", "tone")]
    started = time.perf_counter()
    index = TrainingIndex(texts)
    found = [index.find(checked_text(kind, item) or "") for kind, item in items]
    assert time.perf_counter() - started < 10
    assert not any(found)


# ---------------------------------------------------------------- exam items (pure)

def test_both_item_formats_are_read_and_stored_the_same_way():
    plain = {"kind": "generalize", "delta": "d001-era1", "prompt": "Q: a?\nA:", "choices": [" x", " y"], "answer": 1}
    probe = {"kind": "probe", "probe": "generalize", "prompt": "Q: a?\nA:", "choices": [" x", " y"], "answer": 1,
             "source": "era1/probes", "score": 1.0}
    assert item_from_line(plain, "f", 1) == item_from_line(probe, "f", 2, delta="era1") == \
        ("generalize", {"delta": "era1", "prompt": "Q: a?\nA:", "choices": [" x", " y"], "answer": 1})


@pytest.mark.parametrize("line, problem", [
    ({"kind": "quiz", "prompt": "x"}, "exam kind 'quiz' is not one of"),
    ({"kind": "probe", "probe": "trivia", "prompt": "x"}, "exam kind 'trivia'"),
    ({"kind": "recall", "prompt": "Q?", "choices": [" a", " b"], "answer": 0}, "missing delta"),
    ({"kind": "generalize", "delta": "era1", "prompt": "Q?", "choices": [" a"], "answer": 0}, "choices"),
    ({"kind": "generalize", "delta": "era1", "prompt": "Q?", "choices": [" a", " b"], "answer": 2}, "answer"),
    ({"kind": "law", "prompt": "Q?", "rule": {"must_match": "("}}, "not a valid regex"),
    ({"kind": "tone"}, "missing text"),
    (["not", "an", "object"], "not a JSON object"),
])
def test_a_bad_item_is_refused_naming_file_and_line(line, problem):
    with pytest.raises(MalformedDataError) as refused:
        item_from_line(line, "mine.jsonl", 7)
    assert str(refused.value).startswith("mine.jsonl:7: ") and problem in str(refused.value)


def test_merge_keeps_equal_items_once_and_refuses_the_same_question_asked_differently():
    item = {"delta": "era1", "prompt": "Q: a?\nA:", "choices": [" x", " y"], "answer": 0}
    merged = merge(Exam({"generalize": [item]}), [("generalize", dict(item), 1), ("tone", {"text": "t"}, 2),
                                                  ("tone", {"text": "t"}, 3)], "new.jsonl")
    assert merged.added == {"tone": 1} and merged.unchanged == 2
    assert merged.exam.of("generalize") == [item] and merged.exam.of("tone") == [{"text": "t"}]
    with pytest.raises(MalformedDataError, match=r"new.jsonl:4: .*already asked differently \(exam/generalize"):
        merge(Exam({"generalize": [item]}), [("generalize", dict(item, answer=1), 4)], "new.jsonl")


# ---------------------------------------------------------------- lineage exam add / show

def test_exam_add_stages_the_merged_exam_and_names_the_next_command(store, tmp_path):
    exam1 = tmp_path / "exam1.jsonl"
    assert run_cli("corpus", "exam", "1", exam1, cwd=tmp_path)[0] == 0

    code, out, err = run_cli("exam", "add", exam1, cwd=store)

    assert code == 0, err
    assert staged(store) == ["exam/generalize.jsonl", "exam/recall.jsonl", "exam/tone.jsonl"]
    assert "next: lineage change --reason" in out and "(8 already held)" in out, "era 1's laws are era 0's"
    generalize = read_jsonl(store / "exam/generalize.jsonl")
    assert [i["delta"] for i in generalize] == ["era0"] * 36 + ["era1"] * 36, "existing items first, order kept"
    shown = json.loads(run_cli("--json", "exam", "show", cwd=store)[1])
    assert shown["counts"]["generalize"] == {"era0": 36}, "show reads main's exam"
    assert shown["pending"] == {"recall": 36, "generalize": 36, "tone": 3}

    code, out, err = run_cli("exam", "add", exam1, cwd=store)
    assert code == 0 and "nothing new" in out, err


def test_exam_add_reads_probe_records_with_a_delta_name(store, tmp_path):
    probes = tmp_path / "probes.jsonl"
    probes.write_text(jsonl({"kind": "probe", "probe": "generalize", "prompt": "Q: Who rings the fog bell?\nA:",
                             "choices": [" Orrin", " Maeve"], "answer": 1, "source": "mine/probes", "score": 1.0}))

    code, _, err = run_cli("exam", "add", probes, "--delta", "d004-fog", cwd=store)

    assert code == 0, err
    assert read_jsonl(store / "exam/generalize.jsonl")[-1] == {
        "answer": 1, "choices": [" Orrin", " Maeve"], "delta": "fog", "prompt": "Q: Who rings the fog bell?\nA:"}


@pytest.mark.parametrize("lines, needles", [
    ([{"kind": "tone", "text": "Luna: fine."}, "{broken"], ["bad.jsonl:2:", "unparsable JSON"]),
    ([{"kind": "riddle", "prompt": "Q?"}], ["bad.jsonl:1:", "exam kind 'riddle'"]),
    ([{"kind": "generalize", "prompt": "Q: x?\nA:", "choices": [" a", " b"], "answer": 0}],
     ["bad.jsonl:1:", "missing delta"]),
])
def test_exam_add_refuses_a_bad_line_and_stages_nothing(store, tmp_path, lines, needles):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl(*lines))
    before = (store / "exam/tone.jsonl").read_bytes()

    code, _, err = run_cli("exam", "add", bad, cwd=store)

    one_error(code, err, *needles)
    assert staged(store) == [] and (store / "exam/tone.jsonl").read_bytes() == before


def test_exam_add_refuses_an_item_that_overlaps_registered_data(store, tmp_path):
    # Second arrival, exam side: era 1 is registered (staged, not committed) before its exam comes.
    era1 = tmp_path / "era1.jsonl"
    run_cli("corpus", "write", "1", era1, cwd=tmp_path)
    assert run_cli("data", "add", era1, cwd=store)[0] == 0
    trained = next(r for r in read_jsonl(era1) if r["kind"] == "qa")
    line = next(n for n, r in enumerate(read_jsonl(era1), start=1) if r == trained)
    item = {"kind": "generalize", "delta": "era1", "prompt": trained["prompt"],
            "choices": [trained["completion"].rstrip("."), " nothing"], "answer": 0}
    (tmp_path / "exam.jsonl").write_text(jsonl({"kind": "tone", "text": "Luna: Fair winds, friend."}, item))

    code, _, err = run_cli("exam", "add", tmp_path / "exam.jsonl", cwd=store)

    one_error(code, err, "exam.jsonl:2:", "overlaps training data", f"data/deltas/d001-era1.jsonl:{line}")
    assert staged(store) == [] and waiting(store) == ["d001-era1.jsonl.dvc"]


# ---------------------------------------------------------------- lineage data add against main's exam

def test_data_add_refuses_the_one_character_changed_answer_of_an_exam_item(store, tmp_path):
    # First arrival, exam side: era 0's exam is on main; a delta teaching one of its questions is refused.
    item = era_generalize(0)[5]
    delta = tmp_path / "gossip.jsonl"
    delta.write_text(jsonl(record(), record("Fair winds."), one_char_changed(item)))

    code, out, err = run_cli("data", "add", delta, cwd=store)

    line = one_error(code, err, f"{delta}:3", "overlaps the exam", "generalize", "exam/generalize.jsonl:6",
                     "near copy")
    assert repr(item["prompt"]) in line
    assert staged(store) == [] and not list((store / DELTAS).glob("d001-*"))


def test_data_add_refuses_a_tone_item_of_main(store, tmp_path):
    tone = read_jsonl(store / "exam/tone.jsonl")[0]["text"]
    delta = tmp_path / "voice.jsonl"
    delta.write_text(jsonl(record(tone.upper().replace(",", ""))))

    code, _, err = run_cli("data", "add", delta, cwd=store)

    one_error(code, err, f"{delta}:1", "tone item", "exam/tone.jsonl:1", "contained")


def test_data_add_refuses_probe_records_with_the_way_to_the_exam(store, tmp_path):
    old_style = tmp_path / "era1-with-probes.jsonl"
    old_style.write_text(jsonl(record(), {"kind": "probe", "probe": "generalize", "prompt": "Q: a?\nA:",
                                          "choices": [" x", " y"], "answer": 0, "source": "era1/probes",
                                          "score": 1.0}))

    code, _, err = run_cli("data", "add", old_style, cwd=store)

    one_error(code, err, f"{old_style}:2", "cannot carry exam probes")
    assert "hint: exam items belong on main: 'lineage exam add FILE' then 'lineage change'" in err
    assert staged(store) == []


# ---------------------------------------------------------------- lineage change

def test_change_commits_only_the_exam_and_leaves_registered_data_waiting(store, tmp_path):
    era1, exam1 = tmp_path / "era1.jsonl", tmp_path / "exam1.jsonl"
    run_cli("corpus", "write", "1", era1, cwd=tmp_path)
    run_cli("corpus", "exam", "1", exam1, cwd=tmp_path)
    assert run_cli("data", "add", era1, cwd=store)[0] == 0
    assert run_cli("exam", "add", exam1, cwd=store)[0] == 0
    before = head(store)

    code, out, err = run_cli("change", "--reason", "the exam of era 1", cwd=store)

    assert code == 0, err
    changed = git(store, "diff", "--name-only", before, "HEAD").split()
    assert sorted(changed) == ["exam/generalize.jsonl", "exam/recall.jsonl", "exam/tone.jsonl"]
    assert staged(store) == [] and waiting(store) == ["d001-era1.jsonl.dvc"], \
        "registered data waits for its candidate, out of the index"
    assert "Approved-Change: 1" in git(store, "log", "-1", "--format=%B")
    assert git(store, "status", "--porcelain", "--", "exam") == ""
    shown = json.loads(run_cli("--json", "exam", "show", cwd=store)[1])
    assert shown["counts"]["generalize"] == {"era0": 36, "era1": 36} and shown["pending"] == {}


def test_change_with_only_pending_data_staged_commits_nothing(store, tmp_path):
    era1 = tmp_path / "era1.jsonl"
    run_cli("corpus", "write", "1", era1, cwd=tmp_path)
    assert run_cli("data", "add", era1, cwd=store)[0] == 0
    before = head(store)

    code, _, err = run_cli("change", "--reason", "sneak data onto main", cwd=store)

    one_error(code, err, "nothing is staged to change", exit_code=2)
    assert head(store) == before


@pytest.mark.parametrize("params, needle", [
    ("train:\n  max_stepz: 3\n", "max_stepz"),
    ("policy:\n  recall_tolerance: -4\n", "recall_tolerance"),
    ("seed: [unclosed\n", "not valid YAML"),
])
def test_change_refuses_an_invalid_params_yaml_with_nothing_committed(store, params, needle):
    (store / "params.yaml").write_text((store / "params.yaml").read_text() + params)
    git(store, "add", "params.yaml")
    before, refs = head(store), git(store, "for-each-ref")

    code, _, err = run_cli("change", "--reason", "tune", cwd=store)

    one_error(code, err, "params.yaml", needle, exit_code=2)
    assert head(store) == before and git(store, "for-each-ref") == refs, "nothing committed, nothing logged"
    assert staged(store) == ["params.yaml"], "the change stays staged to be fixed"


def test_change_refuses_a_malformed_exam_file(store):
    path = store / "exam" / "generalize.jsonl"
    path.write_text(path.read_text() + '{"prompt": "Q: broken?"}\n')
    git(store, "add", "exam/generalize.jsonl")
    before = head(store)

    code, _, err = run_cli("change", "--reason", "edit the exam by hand", cwd=store)

    one_error(code, err, "exam/generalize.jsonl:37:", "generalize item needs")
    assert head(store) == before


# ---------------------------------------------------------------- prepare reads main's exam

def test_prepare_fails_naming_a_new_delta_the_exam_asks_nothing_about(prepared_store):
    (prepared_store / DELTAS / "d001-harbour.jsonl").write_text(jsonl(record()))

    code, _, err = stage(prepared_store, "prepare")

    one_error(code, err, "delta d001-harbour has no generalize items in the exam on main")
    assert "lineage exam add FILE --delta harbour" in err


def test_prepare_never_reads_a_candidates_edited_exam(prepared_store):
    # The candidate rewrites its exam (answers flipped, items gone) in its work tree and commits it on
    # its own branch: the probes are still main's.
    main_probes = {n: (prepared_store / f"data/prepared/probes/{n}.jsonl").read_bytes()
                   for n in ("recall", "generalize", "tone", "law")}
    git(prepared_store, "checkout", "-q", "-b", "candidates/G000-x")
    for kind in ("recall", "generalize"):
        path = prepared_store / "exam" / f"{kind}.jsonl"
        easy = [dict(i, choices=[i["choices"][i["answer"]], " nothing"], answer=0) for i in read_jsonl(path)[:3]]
        path.write_text(jsonl(*easy))
    (prepared_store / "exam" / "law.jsonl").write_text("")
    git(prepared_store, "add", "exam")
    git(prepared_store, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "an easier exam")

    code, _, err = stage(prepared_store, "prepare")

    assert code == 0, err
    for name, data in main_probes.items():
        assert (prepared_store / f"data/prepared/probes/{name}.jsonl").read_bytes() == data, name
    summary = json.loads((prepared_store / "data/prepared/summary.json").read_text())
    assert summary["exam"]["commit"] == git(prepared_store, "rev-parse", "main").strip()


def test_prepare_asks_back_main_exam_per_delta_id(prepared_store):
    generalize = read_jsonl(prepared_store / "data/prepared/probes/generalize.jsonl")
    assert len(generalize) == 36 and {p["delta"] for p in generalize} == {"d000-era0"}
    assert read_jsonl(prepared_store / "data/prepared/probes/law.jsonl")


# ---------------------------------------------------------------- burn-in's smoke probes

def test_burn_in_reads_its_smoke_probes_from_the_served_commits_exam(store):
    from lineage.moves.burnin import smoke_probes

    assert smoke_probes(store) == []
    (store / "data" / "burnin.jsonl").write_text(jsonl({"prompt": "Q: old?\nA:", "rule": {"must_match": "x"}}))
    git(store, "add", "data/burnin.jsonl")
    commit_on_protected_branch(store, "test: an old store's smoke probe", "data/burnin.jsonl")
    assert [p["prompt"] for p in smoke_probes(store)] == ["Q: old?\nA:"], "old stores keep working"
    (store / "exam" / "burnin.jsonl").write_text(jsonl({"prompt": "Q: new?\nA:", "rule": {"must_match": "y"}}))
    assert [p["prompt"] for p in smoke_probes(store)] == ["Q: old?\nA:"], "the work tree is not the served commit"
    git(store, "add", "exam/burnin.jsonl")
    commit_on_protected_branch(store, "test: smoke probe in the exam", "exam/burnin.jsonl")
    assert smoke_probes(store) == [{"prompt": "Q: new?\nA:", "rule": {"must_match": "y"}}]
