"""The arbiter's judgement from data files: one case per outcome of judge_move (tests/data/moves).

Each case is a ``MoveEvidence`` written out as YAML (file contents as block strings, every hash in
it agreeing except the one the case breaks) and an ``expect:`` section: ``{allowed: <kind>,
generation: ..., signed: ...}`` or ``{refused: "<part of the reason>"}``. A case of a store with
signers carries ``evidence.signed`` (``SignedEvidence``: the verdicts and attestations found, each
with the outcome of its signature check). A new refusal in the arbiter without a case here fails
``test_every_refusal_in_the_arbiter_has_a_case``.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import yaml

from lineage.core.errors import ArbiterRefusedError
from lineage.guard import arbiter, signed
from lineage.guard.arbiter import judge_move
from lineage.guard.evidence import MoveEvidence

CASES = sorted((Path(__file__).parent / "data" / "moves").glob("*.yaml"))
NAME = re.compile(r"(\d{2})_([a-z0-9]+(?:_[a-z0-9]+)*)")
ALLOWED_KINDS = {"create", "noop", "promotion", "rollback", "change"}
REFUSALS = {"ArbiterRefusedError", "ApprovalMissingError"}  # the arbiter's refusal and its subclass


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _outcome(case: dict):
    """judge_move's decision, or the ArbiterRefusedError it raised."""
    try:
        return judge_move(MoveEvidence.from_dict(case["evidence"]))
    except ArbiterRefusedError as exc:
        return exc


def _refusal_sites() -> dict[tuple[str, int], re.Pattern]:
    """Every `raise ArbiterRefusedError(ref, reason, ...)` in the arbiter: (module, line) -> pattern of its reason."""
    sites = {}
    for module in (arbiter, signed):
        sites.update(_sites_in(module))
    return sites


def _sites_in(module) -> dict[tuple[str, int], re.Pattern]:
    tree = ast.parse(inspect.getsource(module))
    name = module.__name__.rsplit(".", 1)[-1]
    sites = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                and isinstance(node.exc.func, ast.Name) and node.exc.func.id in REFUSALS):
            continue
        call = node.exc
        reason = call.args[1] if len(call.args) > 1 else next(k.value for k in call.keywords if k.arg == "reason")
        if isinstance(reason, ast.Constant) and isinstance(reason.value, str):
            parts = [re.escape(reason.value)]
        elif isinstance(reason, ast.JoinedStr):
            parts = [re.escape(v.value) if isinstance(v, ast.Constant) else ".*" for v in reason.values]
        else:
            pytest.fail(f"{name}.py:{node.lineno}: give the refusal's reason as a literal or f-string "
                        "so this test can tell which case proves it")
        sites[(name, node.lineno)] = re.compile("".join(parts), re.S)
    return sites


def test_there_is_a_case_for_every_kind_of_allowed_move():
    kinds = {_load(p)["expect"].get("allowed") for p in CASES} - {None}
    assert kinds == ALLOWED_KINDS


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_move_case(path):
    case = _load(path)
    expect = case["expect"]
    evidence = MoveEvidence.from_dict(case["evidence"])
    assert MoveEvidence.from_dict(evidence.to_dict()) == evidence  # the case is evidence as gathered
    outcome = _outcome(case)
    if "refused" in expect:
        assert set(expect) == {"refused"}
        assert isinstance(outcome, ArbiterRefusedError), f"allowed as {outcome}"
        assert outcome.ref == evidence.ref
        assert expect["refused"] in outcome.reason, outcome.reason
    else:
        assert set(expect) <= {"allowed", "generation", "verdict", "composite", "signed"}
        assert expect["allowed"] in ALLOWED_KINDS
        assert not isinstance(outcome, ArbiterRefusedError), f"refused: {outcome.reason}"
        assert outcome.kind == expect["allowed"]
        assert outcome.generation == expect.get("generation")
        assert outcome.verdict == expect.get("verdict")
        assert outcome.signed == expect.get("signed")
        if expect.get("composite") is None:
            assert outcome.composite is None
        else:
            assert outcome.composite == pytest.approx(expect["composite"])


def test_case_names_are_unique_and_each_proves_a_distinct_outcome():
    stems = [p.stem for p in CASES]
    matches = [NAME.fullmatch(s) for s in stems]
    assert all(matches), [s for s, m in zip(stems, matches, strict=True) if not m]
    numbers = [m.group(1) for m in matches]
    names = [m.group(2) for m in matches]
    assert len(set(numbers)) == len(numbers), "two cases share a number"
    assert len(set(names)) == len(names), "two cases share a name"
    expects = [yaml.safe_dump(_load(p)["expect"], sort_keys=True) for p in CASES]
    assert len(set(expects)) == len(expects), "two cases expect the same outcome"


def test_every_refusal_in_the_arbiter_has_a_case():
    sites = _refusal_sites()
    assert len(sites) >= 40  # the parse found the raise sites at all
    hit: dict[tuple[str, int], list[str]] = {site: [] for site in sites}
    refusals = 0
    for path in CASES:
        case = _load(path)
        if "refused" not in case["expect"]:
            continue
        refusals += 1
        outcome = _outcome(case)
        assert isinstance(outcome, ArbiterRefusedError), path.stem
        matched = [line for line, pattern in sites.items() if pattern.fullmatch(outcome.reason)]
        assert matched, f"{path.stem}: {outcome.reason!r} matches no raise in arbiter.py or signed.py"
        for line in matched:
            hit[line].append(path.stem)
    missing = sorted(line for line, stems in hit.items() if not stems)
    assert not missing, f"no case in tests/data/moves proves the refusal raised at (module, line) {missing}"
    assert refusals >= len(sites)
