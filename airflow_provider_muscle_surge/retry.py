"""How one HTTP call is retried: the policy both hooks (sync and async) hand to tenacity.

Why our own wait function: tenacity's exponential-with-jitter is right for 5xx and dropped
connections, but a 429 comes with the server's own answer to "how long?" (``Retry-After`` or
Segmind's ``x-rate-limit-reset-at-utc``). Retrying sooner only earns another 429 and burns the
rate budget of every other task on the same key, so we wait what the server asks (capped), plus
the jittered exponential when it refuses again (many tasks contend for the key), and fall back to
the jittered exponential alone when it does not say.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from airflow_provider_muscle_surge.checks import positive_seconds
from airflow_provider_muscle_surge.exceptions import InvalidParameter, RateLimited, SegmindError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Never start an attempt with less time than this: it could not even connect.
MIN_ATTEMPT_SECONDS = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one call. Configurable from the connection's extra (same names)."""

    max_retries: int = 6
    #: Total time one call may spend retrying (waits included): the task never hangs on a dead API.
    max_retry_seconds: float = 120.0
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    #: Cap on a server-given wait, so a bogus far-future reset time cannot park a task for hours.
    max_retry_after: float = 60.0

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> RetryPolicy:
        """The policy a connection's extra asks for; a bad value is refused naming the field."""
        defaults = cls()
        seconds = {
            name: seconds_from_extra(extra, name, getattr(defaults, name))
            for name in ("max_retry_seconds", "initial_backoff", "max_backoff", "max_retry_after")
        }
        retries = extra.get("max_retries")
        if retries in (None, ""):
            retries = defaults.max_retries
        elif isinstance(retries, bool) or not str(retries).strip().isdigit() or int(str(retries)) > 100:
            raise InvalidParameter("extra.max_retries", retries, "a whole number from 0 to 100")
        return cls(max_retries=int(retries), **seconds)

    def call(
        self,
        fn: Callable[[float], T],
        *,
        per_attempt: float,
        until: float | None = None,
        resend: bool = True,
        sleep: Callable[[float], None] | None = None,
    ) -> T:
        """Run ``fn(limit)``; retry it per this policy only once it failed retryably.

        ``limit`` is the total time the attempt may take: ``per_attempt``, cut to what is left of
        the call's whole budget (``max_retry_seconds`` from the first attempt, and never past
        ``until``, an epoch time such as a trigger's deadline). Waits between attempts count too,
        so the whole call ends within the budget. ``resend=False`` (a paid submit) never repeats an
        attempt whose outcome is unknown (the request may have been acted on); it raises instead.

        Tenacity's bookkeeping is only built for the rare call that needs it, not for every status
        poll of a triggerer holding thousands of jobs. ``sleep`` replaces ``time.sleep`` (tests record it).
        """
        budget = _Budget(self, per_attempt, until)
        try:
            return fn(budget.next_limit())
        except SegmindError as err:
            if not _worth_retrying(err, resend):
                raise
            first_failure = err
        kwargs = self._tenacity_kwargs(budget, resend) | ({"sleep": sleep} if sleep else {})
        return Retrying(**kwargs)(_replay(first_failure, lambda: fn(budget.next_limit())))

    async def acall(
        self,
        fn: Callable[[float], Awaitable[T]],
        *,
        per_attempt: float,
        until: float | None = None,
        resend: bool = True,
    ) -> T:
        """The asyncio twin of :meth:`call`, with the same policy and budget."""
        budget = _Budget(self, per_attempt, until)
        try:
            return await fn(budget.next_limit())
        except SegmindError as err:
            if not _worth_retrying(err, resend):
                raise
            first_failure = err

        replayed = _replay(first_failure, lambda: fn(budget.next_limit()))

        async def attempt() -> T:
            return await replayed()

        return await AsyncRetrying(**self._tenacity_kwargs(budget, resend))(attempt)

    def _tenacity_kwargs(self, budget: _Budget, resend: bool) -> dict[str, Any]:
        """Keyword arguments for ``tenacity.Retrying`` *and* ``tenacity.AsyncRetrying``."""
        return {
            "retry": retry_if_exception(lambda e: isinstance(e, SegmindError) and _worth_retrying(e, resend)),
            "stop": stop_after_attempt(self.max_retries + 1) | budget.stop,
            "wait": self.wait_seconds,
            "before_sleep": _log_retry,
            "reraise": True,
        }

    def wait_seconds(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = wait_random_exponential(multiplier=self.initial_backoff, max=self.max_backoff)
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            floor = min(exc.retry_after, self.max_retry_after)
            if state.attempt_number == 1:
                # A little jitter on top, so tasks released at the same reset do not collide again.
                return floor + random.uniform(0, 0.25)
            # Refused again: others are contending for the same key, and the server's wait is only
            # "until the next free slot", which every contender is told. Waiting just that makes them
            # all retry together and win one slot between them, each 429 spending the key's budget;
            # the exponential jitter on top spreads them out, and the server's wait stays the floor.
            return floor + backoff(state)
        return backoff(state)


def seconds_from_extra(extra: Mapping[str, Any], name: str, default: float) -> float:
    """``extra[name]`` as a positive, finite number of seconds (``default`` when unset)."""
    value = extra.get(name)
    return default if value in (None, "") else positive_seconds(f"extra.{name}", value)


def _worth_retrying(err: BaseException, resend: bool) -> bool:
    return isinstance(err, SegmindError) and err.retryable and (resend or not err.outcome_unknown)


class _Budget:
    """The time one call (all its attempts and waits) may take, on the monotonic clock."""

    MIN_ATTEMPT = MIN_ATTEMPT_SECONDS

    def __init__(self, policy: RetryPolicy, per_attempt: float, until: float | None) -> None:
        total = policy.max_retry_seconds
        if until is not None:
            total = min(total, until - time.time())
        self.per_attempt = per_attempt
        self.until = until
        self.end = time.monotonic() + max(total, self.MIN_ATTEMPT)
        self.first = True

    def first_limit(self) -> float:
        """The first attempt gets its whole limit (a v1 render may take 600 s while retries are budgeted
        at 120), cut only by ``until``; retries then share what is left of the budget."""
        self.first = False
        if self.until is None:
            return self.per_attempt
        return max(self.MIN_ATTEMPT, min(self.per_attempt, self.until - time.time()))

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def next_limit(self) -> float:
        if self.first:
            return self.first_limit()
        return max(self.MIN_ATTEMPT, min(self.per_attempt, self.remaining()))

    def stop(self, state: RetryCallState) -> bool:
        """Stop when the coming wait plus a minimal attempt would not fit in what is left."""
        return self.remaining() - (state.upcoming_sleep or 0.0) < self.MIN_ATTEMPT


def _replay(failure: SegmindError, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn``, except that its first call raises the failure already seen: tenacity then counts it as
    attempt 1 and waits as the policy says (e.g. the 429's Retry-After) before really calling ``fn`` again."""
    pending = [failure]

    def attempt() -> T:
        if pending:
            raise pending.pop()
        return fn()

    return attempt


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("Segmind call failed (attempt %d): %s; retrying in %.1fs", state.attempt_number, exc, wait)


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The server's wait hint in seconds, from whichever rate-limit header it sent.

    Segmind sends ``x-rate-limit-reset-at-utc`` (an absolute time, the more precise of the two);
    standard servers send ``Retry-After`` (seconds or an HTTP date). ``None`` when neither parses.
    """
    now = now or datetime.now(timezone.utc)
    lowered = {k.lower(): v for k, v in headers.items()}
    reset_at = lowered.get("x-rate-limit-reset-at-utc")
    if reset_at:
        when = _parse_time(reset_at)
        if when is not None:
            return _seconds_until(when, now)
    retry_after = lowered.get("retry-after")
    if retry_after:
        try:
            seconds = float(retry_after)
            if seconds == seconds and seconds != float("inf"):  # not NaN, not infinite
                return max(0.0, seconds)
        except ValueError:
            when = _parse_time(retry_after)
            if when is not None:
                return _seconds_until(when, now)
    return None


def _seconds_until(when: datetime, now: datetime) -> float | None:
    try:
        return max(0.0, (when - now).total_seconds())
    except (OverflowError, TypeError):
        return None


def _parse_time(value: str) -> datetime | None:
    value = value.strip()
    try:
        if value.replace(".", "", 1).isdigit():  # epoch seconds
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        # OSError: an absurd epoch value (year 300000) fails in the platform's time conversion.
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError, OSError):
            return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
