"""The data gate on real stores: refusals with one line, `lineage data add`, replay, exam hygiene."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from conftest import (
    commit_on_protected_branch,
    dvc,
    error_lines,
    git,
    one_error,
    read_params,
    run_cli,
    set_params,
    stage,
)

from lineage.core.data import Delta, sample_replay, training_text

DELTAS = Path("data/deltas")
FAKE_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
FAKE_PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\n-----END RSA PRIVATE KEY-----"


def record(text: str = "The harbour bell rings at dawn.", **extra) -> dict:
    return {"kind": "text", "text": text, "source": "tests/hand-written", "score": 0.5, **extra}


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def fake_parent(store: Path, seen: list[str]) -> None:
    """Pretend the protected branch holds a generation that learned the `seen` deltas."""
    (store / "reports" / "parent.json").write_text(json.dumps(
        {"kind": "generation", "generation": "G000", "commit": "0" * 40, "deltas_seen": seen,
         "weights_sha256": "sha256:" + "0" * 64}))


def ask_on_main(store: Path, delta: str, prompt: str, choices: list[str], answer: int = 0) -> None:
    """Commit a generalize item for delta straight onto main's exam (as a person with direct access)."""
    path = store / "exam" / "generalize.jsonl"
    item = {"answer": answer, "choices": choices, "delta": delta, "prompt": prompt}
    path.write_text(path.read_text() + json.dumps(item, sort_keys=True) + "\n")
    commit_on_protected_branch(store, f"test: exam for {delta}", "exam/generalize.jsonl")


def approve_exam_of_era(store: Path, era: int, tmp_path: Path) -> None:
    """The bundled corpus's exam of an era, added and approved the way a person does it."""
    exam = tmp_path / f"exam{era}.jsonl"
    assert run_cli("corpus", "exam", era, exam, cwd=tmp_path)[0] == 0
    code, _, err = run_cli("exam", "add", exam, cwd=store)
    assert code == 0, err
    code, _, err = run_cli("change", "--reason", f"the exam of era {era}", cwd=store)
    assert code == 0, err


def status(store: Path) -> str:
    return git(store, "status", "--porcelain", "--untracked-files=all")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


# ---------------------------------------------------------------- a clean prepare

def test_prepare_writes_the_training_set_and_probes(prepared_store):
    summary = json.loads((prepared_store / "data/prepared/summary.json").read_text())
    assert [d["id"] for d in summary["new_deltas"]] == ["d000-era0"]
    assert summary["replay_records"] == 0, "a first generation has nothing to replay"
    train = read_jsonl(prepared_store / "data/prepared/train.jsonl")
    assert len(train) == summary["train_records"] == summary["new_records"] > 0
    for name in ("recall", "generalize", "tone", "law"):
        assert read_jsonl(prepared_store / f"data/prepared/probes/{name}.jsonl"), name
    assert all(set(r) == {"text", "prompt", "completion", "source", "score"} for r in train)


def test_generalize_probes_never_appear_in_the_training_set(prepared_store):
    texts = "\n".join(r["text"] for r in read_jsonl(prepared_store / "data/prepared/train.jsonl"))
    probes = read_jsonl(prepared_store / "data/prepared/probes/generalize.jsonl")
    assert probes
    assert not [p["prompt"] for p in probes if p["prompt"] in texts]


def test_a_generalize_item_leaked_into_training_fails_the_run_naming_the_line(prepared_store):
    # A delta planted in the work tree (never through 'data add') with an exam question and its
    # answer, one character changed, is caught by the overlap check: the run fails, nothing is dropped.
    probe = read_jsonl(prepared_store / "data/prepared/probes/generalize.jsonl")[0]
    answer = probe["choices"][probe["answer"]]
    leak = {"kind": "qa", "prompt": probe["prompt"], "completion": answer[:-1] + "x.", "source": "dock/gossip",
            "score": 1.0}
    (prepared_store / DELTAS / "d001-gossip.jsonl").write_text(jsonl(record(), leak))
    before = (prepared_store / "data/prepared/train.jsonl").read_bytes()

    code, _, err = stage(prepared_store, "prepare")

    one_error(code, err, "data/deltas/d001-gossip.jsonl:2", "overlaps the exam", "generalize",
                       "exam/generalize.jsonl:", "near copy")
    assert (prepared_store / "data/prepared/train.jsonl").read_bytes() == before, "nothing prepared"


# ---------------------------------------------------------------- refusals, one line each

REFUSALS = {
    "unparsable line": ("d001-bad.jsonl", jsonl(record(), record(), "{not json"),
                        ["data/deltas/d001-bad.jsonl:3:", "unparsable JSON"]),
    "aws key": ("d001-leak.jsonl", jsonl(record(), record(f"the bucket key is {FAKE_AWS_KEY} ok")),
                ["data/deltas/d001-leak.jsonl:2", "secret", "aws_access_key_id"]),
    "private key": ("d001-key.jsonl", jsonl(record(FAKE_PRIVATE_KEY)),
                    ["data/deltas/d001-key.jsonl:1", "secret", "private_key"]),
    "secret nested in a field": ("d001-nested.jsonl", jsonl(record(meta={"note": FAKE_AWS_KEY})),
                                 ["data/deltas/d001-nested.jsonl:1", "aws_access_key_id"]),
    "source with ..": ("d001-up.jsonl", jsonl(record(), {**record(), "source": "../../etc/passwd"}),
                       ["data/deltas/d001-up.jsonl:2", "../../etc/passwd", "escapes the store"]),
    "absolute source": ("d001-abs.jsonl", jsonl({**record(), "source": "/etc/passwd"}),
                        ["data/deltas/d001-abs.jsonl:1", "/etc/passwd", "escapes the store"]),
    "not whitelisted": ("notes.txt", "remember to buy lamp oil\n", ["data/deltas/notes.txt", "not whitelisted"]),
    "forbidden directory": ("secrets/d001-creds.jsonl", jsonl(record()),
                            ["data/deltas/secrets/d001-creds.jsonl", "forbidden"]),
    "forbidden suffix": ("deploy.key", "k\n", ["data/deltas/deploy.key", "forbidden"]),
    "missing score": ("d001-noscore.jsonl", jsonl(record(), {"text": "x", "source": "a/b"}),
                      ["data/deltas/d001-noscore.jsonl:2", "score"]),
    "not utf-8": ("d001-latin1.jsonl", None, ["data/deltas/d001-latin1.jsonl:2", "UTF-8"]),
    "record too long": ("d001-long.jsonl", jsonl(record("x" * 9000)),
                        ["data/deltas/d001-long.jsonl:1", "max_record_chars"]),
    "probe record": ("d001-probes.jsonl", jsonl(record(), {"kind": "probe", "probe": "tone", "text": "Luna: hi.",
                                                          "source": "a/b", "score": 1.0}),
                     ["data/deltas/d001-probes.jsonl:2", "cannot carry exam probes"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_prepare_refuses_bad_data_with_one_line(prepared_store, case):
    name, content, needles = REFUSALS[case]
    path = prepared_store / DELTAS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:  # a Latin-1 byte on line 2
        path.write_bytes(jsonl(record()).encode() + b'{"text": "caf\xe9", "source": "a/b", "score": 1}\n')
    else:
        path.write_text(content)

    code, _, err = stage(prepared_store, "prepare")

    line = one_error(code, err, *needles)
    assert FAKE_AWS_KEY not in err and "MIIEowIBAAKCAQEA7bq" not in err, "a refusal must not echo the secret"
    assert line


def test_prepare_refuses_a_symlink_out_of_the_store(prepared_store, tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_text(jsonl(record("harmless looking text")))
    (prepared_store / DELTAS / "d001-link.jsonl").symlink_to(outside)

    code, _, err = stage(prepared_store, "prepare")

    one_error(code, err, "data/deltas/d001-link.jsonl", "symlink", "outside the store")


def test_a_symlink_that_stays_inside_the_store_is_accepted(prepared_store):
    inside = prepared_store / "data" / "extra.jsonl"
    inside.write_text(jsonl(record("The keeper of Valmar hums at dusk.")))
    (prepared_store / DELTAS / "d001-inside.jsonl").symlink_to(Path("..") / "extra.jsonl")
    ask_on_main(prepared_store, "inside", "Q: When does Valmar's keeper hum?\nA:", [" at dusk", " at noon"])

    code, _, err = stage(prepared_store, "prepare")

    assert code == 0, err
    summary = json.loads((prepared_store / "data/prepared/summary.json").read_text())
    assert "d001-inside" in [d["id"] for d in summary["new_deltas"]]


def test_the_whitelist_comes_from_the_protected_branch_not_the_work_tree(prepared_store):
    # A candidate that widens its own whitelist still meets main's rules.
    params = read_params(prepared_store)
    params["policy"]["data"]["whitelist"] = ["data/deltas/*"]
    set_params(prepared_store, params)
    (prepared_store / DELTAS / "notes.txt").write_text("lamp oil\n")

    code, _, err = stage(prepared_store, "prepare")

    one_error(code, err, "data/deltas/notes.txt", "not whitelisted")


def test_a_forbidden_glob_committed_on_main_applies(prepared_store):
    set_params(prepared_store, {"policy": {"data": {"forbidden": ["**/d001-*"]}}}, commit="test: forbid d001")
    (prepared_store / DELTAS / "d001-extra.jsonl").write_text(jsonl(record()))

    code, _, err = stage(prepared_store, "prepare")

    one_error(code, err, "data/deltas/d001-extra.jsonl", "forbidden", "**/d001-*")


def test_dvc_repro_passes_the_refusal_through(prepared_store):
    (prepared_store / DELTAS / "d001-leak.jsonl").write_text(jsonl(record(f"key {FAKE_AWS_KEY}")))

    code, out, err = dvc(prepared_store, "repro", "prepare")

    assert code != 0
    lines = [ln for ln in (out + err).splitlines() if ln.startswith("error: ")]
    assert lines == ["error: secret found in data/deltas/d001-leak.jsonl:1 (aws_access_key_id)"], out + err
    assert not (prepared_store / "data/prepared/train.jsonl").exists(), "nothing prepared from refused data"


def test_nothing_new_to_learn_is_refused(prepared_store):
    fake_parent(prepared_store, ["d000-era0"])
    code, _, err = stage(prepared_store, "prepare")
    one_error(code, err, "no new data")


# ---------------------------------------------------------------- lineage data add

def test_data_add_refuses_a_secret_and_registers_nothing(store, tmp_path):
    leak = tmp_path / "leak.jsonl"
    leak.write_text(jsonl(record(), record(f"creds {FAKE_AWS_KEY}")))
    before_status, before_files = status(store), sorted(p.name for p in (store / DELTAS).iterdir())
    cache = sorted(p.relative_to(store).as_posix() for p in (store / ".dvc/cache").rglob("*") if p.is_file())

    code, out, err = run_cli("data", "add", leak, cwd=store)

    one_error(code, err, "leak.jsonl:2", "secret", "aws_access_key_id")
    assert FAKE_AWS_KEY not in err + out
    assert sorted(p.name for p in (store / DELTAS).iterdir()) == before_files
    assert status(store) == before_status
    assert git(store, "diff", "--cached", "--name-only") == ""
    assert cache == sorted(p.relative_to(store).as_posix() for p in (store / ".dvc/cache").rglob("*") if p.is_file())


def test_data_add_error_names_the_file_the_user_gave(store, tmp_path):
    leak = tmp_path / "leak.jsonl"
    leak.write_text(jsonl(record(), record(f"creds {FAKE_AWS_KEY}")))

    code, _, err = run_cli("data", "add", leak, cwd=store)

    # The staging copy under data/deltas/ is gone by the time the user reads the message.
    one_error(code, err, f"{leak}:2")


def test_data_add_refuses_an_unparsable_line(store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl(record(), "not json at all"))
    before = status(store)

    code, _, err = run_cli("data", "add", bad, cwd=store)

    one_error(code, err, ":2:", "unparsable JSON")
    assert status(store) == before
    assert not list((store / DELTAS).glob("d001-*"))


def test_data_add_registers_corpus_era_1_as_the_next_delta(store, tmp_path):
    era1 = tmp_path / "era1.jsonl"
    assert run_cli("corpus", "write", "1", era1, cwd=tmp_path)[0] == 0

    code, out, err = run_cli("data", "add", era1, cwd=store)

    assert code == 0, err
    delta = store / DELTAS / "d001-era1.jsonl"
    assert delta.read_bytes() == era1.read_bytes()
    assert "registered d001-era1" in out and "data/deltas/d001-era1.jsonl" in out
    # It waits out of git's way: nothing staged, nothing untracked, its .dvc file in .git/lineage/pending.
    assert git(store, "status", "--porcelain") == "", "a plain git commit elsewhere cannot take it"
    assert not (store / DELTAS / "d001-era1.jsonl.dvc").exists()
    assert git(store, "rev-list", "--count", "HEAD").strip() == "2", "data add does not commit"
    # The .dvc file records the bytes that were checked.
    dvc_file = (store / ".git" / "lineage" / "pending" / "d001-era1.jsonl.dvc").read_text()
    assert hashlib.md5(era1.read_bytes()).hexdigest() in dvc_file


def test_data_add_numbers_deltas_in_order_with_a_name(store, tmp_path):
    for era, name in ((1, None), (2, "harbour-logs")):
        path = tmp_path / f"era{era}.jsonl"
        run_cli("corpus", "write", era, path, cwd=tmp_path)
        args = ["data", "add", path] + (["--name", name] if name else [])
        assert run_cli(*args, cwd=store)[0] == 0
    names = sorted(p.name for p in (store / DELTAS).glob("*.jsonl"))
    assert names == ["d000-era0.jsonl", "d001-era1.jsonl", "d002-harbour-logs.jsonl"]


def test_data_add_numbers_after_deltas_whose_data_is_not_pulled(store, tmp_path):
    # In a fresh clone only the .dvc files exist until `dvc pull`: d000 is still taken.
    (store / DELTAS / "d000-era0.jsonl").unlink()
    era1 = tmp_path / "era1.jsonl"
    run_cli("corpus", "write", "1", era1, cwd=tmp_path)

    code, _, err = run_cli("data", "add", era1, cwd=store)

    assert code == 0, err
    assert (store / DELTAS / "d001-era1.jsonl").exists()
    assert (store / DELTAS / "d000-era0.jsonl.dvc").read_text().count("d000-era0.jsonl") == 1


def test_data_add_outside_a_store_says_so(tmp_path):
    era1 = tmp_path / "era1.jsonl"
    run_cli("corpus", "write", "1", era1, cwd=tmp_path)
    code, _, err = run_cli("data", "add", era1, cwd=tmp_path)
    assert code == 3
    assert len(error_lines(err)) == 1 and "not a lineage store" in err


# ---------------------------------------------------------------- replay

def test_prepare_replays_old_deltas_after_a_generation(prepared_store, tmp_path):
    era1 = tmp_path / "era1.jsonl"
    run_cli("corpus", "write", "1", era1, cwd=tmp_path)
    assert run_cli("data", "add", era1, cwd=prepared_store)[0] == 0
    approve_exam_of_era(prepared_store, 1, tmp_path)
    fake_parent(prepared_store, ["d000-era0"])

    assert stage(prepared_store, "prepare")[0] == 0
    summary = json.loads((prepared_store / "data/prepared/summary.json").read_text())
    train = read_jsonl(prepared_store / "data/prepared/train.jsonl")
    first = (prepared_store / "data/prepared/train.jsonl").read_bytes()

    assert [d["id"] for d in summary["new_deltas"]] == ["d001-era1"]
    assert [d["id"] for d in summary["replay_deltas"]] == ["d000-era0"]
    sources = Counter(r["source"].split("/")[0] for r in train)
    assert sources["era1"] == summary["new_records"]
    pool = read_jsonl(prepared_store / DELTAS / "d000-era0.jsonl")
    assert sources["era0"] == summary["replay_records"] == min(summary["new_records"], len(pool)) > 0
    recall = read_jsonl(prepared_store / "data/prepared/probes/recall.jsonl")
    generalize = read_jsonl(prepared_store / "data/prepared/probes/generalize.jsonl")
    assert {p["delta"] for p in recall} == {"d000-era0"}, "recall asks back what the parent learned"
    assert {p["delta"] for p in generalize} == {"d001-era1"}, "generalize asks about the new delta"
    texts = "\n".join(r["text"] for r in train)
    assert not [p for p in generalize if p["prompt"] in texts]
    assert summary["exam"]["commit"] == git(prepared_store, "rev-parse", "main").strip()

    # Same seed, same replay; another seed, another sample of the same size.
    assert stage(prepared_store, "prepare")[0] == 0
    assert (prepared_store / "data/prepared/train.jsonl").read_bytes() == first
    set_params(prepared_store, {"seed": 99})
    assert stage(prepared_store, "prepare")[0] == 0
    reseeded = replayed_texts(read_jsonl(prepared_store / "data/prepared/train.jsonl"))
    assert len(reseeded) == len(replayed_texts(train))
    assert reseeded != replayed_texts(train)

    set_params(prepared_store, {"data": {"replay_fraction": 0.25}})
    assert stage(prepared_store, "prepare")[0] == 0
    summary = json.loads((prepared_store / "data/prepared/summary.json").read_text())
    assert summary["replay_records"] == round(0.25 * summary["new_records"])


def replayed_texts(rows: list[dict]) -> list[str]:
    return sorted(r["text"] for r in rows if r["source"].startswith("era0"))


def make_deltas(sizes=(50, 50, 50)) -> list[Delta]:
    rng = random.Random(0)
    deltas = []
    for i, size in enumerate(sizes):
        records = tuple({"kind": "text", "text": f"d{i} r{n}", "source": f"d{i}/x", "score": round(rng.random(), 3)}
                        for n in range(size))
        probe = {"kind": "probe", "probe": "tone", "text": f"probe {i}", "source": "p/x", "score": 1.0}
        deltas.append(Delta(f"d{i:03d}-x", f"data/deltas/d{i:03d}-x.jsonl", "0" * 64, records + (probe,)))
    return deltas


@pytest.mark.parametrize("strategy", ["uniform", "recent_weighted", "high_score_weighted"])
def test_sample_replay_counts_and_is_deterministic_by_seed(strategy):
    deltas = make_deltas()
    sample = sample_replay(deltas, 40, strategy, seed=7)
    assert len(sample) == 40
    assert len({r["text"] for r in sample}) == 40, "without replacement"
    assert all(r["kind"] != "probe" for r in sample), "probes are never replayed into training"
    assert sample_replay(deltas, 40, strategy, seed=7) == sample
    assert sample_replay(deltas, 40, strategy, seed=8) != sample
    assert len(sample_replay(deltas, 1000, strategy, seed=7)) == 150, "capped by the pool"
    assert sample_replay(deltas, 0, strategy, seed=7) == []
    assert sample_replay([], 10, strategy, seed=7) == []


def test_recent_weighted_favours_later_deltas():
    deltas = make_deltas((200, 200, 200))
    counts = Counter(r["source"][:2] for seed in range(20) for r in sample_replay(deltas, 60, "recent_weighted", seed))
    assert counts["d2"] > counts["d1"] > counts["d0"]
    uniform = Counter(r["source"][:2] for seed in range(20) for r in sample_replay(deltas, 60, "uniform", seed))
    assert max(uniform.values()) - min(uniform.values()) < 0.25 * max(uniform.values())


def test_high_score_weighted_favours_high_scores():
    deltas = make_deltas((300,))
    def mean(rows):
        return sum(r["score"] for r in rows) / len(rows)

    pool = deltas[0].train_records
    weighted = [r for seed in range(10) for r in sample_replay(deltas, 50, "high_score_weighted", seed)]
    uniform = [r for seed in range(10) for r in sample_replay(deltas, 50, "uniform", seed)]
    assert mean(weighted) > mean(uniform) + 0.1
    assert abs(mean(uniform) - mean(pool)) < 0.1


def test_sample_replay_refuses_an_unknown_strategy():
    with pytest.raises(ValueError):
        sample_replay(make_deltas(), 5, "newest_first", seed=1)


def test_training_text_joins_prompt_and_completion():
    assert training_text({"prompt": "Q: a?\nA:", "completion": " b."}) == "Q: a?\nA: b."
    assert training_text({"text": "plain"}) == "plain"


def test_data_add_refuses_a_non_ascii_delta_name(store, tmp_path):
    era = tmp_path / "era1.jsonl"
    run_cli("corpus", "write", "1", str(era), cwd=store)
    code, _, err = run_cli("data", "add", str(era), "--name", "été", cwd=store)
    assert code == 2
    assert "delta name" in err
    assert not list((store / "data" / "deltas").glob("d001-*"))
