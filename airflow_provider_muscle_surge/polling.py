"""When to poll a running request, and what each status answer means: shared by every waiter.

The sync hook, the trigger (through the async hook) and the benchmarks drive the same
:class:`Watch`; they differ only in how they sleep and fetch. That is how "no polling loop is
written twice" holds while one side is blocking and the other is asyncio.

Why an adaptive schedule: a muscle-surge job takes ~45 s and the official SDK polls every
1.0 s, i.e. ~46 status calls to learn one answer. Nearly all of them land where the job cannot
be done yet. :class:`PollSchedule` polls sparsely while completion is unlikely, densely in a
window around the model's typical render time, then backs off geometrically on long tails up
to a ceiling (which bounds the worst detection delay). Jitter keeps thousands of jobs from
polling in lockstep.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from airflow_provider_muscle_surge.contract import (
    DEFAULT_TYPICAL_RENDER_SECONDS,
    TYPICAL_RENDER_SECONDS,
    RequestStatus,
    live_status,
)
from airflow_provider_muscle_surge.exceptions import InferenceTimeout


@dataclass(frozen=True)
class PollSchedule:
    """Seconds to wait before the next status call, as a function of time since submit.

    All fields are plain numbers so a schedule travels in trigger kwargs (``to_dict``).
    ``fixed_interval`` turns it into the classic fixed cadence (the SDK's is 1.0).
    """

    expected_seconds: float = TYPICAL_RENDER_SECONDS["muscle-surge"]
    #: Half-width of the dense window around ``expected_seconds``; default 10 % of it.
    spread_seconds: float | None = None
    dense_interval: float = 0.9
    #: No wait is ever longer: bounds the detection delay of very long jobs.
    max_interval: float = 15.0
    #: The first call comes early, because failures (bad image, content block) surface fast.
    first_poll_seconds: float | None = None
    backoff_factor: float = 1.5
    jitter: float = 0.1
    fixed_interval: float | None = None

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> PollSchedule:
        expected = TYPICAL_RENDER_SECONDS.get(model, DEFAULT_TYPICAL_RENDER_SECONDS)
        return cls(**{"expected_seconds": expected, **overrides})

    @classmethod
    def fixed(cls, interval: float) -> PollSchedule:
        return cls(fixed_interval=interval, jitter=0.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PollSchedule:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def scaled(self, factor: float) -> PollSchedule:
        """The same shape on a faster or slower clock (benchmarks accelerate time)."""
        scale = (
            "expected_seconds",
            "spread_seconds",
            "dense_interval",
            "max_interval",
            "first_poll_seconds",
            "fixed_interval",
        )
        return replace(self, **{k: getattr(self, k) * factor for k in scale if getattr(self, k) is not None})

    def delay(self, elapsed: float, previous_delay: float | None = None, rng: random.Random | None = None) -> float:
        """Wait before the next call, given seconds since submit and the previous wait."""
        base = self._base_delay(elapsed, previous_delay)
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.01, base)

    def _base_delay(self, elapsed: float, previous_delay: float | None) -> float:
        if self.fixed_interval is not None:
            return self.fixed_interval
        spread = self.spread_seconds if self.spread_seconds is not None else 0.1 * self.expected_seconds
        window_start = self.expected_seconds - spread
        window_end = self.expected_seconds + spread
        first = self.first_poll_seconds if self.first_poll_seconds is not None else 0.33 * self.expected_seconds
        if previous_delay is None and elapsed < first:
            return first - elapsed
        # A jittered approach step may land up to ``jitter`` of itself short of the window start:
        # count that as arrived, instead of paying one more status call to cover the last few tenths.
        slack = self.jitter * previous_delay if previous_delay else 0.0
        if elapsed + slack < window_start:
            # Sparse approach: land exactly on the window start in steps no longer than the ceiling.
            return min(self.max_interval, window_start - elapsed)
        if elapsed < window_end:
            return self.dense_interval
        grown = (previous_delay or self.dense_interval) * self.backoff_factor
        return min(self.max_interval, max(self.dense_interval, grown))


@dataclass
class Step:
    """What a waiter does next: sleep ``delay`` seconds, or stop with ``status``."""

    status: RequestStatus
    changed: bool
    delay: float | None = None
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.delay is None


@dataclass
class Watch:
    """The state of one wait, without I/O: feed it status bodies, it says sleep or stop.

    ``deadline`` is absolute (epoch seconds) so a trigger that is restarted on another
    triggerer keeps the same clock. When the deadline comes, the waiter sleeps exactly up to it
    and polls once more before :class:`InferenceTimeout`: a job that finished in the last
    interval is not reported as timed out.
    """

    request_id: str
    submitted_at: float
    deadline: float
    schedule: PollSchedule
    last_status: RequestStatus | None = None
    last_delay: float | None = None
    polls: int = 0

    def step(self, body: Any, now: float | None = None) -> Step:
        """Interpret one status body. Raises ``InferenceFailed`` (FAILED) or ``InferenceTimeout``."""
        now = time.time() if now is None else now
        self.polls += 1
        status = live_status(body, self.request_id)
        changed = status is not self.last_status
        self.last_status = status
        if status is RequestStatus.COMPLETED:
            return Step(status, changed, None, dict(body))
        remaining = self.deadline - now
        if remaining <= 0:
            raise InferenceTimeout(self.request_id, now - self.submitted_at, status.value)
        delay = min(self.schedule.delay(now - self.submitted_at, self.last_delay), remaining)
        self.last_delay = delay
        return Step(status, changed, delay, dict(body))

    def first_delay(self, now: float | None = None) -> float:
        """Wait before the first call: none is made while the job cannot plausibly be done."""
        now = time.time() if now is None else now
        remaining = self.deadline - now
        if remaining <= 0:
            return 0.0
        delay = min(self.schedule.delay(now - self.submitted_at), remaining)
        self.last_delay = delay
        return delay

    def elapsed(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.submitted_at
