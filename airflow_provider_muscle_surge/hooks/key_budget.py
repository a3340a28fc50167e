"""One request budget per API key in a process: status calls per second, a 429's pause, submits in flight.

Why per key and per process: Segmind rate-limits per key, and a triggerer runs thousands of
triggers with one key in one event loop. Each trigger pacing itself cannot see the others: 5,000
jobs submitted together reach their dense polling window together and would send ~5,500 status
calls a second, which saturates the loop and would be refused by the service anyway. Here every
waiter of the process that uses the same key (all triggers of a triggerer; all waits and threads
of a worker process, sync hook included) draws from one token bucket, so a burst stretches the
polling intervals instead. A 429 with a reset time seen by one waiter pauses every waiter on that
key until then, instead of each discovering it with its own refused call. Paid submits are capped
in number in flight per key (pools do not apply to tasks that submit from the triggerer).

Loop-agnostic on purpose: tests, ``asyncio.run`` in the sync hook and a triggerer each create
event loops over time in one process, so the bucket is plain arithmetic on ``time.monotonic()``
under a ``threading.Lock`` (held for microseconds, never across a wait); a waiter sleeps with its
own loop's ``asyncio.sleep`` (or ``time.sleep`` in a thread). A budget is found by a digest of
origin and key: the key itself is never stored here, and never appears in a repr or log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from airflow_provider_muscle_surge.exceptions import RateLimited, TransportError

#: Default status (and result) calls per second per key in one process. Segmind documents per-plan
#: request limits (5 RPM free, 50 RPM pro, custom for enterprise) for inference, and no figure for
#: status calls; the official SDK polls every job once a second, so one key routinely serves a few
#: status calls a second. Ten is what ten SDK waits send: enough for ~50 concurrent 45 s jobs on the
#: adaptive schedule (~9 calls each) without stretching, and a burst of thousands is stretched
#: instead of sending thousands a second. A key with a higher (enterprise) limit raises it.
DEFAULT_STATUS_CALLS_PER_SECOND = 10.0
#: Default paid submits in flight per key in one process: a v2 submit answers in well under a
#: second, so 8 in flight is still more than the documented 50 requests a minute of a pro key,
#: while a triggerer starting 5,000 zero-worker tasks does not open 5,000 connections at once.
DEFAULT_MAX_CONCURRENT_SUBMITS = 8
#: A burst is at most this many seconds' worth of tokens (at least one call): small, so calls
#: reach the service evenly and its own bucket (of up to a second's worth) is never drained first.
BURST_SECONDS = 0.25
#: When a wait is cut by the call's bound (``until``), the call still keeps this long to run:
#: the final look at a deadline happens, over budget if it must.
CALL_ROOM_SECONDS = 2.0
#: A caller that wakes from its sent slot later than the bucket's tolerance (at least this) takes a
#: new slot, up to ``MAX_RETIMES`` times: late wake-ups must not reach the service as one burst.
MIN_LATE_SECONDS = 0.05
MAX_RETIMES = 3


@dataclass
class TokenBucket:
    """Token-bucket arithmetic as reservations (GCRA): each call is given the instant it may go.

    A reservation is one subtraction and one comparison, no timer: thousands of waiters each
    sleep once until their own slot instead of waking to retry. Times are on ``time.monotonic()``.
    """

    rate: float
    burst: float = 1.0
    #: The "theoretical arrival time": when the bucket would be full again.
    tat: float = 0.0

    def reserve(self, now: float, *, not_before: float = 0.0, latest: float | None = None) -> float:
        """The instant the next call may go (never before ``now`` or ``not_before``); commits it.

        ``latest`` cuts the wait: the call goes then, over budget (the bucket still counts it, so
        the calls after it are pushed back and the average holds).
        """
        interval = 1.0 / self.rate
        start = max(now, not_before)
        at = max(start, self.tat - (self.burst - 1.0) * interval)
        if latest is not None and at > latest:
            at = max(now, latest)
        self.tat = max(self.tat, start) + interval
        return at


@dataclass
class _Ticket:
    """Where one caller is in :meth:`KeyBudget._next`."""

    rated: bool
    #: Monotonic instant by which the call goes whatever the budget says (``None``: unbounded).
    latest: float | None
    #: The pause count when the caller's slot was planned: a newer pause voids the slot.
    generation: int
    planned: bool = False
    sent: bool = False
    #: The instant the sent step let this call through (to tell a late wake-up).
    sent_at: float | None = None
    retimed: int = 0


class _Waiter(ABC):
    """One caller queued for a submit slot; ``hand`` gives it the slot (False: it is gone)."""

    @abstractmethod
    def hand(self, budget: KeyBudget) -> bool:
        """Give the slot to this caller, from whichever thread or loop releases it."""


class _LoopWaiter(_Waiter):
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()

    def hand(self, budget: KeyBudget) -> bool:
        try:
            self.loop.call_soon_threadsafe(self._deliver, budget)
        except RuntimeError:  # its loop is closed: the waiter is gone
            return False
        return True

    def _deliver(self, budget: KeyBudget) -> None:
        if self.future.cancelled():  # cancelled after the slot was handed: pass it on
            budget._release_submit()
        else:
            self.future.set_result(None)


class _ThreadWaiter(_Waiter):
    def __init__(self) -> None:
        self.event = threading.Event()

    def hand(self, budget: KeyBudget) -> bool:
        self.event.set()
        return True


class KeyBudget:
    """The budget of one (origin, key) in this process. Get it with :func:`budget_for`."""

    def __init__(self, name: str, status_rate: float, max_submits: int) -> None:
        #: A short digest of origin and key: tells budgets apart in logs without revealing the key.
        self.name = name
        self._lock = threading.Lock()
        #: Slots handed to sleeping callers, and the calls actually let through (see ``_next``).
        self._planned = TokenBucket(status_rate, _burst(status_rate))
        self._sent = TokenBucket(status_rate, _burst(status_rate))
        self._pause_until = 0.0
        #: Bumped by every pause: a reservation made before it is void (its slot may fall in the pause).
        self._generation = 0
        self._max_submits = max_submits
        self._submits = 0
        self._waiters: deque[_Waiter] = deque()
        #: Counters for logs, tests and benchmarks (not used for decisions).
        self.pauses = 0
        self.retimed = 0
        self.submit_peak = 0

    def __repr__(self) -> str:
        return f"KeyBudget({self.name}, {self._planned.rate:g} status calls/s, {self._max_submits} submits)"

    @property
    def status_rate(self) -> float:
        return self._planned.rate

    @property
    def max_submits(self) -> int:
        return self._max_submits

    def configure(self, status_rate: float, max_submits: int) -> None:
        """Apply a connection's values (the connection read last wins; connections sharing a key should agree)."""
        with self._lock:
            if status_rate != self._planned.rate:
                # The calls already queued keep their number, not their seconds: re-time them at the new rate.
                now = time.monotonic()
                for bucket in (self._planned, self._sent):
                    queued = max(0.0, bucket.tat - now) * bucket.rate
                    bucket.rate, bucket.burst = status_rate, _burst(status_rate)
                    bucket.tat = now + queued / status_rate
            self._max_submits = max_submits
        self._dispatch_submits()

    # --- status calls and the 429 pause ----------------------------------------------------------------
    def _next(self, ticket: _Ticket) -> float | None:
        """The monotonic instant a caller sleeps until, or ``None``: its call may go now.

        Two steps for a status call. Planned: a slot in the bucket, so thousands of waiters each sleep
        once, evenly spread. Sent: when the caller wakes, its real start is checked against a second
        bucket of what was actually let through: after the loop stalled (a long garbage collection, a
        busy machine) the callers whose slots passed meanwhile would otherwise all go at once, a burst
        of the rate times the stall; here they are spaced again, and later plans queue behind them.
        """
        now = time.monotonic()
        with self._lock:
            bounded = ticket.latest is not None and now >= ticket.latest
            if ticket.generation != self._generation and not bounded:
                # A pause began while this caller slept: its slot may lie inside the pause. Start over.
                ticket.generation, ticket.planned, ticket.sent, ticket.sent_at = self._generation, False, False, None
            if not ticket.planned:
                ticket.planned = True
                if ticket.rated:
                    at = self._planned.reserve(now, not_before=self._pause_until, latest=ticket.latest)
                else:
                    at = self._pause_until if ticket.latest is None else min(self._pause_until, ticket.latest)
                if at > now:
                    return at
            if ticket.rated and (not ticket.sent or self._late(ticket, now, bounded)):
                ticket.sent = True
                at = self._sent.reserve(now, not_before=self._pause_until, latest=ticket.latest)
                self._planned.tat = max(self._planned.tat, self._sent.tat)
                ticket.sent_at = at
                if at > now:
                    return at
            return None

    def _late(self, ticket: _Ticket, now: float, bounded: bool) -> bool:
        """Whether a caller woke from its sent slot later than the bucket's own tolerance (a starved or
        stalled loop): it takes a new slot, or the late ones would reach the service together. A few times
        at most, and never past the call's bound."""
        if bounded or ticket.sent_at is None or ticket.retimed >= MAX_RETIMES:
            return False
        tolerance = max(MIN_LATE_SECONDS, (self._sent.burst - 1.0) / self._sent.rate)
        if now - ticket.sent_at <= tolerance:
            return False
        ticket.retimed += 1
        self.retimed += 1
        return True

    def _ticket(self, rated: bool, until: float | None) -> _Ticket:
        latest = None if until is None else time.monotonic() + (until - time.time()) - CALL_ROOM_SECONDS
        return _Ticket(rated, latest, self._generation)

    async def acquire(self, *, rated: bool, until: float | None = None) -> float:
        """Wait (on this loop) until a call may go; returns the seconds waited.

        ``rated``: a status or result call, which takes a token; otherwise (a submit) only a pause
        applies. ``until`` (epoch seconds) bounds the wait so that the call keeps
        ``CALL_ROOM_SECONDS`` before it: the last look at a deadline is never skipped.
        """
        started = time.monotonic()
        ticket = self._ticket(rated, until)
        # Not polling a flag (ASYNC110): each sleep ends at an instant the budget computed (a few at most).
        while (at := self._next(ticket)) is not None:  # noqa: ASYNC110
            await asyncio.sleep(at - time.monotonic())
        return time.monotonic() - started

    def acquire_sync(self, *, rated: bool, until: float | None = None) -> float:
        """:meth:`acquire` for a thread (the sync hook): the same steps, ``time.sleep``."""
        started = time.monotonic()
        ticket = self._ticket(rated, until)
        while (at := self._next(ticket)) is not None:
            time.sleep(max(0.0, at - time.monotonic()))
        return time.monotonic() - started

    def pause(self, seconds: float) -> None:
        """The service refused a call on this key until ``seconds`` from now: every caller waits till then."""
        if seconds <= 0:
            return
        with self._lock:
            end = time.monotonic() + seconds
            if end <= self._pause_until:
                return
            self._pause_until = end
            self._generation += 1
            # The queue restarts at the pause's end; callers holding earlier slots plan again.
            self._planned.tat = self._sent.tat = end
            self.pauses += 1

    @contextlib.contextmanager
    def pausing_on_429(self, max_wait: float) -> Iterator[None]:
        """Around reading an answer: a 429 with a reset time (capped at ``max_wait``) pauses the whole key."""
        try:
            yield
        except RateLimited as err:
            if err.retry_after is not None:
                self.pause(min(err.retry_after, max_wait))
            raise

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when none)."""
        return max(0.0, self._pause_until - time.monotonic())

    # --- paid submits in flight ---------------------------------------------------------------------------
    def _try_take_submit(self) -> bool:
        if self._submits < self._max_submits and not self._waiters:
            self._submits += 1
            self.submit_peak = max(self.submit_peak, self._submits)
            return True
        return False

    def _release_submit(self) -> None:
        with self._lock:
            self._submits -= 1
        self._dispatch_submits()

    def _dispatch_submits(self) -> None:
        """Hand free slots to queued callers, first come first served."""
        while True:
            with self._lock:
                if not self._waiters or self._submits >= self._max_submits:
                    return
                waiter = self._waiters.popleft()
                self._submits += 1
                self.submit_peak = max(self.submit_peak, self._submits)
            if not waiter.hand(self):
                with self._lock:
                    self._submits -= 1

    @contextlib.asynccontextmanager
    async def submit_slot(self, timeout: float) -> AsyncIterator[None]:
        """Hold one of the key's submit slots for the block.

        When none frees within ``timeout`` (the call's retry budget), a retryable ``TransportError``
        says so: nothing was sent, so a retry of the task cannot pay twice.
        """
        with self._lock:
            taken = self._try_take_submit()
            waiter = None if taken else _LoopWaiter()
            if waiter is not None:
                self._waiters.append(waiter)
        if waiter is not None:
            try:
                async with asyncio.timeout(timeout):
                    await waiter.future
            except BaseException as err:
                with self._lock:
                    queued = waiter in self._waiters
                    if queued:
                        self._waiters.remove(waiter)
                if not queued and waiter.future.done() and not waiter.future.cancelled():
                    self._release_submit()  # handed just before the cancel: give it back
                # Not queued and cancelled: ``_deliver`` passes the slot on when it runs.
                if isinstance(err, TimeoutError):
                    raise self._no_slot(timeout) from None
                raise
        try:
            yield
        finally:
            self._release_submit()

    def _no_slot(self, timeout: float) -> TransportError:
        return TransportError(
            f"no submit slot freed within {timeout:g}s: {self._max_submits} submits with this API key were "
            "in flight in this process the whole time (connection extra max_concurrent_submits). Nothing was "
            "sent; a retry submits. Raise the extra, or let fewer tasks submit at once.",
            outcome_unknown=False,
        )

    @contextlib.contextmanager
    def submit_slot_sync(self, timeout: float) -> Iterator[None]:
        """:meth:`submit_slot` for a thread."""
        with self._lock:
            taken = self._try_take_submit()
            waiter = None if taken else _ThreadWaiter()
            if waiter is not None:
                self._waiters.append(waiter)
        if waiter is not None and not waiter.event.wait(timeout):
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if queued:
                raise self._no_slot(timeout)
            # Handed in the instant the wait ended: the slot is ours.
        try:
            yield
        finally:
            self._release_submit()


def _burst(rate: float) -> float:
    return max(1.0, rate * BURST_SECONDS)


_budgets: dict[str, KeyBudget] = {}
_budgets_lock = threading.Lock()


def key_digest(origin: str, api_key: str) -> str:
    """A short, stable name for (origin, key) that does not reveal the key."""
    return hashlib.sha256(f"{origin}\n{api_key}".encode()).hexdigest()[:12]


def budget_for(origin: str, api_key: str, *, status_rate: float, max_submits: int) -> KeyBudget:
    """The process-wide budget of this key on this origin, created on first use, with these values applied."""
    name = key_digest(origin, api_key)
    with _budgets_lock:
        budget = _budgets.get(name)
        if budget is None:
            budget = _budgets[name] = KeyBudget(name, status_rate, max_submits)
            return budget
    if budget.status_rate != status_rate or budget.max_submits != max_submits:
        budget.configure(status_rate, max_submits)
    return budget
