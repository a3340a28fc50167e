"""Retrying one call: reading the server's wait hint, and the policy both hooks hand to tenacity.

The policy runs here under a real ``tenacity.Retrying`` with a recording ``sleep``, so the
waits asserted are the ones a hook would actually sleep, without spending the time.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from tenacity import Future, RetryCallState

from airflow_provider_muscle_surge.exceptions import (
    AuthenticationError,
    BadRequest,
    InferenceFailed,
    RateLimited,
    ServerError,
    TransportError,
)
from airflow_provider_muscle_surge.retry import RetryPolicy, retry_after_seconds

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


# --- retry_after_seconds -------------------------------------------------------------------------------
#: Each form of the hint a server may send, and the seconds it means at ``NOW``.
HINTS = {
    "retry-after-seconds": ({"Retry-After": "7"}, 7.0),
    "retry-after-fractional-seconds": ({"Retry-After": "1.5"}, 1.5),
    "retry-after-http-date": ({"Retry-After": "Sun, 01 Jun 2025 12:00:30 GMT"}, 30.0),
    "reset-iso-z-milliseconds": ({"x-rate-limit-reset-at-utc": "2025-06-01T12:00:02.250Z"}, 2.25),
    "reset-iso-offset": ({"x-rate-limit-reset-at-utc": "2025-06-01T14:00:05+02:00"}, 5.0),
    "reset-iso-without-zone-is-utc": ({"x-rate-limit-reset-at-utc": "2025-06-01T12:00:04"}, 4.0),
    "reset-name-in-any-case": ({"X-Rate-Limit-Reset-At-UTC": "2025-06-01T12:00:03Z"}, 3.0),
    "retry-after-name-in-any-case": ({"RETRY-AFTER": "3"}, 3.0),
    "reset-preferred-over-retry-after": (
        {"Retry-After": "60", "x-rate-limit-reset-at-utc": "2025-06-01T12:00:02Z"},
        2.0,
    ),
    "retry-after-when-reset-does-not-parse": ({"Retry-After": "4", "x-rate-limit-reset-at-utc": "soon-ish"}, 4.0),
    "reset-in-the-past-is-no-wait": ({"x-rate-limit-reset-at-utc": (NOW - timedelta(seconds=30)).isoformat()}, 0.0),
    "negative-retry-after-is-no-wait": ({"Retry-After": "-5"}, 0.0),
}


@pytest.mark.parametrize(("headers", "seconds"), list(HINTS.values()), ids=list(HINTS))
def test_retry_after_seconds_reads_each_form_of_the_hint(headers, seconds):
    assert retry_after_seconds(headers, NOW) == seconds


@pytest.mark.parametrize("epoch", [str(int(NOW.timestamp()) + 9), f"{NOW.timestamp() + 9:.3f}"])
def test_segmind_reset_header_as_epoch_seconds(epoch):
    assert retry_after_seconds({"x-rate-limit-reset-at-utc": epoch}, NOW) == pytest.approx(9.0)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Retry-After": "in a while"},
        {"Retry-After": ""},
        {"x-rate-limit-reset-at-utc": "tomorrow"},
        {"x-rate-limit-reset-at-utc": "99999999999999999999"},
        {"Content-Type": "application/json"},
    ],
)
def test_garbage_or_missing_headers_give_none(headers):
    assert retry_after_seconds(headers, NOW) is None


def test_without_an_explicit_clock_the_current_time_is_used():
    soon = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
    assert 25.0 < retry_after_seconds({"x-rate-limit-reset-at-utc": soon}) <= 30.0


# --- RetryPolicy.from_extra -----------------------------------------------------------------------------
def test_policy_defaults_when_the_extra_says_nothing():
    assert RetryPolicy.from_extra({}) == RetryPolicy()
    assert RetryPolicy() == RetryPolicy(
        max_retries=6, max_retry_seconds=120.0, initial_backoff=1.0, max_backoff=30.0, max_retry_after=60.0
    )


def test_policy_fields_are_read_from_the_extra_by_name_and_coerced():
    extra = {
        "max_retries": "3",
        "max_retry_seconds": 5,
        "initial_backoff": "0.01",
        "max_backoff": 0.05,
        "max_retry_after": "2",
    }
    policy = RetryPolicy.from_extra(extra)
    assert policy == RetryPolicy(
        max_retries=3, max_retry_seconds=5.0, initial_backoff=0.01, max_backoff=0.05, max_retry_after=2.0
    )
    assert isinstance(policy.max_retries, int)
    assert isinstance(policy.max_retry_seconds, float)


def test_policy_ignores_unrelated_keys_and_empty_values():
    policy = RetryPolicy.from_extra({"timeout": 10, "upload_url": "x", "max_retries": "", "max_backoff": None})
    assert policy == RetryPolicy()


# --- the policy under tenacity ------------------------------------------------------------------------
class Flaky:
    """A call that raises the given exceptions in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def run(policy: RetryPolicy, call: Flaky, *, resend: bool = True) -> tuple[Any, list[float]]:
    """Run ``call`` under the policy; return its result and the waits tenacity asked to sleep."""
    slept: list[float] = []
    result = policy.call(lambda limit: call(), per_attempt=30.0, resend=resend, sleep=slept.append)
    return result, slept


def rate_limited(retry_after: float | None) -> RateLimited:
    return RateLimited("HTTP 429", retry_after=retry_after, status_code=429)


def test_a_rate_limited_call_waits_what_the_server_asked_plus_a_little_jitter():
    result, slept = run(RetryPolicy(), Flaky(rate_limited(2.0)))
    assert result == "ok"
    assert len(slept) == 1
    assert 2.0 <= slept[0] <= 2.25


def test_a_call_refused_again_adds_growing_jitter_to_the_servers_wait():
    # The server tells every contender the same "next free slot": waiting only that, they would
    # all come back together again. Its wait stays the floor; the exponential jitter spreads them.
    policy = RetryPolicy(max_retries=8, initial_backoff=0.5, max_backoff=3.0, max_retry_seconds=1000)
    result, slept = run(policy, Flaky(*[rate_limited(0.2) for _ in range(8)]))
    assert result == "ok"
    assert 0.2 <= slept[0] <= 0.45
    for attempt, wait in enumerate(slept[1:], start=2):
        assert 0.2 <= wait <= 0.2 + min(3.0, 0.5 * 2 ** (attempt - 1)), (attempt, wait)
    assert len(set(slept[1:])) > 1, "jittered, not fixed"


def test_many_contenders_on_one_key_need_far_fewer_attempts_than_waiting_only_what_the_server_says():
    """40 callers, one key that admits 3 calls a second: who wins each slot, simulated with the
    policy's own waits. The unluckiest caller's attempts are what exhausts ``max_retries``."""

    def worst_caller_attempts(policy: RetryPolicy, *, spread: bool, seed: int) -> int:
        rng = random.Random(seed)
        random_state = random.getstate()
        random.seed(seed)
        try:
            next_slot, attempts_of = 0.0, {}
            queue = [(rng.uniform(0, 0.1), caller, 1) for caller in range(40)]
            heapq.heapify(queue)
            while queue:
                now, caller, attempt = heapq.heappop(queue)
                if now >= next_slot:
                    next_slot, attempts_of[caller] = now + 1 / 3, attempt
                    continue
                state = RetryCallState(None, None, (), {})
                state.attempt_number = attempt
                state.outcome = Future.construct(attempt, rate_limited(next_slot - now), True)
                wait = policy.wait_seconds(state) if spread else (next_slot - now) + random.uniform(0, 0.25)
                heapq.heappush(queue, (now + wait, caller, attempt + 1))
            return max(attempts_of.values())
        finally:
            random.setstate(random_state)

    policy = RetryPolicy(initial_backoff=0.2, max_backoff=2.0)
    herd = max(worst_caller_attempts(policy, spread=False, seed=s) for s in range(3))
    spread = max(worst_caller_attempts(policy, spread=True, seed=s) for s in range(3))
    assert herd >= 40, "waiting only the server's time, the last caller tries once per slot given away"
    assert spread <= herd * 0.6, (spread, herd)


def test_the_servers_wait_is_capped_by_max_retry_after():
    _, slept = run(RetryPolicy(max_retry_after=5.0, max_retry_seconds=600), Flaky(rate_limited(3600.0)))
    assert 5.0 <= slept[0] <= 5.25


def test_a_rate_limit_without_a_hint_falls_back_to_exponential_jitter():
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=100.0)
    _, slept = run(policy, Flaky(rate_limited(None), rate_limited(None), rate_limited(None)))
    # Full jitter: attempt n waits uniformly in [0, initial * 2**(n-1)].
    assert [0 <= s <= 0.5 * 2**i for i, s in enumerate(slept)] == [True, True, True]


def test_server_errors_back_off_exponentially_up_to_max_backoff():
    policy = RetryPolicy(max_retries=8, initial_backoff=1.0, max_backoff=4.0, max_retry_seconds=1000)
    errors = [ServerError("HTTP 503", status_code=503) for _ in range(8)]
    _, slept = run(policy, Flaky(*errors))
    assert len(slept) == 8
    for attempt, wait in enumerate(slept, start=1):
        assert 0 <= wait <= min(4.0, 2 ** (attempt - 1))


def test_exponential_waits_are_jittered_not_fixed():
    policy = RetryPolicy(max_retries=20, initial_backoff=1.0, max_backoff=1.0, max_retry_seconds=1000)
    _, slept = run(policy, Flaky(*[TransportError("reset") for _ in range(20)]))
    assert len(set(slept)) > 1


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("HTTP 401", status_code=401),
        InferenceFailed("FAILED", status_code=422),
        ValueError("not a Segmind error at all"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_errors_are_raised_at_once_without_waiting(error):
    call = Flaky(error)
    with pytest.raises(type(error)):
        run(RetryPolicy(), call)
    assert call.calls == 1


def test_attempts_stop_after_max_retries_and_the_last_error_itself_is_raised():
    call = Flaky(*[ServerError(f"HTTP 502 #{i}", status_code=502) for i in range(10)])
    with pytest.raises(ServerError, match="#3"):
        run(RetryPolicy(max_retries=3, initial_backoff=0.0), call)
    assert call.calls == 4


def test_a_server_wait_beyond_the_retry_budget_gives_up_instead_of_sleeping():
    call = Flaky(rate_limited(30.0))
    with pytest.raises(RateLimited):
        run(RetryPolicy(max_retry_seconds=5.0, max_retry_after=60.0), call)
    assert call.calls == 1


def test_each_retry_is_logged_with_the_attempt_and_the_wait(caplog):
    caplog.set_level(logging.WARNING, logger="airflow_provider_muscle_surge.retry")
    run(RetryPolicy(), Flaky(rate_limited(1.0)))
    (record,) = caplog.records
    assert "attempt 1" in record.getMessage()
    assert "HTTP 429" in record.getMessage()
    assert "retrying in 1." in record.getMessage()


# --- RetryPolicy.call / acall: tenacity only after a retryable failure --------------------------------
def _flaky(failures: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ServerError("Segmind server error (HTTP 502)", status_code=502)
        return "ok"

    return calls, fn


QUICK = RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.002)


def test_call_counts_the_first_failure_as_attempt_one_of_the_policy() -> None:
    calls, fn = _flaky(failures=2)
    assert QUICK.call(lambda limit: fn(), per_attempt=5.0) == "ok"
    assert len(calls) == 3


def test_call_gives_up_after_max_retries_plus_one_attempts() -> None:
    calls, fn = _flaky(failures=10)
    with pytest.raises(ServerError):
        QUICK.call(lambda limit: fn(), per_attempt=5.0)
    assert len(calls) == QUICK.max_retries + 1


def test_call_does_not_retry_a_permanent_error() -> None:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        raise BadRequest("Segmind rejected the request (HTTP 400)", status_code=400)

    with pytest.raises(BadRequest):
        QUICK.call(lambda limit: fn(), per_attempt=5.0)
    assert len(calls) == 1


async def test_acall_retries_like_call() -> None:
    calls, fn = _flaky(failures=2)

    async def afn(limit: float) -> str:
        return fn()

    assert await QUICK.acall(afn, per_attempt=5.0) == "ok"
    assert len(calls) == 3


async def test_acall_gives_up_after_max_retries_plus_one_attempts() -> None:
    calls, fn = _flaky(failures=10)

    async def afn(limit: float) -> str:
        return fn()

    with pytest.raises(ServerError):
        await QUICK.acall(afn, per_attempt=5.0)
    assert len(calls) == QUICK.max_retries + 1


# --- never resend a call whose outcome is unknown; the budget covers attempts and waits -----------------
def test_a_call_that_must_not_be_resent_is_not_retried_when_its_outcome_is_unknown():
    call = Flaky(TransportError("reset after sending", outcome_unknown=True))
    with pytest.raises(TransportError):
        run(RetryPolicy(), call, resend=False)
    assert call.calls == 1


@pytest.mark.parametrize(
    "error",
    [
        TransportError("connection refused", outcome_unknown=False),
        rate_limited(0.0),
        ServerError("HTTP 503", status_code=503, outcome_unknown=False),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_call_that_must_not_be_resent_is_still_retried_when_it_was_not_accepted(error):
    result, _ = run(RetryPolicy(initial_backoff=0.001), Flaky(error), resend=False)
    assert result == "ok"


def test_every_attempt_gets_only_what_is_left_of_the_calls_budget():
    import time

    limits: list[float] = []

    def slow_failure(limit: float) -> str:
        limits.append(limit)
        time.sleep(limit)  # an answer that drips until the attempt's limit
        raise TransportError("cut at the limit", outcome_unknown=False)

    policy = RetryPolicy(max_retries=50, max_retry_seconds=1.5, initial_backoff=0.001)
    with pytest.raises(TransportError):
        policy.call(slow_failure, per_attempt=1.0)
    assert limits[0] == 1.0
    assert sum(limits) <= 1.5 + 0.5  # the budget, plus at most one minimal attempt


def test_a_deadline_already_past_leaves_one_minimal_attempt_and_no_retry():
    import time

    limits: list[float] = []

    def failing(limit: float) -> str:
        limits.append(limit)
        raise TransportError("refused", outcome_unknown=False)

    with pytest.raises(TransportError):
        RetryPolicy().call(failing, per_attempt=30.0, until=time.time() - 10)
    assert limits == [0.5]


@pytest.mark.parametrize(
    "headers",
    [
        {"x-rate-limit-reset-at-utc": "99999999999999"},  # year ~3 million: OSError/OverflowError inside
        {"x-rate-limit-reset-at-utc": "9" * 400},
        {"Retry-After": "inf"},
        {"Retry-After": "nan"},
        {"Retry-After": "Sun, 01 Jun 99999 12:00:30 GMT"},
    ],
)
def test_absurd_rate_limit_headers_give_no_hint_instead_of_an_exception(headers):
    assert retry_after_seconds(headers, NOW) is None


def test_the_budget_always_covers_one_whole_attempt():
    """A v1 render's 600 s attempt is not cut to the 120 s retry budget (it would be billed and lost)."""
    limits: list[float] = []

    def once(limit: float) -> str:
        limits.append(limit)
        return "ok"

    RetryPolicy(max_retry_seconds=120).call(once, per_attempt=600.0)
    assert limits == [pytest.approx(600.0, abs=1.0)]
