"""lineage serve: a real server on a loopback port, used through a real HTTP client.

One store for the module: G000 served, G001-a proposed (PASS) and shadowed, main asking for four
live shadow answers before a promotion; the tests then run in order: answers carry their
generation, bad requests get 400s, a promotion waits for the shadow's answers, whose parity lands
in the log, a promotion under 20 concurrent clients cuts over with no failed request, a planted
live burn-in failure (a p99 limit no model meets) rolls back by itself and cuts back, bad starts
are refused, and a cut-over to tampered weights keeps the old generation serving.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import clone_store, lineage, relaxed_tiny, set_params, sh, trained_g000

pytestmark = pytest.mark.slow

TINY = relaxed_tiny(30, 20)
SERVE = {"serve": {"burn_in_seconds": 2.0, "burn_in_min_requests": 3, "shadow_flush_every": 4,
                   "max_prompt_chars": 300, "max_new_tokens": 32, "min_live_samples": 4}}


def tip(store: Path) -> str:
    return sh(["git", "rev-parse", "main"], store).stdout.strip()


def events(store: Path, kind: str) -> list[dict]:
    lines = lineage(store, "log", "--format", "jsonl").stdout.splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Served:
    """A `python -m lineage serve --port 0` process and its address."""

    def __init__(self, store: Path, *args: str) -> None:
        self.log = open(store.parent / f"serve-{time.monotonic_ns()}.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "lineage", "serve", "--port", "0", "--poll", "0.2", *args],
                                     cwd=store, stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("serving "):
            self.stop()
            raise AssertionError(f"the server did not start: {line!r}\n{self.stderr()}")
        self.url = line.split(" on ")[1].split(",")[0].strip()
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def complete(self, prompt: str = "The river", **kw) -> httpx.Response:
        return self.client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 4, **kw})

    def health(self) -> dict:
        return self.client.get("/health").json()

    def stderr(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        if hasattr(self, "client"):
            self.client.close()  # an open keep-alive connection would hold up the graceful shutdown
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = clone_store(trained_g000(tmp_path_factory, TINY), tmp_path_factory.mktemp("serve") / "luna")
    set_params(store, SERVE)
    sh(["git", "add", "params.yaml"], store)
    lineage(store, "change", "--reason", "serve settings for the test")
    assert "PASS" in lineage(store, "propose", "--name", "a").stdout  # G001-a, from main's tip
    return store


@pytest.fixture(scope="module")
def server(store):
    served = Served(store, "--shadow", "candidates/G001-a", "--shadow-rate", "1")
    yield served
    code = served.stop()
    assert code == 0, served.stderr()


def test_answers_carry_the_generation_and_commit_that_produced_them(store, server):
    main = tip(store)
    r = server.complete()
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["X-Lineage-Generation"] == body["lineage"]["generation"] == body["model"] == "G000"
    assert r.headers["X-Lineage-Commit"] == body["lineage"]["commit"] == main
    assert body["object"] == "text_completion" and isinstance(body["choices"][0]["text"], str)
    assert body["usage"]["completion_tokens"] <= 4
    chat = server.client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hello"}],
                                                            "max_tokens": 4})
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["role"] == "assistant"
    assert chat.headers["X-Lineage-Generation"] == "G000"
    assert server.client.get("/v1/models").json()["data"][0]["id"] == "G000"
    health = server.health()
    assert (health["generation"], health["commit"], health["status"]) == ("G000", main, "serving")


def test_malformed_and_oversized_requests_get_a_json_400_and_the_server_keeps_serving(server):
    bad = [server.client.post("/v1/completions", content=b"{not json"),
           server.client.post("/v1/completions", json={"max_tokens": 4}),
           server.client.post("/v1/completions", json={"prompt": "x", "stream": True}),
           server.client.post("/v1/completions", json={"prompt": "x", "max_tokens": 10_000}),
           server.client.post("/v1/chat/completions", json={"messages": [{"role": "user"}]}),
           server.complete("y" * 301)]
    for r in bad:
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["message"]
    assert "at most 300" in bad[-1].json()["error"]["message"] and bad[-1].json()["error"]["code"] == "prompt_too_long"
    assert server.client.get("/v1/nothing").status_code == 404
    assert server.complete().status_code == 200


def test_a_promotion_waits_for_enough_live_shadow_answers_when_main_asks_for_them(store):
    before = tip(store)
    refused = lineage(store, "promote", "candidates/G001-a", check=False)
    assert refused.returncode == 1 and "serve.min_live_samples asks for 4" in refused.stderr
    assert "lineage serve --shadow candidates/G001-a" in refused.stderr and tip(store) == before


def test_live_shadow_parity_lands_in_the_evolution_log(store, server):
    for prompt in ("The river", "Once upon", "The king of", "Water is", "A bird"):
        assert server.complete(prompt).status_code == 200
    shadow = wait_for("a SHADOW event", lambda: events(store, "SHADOW"), timeout=60, every=1)[-1]
    data = shadow["data"]
    assert shadow["generation"] == "G001" and data["candidate"] == "candidates/G001-a" and data["source"] == "live"
    assert data["served"] == "G000" and data["samples"] >= 4 and 0 <= data["parity"] <= 1
    assert set(data["latency_ms"]) == {"served_p50", "served_p99", "candidate_p50", "candidate_p99"}
    assert len(data["differ"]) == data["samples"] - data["agree"] or len(data["differ"]) == 10
    metrics = server.client.get("/metrics").text
    assert 'lineage_shadow_parity{candidate="candidates/G001-a"}' in metrics
    # the loop's proposal of this candidate (as `lineage evolve` would have written it) shows the live parity
    from lineage.loop.evolve import PROPOSAL

    commit = sh(["git", "rev-parse", "candidates/G001-a"], store).stdout.strip()
    (store / PROPOSAL).parent.mkdir(parents=True, exist_ok=True)
    (store / PROPOSAL).write_text(json.dumps({
        "schema_version": 1, "window": "W1", "status": "open", "candidate": "candidates/G001-a", "commit": commit,
        "current_head": tip(store), "improvement": 0.0, "composite": 0.5, "head_composite": 0.5, "risk": "low",
        "risk_reasons": ["test"], "criteria": [], "hashes": {}}))
    shown = lineage(store, "proposal", "show").stdout
    assert "live shadow: parity" in shown and "mirrored requests against G000" in shown
    assert json.loads(lineage(store, "--json", "proposal", "show").stdout)["live_shadow"]["commit"] == commit
    (store / PROPOSAL).unlink()


def test_a_promotion_under_20_concurrent_clients_cuts_over_with_no_failed_request(store, server):
    old = tip(store)
    answers: list[tuple[int, str, str, str, str]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/completions", json={"prompt": "The river", "max_tokens": 2})
                    body = r.json()
                    answers.append((r.status_code, r.headers.get("X-Lineage-Generation", ""),
                                    body["lineage"]["generation"], r.headers.get("X-Lineage-Commit", ""),
                                    body["lineage"]["commit"]))
                except Exception as exc:  # a refused connection or a broken body is a failed request
                    answers.append((0, type(exc).__name__, str(exc), "", ""))

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    try:
        wait_for("answers before the promotion", lambda: len(answers) >= 20)
        lineage(store, "promote", "candidates/G001-a")
        new = tip(store)
        wait_for("the cut-over", lambda: any(a[2] == "G001" for a in answers[-20:]), timeout=60)
        count = len(answers)
        wait_for("answers after the cut-over", lambda: len(answers) >= count + 20)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:5]
    commit_of = {"G000": old, "G001": new}
    for _, header_gen, body_gen, header_commit, body_commit in answers:
        assert header_gen == body_gen and header_commit == body_commit == commit_of[body_gen]
    gens = [a[2] for a in answers]
    first_new = gens.index("G001")
    assert "G000" in gens[:first_new] and gens[-20:] == ["G001"] * 20
    health = wait_for("the burn-in to pass", lambda: (h := server.health())["status"] == "serving" and h)
    assert health["generation"] == "G001" and health["cutovers"][-1]["result"] == "done"
    assert health["shadow"]["ended"]  # the shadowed candidate is now what main serves
    burn = [e for e in events(store, "BURN_IN") if e["data"].get("live")]
    assert burn and burn[-1]["generation"] == "G001" and burn[-1]["data"]["passed"]


def test_a_failed_live_burn_in_rolls_back_by_itself_and_cuts_back(store, server):
    set_params(store, {"serve": {"burn_in_max_p99_ms": 0.001}})  # planted: no model answers in a microsecond
    sh(["git", "add", "params.yaml"], store)
    lineage(store, "change", "--reason", "a latency limit no model meets")
    wait_for("the approved change to be seen", lambda: server.health()["commit"] == tip(store))
    lineage(store, "rollback", "--to", "G000", "--reason", "a person rolls back")

    def served_again() -> bool:
        server.complete()
        return server.health()["cutovers"][-1]["result"] == "rolled_back"

    wait_for("the live burn-in to roll back", served_again, timeout=90, every=0.3)
    message = sh(["git", "log", "-1", "--format=%B", "main"], store).stdout
    assert "Rollback-To: G001" in message and "live burn-in failed: p99 latency" in message
    r = server.complete()
    assert r.headers["X-Lineage-Generation"] == "G001" and r.headers["X-Lineage-Commit"] == tip(store)
    burn = [e for e in events(store, "BURN_IN") if e["data"].get("live")][-1]
    assert burn["generation"] == "G000" and not burn["data"]["passed"]
    assert 'lineage_cutovers_total{result="rolled_back"} 1.0' in server.client.get("/metrics").text


def test_a_taken_port_a_failed_shadow_candidate_and_an_empty_store_are_refused_clearly(store, server, tmp_path,
                                                                                       store_template):
    port = server.url.rsplit(":", 1)[1]
    taken = lineage(store, "serve", "--port", port, check=False)
    assert taken.returncode == 3 and f"port {port} on 127.0.0.1 is in use" in taken.stderr
    failed = lineage(store, "propose", "--name", "z", check=False)  # nothing new to learn: FAIL, quickly
    assert failed.returncode == 1
    branch = [b for b in sh(["git", "branch", "--list", "candidates/*-z"], store).stdout.split() if "-z" in b][0]
    refused = lineage(store, "serve", "--port", "0", "--shadow", branch, check=False)
    assert refused.returncode == 2 and "failed its gate" in refused.stderr
    empty = clone_store(store_template, tmp_path / "empty")
    nothing = lineage(empty, "serve", "--port", "0", check=False)
    assert nothing.returncode == 3 and "serves no generation yet" in nothing.stderr
    assert server.complete().status_code == 200  # the running server never noticed
    assert os.path.isdir(store / ".lineage" / "serve")


def test_a_cut_over_to_weights_that_differ_from_their_hashes_keeps_the_old_generation_serving(store, server):
    from lineage.adapters import dvc
    from lineage.store import weights
    from lineage.store.root import Store

    opened = Store.open(store)
    g000 = opened.repo[sh(["git", "rev-parse", "lineage/gen/G000^{commit}"], store).stdout.strip()]
    cache = dvc.cache_dir(store)
    entry = next(e for e in dvc.dir_listing(cache, weights.child_md5(opened.repo, g000))
                 if e["relpath"].endswith(".safetensors"))
    tampered = dvc.cache_path(cache, entry["md5"])
    os.chmod(tampered, 0o644)
    data = bytearray(tampered.read_bytes())
    data[-1] ^= 0xFF  # one bit of one weight: still a valid safetensors file, no longer G000's
    tampered.write_bytes(data)
    before = server.complete().headers["X-Lineage-Commit"]
    lineage(store, "rollback", "--to", "G000", "--reason", "back to a generation whose cache was tampered with")
    main = tip(store)
    health = wait_for("the refused cut-over", lambda: (h := server.health())["cutovers"][-1]["result"] == "failed"
                      and h)
    assert health["protected_tip"] == main and health["generation"] == "G001"
    assert "sha256" in health["note"] and "G000" in health["note"]
    r = server.complete()
    assert r.status_code == 200 and r.headers["X-Lineage-Generation"] == "G001"
    assert r.headers["X-Lineage-Commit"] == before != main
