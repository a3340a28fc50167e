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
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from airflow_provider_muscle_surge.checks import at_least, finite_number, positive_seconds
from airflow_provider_muscle_surge.contract import RequestStatus, live_status
from airflow_provider_muscle_surge.exceptions import InferenceTimeout, InvalidParameter
from airflow_provider_muscle_surge.models import typical_render_seconds
from airflow_provider_muscle_surge.models.muscle_surge import MUSCLE_SURGE

#: The shortest wait between two status calls a user may ask for (``poll_interval``, the
#: schedule's ``dense_interval``, ``max_interval`` and ``fixed_interval``). Without a floor, a 0
#: turns a wait into a busy loop (~75 status calls a second) against a per-key rate limit. It is
#: not higher because the emulator-backed tests and demos run 1-second jobs on 0.2 s polls.
MIN_POLL_INTERVAL = 0.2
#: Jitter is a fraction of each wait; at 1 or more a wait could shrink to nothing.
MAX_JITTER = 0.5


@dataclass(frozen=True)
class PollSchedule:
    """Seconds to wait before the next status call, as a function of time since submit.

    All fields are plain numbers so a schedule travels in trigger kwargs (``to_dict``).
    ``fixed_interval`` turns it into the classic fixed cadence (the SDK's is 1.0).
    """

    expected_seconds: float = typical_render_seconds(MUSCLE_SURGE)
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
        return cls(**{"expected_seconds": typical_render_seconds(model), **overrides})

    @classmethod
    def checked(cls, model: str, overrides: Mapping[str, Any] | None = None, /) -> PollSchedule:
        """``for_model`` for user-supplied overrides: every field checked, then the whole schedule.

        Callers that merge several layers (the connection's ``extra.poll`` under an operator's
        ``poll_schedule``) check each layer with :func:`validate_overrides` first, so an error
        names where the value came from; this final check catches combinations that are only
        wrong together (an operator's ``max_interval`` below the connection's ``dense_interval``).
        """
        checked = validate_overrides(overrides or {})
        return cls.for_model(model, **checked)

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


# --- checking user-supplied settings ------------------------------------------------------------
def check_interval(field: str, value: Any) -> float:
    """A wait between status calls: a finite number of seconds, at least :data:`MIN_POLL_INTERVAL`."""
    return at_least(
        MIN_POLL_INTERVAL, f"of seconds, at least {MIN_POLL_INTERVAL:g} (a smaller one floods the status endpoint)"
    )(field, value)


def check_timeout(field: str, value: Any) -> float:
    """How long to wait, in seconds: positive and finite (a ``timedelta`` is accepted too).

    Zero or less would give up before the first look, and NaN or infinity would make every
    deadline comparison false: the task would wait until Airflow killed it.
    """
    from datetime import timedelta

    if isinstance(value, timedelta):
        value = value.total_seconds()
    return positive_seconds(field, value)


#: A field check: takes the field's name (for the message) and the value, returns the value to use.
_Check = Callable[[str, Any], Any]


def _optional(check: _Check) -> _Check:
    def optional(field: str, value: Any) -> float | None:
        return None if value is None else check(field, value)

    return optional


def _jitter(field: str, value: Any) -> float:
    rule = f"a fraction from 0 to {MAX_JITTER:g} (each wait varies by up to that share)"
    number = finite_number(field, value, rule)
    if not 0 <= number <= MAX_JITTER:
        raise InvalidParameter(field, value, rule)
    return number


#: How each ``PollSchedule`` field is checked; ``None`` is allowed only where the field defaults to it.
_FIELD_CHECKS: dict[str, _Check] = {
    "expected_seconds": positive_seconds,
    "spread_seconds": _optional(at_least(0.0, "of seconds, 0 or more")),
    "dense_interval": check_interval,
    "max_interval": check_interval,
    "first_poll_seconds": _optional(at_least(0.0, "of seconds, 0 or more (0: look at once)")),
    "backoff_factor": at_least(1.0, "of 1 or more (each wait after the window grows by this factor)"),
    "jitter": _jitter,
    "fixed_interval": _optional(check_interval),
}


def validate_overrides(overrides: Any, *, source: str = "poll_schedule") -> dict[str, Any]:
    """Check ``PollSchedule`` overrides as a user wrote them; return them as numbers.

    Used for an operator's or sensor's ``poll_schedule`` and for a connection's ``extra.poll``
    (``source="extra.poll"``), so both refuse the same things with the same words, before
    anything is submitted. An unknown key is refused rather than dropped: a misspelt
    ``dense_intreval`` would otherwise be ignored silently and the default used. Fields are
    checked one by one, then together on the schedule they make (defaults filled in):
    ``max_interval`` below ``dense_interval`` would cap the dense polls at the ceiling.
    """
    if not isinstance(overrides, Mapping):
        raise InvalidParameter(source, overrides, "a dict of PollSchedule fields")
    checked: dict[str, Any] = {}
    for key, value in overrides.items():
        check = _FIELD_CHECKS.get(key) if isinstance(key, str) else None
        if check is None:
            raise InvalidParameter(
                f"{source}.{key}", value, f"not a PollSchedule field; valid fields: {', '.join(sorted(_FIELD_CHECKS))}"
            )
        checked[key] = check(f"{source}.{key}", value)
    schedule = PollSchedule(**checked)
    if schedule.max_interval < schedule.dense_interval:
        field = "max_interval" if "max_interval" in checked else "dense_interval"
        raise InvalidParameter(
            f"{source}.{field}",
            getattr(schedule, field),
            f"max_interval ({schedule.max_interval:g}) must be at least dense_interval ({schedule.dense_interval:g})",
        )
    return checked


@dataclass
class Step:
    """What a waiter does next: sleep ``delay`` seconds, or stop with ``status``."""

    status: RequestStatus
    changed: bool
    delay: float | None = None

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
            return Step(status, changed, None)
        remaining = self.deadline - now
        if remaining <= 0:
            raise InferenceTimeout(self.request_id, now - self.submitted_at, status.value)
        delay = min(self.schedule.delay(now - self.submitted_at, self.last_delay), remaining)
        self.last_delay = delay
        return Step(status, changed, delay)

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
