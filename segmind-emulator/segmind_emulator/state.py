"""In-memory bookkeeping of the emulator: jobs, credits, rate limits and counters.

Kept apart from the HTTP handlers so the rules (when a job is QUEUED/PROCESSING/FAILED, when a
record expires, how the token bucket refills) read in one place and are easy to reason about.
Everything here runs on the event loop thread only, so no locks are needed.

Time: all state transitions use ``time.monotonic()`` (immune to wall-clock jumps); wall-clock
time is only used to print ISO timestamps for clients.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from segmind_emulator.api_facts import RequestStatus

#: Share of a job's render time before a doomed job shows FAILED (content filter, bad input):
#: the real service also fails such jobs early rather than after a full render.
FAIL_AFTER_FRACTION = (0.10, 0.20)
#: Share of a job's render time spent QUEUED before a worker "picks it up".
QUEUED_FRACTION = (0.05, 0.10)
#: Chance that a job lands in the slow tail, and how much slower it is then.
TAIL_PROBABILITY = 0.03
TAIL_FACTOR = (1.2, 1.6)
MIN_RENDER_SECONDS = 0.05


def mask_key(key: str) -> str:
    """``ab…yz``: enough to tell keys apart in stats and logs, never enough to use one."""
    if len(key) <= 6:
        return "…"
    return f"{key[:2]}…{key[-2:]}"


def iso_utc(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``, the format of ``x-rate-limit-reset-at-utc``."""
    stamp = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def draw_render_seconds(rng: random.Random, mean: float, spread: float) -> float:
    """A realistic render time: normal around ``mean``, plus a rare slow tail; never below 50 ms."""
    seconds = rng.gauss(mean, spread * mean)
    if rng.random() < TAIL_PROBABILITY:
        seconds *= rng.uniform(*TAIL_FACTOR)
    return max(MIN_RENDER_SECONDS, seconds)


@dataclass
class Job:
    """One accepted request (v2 submit or v1 run) and its timeline.

    The visible state is derived from the clock on every read instead of being pushed by timers:
    a job cannot get "stuck" because a timer was lost, and a poll storm costs no extra work.
    ``error`` and ``ready_at`` are filled in by the background pipeline (fetch, decode, render).
    """

    request_id: str
    model: str
    params: dict[str, Any]
    api_key: str
    render_seconds: float
    queued_seconds: float
    fail_after: float
    submitted_at: float = field(default_factory=time.monotonic)
    submitted_wall: float = field(default_factory=time.time)
    error: str | None = None
    #: monotonic time at which the output file existed (None while rendering or on failure)
    ready_at: float | None = None
    output_name: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def status(self, now: float | None = None) -> RequestStatus:
        elapsed = (time.monotonic() if now is None else now) - self.submitted_at
        if self.error is not None and elapsed >= self.fail_after:
            return RequestStatus.FAILED
        if elapsed < self.queued_seconds:
            return RequestStatus.QUEUED
        if elapsed < self.render_seconds or self.ready_at is None:
            return RequestStatus.PROCESSING
        return RequestStatus.COMPLETED

    def visible_at(self) -> float | None:
        """Monotonic time at which the job shows a terminal state, once the pipeline settled."""
        if self.error is not None:
            return self.submitted_at + self.fail_after
        if self.ready_at is not None:
            return max(self.ready_at, self.submitted_at + self.render_seconds)
        return None

    async def wait_terminal(self) -> RequestStatus:
        """Block until the job shows COMPLETED or FAILED (used by the synchronous v1 endpoint)."""
        await self.settled.wait()
        visible = self.visible_at()
        if visible is not None:
            await asyncio.sleep(max(0.0, visible - time.monotonic()))
        return self.status()


class JobStore:
    """Request records by id, with retention counted from submission.

    Why from submission: it is the one instant every client knows (it got the 200), so "a
    record lives ``retention_seconds`` after its submit" is easy to test and to explain; the
    real service documents only "kept for 1 hour".
    """

    def __init__(self, retention_seconds: float) -> None:
        self.retention_seconds = retention_seconds
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        self._jobs[job.request_id] = job

    def get(self, request_id: str) -> Job | None:
        job = self._jobs.get(request_id)
        if job is not None and self._expired(job, time.monotonic()):
            del self._jobs[request_id]
            return None
        return job

    def _expired(self, job: Job, now: float) -> bool:
        return now - job.submitted_at >= self.retention_seconds

    def sweep(self) -> int:
        """Drop expired records (their output files stay on disk); returns how many went."""
        now = time.monotonic()
        gone = [rid for rid, job in self._jobs.items() if self._expired(job, now)]
        for rid in gone:
            del self._jobs[rid]
        return len(gone)

    def clear(self) -> list[Job]:
        jobs = list(self._jobs.values())
        self._jobs.clear()
        return jobs

    def counts(self) -> dict[str, int]:
        self.sweep()
        now = time.monotonic()
        counts = {s.value: 0 for s in RequestStatus}
        for job in self._jobs.values():
            counts[job.status(now).value] += 1
        return counts

    def __len__(self) -> int:
        return len(self._jobs)


class Credits:
    """Per-key credit balances; ``None`` is unlimited."""

    def __init__(self, keys: tuple[str, ...], credits: int | None) -> None:
        self._initial = credits
        self._keys = keys
        self._left: dict[str, int | None] = {}
        self.reset()

    def reset(self) -> None:
        self._left = {key: self._initial for key in self._keys}

    def remaining(self, key: str) -> int | None:
        return self._left.get(key)

    def try_charge(self, key: str) -> bool:
        left = self._left.get(key)
        if left is None:
            return True
        if left < 1:
            return False
        self._left[key] = left - 1
        return True

    def refund(self, key: str) -> None:
        left = self._left.get(key)
        if left is not None:
            self._left[key] = left + 1

    def snapshot(self) -> dict[str, int | None]:
        return {mask_key(key): left for key, left in self._left.items()}


@dataclass
class RateDecision:
    allowed: bool
    #: Seconds until a token is available (0 when allowed).
    wait: float = 0.0

    def headers(self) -> dict[str, str]:
        """Both hints the real API family uses: ``Retry-After`` and the reset instant in UTC."""
        return {
            "Retry-After": str(max(1, math.ceil(self.wait))),
            "x-rate-limit-reset-at-utc": iso_utc(time.time() + self.wait),
        }


class RateLimiter:
    """A token bucket per key: ``rate`` tokens per second, burst ``max(1, rate)``.

    A bucket rather than a fixed window so a client that honours ``Retry-After`` is let through
    exactly when told, and a steady client at the allowed rate is never refused.
    """

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate or 0.0)
        self._buckets: dict[str, tuple[float, float]] = {}

    def reset(self) -> None:
        self._buckets.clear()

    def check(self, key: str) -> RateDecision:
        if self.rate is None:
            return RateDecision(True)
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return RateDecision(True)
        self._buckets[key] = (tokens, now)
        return RateDecision(False, (1.0 - tokens) / self.rate)


@dataclass
class Stats:
    """Counters behind ``GET /_emulator/stats``: what clients actually did, for tests to assert on.

    Accepted and billed work: ``submissions`` {model: n} and ``submissions_total`` count v2 submits
    the server accepted (each billed one credit, whether or not its answer reached the client, e.g.
    under ``accept_then_drop``); ``v1_runs`` {model: n} and ``v1_runs_total`` count accepted v1 runs;
    ``credits_charged`` is the credits actually spent (a failed v1 run is refunded).

    Other keys: ``status_polls`` and ``results`` (GETs of the status and result endpoints that
    reached the handler, any answer), ``uploads`` (files stored), ``upload_requests``, ``responses``
    {"200": n, ...}: status lines sent on API endpoints, injected ones included (a dropped
    connection sends none), ``faults_injected`` (every applied fault rule, any mode),
    ``faults_by_mode`` {mode: n}, ``dropped_connections`` (``error`` drops and ``accept_then_drop``),
    ``rate_limited``, ``renders`` (real encodes), ``render_cache_hits``, ``image_fetches``; the
    server adds ``jobs`` {state: n} of live records, ``credits`` {masked key: remaining or null for
    unlimited} and ``faults`` (the current rules, as ``GET /_emulator/faults`` shows them).
    """

    submissions: Counter[str] = field(default_factory=Counter)
    v1_runs: Counter[str] = field(default_factory=Counter)
    status_polls: int = 0
    results: int = 0
    uploads: int = 0
    upload_requests: int = 0
    responses: Counter[str] = field(default_factory=Counter)
    faults_injected: int = 0
    faults_by_mode: Counter[str] = field(default_factory=Counter)
    dropped_connections: int = 0
    rate_limited: int = 0
    credits_charged: int = 0
    renders: int = 0
    render_cache_hits: int = 0
    image_fetches: int = 0

    def reset(self) -> None:
        """Zero every counter in place: the pipeline holds this very object, so it is never replaced."""
        fresh = Stats()
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def count_fault(self, mode: str) -> None:
        self.faults_injected += 1
        self.faults_by_mode[mode] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "submissions": dict(self.submissions),
            "submissions_total": sum(self.submissions.values()),
            "v1_runs": dict(self.v1_runs),
            "v1_runs_total": sum(self.v1_runs.values()),
            "status_polls": self.status_polls,
            "results": self.results,
            "uploads": self.uploads,
            "upload_requests": self.upload_requests,
            "responses": dict(sorted(self.responses.items())),
            "faults_injected": self.faults_injected,
            "faults_by_mode": dict(sorted(self.faults_by_mode.items())),
            "dropped_connections": self.dropped_connections,
            "rate_limited": self.rate_limited,
            "credits_charged": self.credits_charged,
            "renders": self.renders,
            "render_cache_hits": self.render_cache_hits,
            "image_fetches": self.image_fetches,
        }
