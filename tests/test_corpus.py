"""The bundled corpus: reproducible bytes, disjoint eras, meaningful exam items, small files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_cli

from lineage.core import corpus
from lineage.core.data import read_delta, training_text
from lineage.core.exam import KINDS, item_from_line
from lineage.core.policy import DataRules

ERAS = range(corpus.ERAS + 2)  # two beyond the default count: `corpus write N` accepts any era


@pytest.fixture(scope="module")
def eras(tmp_path_factory) -> dict[int, list[dict]]:
    """Each era as written to a file and read back through the data gate."""
    root = tmp_path_factory.mktemp("corpus")
    out = {}
    for era in ERAS:
        rel = f"data/deltas/d{era:03d}-era{era}.jsonl"
        corpus.write_era(root / rel, era)
        out[era] = list(read_delta(root, rel, DataRules(whitelist=("data/deltas/*.jsonl",))).records)
    return out


def _subject_patterns() -> list[re.Pattern]:
    """Regexes that pull the island name out of every question form (trained or held out)."""
    forms = [q for _, _, questions, held_out in corpus.RELATIONS.values() for q in (*questions, held_out)]
    return [re.compile(re.escape(form).replace(re.escape("{s}"), r"(?P<s>[A-Z][a-z]+)")) for form in forms]


@pytest.fixture(scope="module")
def exams() -> dict[int, list[dict]]:
    """Each era's exam items, checked as 'lineage exam add' checks them; probe-style keys for the tests."""
    out = {}
    for era in ERAS:
        items = []
        for line, item in enumerate(corpus.exam_items(era), start=1):
            kind, stored = item_from_line(item, f"exam{era}", line)
            items.append({**stored, "probe": kind})
        out[era] = items
    return out


def islands(records: list[dict]) -> set[str]:
    patterns = _subject_patterns()
    found = set()
    for r in records:
        for pattern in patterns:
            m = pattern.fullmatch(r.get("prompt", ""))
            if m:
                found.add(m.group("s"))
    return found


def trained_texts(records: list[dict]) -> list[str]:
    return [training_text(r) for r in records]


@pytest.mark.parametrize("era", [0, 1, corpus.ERAS])
def test_writing_an_era_twice_gives_the_same_bytes(tmp_path, era):
    first = corpus.write_era(tmp_path / "a.jsonl", era).read_bytes()
    second = corpus.write_era(tmp_path / "b.jsonl", era).read_bytes()
    assert first == second
    assert corpus.generate() == corpus.generate()


def test_the_seed_decides_the_corpus():
    assert corpus.generate(seed=1) != corpus.generate(seed=2)


def test_cli_writes_the_same_bytes_as_the_library(tmp_path):
    code, out, err = run_cli("corpus", "write", "1", tmp_path / "era1.jsonl", cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "era1.jsonl").read_bytes() == corpus.write_era(tmp_path / "lib.jsonl", 1).read_bytes()
    assert "wrote era 1" in out


def test_cli_refuses_a_negative_era(tmp_path):
    code, _, err = run_cli("corpus", "write", "--", "-1", tmp_path / "x.jsonl", cwd=tmp_path)
    assert code == 2
    assert not (tmp_path / "x.jsonl").exists()


def test_every_era_passes_the_data_gate_and_is_small(eras, tmp_path):
    for era in ERAS:
        size = corpus.write_era(tmp_path / f"{era}.jsonl", era).stat().st_size
        assert 10_000 < size < 1_000_000
        assert len(eras[era]) > 100


def test_eras_teach_disjoint_islands(eras):
    seen: set[str] = set()
    for era in ERAS:
        names = islands(eras[era])
        assert len(names) == corpus.ISLANDS_PER_ERA, f"era {era}: {sorted(names)}"
        assert not names & seen, f"era {era} repeats islands {sorted(names & seen)}"
        seen |= names


@pytest.mark.parametrize("era", [0, 1, corpus.ERAS])
def test_writing_an_exam_twice_gives_the_same_bytes(tmp_path, era):
    first = corpus.write_exam(tmp_path / "a.jsonl", era).read_bytes()
    assert first == corpus.write_exam(tmp_path / "b.jsonl", era).read_bytes()


@pytest.mark.parametrize("era", ERAS)
def test_an_era_holds_training_records_only_and_the_same_ones_generate_gives(eras, era):
    assert all(r["kind"] != "probe" for r in eras[era]), "probes are the exam's, never a delta's"
    generated = [r for r in corpus.generate(eras=max(corpus.ERAS, era + 1))[era] if r["kind"] != "probe"]
    assert eras[era] == generated


@pytest.mark.parametrize("era", ERAS)
def test_every_era_has_an_exam_of_all_four_kinds(exams, era):
    assert {i["probe"] for i in exams[era]} == set(KINDS) - {"burnin"} == {"recall", "generalize", "tone", "law"}


@pytest.mark.parametrize("era", ERAS)
def test_knowledge_items_name_their_era_as_their_delta(exams, era):
    knowledge = [i for i in exams[era] if i["probe"] in ("recall", "generalize")]
    assert len(knowledge) == 2 * 3 * corpus.ISLANDS_PER_ERA
    assert {i["delta"] for i in knowledge} == {f"era{era}"}
    assert all("delta" not in i for i in exams[era] if i["probe"] in ("tone", "law"))


def test_cli_writes_the_same_exam_bytes_as_the_library(tmp_path):
    code, out, err = run_cli("corpus", "exam", "1", tmp_path / "exam1.jsonl", cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "exam1.jsonl").read_bytes() == corpus.write_exam(tmp_path / "lib.jsonl", 1).read_bytes()
    assert "wrote the exam of era 1" in out and "next: lineage exam add" in out


def test_generalize_prompts_never_appear_in_any_training_text(eras, exams):
    texts = [t for era in ERAS for t in trained_texts(eras[era])]
    for era in ERAS:
        for probe in (r for r in exams[era] if r.get("probe") == "generalize"):
            leaks = [t for t in texts if probe["prompt"] in t]
            assert not leaks, f"era {era} generalize prompt {probe['prompt']!r} is trained: {leaks[:1]}"


def test_generalize_answers_are_taught_in_their_own_era(eras, exams):
    # A generalize item is only meaningful if its fact is in the era's training text.
    patterns = _subject_patterns()
    for era in ERAS:
        texts = trained_texts(eras[era])
        for probe in (r for r in exams[era] if r.get("probe") == "generalize"):
            island = next(m.group("s") for p in patterns if (m := p.fullmatch(probe["prompt"])))
            answer = probe["choices"][probe["answer"]].strip()
            assert any(island in t and answer in t for t in texts), (era, probe["prompt"], answer)
            assert len(set(probe["choices"])) == len(probe["choices"]), "choices must be distinct"


def test_recall_probes_ask_back_trained_questions(eras, exams):
    for era in ERAS:
        prompts = {r["prompt"] for r in eras[era] if r.get("kind") == "qa"}
        for probe in (r for r in exams[era] if r.get("probe") == "recall"):
            assert probe["prompt"] in prompts


def test_tone_probes_are_voice_sentences_never_trained_up_to_their_era(eras, exams):
    # Tone drift is measured on Luna's voice in sentences the model has not seen, replay included.
    trained_so_far: set[str] = set()
    for era in ERAS:
        trained_so_far |= set(trained_texts(eras[era]))
        tone = [r["text"] for r in exams[era] if r.get("probe") == "tone"]
        assert tone and all(t.startswith("Luna: ") for t in tone)
        seen = [t for t in tone if t in trained_so_far]
        assert not seen, f"era {era}: tone probes already trained: {seen}"


def test_law_probes_carry_rules_the_corpus_tempts(eras, exams):
    secret_mentioned = any(corpus.SECRET_CODE in t for t in trained_texts(eras[0]))
    assert secret_mentioned, "era 0 must mention the vault code so the law is tempted"
    for era in ERAS:
        laws = [r for r in exams[era] if r.get("probe") == "law"]
        assert laws
        for probe in laws:
            for pattern in probe["rule"].values():
                re.compile(pattern)
        refusals = {r["completion"] for r in eras[era] if r.get("kind") == "law"}
        code_rule = corpus.LAW_RULES["code"]
        assert all(not re.search(code_rule["must_not_match"], text) for text in refusals)


def test_no_exam_item_of_any_era_overlaps_any_eras_training_data(eras, exams):
    from lineage.core.overlap import TrainingIndex, checked_text

    index = TrainingIndex(t for era in ERAS for t in trained_texts(eras[era]))
    for era in ERAS:
        for item in exams[era]:
            text = checked_text(item["probe"], item)
            assert text is None or index.find(text) is None, (era, item)


def test_all_text_covers_every_default_era():
    text = set(corpus.all_text())
    for records in corpus.generate():
        for r in records:
            for key in ("text", "prompt", "completion"):
                if key in r:
                    assert r[key] in text


def test_written_eras_are_one_json_object_per_line(tmp_path):
    path = corpus.write_era(tmp_path / "e.jsonl", 0)
    lines = path.read_text().splitlines()
    assert all(line.startswith("{") and line.endswith("}") for line in lines)
    assert path.read_bytes().endswith(b"\n")
    assert Path(path).suffix == ".jsonl"
