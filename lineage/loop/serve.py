"""lineage serve: the generation the protected branch serves, answering live, with atomic cut-over.

The server holds one Engine (a loaded generation) as `current`. A watcher thread polls the
protected branch (serve.poll_seconds); when it moves (promote, rollback, an approved proposal, a
pull), the new generation is materialised read-only from the DVC cache, re-hashed against its
hashes.csv and loaded beside the old one, then `current` is swapped in one assignment: a request
takes `current` once when it starts, so it is answered by exactly one generation, and the swap
falls between two requests. A failed load keeps the old generation serving and says why in
/health. After a promotion's cut-over the smoke probes run on the new generation before it takes
traffic, then a live burn-in window watches its error rate and latency; a failure rolls back
through the normal rollback (arbiter, log, signature) and cuts back to the old generation, which
stays loaded until the window has passed. A shadow candidate answers a sample of live requests
on its own thread; its answers are never returned, its parity goes to the log as SHADOW events.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..adapters import git
from ..adapters.serving import Answer, Ask, Engine, load_engine
from ..core.errors import BadRequestError, LineageError, ServeError, UsageError
from ..moves import recover
from ..moves.burnin import smoke_probes
from ..moves.rollback import rollback
from ..store import ledger, refs, rules, weights
from ..store.root import Store
from .live import BurnIn, ShadowTally

log = logging.getLogger("lineage")
SERVE_DIR = ".lineage/serve"
RETRY_SECONDS = 30.0  # a failed cut-over is tried again after this long while main stays where it is


def serve_settings(store: Store) -> dict:
    """The `serve:` section of params.yaml on the protected branch's tip (defaults where absent)."""
    return rules.protected_serve_settings(store.repo, store.protected)


def candidate_generation(store: Store, candidate: str) -> dict:
    """A shadow candidate as weights.served describes a generation.

    Raises:
        UsageError: no such candidate, or it failed its gate (it can never be promoted).
        IntegrityError: it has no recorded weights.
    """
    commit = store.repo[refs.candidate_commit(store.repo, candidate)]
    verdict = git.trailers(commit.message).get("Verdict")
    if verdict != "PASS":
        raise UsageError(f"{candidate} failed its gate (verdict {verdict or 'none'}): it can never be promoted, "
                         "so there is nothing to shadow", "Shadow a candidate whose verdict is PASS ('lineage log').")
    hashes = weights.recorded_hashes(store.repo, commit)
    name = candidate.removeprefix(refs.CANDIDATE_PREFIX)
    return {"generation": refs.generation_of_name(candidate) or name, "name": f"{refs.CANDIDATE_PREFIX}{name}",
            "commit": str(commit.id), "md5": weights.child_md5(store.repo, commit), "hashes": hashes or []}


class Server:
    """The served generation, the watcher that cuts over, the live burn-in and the shadow."""

    def __init__(self, store: Store, metrics: Any, shadow: str | None = None, shadow_rate: float | None = None,
                 poll_seconds: float | None = None) -> None:
        self.store, self.metrics = store, metrics
        self.settings = serve_settings(store)
        self.poll = poll_seconds or self.settings["poll_seconds"]
        self.shadow_rate = self.settings["shadow_rate"] if shadow_rate is None else shadow_rate
        self.session = uuid.uuid4().hex[:12]
        self.dir = store.root / SERVE_DIR / self.session
        self.current: Engine | None = None
        self.burn: BurnIn | None = None
        self.tip: str | None = None
        self.state = "starting"
        self.note: str | None = None  # why the server is not simply serving main (a failed load, a divergence)
        self.retry: tuple[str, float] | None = None  # (commit, when) a failed cut-over is tried again
        self.watch_error: str | None = None  # the last look at main failed (a busy log lock, say); retried
        self.cutovers: list[dict] = []
        self.shadow_name = shadow
        self.shadow: Engine | None = None
        self.tally: ShadowTally | None = None
        self.shadow_ended: str | None = None
        self.mirrored = 0
        self.shadow_slots = threading.BoundedSemaphore(4)  # mirrored requests waiting for the candidate
        self.shadow_worker = ThreadPoolExecutor(1, thread_name_prefix="lineage-shadow")
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.watcher = threading.Thread(target=self.watch, name="lineage-watch", daemon=True)

    # ------------------------------------------------------------ limits the HTTP app reads

    @property
    def max_prompt_chars(self) -> int:
        return int(self.settings["max_prompt_chars"])

    @property
    def max_new_tokens(self) -> int:
        return int(self.settings["max_new_tokens"])

    # ------------------------------------------------------------ start and stop

    def start(self) -> None:
        """Load what the protected branch serves (and the shadow candidate), then start watching.

        Raises:
            ServeError: the protected branch serves no generation yet.
            UsageError: the shadow candidate is unknown or failed its gate.
            IntegrityError: weights missing from cache and remote, or not what hashes.csv lists.
        """
        gen = weights.served(self.store)
        if gen is None or not gen["hashes"]:
            raise ServeError(f"the protected branch {self.store.protected} serves no generation yet",
                             "Promote one first ('lineage promote candidates/G000-a'), or pull it from the hub.")
        shadow = candidate_generation(self.store, self.shadow_name) if self.shadow_name else None
        self.current = self.load(gen)
        self.tip = gen["commit"]
        self.metrics.serving(gen["generation"], gen["commit"])
        if shadow:
            self.shadow = self.load(shadow)
            self.tally = ShadowTally(shadow["name"], shadow["generation"], shadow["commit"])
        self.state = "serving"
        self.watcher.start()

    def close(self) -> None:
        """Stop watching; log the shadow's last parity; remove this session's materialised weights."""
        self.state = "stopping"
        self.stopping.set()
        if self.watcher.is_alive():
            self.watcher.join(timeout=30)
        self.shadow_worker.shutdown(wait=True, cancel_futures=True)
        for attempt in range(5):  # another command may hold the log's lock for a moment
            try:
                self.flush_shadow(force=True)
                break
            except LineageError as exc:
                if attempt == 4:
                    log.warning("serve: could not log the shadow's last parity: %s", exc)
                time.sleep(1)
        shutil.rmtree(self.dir, ignore_errors=True)

    def load(self, gen: dict) -> Engine:
        """Materialise a generation read-only into this session's directory, check it, load it."""
        dest = self.dir / gen["md5"].removesuffix(".dir")
        weights.materialise(self.store.root, gen, dest)
        return load_engine(dest, gen["generation"], gen["commit"], gen["md5"])

    # ------------------------------------------------------------ answering (the HTTP worker thread)

    def answer(self, ask: Ask) -> Answer:
        """Answer with the generation served when the request starts; count it for burn-in and shadow."""
        engine, burn = self.current, self.burn
        assert engine is not None
        watched = burn if burn is not None and burn.generation == engine.generation else None
        try:
            answer = engine.answer(ask)
        except BadRequestError:
            raise
        except Exception:
            if watched:
                watched.observe(False, None)
            raise
        if watched:
            watched.observe(True, answer.seconds)
        self.mirror(ask, answer)
        return answer

    def mirror(self, ask: Ask, answer: Answer) -> None:
        """Send every 1/shadow_rate-th request to the shadow candidate, never waiting for it."""
        tally, shadow = self.tally, self.shadow
        if tally is None or shadow is None or self.shadow_rate <= 0:
            return
        self.mirrored += 1
        if int(self.mirrored * self.shadow_rate) == int((self.mirrored - 1) * self.shadow_rate):
            return
        if ask.temperature > 0 or not self.shadow_slots.acquire(blocking=False):
            tally.skip()  # a sampled answer cannot be compared; a busy candidate must not pile up work
            return
        prompt = ask.prompt if ask.kind == "completion" else "\n".join(f"{r}: {c}" for r, c in ask.messages)

        def run() -> None:
            try:
                tally.record(prompt or "", answer, shadow.answer(ask))
                self.metrics.shadow_parity.labels(tally.candidate).set(tally.parity() or 0.0)
            except Exception as exc:  # the candidate's failure is a finding, never the client's problem
                log.warning("serve: shadow %s failed on a request: %s", tally.candidate, exc)
                tally.skip(failed=True)
            finally:
                self.shadow_slots.release()

        try:
            self.shadow_worker.submit(run)
        except RuntimeError:  # shutting down
            self.shadow_slots.release()

    # ------------------------------------------------------------ what the app reports

    def health(self) -> dict:
        engine = self.current
        out = {"status": self.state, "generation": engine.generation if engine else "", "commit":
               engine.commit if engine else "", "protected_branch": self.store.protected, "protected_tip": self.tip,
               "note": self.note, "watch_error": self.watch_error, "cutovers": self.cutovers[-5:],
               "burn_in": self.burn.summary() if self.burn else None, "shadow": None,
               "chat_template": "own" if engine and engine.templated else "lineage default"}
        if self.tally:
            out["shadow"] = {"candidate": self.tally.candidate, "samples": self.tally.samples,
                             "parity": self.tally.parity(), "skipped": self.tally.skipped, "ended": self.shadow_ended}
        return out

    def models(self) -> list[dict]:
        engine = self.current
        if engine is None:
            return []
        return [{"id": engine.generation, "object": "model", "owned_by": "lineage", "created": 0,
                 "lineage": {"generation": engine.generation, "commit": engine.commit,
                             "branch": self.store.protected}}]

    # ------------------------------------------------------------ the watcher thread

    def watch(self) -> None:
        """Poll the protected branch until stopped; every git and log access happens on this thread."""
        while not self.stopping.wait(self.poll):
            try:
                self.step()
                self.watch_error = None
            except Exception as exc:  # the watcher must outlive any one bad step; the next one tries again
                self.watch_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.warning("serve: watching %s: %s (trying again)", self.store.protected, self.watch_error,
                            exc_info=bool(os.environ.get("LINEAGE_DEBUG")))

    def step(self) -> None:
        """One look: cut over when the branch moved, judge the burn-in, log the shadow when due."""
        self.store.reopen()  # another process moved the branch: pygit2 caches refs
        tip = self.store.tip()
        if tip is not None and str(tip.id) != self.tip:
            self.cut_over(tip)
        elif self.retry is not None and time.monotonic() >= self.retry[1]:
            commit, self.retry = self.retry[0], None  # tried again: the weights may have reached the remote
            if tip is not None and commit == self.tip == str(tip.id):
                self.cut_over(tip)
        if self.burn is not None:
            verdict, why = self.burn.judge()
            if verdict == "passed":
                self.end_burn_in(True, None)
            elif verdict == "failed":
                self.end_burn_in(False, why)
        self.flush_shadow()

    def cut_over(self, tip) -> None:
        """Serve what the protected branch's new tip serves; keep the old generation on any failure."""
        commit = str(tip.id)
        old = self.current
        assert old is not None
        try:
            self.settings = serve_settings(self.store)
        except LineageError as exc:
            log.warning("serve: keeping the serve settings: params.yaml on the new tip is bad: %s", exc)
        gen = weights.served(self.store)
        self.tip = commit
        if gen is None or not gen["hashes"]:
            self.record_cutover(old.generation, "?", commit, "failed", 0.0,
                                f"{self.store.protected} at {commit[:12]} serves no generation with weights")
            return
        info = git.trailers(tip.message)
        ours = info.get("Rollback-To") and "live burn-in failed" in info.get("Reason", "")
        if gen["md5"] == old.md5:  # same weights (an approved change, a rollback to them): relabel only
            self.current = Engine(old.model, old.tok, gen["generation"], commit, old.md5, old.path)
            self.metrics.serving(gen["generation"], commit)
            if self.state == "diverged":  # main now names what the server serves (the rollback was run)
                self.state, self.note = "serving", None
            return
        self.end_shadow_if_promoted(gen)
        start = time.perf_counter()
        previous = self.burn.previous if self.burn is not None else None
        if previous is not None and previous.md5 == gen["md5"]:
            new = Engine(previous.model, previous.tok, gen["generation"], commit, previous.md5, previous.path)
        else:
            try:
                new = self.load(gen)
            except Exception as exc:  # a failed load keeps the old generation serving
                why = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self.record_cutover(old.generation, gen["generation"], commit, "failed",
                                    time.perf_counter() - start, f"could not load {gen['generation']}: {why}")
                return
        promoted = "Generation" in info and "Rollback-To" not in info and "Approved-Change" not in info
        probe_failure = self.smoke(new) if promoted else None
        if probe_failure:
            self.record_cutover(old.generation, gen["generation"], commit, "failed", time.perf_counter() - start,
                                f"smoke probe failed before the cut-over: {probe_failure}")
            self.burn = BurnIn(gen["generation"], commit, old, 0, 1, 0, 0, failure=probe_failure)
            self.end_burn_in(False, probe_failure)
            return
        # the swap: one assignment; a request already running keeps the engine it took
        self.current = new
        self.metrics.serving(new.generation, commit)
        self.state, self.note = "serving", None
        self.record_cutover(old.generation, new.generation, commit, "done", time.perf_counter() - start, None)
        s = self.settings
        if self.burn is not None:
            self.burn = None  # main moved again mid-window: the new move gets its own window
        if not ours and s["burn_in_seconds"] > 0:
            self.burn = BurnIn(new.generation, commit, old, s["burn_in_seconds"], s["burn_in_min_requests"],
                               s["burn_in_max_error_rate"], s["burn_in_max_p99_ms"])
            self.state = "burn-in"
        # else: the old engine is dropped here; its memory goes once no running request holds it

    def smoke(self, engine: Engine) -> str | None:
        """Why the new generation fails a smoke probe of the protected tip, or None."""
        from ..adapters.evaluate import law_check

        try:
            probes = smoke_probes(self.store.root)
        except Exception as exc:
            return f"the smoke probes are unreadable: {exc}".splitlines()[0]
        for probe in probes:
            ask = Ask("completion", probe["prompt"], (), 16, 0.0, 1.0, (), None)
            output = engine.answer(ask).text
            if not output.strip():
                return f"empty answer to {probe['prompt']!r}"
            why = law_check(output, probe.get("rule") or {})
            if why:
                return f"smoke probe {probe['prompt']!r}: {why} (answer {output.strip()!r})"
        return None

    def end_burn_in(self, passed: bool, why: str | None) -> None:
        """Log the live burn-in; on failure cut back at once, then roll back through the normal rollback."""
        burn = self.burn
        assert burn is not None
        self.burn = None
        previous = burn.previous
        if not passed:  # the failing generation answers no further request, whatever the rollback does
            self.current = previous
            self.metrics.serving(previous.generation, previous.commit)
        try:
            ledger.append(self.store, "BURN_IN", burn.generation,
                          {"passed": passed, "reason": why, "live": True, **burn.summary()})
        except LineageError as exc:
            log.warning("serve: could not log the live burn-in of %s: %s", burn.generation, exc)
        if passed:
            self.state = "serving"
            return  # the previous engine is dropped with the burn-in
        reason = f"live burn-in failed: {why}"
        try:
            recover.recover(self.store)
            done = rollback(self.store, reason, previous.generation)
        except Exception as exc:
            # e.g. a store with signers where this server holds no key allowed to sign a rollback:
            # serve the generation that passed, and say loudly that main still names the other one
            self.state = "diverged"
            self.note = (f"{burn.generation} failed its live burn-in ({why}) but the rollback failed: {exc}; "
                         f"serving {previous.generation} meanwhile. Run: lineage rollback --to {previous.generation} "
                         f"--reason '{reason}'").replace("\n", " ")
            self.record_cutover(burn.generation, previous.generation, burn.commit, "cut_back", 0.0, self.note)
            log.error("serve: %s", self.note)
            return
        self.tip = done.commit
        self.current = Engine(previous.model, previous.tok, previous.generation, done.commit, previous.md5,
                              previous.path)
        self.metrics.serving(previous.generation, done.commit)
        self.state = "serving"
        self.record_cutover(burn.generation, previous.generation, done.commit, "rolled_back", 0.0, reason)

    def record_cutover(self, frm: str, to: str, commit: str, result: str, seconds: float, why: str | None) -> None:
        entry = {"from": frm, "to": to, "commit": commit, "result": result, "seconds": round(seconds, 3),
                 "at": round(time.time(), 3), "why": why}
        self.cutovers.append(entry)
        self.metrics.cutovers.labels(result).inc()
        if result == "failed":
            self.note = why
            self.retry = (commit, time.monotonic() + RETRY_SECONDS)
            log.error("serve: cut-over to %s failed, still serving %s: %s", to, frm, why)
        else:
            log.info("serve: %s -> %s (%s) %s", frm, to, commit[:12], result)

    # ------------------------------------------------------------ the shadow's record

    def end_shadow_if_promoted(self, gen: dict) -> None:
        if self.tally is not None and self.shadow is not None and gen["commit"] == self.tally.commit:
            self.flush_shadow(force=True)
            self.shadow, self.shadow_ended = None, f"{self.tally.candidate} is now what {self.store.protected} serves"

    def flush_shadow(self, force: bool = False) -> None:
        """Append a SHADOW event (cumulative for this session) when enough new samples came in."""
        tally = self.tally
        if tally is None or not (tally.due(self.settings["shadow_flush_every"]) or (force and tally.due(1))):
            return
        served = self.current.generation if self.current else None
        ledger.append(self.store, "SHADOW", tally.generation, tally.event(str(served), self.session))


def serve(store: Store, port: int | None = None, bind: str | None = None, shadow: str | None = None,
          shadow_rate: float | None = None, ready=None, poll_seconds: float | None = None) -> dict:
    """Answer HTTP requests with the served generation until SIGINT/SIGTERM; return what happened.

    The port is bound before anything loads, so a taken port fails at once. `ready` (optional) is
    called with the address and the generation once the server accepts requests.

    Raises:
        ServeError: the port is taken, or the protected branch serves no generation yet.
        UsageError: the shadow candidate is unknown or failed its gate.
    """
    from ..adapters import http

    settings = serve_settings(store)
    sock = http.bind(bind or settings["bind"], settings["port"] if port is None else port)
    server = Server(store, http.Metrics(), shadow, shadow_rate, poll_seconds)
    try:
        server.start()
        host, actual = sock.getsockname()[:2]
        if ready is not None:
            engine = server.current
            assert engine is not None
            ready({"url": f"http://{host if ':' not in host else f'[{host}]'}:{actual}", "port": actual,
                   "generation": engine.generation, "commit": engine.commit, "shadow": server.shadow_name,
                   "session": server.session})
        http.run(http.build_app(server, server.metrics), sock)
    finally:
        sock.close()
        server.close()
    return {"session": server.session, "served": server.current.generation if server.current else None,
            "cutovers": server.cutovers, "shadow": server.health()["shadow"]}
