"""One request budget per API key in a process (``hooks/key_budget.py``), against real servers.

What the README promises: every waiter of a process that polls with the same key shares one token
bucket of status calls (``max_status_calls_per_second``), so many waiters stay under the service's
limit; a 429 with a reset time seen by one waiter pauses all of them; two keys do not share a
budget; no more than ``max_concurrent_submits`` paid submits are in flight per key; bad values are
refused before anything is sent; and an exhausted budget never holds a wait past its deadline bound.
Counts come from the server side: the emulator's stats (with ``--rate-limit``), or a hostile server
that stamps and counts what it receives.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hostile import RESULT, STATUS, SUBMIT, Answer, HostileServer, _read_request
from segmind_emulator.testing import EmulatorProcess
from support import connection

from airflow_provider_muscle_surge.exceptions import InferenceTimeout, InvalidParameter, RateLimited
from airflow_provider_muscle_surge.hooks.key_budget import budget_for
from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
from airflow_provider_muscle_surge.hooks.segmind_async import LAST_LOOK_SECONDS, SegmindAsyncHook
from airflow_provider_muscle_surge.polling import PollSchedule

#: Every waiter asks for a status call each 0.2 s: far more than the budgets below allow.
EAGER = PollSchedule.fixed(0.2)


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``conn(conn_id, target, key=..., **extra)``: register a connection (environment only); returns its id."""

    def make(conn_id: str, target: str | EmulatorProcess, **kwargs: Any) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection(target, **kwargs)))
        return conn_id

    return make


async def submit_jobs(emu: EmulatorProcess, conn_id: str, count: int) -> list[str]:
    payload = {"image_url": emu.sample_url()}
    async with SegmindAsyncHook(conn_id) as hook:
        submissions = await asyncio.gather(*(hook.submit("muscle-surge", payload) for _ in range(count)))
    return [s.request_id for s in submissions]


async def wait_all(
    conn_id: str, request_ids: list[str], timeout: float = 60.0, return_exceptions: bool = False
) -> list[Any]:
    """Wait for every request at once in this event loop, each with its own hook, as triggers do."""

    async def one(request_id: str) -> dict[str, Any]:
        async with SegmindAsyncHook(conn_id) as hook:
            now = time.time()
            return await hook.wait_for_request(request_id, submitted_at=now, deadline=now + timeout, schedule=EAGER)

    return await asyncio.gather(*(one(r) for r in request_ids), return_exceptions=return_exceptions)


def poll_in_threads(conn_id: str, request_ids: list[str]) -> None:
    """One thread per request, each polling with the sync hook until COMPLETED, as worker threads would."""
    errors: list[BaseException] = []

    def poll(request_id: str) -> None:
        try:
            hook = SegmindHook(conn_id)
            while hook.get_status(request_id)["status"] != "COMPLETED":
                time.sleep(0.05)
            hook.get_result(request_id)
        except BaseException as err:  # reported by the test thread
            errors.append(err)

    threads = [threading.Thread(target=poll, args=(r,)) for r in request_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def server_calls(emu: EmulatorProcess) -> tuple[int, int]:
    """(status and result calls the emulator answered, of them refused with 429)."""
    stats = emu.stats()
    return stats["status_polls"] + stats["results"] + stats["rate_limited"], stats["rate_limited"]


# --- many waiters, one key ------------------------------------------------------------------------------
@pytest.mark.parametrize("waiters", ["one event loop", "threads with the sync hook"])
def test_many_waiters_on_one_key_stay_within_its_budget_and_are_never_refused(emulator_factory, conn, waiters):
    # The service allows 10 requests a second on the key; the budget is 6. Ten waiters each want 5 a second.
    emu = emulator_factory(rate_limit=10, job_seconds=3.0)
    conn_id = conn("segmind_budget", emu, max_status_calls_per_second=6)
    request_ids = asyncio.run(submit_jobs(emu, conn_id, 10))
    # The ten submits spent the service's one-second burst on this key, and submits draw on no status
    # budget: let the service's bucket refill, so that what is measured is the status calls alone.
    time.sleep(1.2)
    started = time.monotonic()
    if waiters == "one event loop":
        results = asyncio.run(wait_all(conn_id, request_ids))
        assert [r["status"] for r in results] == ["COMPLETED"] * 10
    else:
        poll_in_threads(conn_id, request_ids)
    elapsed = time.monotonic() - started
    calls, refused = server_calls(emu)
    assert refused == 0
    assert emu.stats()["results"] == 10
    # Within the budget: its rate over the whole wait plus one burst (and one call of slack for the edges).
    assert calls <= 6 * elapsed + 1.5 + 1, (calls, elapsed)


def test_a_stalled_event_loop_does_not_release_the_calls_it_held_back_all_at_once(emulator_factory, conn):
    """A triggerer's loop stops for seconds in a full garbage collection of a big heap; after it, the
    waiters whose slots passed meanwhile go out spaced by the budget again, not in one burst."""
    keys = ["poll-key-1234", "submit-key-1111", "submit-key-2222"]  # 20 submits: beyond one key's burst
    emu = emulator_factory(rate_limit=10, job_seconds=4.0, api_keys=keys)
    conn_id = conn("segmind_budget", emu, key=keys[0], max_status_calls_per_second=8)
    submitters = [conn(f"segmind_submitter_{i}", emu, key=key) for i, key in enumerate(keys[1:])]
    request_ids = [r for s in submitters for r in asyncio.run(submit_jobs(emu, s, 10))]

    async def stall_the_loop() -> None:
        await asyncio.sleep(1.0)
        time.sleep(2.0)  # blocks the loop: ~16 planned slots pass meanwhile, more than the service's burst of 10

    async def main() -> None:
        await asyncio.gather(wait_all(conn_id, request_ids), stall_the_loop())

    asyncio.run(main())
    assert server_calls(emu)[1] == 0


def test_without_a_budget_below_the_limit_the_same_waiters_are_refused(emulator_factory, conn):
    """The control of the test above: the same demand with a budget far above the service's limit earns 429s."""
    emu = emulator_factory(rate_limit=10, job_seconds=3.0)
    conn_id = conn("segmind_budget", emu, max_status_calls_per_second=500, max_retries=10, max_retry_seconds=30)
    request_ids = asyncio.run(submit_jobs(emu, conn_id, 10))
    asyncio.run(wait_all(conn_id, request_ids, return_exceptions=True))  # some may give up: not the point here
    assert server_calls(emu)[1] > 0


def test_two_keys_have_budgets_of_their_own(emulator_factory, conn):
    emu = emulator_factory(rate_limit=10, job_seconds=3.0, api_keys=["key-one-1234", "key-two-5678"])
    one = conn("segmind_one", emu, key="key-one-1234", max_status_calls_per_second=6)
    two = conn("segmind_two", emu, key="key-two-5678", max_status_calls_per_second=6)

    async def both() -> None:
        jobs_one, jobs_two = await asyncio.gather(submit_jobs(emu, one, 8), submit_jobs(emu, two, 8))
        await asyncio.gather(wait_all(one, jobs_one), wait_all(two, jobs_two))

    started = time.monotonic()
    asyncio.run(both())
    elapsed = time.monotonic() - started
    calls, refused = server_calls(emu)
    assert refused == 0
    # More than one budget of 6 a second could have sent in that time: each key had its own.
    assert calls > 6 * elapsed + 1.5 + 4, (calls, elapsed)
    assert SegmindHook(one).settings.key_budget() is not SegmindHook(two).settings.key_budget()


def test_a_budget_is_named_by_a_digest_never_by_the_key():
    budget = budget_for("https://api.segmind.com", "SG_secret_key_123456", status_rate=10, max_submits=8)
    assert "SG_secret" not in repr(budget) and "123456" not in repr(budget)
    assert budget is budget_for("https://api.segmind.com", "SG_secret_key_123456", status_rate=10, max_submits=8)
    assert budget is not budget_for("https://other.example", "SG_secret_key_123456", status_rate=10, max_submits=8)


# --- a 429 pauses every waiter on the key -------------------------------------------------------------------
class StampingServer(HostileServer):
    """The hostile server, also noting when each request arrived (monotonic) and how many submits overlapped.

    Plain answers only (no drips or cut bodies): what is measured here is when requests come.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[tuple[float, str]] = []
        self.submits_in_flight = 0
        self.submits_peak = 0
        #: How long a submit is held before its answer: long enough for submits to overlap.
        self.submit_seconds = 0.3

    def _choose(self, request: bytes) -> Answer:
        answer = super()._choose(request)
        with self._lock:
            self.arrivals.append((time.monotonic(), self.log[-1][0]))
        return answer

    def _answer(self, conn: socket.socket) -> None:
        """Answer a submit only after ``submit_seconds``, counting it in flight until its answer is sent."""
        with conn:
            request = _read_request(conn)
            answer = self._choose(request)
            is_submit = request.startswith(b"POST ")
            if is_submit:
                with self._lock:
                    self.submits_in_flight += 1
                    self.submits_peak = max(self.submits_peak, self.submits_in_flight)
                time.sleep(self.submit_seconds)
                with self._lock:  # before the answer leaves: the client cannot start another submit earlier
                    self.submits_in_flight -= 1
            try:
                conn.sendall(answer.head() + answer.body)
            except OSError:
                return


def status(state: str) -> Answer:
    return Answer(json.dumps({"status": state}).encode())


@pytest.fixture
def stamping_server() -> Iterator[Callable[..., StampingServer]]:
    servers: list[StampingServer] = []

    def start() -> StampingServer:
        servers.append(StampingServer())
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_429_seen_by_one_waiter_pauses_every_waiter_on_the_key(stamping_server, conn):
    server = stamping_server()
    refused = Answer(b'{"error": "rate limited"}', 429, headers={"Retry-After": "3"})
    server.route("status", STATUS, refused, *[status("PROCESSING")] * 24, status("COMPLETED"))
    server.route("result", RESULT, status("COMPLETED"))
    conn_id = conn("segmind_pause", server.url, max_status_calls_per_second=1000)

    results = asyncio.run(wait_all(conn_id, [f"req-{i}" for i in range(8)]))

    assert [r["status"] for r in results] == ["COMPLETED"] * 8
    statuses = [at for at, route in server.arrivals if route == "status"]
    refused_at = min(statuses)
    # Eight waiters each asking every 0.2 s would send ~80 calls in these 2 s; paused, they send none.
    in_the_pause = [at for at in statuses if refused_at + 0.5 < at < refused_at + 2.5]
    assert in_the_pause == []
    assert any(at >= refused_at + 2.5 for at in statuses)  # and they resumed when the server said


def test_a_429_without_a_reset_time_pauses_nobody(stamping_server, conn):
    server = stamping_server()
    server.route("status", STATUS, Answer(b'{"error": "slow down"}', 429), status("COMPLETED"))
    server.route("result", RESULT, status("COMPLETED"))
    conn_id = conn("segmind_no_hint", server.url, max_status_calls_per_second=1000)
    asyncio.run(wait_all(conn_id, ["only"]))
    assert SegmindHook(conn_id).settings.key_budget().paused_for() == 0.0


# --- submits in flight ------------------------------------------------------------------------------------------
SUBMITTED = json.dumps(
    {"request_id": "r-1", "status_url": "http://x/v2/requests/r-1/status", "response_url": "http://x/v2/requests/r-1"}
).encode()


@pytest.mark.parametrize("callers", ["one event loop", "threads with the sync hook"])
def test_no_more_than_max_concurrent_submits_are_in_flight_on_one_key(stamping_server, conn, callers):
    server = stamping_server()
    server.route("submit", SUBMIT, Answer(SUBMITTED))
    conn_id = conn("segmind_submits", server.url, max_concurrent_submits=3)
    payload = {"image_url": "https://example.com/a.png"}

    if callers == "one event loop":

        async def submit_many() -> None:
            async with SegmindAsyncHook(conn_id) as hook:
                await asyncio.gather(*(hook.submit("muscle-surge", payload) for _ in range(10)))

        asyncio.run(submit_many())
    else:
        threads = [
            threading.Thread(target=SegmindHook(conn_id).submit, args=("muscle-surge", payload)) for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert server.calls["submit"] == 10
    assert server.submits_peak == 3


# --- settings ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "value"),
    [
        ("max_status_calls_per_second", 0),
        ("max_status_calls_per_second", -5),
        ("max_status_calls_per_second", "fast"),
        ("max_status_calls_per_second", "nan"),
        ("max_status_calls_per_second", True),
        ("max_status_calls_per_second", 1e9),
        ("max_concurrent_submits", 0),
        ("max_concurrent_submits", 2.5),
        ("max_concurrent_submits", "many"),
        ("max_concurrent_submits", True),
        ("max_concurrent_submits", 100_000),
    ],
)
def test_a_bad_budget_value_is_refused_before_anything_is_sent(hostile_server, conn, extra, value):
    server = hostile_server(SUBMITTED)
    conn_id = conn("segmind_bad", server.url, **{extra: value})
    with pytest.raises(InvalidParameter) as excinfo:
        SegmindHook(conn_id).submit("muscle-surge", {"image_url": "https://example.com/a.png"})
    assert f"extra.{extra}" in str(excinfo.value)
    assert server.connections == 0


def test_budget_values_are_read_from_text_extras_and_default_when_unset(hostile_server, conn):
    server = hostile_server()
    given = SegmindHook(conn("segmind_text", server.url, max_status_calls_per_second="2.5", max_concurrent_submits="4"))
    assert (given.settings.max_status_calls_per_second, given.settings.max_concurrent_submits) == (2.5, 4)
    default = SegmindHook(conn("segmind_plain", server.url)).settings
    assert (default.max_status_calls_per_second, default.max_concurrent_submits) == (10.0, 8)


# --- the deadline ----------------------------------------------------------------------------------------------------
def test_an_exhausted_budget_never_holds_a_wait_past_its_deadline_bound(stamping_server, conn):
    server = stamping_server()
    server.route("status", STATUS, status("PROCESSING"))
    # One status call per 10 s: after the first look, the next token comes long after the deadline.
    conn_id = conn("segmind_slow_budget", server.url, max_status_calls_per_second=0.1)

    async def wait() -> None:
        async with SegmindAsyncHook(conn_id) as hook:
            await hook.wait_for_request("slow", submitted_at=started, deadline=deadline, schedule=EAGER)

    started = time.time()
    deadline = started + 2.0
    with pytest.raises(InferenceTimeout):
        asyncio.run(wait())
    ended = time.time()
    assert ended <= deadline + LAST_LOOK_SECONDS
    # The final look at the deadline still happened (over budget), after the early one.
    assert server.calls["status"] == 2
    assert server.arrivals[-1][0] - server.arrivals[0][0] >= 2.0 - 0.2 - 0.1


def test_a_rate_limited_answer_is_still_the_callers_error_to_see(stamping_server, conn):
    """The pause is an addition: the 429 itself still reaches the retry policy and, beyond it, the caller."""
    server = stamping_server()
    server.route("status", STATUS, Answer(b"{}", 429, headers={"Retry-After": "0.2"}))
    conn_id = conn("segmind_always_429", server.url, max_retries=1, max_retry_seconds=2)
    with pytest.raises(RateLimited):
        SegmindHook(conn_id).get_status("any")
    assert server.calls["status"] == 2
