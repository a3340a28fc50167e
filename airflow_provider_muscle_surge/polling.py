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

Why it learns: one expected render time does not fit every job (a 360p clip renders faster
than a 1080p one, a busy service is slower). When a wait names its render class
(``PollSchedule.render_class``, set by the operator from the request body), the :class:`Watch`
places the dense window where this process has seen jobs of that class end
(:mod:`airflow_provider_muscle_surge.learning`), counts from the job's start when it saw the job
leave the queue, and reports the completion back. The first look, the dense interval, the
back-off and the ceiling are the schedule's own; explicit ``expected_seconds``,
``spread_seconds``, ``fixed_interval`` (or ``poll_interval``) win over what was learned.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from airflow_provider_muscle_surge.checks import at_least, finite_number, positive_seconds
from airflow_provider_muscle_surge.contract import RequestStatus, live_status
from airflow_provider_muscle_surge.exceptions import InferenceTimeout, InvalidParameter
from airflow_provider_muscle_surge.learning import RENDER_TIMES, RenderTimes
from airflow_provider_muscle_surge.models import typical_render_seconds
from airflow_provider_muscle_surge.models.muscle_surge import MUSCLE_SURGE

#: The shortest wait between two status calls a user may ask for (``poll_interval``, the
#: schedule's ``dense_interval``, ``max_interval`` and ``fixed_interval``). Without a floor, a 0
#: turns a wait into a busy loop (~75 status calls a second) against a per-key rate limit. It is
#: not higher because the emulator-backed tests and demos run 1-second jobs on 0.2 s polls.
MIN_POLL_INTERVAL = 0.2
#: Jitter is a fraction of each wait; at 1 or more a wait could shrink to nothing.
MAX_JITTER = 0.5
#: Fields whose explicit value fixes where the schedule polls: setting one turns learning off
#: (unless ``learn=True`` is set too: then the value is only the starting guess).
PINNED_FIELDS = ("expected_seconds", "spread_seconds", "fixed_interval")
#: Typical share of a job spent QUEUED, until the class's own queue time has been seen.
DEFAULT_QUEUE_FRACTION = 0.1
#: While a learning wait sees QUEUED, it looks again within this share of the expected time: the
#: moment the job starts places the window, so it must not be known only to within 15 s.
QUEUED_LOOK_FRACTION = 0.25


@dataclass(frozen=True)
class PollSchedule:
    """Seconds to wait before the next status call, as a function of time since submit.

    All fields are plain JSON values so a schedule travels in trigger kwargs (``to_dict``).
    ``fixed_interval`` turns it into the classic fixed cadence (the SDK's is 1.0).
    ``expected_seconds`` and ``spread_seconds`` are the starting point: a :class:`Watch` replaces
    them with what this process learned about ``render_class`` when ``learn`` is true.
    """

    expected_seconds: float = typical_render_seconds(MUSCLE_SURGE)
    #: Half-width of the dense window around ``expected_seconds``; default 10 % of it.
    spread_seconds: float | None = None
    dense_interval: float = 0.8
    #: No wait is ever longer: bounds the detection delay of very long jobs.
    max_interval: float = 15.0
    #: The first call comes early, because failures (bad image, content block) surface fast.
    first_poll_seconds: float | None = None
    backoff_factor: float = 1.5
    jitter: float = 0.1
    fixed_interval: float | None = None
    #: Use (and feed) this process's estimate for ``render_class``. False: the fixed expectation.
    learn: bool = True
    #: The model and the parameters that change its render time (``models.render_class``); set by
    #: the operator, never by users. None (the sensor, a schedule of an older version): no learning.
    render_class: str | None = None

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> PollSchedule:
        return cls(**{"expected_seconds": typical_render_seconds(model), **overrides})

    @classmethod
    def checked(
        cls, model: str, overrides: Mapping[str, Any] | None = None, /, *, render_class: str | None = None
    ) -> PollSchedule:
        """``for_model`` for user-supplied overrides: every field checked, then the whole schedule.

        Callers that merge several layers (the connection's ``extra.poll`` under an operator's
        ``poll_schedule``) check each layer with :func:`validate_overrides` first, so an error
        names where the value came from; this final check catches combinations that are only
        wrong together (an operator's ``max_interval`` below the connection's ``dense_interval``).
        """
        checked = validate_overrides(overrides or {})
        if "learn" not in checked and any(name in checked for name in PINNED_FIELDS):
            checked["learn"] = False  # the user said where to poll: that wins over learning
        return cls.for_model(model, render_class=render_class, **checked)

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
            if self.fixed_interval is None:
                base = min(base, self.max_interval)  # the ceiling holds after jitter too
        return max(0.01, base)

    def _base_delay(self, elapsed: float, previous_delay: float | None) -> float:
        if self.fixed_interval is not None:
            return self.fixed_interval
        spread = self.spread_seconds if self.spread_seconds is not None else 0.1 * self.expected_seconds
        window_start = self.expected_seconds - spread
        window_end = self.expected_seconds + spread
        # The default first look is a third of the way, but never beyond the ceiling: a learned
        # 120 s class must not leave a job that failed at once unseen for 40 s.
        first = (
            self.first_poll_seconds
            if self.first_poll_seconds is not None
            else min(0.33 * self.expected_seconds, self.max_interval)
        )
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


def _flag(field: str, value: Any) -> bool:
    # The string "false" is truthy: taken as a bool it would do the opposite of what was written.
    if not isinstance(value, bool):
        raise InvalidParameter(field, value, "True or False (a bool, not a string)")
    return value


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
    "learn": _flag,
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

    When the schedule learns (``learn`` and a ``render_class``), ``plan`` is the schedule with
    the window this process learned for the class (taken once, when the wait starts), the
    schedule's clock is moved by the job's queueing beyond the class's typical queue (``shift``),
    and a COMPLETED answer is reported to ``store``.
    """

    request_id: str
    submitted_at: float
    deadline: float
    schedule: PollSchedule
    last_status: RequestStatus | None = None
    last_delay: float | None = None
    polls: int = 0
    store: RenderTimes = field(default=RENDER_TIMES, repr=False)
    #: The schedule this wait follows: ``schedule`` with the learned window, if any.
    plan: PollSchedule = field(init=False)
    #: Seconds since submit of the last look, the last QUEUED answer and the first PROCESSING one.
    _last_look: float | None = field(default=None, init=False, repr=False)
    _queued_at: float | None = field(default=None, init=False, repr=False)
    _processing_at: float | None = field(default=None, init=False, repr=False)
    _typical_queue: float = field(default=0.0, init=False, repr=False)
    #: Seconds after submit this wait began (later than 0 when a trigger is restarted mid-wait).
    _began: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.plan = self.schedule
        self._typical_queue = DEFAULT_QUEUE_FRACTION * self.schedule.expected_seconds
        if not self.learns:
            return
        learned = self.store.estimate(self.schedule.render_class)  # type: ignore[arg-type]
        if learned is not None:
            self.plan = replace(self.schedule, expected_seconds=learned.centre, spread_seconds=learned.spread)
            # The learned times include the short queues nobody sees (a job already running at the
            # first look); only queueing beyond this share moves the window.
            self._typical_queue = DEFAULT_QUEUE_FRACTION * learned.centre

    @property
    def learns(self) -> bool:
        s = self.schedule
        return bool(s.learn and s.render_class and s.fixed_interval is None)

    def step(self, body: Any, now: float | None = None) -> Step:
        """Interpret one status body. Raises ``InferenceFailed`` (FAILED) or ``InferenceTimeout``."""
        now = time.time() if now is None else now
        self.polls += 1
        status = live_status(body, self.request_id)
        elapsed = now - self.submitted_at
        if self._began is None:
            self._began = elapsed
        previous_look, self._last_look = self._last_look, elapsed
        changed = status is not self.last_status
        if status is RequestStatus.COMPLETED:
            if self.learns:
                self._report(elapsed, previous_look)
            self.last_status = status
            return Step(status, changed, None)
        self.last_status = status
        if status is RequestStatus.QUEUED:
            self._queued_at = elapsed
        elif self._processing_at is None:
            self._processing_at = elapsed
            if self.learns and self._queued_at is not None:
                # The job started somewhere between the last two looks: the window widens by half of that.
                plan = self.plan
                spread = plan.spread_seconds if plan.spread_seconds is not None else 0.1 * plan.expected_seconds
                self.plan = replace(plan, spread_seconds=spread + (elapsed - self._queued_at) / 2)
        remaining = self.deadline - now
        if remaining <= 0:
            raise InferenceTimeout(self.request_id, now - self.submitted_at, status.value)
        delay = self.plan.delay(elapsed - self.shift(elapsed), self.last_delay)
        if status is RequestStatus.QUEUED and self.learns:
            # Look again soon enough to see when it starts: that start places the window.
            delay = min(delay, max(self.plan.dense_interval, QUEUED_LOOK_FRACTION * self.plan.expected_seconds))
        delay = min(delay, remaining)
        self.last_delay = delay
        return Step(status, changed, delay)

    def shift(self, elapsed: float) -> float:
        """Seconds the schedule's clock runs behind the submit: this job's queueing beyond the typical.

        Still QUEUED: the job cannot end before it starts, so the window moves with the queue.
        Seen leaving the queue (a QUEUED answer, then a PROCESSING one): the window is placed from
        the middle of that interval. Otherwise (the job was already running at the first look,
        or the schedule does not learn) the clock counts from the submit. Never negative: a job
        that started early is polled like any other, not earlier.
        """
        if not self.learns:
            return 0.0
        if self.last_status is RequestStatus.QUEUED:
            return max(0.0, elapsed - self._typical_queue)
        start = self.started_at
        if start is not None:
            return max(0.0, start - self._typical_queue)
        return 0.0

    @property
    def started_at(self) -> float | None:
        """Seconds after submit the job left the queue, when a QUEUED then a PROCESSING answer showed it."""
        if self._queued_at is None or self._processing_at is None or self._processing_at < self._queued_at:
            return None
        return (self._queued_at + self._processing_at) / 2

    def _report(self, elapsed: float, previous_look: float | None) -> None:
        # The job ended between the last two looks: take the middle, on the schedule's clock.
        if previous_look is None and (self._began or 0.0) > elapsed / 2:
            # Done at the first look of a wait that began late (a restarted triggerer, a re-attached
            # retry): the job ended while nobody looked, perhaps long before. Nothing is learned.
            return
        ended = (elapsed + (previous_look or 0.0)) / 2
        shift = self.shift(previous_look if previous_look is not None else elapsed)
        self.store.observe(self.schedule.render_class, ended - shift, self.started_at)  # type: ignore[arg-type]

    def first_delay(self, now: float | None = None) -> float:
        """Wait before the first call: none is made while the job cannot plausibly be done."""
        now = time.time() if now is None else now
        remaining = self.deadline - now
        if remaining <= 0:
            return 0.0
        if self._began is None:
            self._began = now - self.submitted_at
        delay = min(self.plan.delay(now - self.submitted_at), remaining)
        self.last_delay = delay
        return delay

    def elapsed(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.submitted_at
