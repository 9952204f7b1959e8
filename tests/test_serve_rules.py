"""What lineage serve decides from plain data: request validation, a burn-in's verdict, shadow parity."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lineage.adapters.http import parse_ask, response_body
from lineage.adapters.serving import Answer
from lineage.core.errors import BadRequestError
from lineage.loop.live import BurnIn, ShadowTally, percentile


@pytest.mark.parametrize(("kind", "body", "says"), [
    ("completion", [], "JSON object"),
    ("completion", {"max_tokens": 4}, "'prompt' must be a string"),
    ("completion", {"prompt": "x", "stream": True}, "streaming is not supported"),
    ("completion", {"prompt": "x", "n": 2}, "only n=1"),
    ("completion", {"prompt": "x" * 101}, "at most 100"),
    ("completion", {"prompt": "x", "max_tokens": 0}, "from 1 to 32"),
    ("completion", {"prompt": "x", "max_tokens": True}, "from 1 to 32"),
    ("completion", {"prompt": "x", "temperature": 3}, "'temperature' must be a number between"),
    ("completion", {"prompt": "x", "stop": [1]}, "'stop' must be"),
    ("chat", {"messages": []}, "non-empty list"),
    ("chat", {"messages": [{"role": "user", "content": 3}]}, "string 'content'"),
    ("chat", {"messages": [{"role": "user", "content": "y" * 101}]}, "at most 100"),
])
def test_a_malformed_or_oversized_request_is_refused_naming_the_field(kind, body, says):
    with pytest.raises(BadRequestError) as err:
        parse_ask(kind, body, max_prompt_chars=100, max_new_tokens=32)
    assert says in err.value.problem


def test_a_valid_request_is_parsed_with_greedy_decoding_by_default():
    ask = parse_ask("chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stop": "\n"}, 100, 32)
    assert (ask.kind, ask.messages, ask.max_tokens, ask.temperature, ask.stop) == \
        ("chat", (("user", "hi"),), 5, 0.0, ("\n",))
    assert parse_ask("completion", {"prompt": ["one"]}, 100, 32).prompt == "one"


def test_every_response_names_the_generation_and_commit():
    answer = Answer("hello", "stop", 3, 1, "G004", "abc123", 0.01)
    body = response_body("chat", answer)
    assert body["model"] == "G004" and body["lineage"] == {"generation": "G004", "commit": "abc123"}
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert body["usage"]["total_tokens"] == 4


def burn(**kw) -> BurnIn:
    fields = {"seconds": 10.0, "min_requests": 4, "max_error_rate": 0.25, "max_p99_ms": 0.0}
    return BurnIn("G002", "c", SimpleNamespace(generation="G001"), **{**fields, **kw})


def test_a_burn_in_passes_only_after_its_window_and_enough_answers():
    b = burn()
    for _ in range(3):
        b.observe(True, 0.01)
    assert b.judge(b.started + 5)[0] == "running"
    assert b.judge(b.started + 11)[0] == "running"  # a quiet window waits for enough answers
    b.observe(True, 0.01)
    assert b.judge(b.started + 11) == ("passed", None)


def test_a_burn_in_fails_on_its_error_rate_its_p99_or_a_smoke_probe():
    errors = burn()
    for ok in (True, False, False, True):
        errors.observe(ok, 0.01 if ok else None)
    verdict, why = errors.judge(errors.started + 1)
    assert verdict == "failed" and "error rate 0.50 over 4 requests" in why
    slow = burn(max_p99_ms=50.0)
    for seconds in (0.01, 0.01, 0.01, 0.2):
        slow.observe(True, seconds)
    verdict, why = slow.judge(slow.started + 1)
    assert verdict == "failed" and "p99 latency 200.0 ms" in why
    assert burn(failure="smoke probe 'x': leaked").judge() == ("failed", "smoke probe 'x': leaked")


def test_shadow_parity_counts_agreement_after_normalising_and_keeps_where_they_differ():
    tally = ShadowTally("candidates/G002-a", "G002", "c0ffee")
    said = lambda text, s=0.01: SimpleNamespace(text=text, seconds=s, generation="G001")  # noqa: E731
    assert tally.record("p1", said("The Sea."), said("the  sea"))
    assert not tally.record("p2", said("yes"), said("no", 0.03))
    assert tally.due(2) and not tally.due(3)
    event = tally.event("G001", "s1")
    assert (event["samples"], event["agree"], event["parity"], event["source"]) == (2, 1, 0.5, "live")
    assert event["differ"] == [{"prompt": "p2", "served": "yes", "served_generation": "G001", "candidate": "no"}]
    assert event["latency_ms"]["candidate_p99"] == 30.0 and not tally.due(1)


def test_percentile_is_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0 and percentile(list(range(1, 101)), 0.99) == 99


class Fake:
    """A backend that answers 'ok' as G007, or fails when the prompt says so."""

    max_prompt_chars, max_new_tokens = 100, 32

    def answer(self, ask):
        if ask.prompt == "boom":
            raise RuntimeError("the model broke")
        return Answer("ok", "stop", 1, 1, "G007", "f00d", 0.001)

    def health(self):
        return {"status": "serving", "generation": "G007", "commit": "f00d"}

    def models(self):
        return [{"id": "G007"}]


def test_the_app_answers_with_headers_and_turns_bad_input_and_failures_into_json_errors():
    import asyncio

    import httpx

    from lineage.adapters.http import Metrics, build_app

    metrics = Metrics()
    app = build_app(Fake(), metrics)

    async def scenario() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
            ok = await client.post("/v1/completions", json={"prompt": "hi"})
            assert ok.status_code == 200 and ok.headers["X-Lineage-Generation"] == "G007"
            assert ok.headers["X-Lineage-Commit"] == "f00d" == ok.json()["lineage"]["commit"]
            broke = await client.post("/v1/completions", json={"prompt": "boom"})
            assert broke.status_code == 500 and broke.json()["error"]["type"] == "server_error"
            huge = await client.post("/v1/completions", content=b'{"prompt": "' + b"x" * 70_000 + b'"}')
            assert huge.status_code == 400 and huge.json()["error"]["code"] == "prompt_too_long"
            assert (await client.get("/v1/completions")).status_code == 405
            assert (await client.post("/v1/completions", json={"prompt": "hi"})).status_code == 200  # still serving
            return (await client.get("/metrics")).text

    text = asyncio.run(scenario())
    assert 'lineage_requests_total{endpoint="/v1/completions",generation="G007",status="200"} 2.0' in text
    assert 'status="500"' in text and 'lineage_tokens_total{generation="G007",kind="completion"} 2.0' in text
