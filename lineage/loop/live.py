"""What `lineage serve` watches live: a burn-in window after a cut-over, and a shadow candidate's parity.

Both only count (thread-safe) and judge from their counts; the server (lineage/loop/serve.py)
feeds them answers and acts on the verdicts: a rollback, a SHADOW event in the log.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], share: float) -> float | None:
    """The value below which `share` of values lie (nearest rank), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def normalise(text: str) -> str:
    """Answers that differ only in case, spacing or full stops agree (as the offline shadow judges)."""
    return " ".join(text.lower().replace(".", " ").split())


@dataclass
class BurnIn:
    """The live burn-in of one cut-over: requests, errors and inference latency of the new generation."""

    generation: str
    commit: str
    previous: Any  # the Engine served before: kept loaded until the window passes, for an instant cut-back
    seconds: float
    min_requests: int
    max_error_rate: float
    max_p99_ms: float
    started: float = field(default_factory=time.time)
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    failure: str | None = None  # set by a failed smoke probe
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, ok: bool, seconds: float | None) -> None:
        """Count one answer (ok) or one failed request of the new generation."""
        with self.lock:
            self.requests += 1
            if ok and seconds is not None:
                self.latencies.append(seconds)
            if not ok:
                self.errors += 1

    def judge(self, now: float | None = None) -> tuple[str, str | None]:
        """('running' | 'passed' | 'failed', why it failed)."""
        now = time.time() if now is None else now
        with self.lock:
            if self.failure:
                return "failed", self.failure
            if self.requests >= self.min_requests:
                rate = self.errors / self.requests
                if rate > self.max_error_rate:
                    return "failed", (f"error rate {rate:.2f} over {self.requests} requests exceeds "
                                      f"serve.burn_in_max_error_rate {self.max_error_rate}")
                p99 = percentile(self.latencies, 0.99)
                if self.max_p99_ms > 0 and p99 is not None and p99 * 1000 > self.max_p99_ms:
                    return "failed", (f"p99 latency {p99 * 1000:.1f} ms over {len(self.latencies)} answers exceeds "
                                      f"serve.burn_in_max_p99_ms {self.max_p99_ms}")
            if now - self.started >= self.seconds and self.requests >= self.min_requests:
                return "passed", None  # a quiet window waits for enough answers to judge
            return "running", None

    def summary(self) -> dict:
        with self.lock:
            p99 = percentile(self.latencies, 0.99)
            return {"generation": self.generation, "commit": self.commit, "window_seconds": self.seconds,
                    "elapsed_seconds": round(time.time() - self.started, 3), "requests": self.requests,
                    "errors": self.errors, "p99_ms": None if p99 is None else round(p99 * 1000, 3),
                    "previous": getattr(self.previous, "generation", None)}


@dataclass
class ShadowTally:
    """A shadow candidate's answers beside the served ones, cumulative for one server session."""

    candidate: str
    generation: str
    commit: str
    max_differ: int = 10
    samples: int = 0
    agree: int = 0
    skipped: int = 0  # mirrored requests dropped: the candidate was still busy, or the request sampled
    failures: int = 0
    served_seconds: list[float] = field(default_factory=list)
    candidate_seconds: list[float] = field(default_factory=list)
    differ: list[dict] = field(default_factory=list)
    logged: int = 0  # samples already in a SHADOW event
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, prompt: str, served: Any, candidate: Any) -> bool:
        """Count one mirrored request (answers with .text, .seconds, .generation); True when they agree."""
        same = normalise(served.text) == normalise(candidate.text)
        with self.lock:
            self.samples += 1
            self.agree += same
            self.served_seconds.append(served.seconds)
            self.candidate_seconds.append(candidate.seconds)
            if not same and len(self.differ) < self.max_differ:
                self.differ.append({"prompt": prompt[:200], "served": served.text.strip()[:200],
                                    "served_generation": served.generation,
                                    "candidate": candidate.text.strip()[:200]})
        return same

    def skip(self, failed: bool = False) -> None:
        with self.lock:
            self.skipped += 1
            self.failures += failed

    def parity(self) -> float | None:
        return None if not self.samples else round(self.agree / self.samples, 6)

    def due(self, every: int) -> bool:
        """True when `every` samples have come in since the last SHADOW event."""
        with self.lock:
            return self.samples - self.logged >= every

    def event(self, served: str, session: str) -> dict:
        """The data of a SHADOW event (cumulative for the session); marks these samples logged."""
        with self.lock:
            self.logged = self.samples

            def ms(values: list[float], share: float) -> float | None:
                value = percentile(values, share)
                return None if value is None else round(value * 1000, 3)

            return {"source": "live", "session": session, "candidate": self.candidate, "commit": self.commit,
                    "served": served, "samples": self.samples, "agree": self.agree,
                    "parity": None if not self.samples else round(self.agree / self.samples, 6),
                    "skipped": self.skipped, "failures": self.failures,
                    "latency_ms": {"served_p50": ms(self.served_seconds, 0.5),
                                   "served_p99": ms(self.served_seconds, 0.99),
                                   "candidate_p50": ms(self.candidate_seconds, 0.5),
                                   "candidate_p99": ms(self.candidate_seconds, 0.99)},
                    "differ": list(self.differ)}
