"""How one HTTP call is retried: the policy both hooks (sync and async) hand to tenacity.

Why our own wait function: tenacity's exponential-with-jitter is right for 5xx and dropped
connections, but a 429 comes with the server's own answer to "how long?" (``Retry-After`` or
Segmind's ``x-rate-limit-reset-at-utc``). Retrying sooner only earns another 429 and burns the
rate budget of every other task on the same key, so we wait what the server asks (capped), and
fall back to the jittered exponential when it does not say.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from airflow_provider_muscle_surge.exceptions import RateLimited, SegmindError

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        names = {f.name: f.type for f in fields(cls)}
        given = {k: extra[k] for k in names if extra.get(k) not in (None, "")}
        return cls(**{k: (int(v) if k == "max_retries" else float(v)) for k, v in given.items()})

    def tenacity_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``tenacity.Retrying`` *and* ``tenacity.AsyncRetrying``."""
        return {
            "retry": retry_if_exception(lambda e: isinstance(e, SegmindError) and e.retryable),
            "stop": stop_after_attempt(self.max_retries + 1) | stop_before_delay(self.max_retry_seconds),
            "wait": self.wait_seconds,
            "before_sleep": _log_retry,
            "reraise": True,
        }

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; retry it per this policy only once it failed retryably.

        Tenacity's bookkeeping (a retry object and call state per call) is only built for the rare
        call that needs it, not for every status poll of a triggerer holding thousands of jobs.
        """
        try:
            return fn()
        except SegmindError as err:
            if not err.retryable:
                raise
            first_failure = err
        return Retrying(**self.tenacity_kwargs())(_replay(first_failure, fn))

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """The asyncio twin of :meth:`call`, with the same policy."""
        try:
            return await fn()
        except SegmindError as err:
            if not err.retryable:
                raise
            first_failure = err

        replayed = _replay(first_failure, fn)

        async def attempt() -> T:
            return await replayed()

        return await AsyncRetrying(**self.tenacity_kwargs())(attempt)

    def wait_seconds(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            # A little jitter on top, so many tasks released at the same reset do not collide again.
            return min(exc.retry_after, self.max_retry_after) + random.uniform(0, 0.25)
        return wait_random_exponential(multiplier=self.initial_backoff, max=self.max_backoff)(state)


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
            return max(0.0, (when - now).total_seconds())
    retry_after = lowered.get("retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            when = _parse_time(retry_after)
            if when is not None:
                return max(0.0, (when - now).total_seconds())
    return None


def _parse_time(value: str) -> datetime | None:
    value = value.strip()
    try:
        if value.replace(".", "", 1).isdigit():  # epoch seconds
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
