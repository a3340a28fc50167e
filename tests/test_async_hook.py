"""SegmindAsyncHook, the client the trigger polls with, against the real emulator.

The point of a separate async hook is one aiohttp session per ``async with`` block (not per
call) and the same retry policy and error map as the sync hook; these tests pin both down.
A ten-line local aiohttp server stands in only for answers the emulator never gives (an unknown
state, a 503). (``aioresponses`` 0.7.9 cannot build responses for aiohttp 3.14.)
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer
from airflow.sdk.exceptions import AirflowFailException
from segmind_emulator.testing import EmulatorProcess, running_together

from airflow_provider_muscle_surge.exceptions import (
    AuthenticationError,
    InferenceFailed,
    InferenceTimeout,
    InvalidParameter,
    MalformedResponse,
    RequestExpired,
    ServerError,
    TransportError,
    UnreadableAnswer,
)
from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook
from airflow_provider_muscle_surge.polling import PollSchedule

KEY = "test-key"
FAST_RETRY = {"max_retries": 3, "max_retry_seconds": 5, "initial_backoff": 0.01, "max_backoff": 0.05}
#: The muscle-surge schedule on the emulator's clock (~1 s jobs instead of ~45 s).
FAST_SCHEDULE = PollSchedule.for_model("muscle-surge").scaled(1 / 45.5)


def use_connection(monkeypatch: pytest.MonkeyPatch, host: str, key: str = KEY, **extra: Any) -> None:
    conn = {"conn_type": "segmind", "host": host, "password": key, "extra": {**FAST_RETRY, **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_DEFAULT", json.dumps(conn))


@pytest.fixture
def emu(fresh_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> EmulatorProcess:
    use_connection(monkeypatch, fresh_emulator.url)
    return fresh_emulator


async def wait(hook: SegmindAsyncHook, request_id: str, timeout: float = 30.0, **kwargs: Any) -> dict[str, Any]:
    now = time.time()
    return await hook.wait_for_request(
        request_id, submitted_at=now, deadline=now + timeout, schedule=FAST_SCHEDULE, **kwargs
    )


@pytest.fixture(scope="module")
def special_emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """A rate-limited and a failing emulator, started in parallel once for this module."""
    procs = {
        "rate_limited": EmulatorProcess(api_key=KEY, job_seconds=1.0, rate_limit=1),
        "down": EmulatorProcess(api_key=KEY, job_seconds=1.0, fault_rate=1.0, seed=7),
    }
    with running_together(procs.values()):
        yield procs


@pytest.fixture
def special(special_emulators: dict[str, EmulatorProcess]) -> Callable[[str], EmulatorProcess]:
    def get(name: str) -> EmulatorProcess:
        special_emulators[name].reset()
        return special_emulators[name]

    return get


# --- the cycle ------------------------------------------------------------------------------------------
async def test_submit_wait_and_result_inside_one_async_with(emu):
    async with SegmindAsyncHook() as hook:
        submission = await hook.submit("muscle-surge", {"image_url": emu.sample_url()})
        result = await wait(hook, submission.request_id)
        assert await hook.get_result(submission.request_id) == result
    assert result["status"] == "COMPLETED"
    assert result["output"].endswith(".mp4")
    assert emu.stats()["submissions"] == {"muscle-surge": 1}


async def test_the_connection_is_read_without_blocking_calls(emu):
    async with SegmindAsyncHook() as hook:
        settings = await hook.get_settings()
    assert settings.base_url == emu.url
    assert settings.retry.max_retries == 3


async def test_waiting_on_a_failed_request_raises_inference_failed(emu):
    async with SegmindAsyncHook() as hook:
        submission = await hook.submit("muscle-surge", {"image_url": emu.sample_url() + "?rai-block"})
        with pytest.raises(InferenceFailed) as excinfo:
            await wait(hook, submission.request_id)
    assert isinstance(excinfo.value, AirflowFailException)
    assert "responsible-AI" in excinfo.value.detail
    assert excinfo.value.request_id == submission.request_id


async def test_status_of_a_failed_request_is_an_answer(emu):
    async with SegmindAsyncHook() as hook:
        request_id = (await hook.submit("muscle-surge", {"image_url": emu.sample_url() + "?rai-block"})).request_id
        with pytest.raises(InferenceFailed):
            await wait(hook, request_id)
        body = await hook.get_status(request_id)
    assert body["status"] == "FAILED"
    assert "responsible-AI" in body["error"]


async def test_a_wait_past_its_deadline_raises_timeout_naming_the_request(emu):
    async with SegmindAsyncHook() as hook:
        submission = await hook.submit("muscle-surge", {"image_url": emu.sample_url()})
        started = time.monotonic()
        with pytest.raises(InferenceTimeout) as excinfo:
            await wait(hook, submission.request_id, timeout=0.3)
    assert time.monotonic() - started < 0.9  # gave up at the deadline, before the ~1 s job finished
    assert excinfo.value.request_id == submission.request_id
    assert submission.request_id in str(excinfo.value)


# --- one session per async with -------------------------------------------------------------------------
@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    """Every aiohttp.ClientSession created while the test runs."""
    created: list[aiohttp.ClientSession] = []
    real = aiohttp.ClientSession

    class CountingSession(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(aiohttp, "ClientSession", CountingSession)
    return created


async def test_one_http_session_serves_a_whole_multi_poll_wait(emu, sessions):
    async with SegmindAsyncHook() as hook:
        submission = await hook.submit("muscle-surge", {"image_url": emu.sample_url()})
        await wait(hook, submission.request_id)
        await hook.get_result(submission.request_id)
    assert emu.stats()["status_polls"] >= 3
    assert len(sessions) == 1
    assert sessions[0].closed


async def test_each_async_with_block_opens_and_closes_its_own_session(emu, sessions):
    for _ in range(2):
        async with SegmindAsyncHook() as hook:
            with pytest.raises(RequestExpired):
                await hook.get_status("no-such-request")
    assert len(sessions) == 2
    assert all(s.closed for s in sessions)


async def test_the_session_is_closed_when_the_block_raises(emu, sessions):
    with pytest.raises(RequestExpired):
        async with SegmindAsyncHook() as hook:
            await hook.get_status("no-such-request")
    assert sessions[0].closed


async def test_calling_outside_async_with_raises_a_clear_error(emu):
    hook = SegmindAsyncHook()
    with pytest.raises(RuntimeError, match="async with"):
        await hook.get_status("abc")
    async with hook:
        pass
    with pytest.raises(RuntimeError, match="async with"):
        await hook.get_status("abc")
    assert emu.stats()["responses"] == {}


# --- errors ---------------------------------------------------------------------------------------------
async def test_a_wrong_key_raises_authentication_error_after_one_call(fresh_emulator, monkeypatch):
    use_connection(monkeypatch, fresh_emulator.url, key="not-the-right-key")
    async with SegmindAsyncHook() as hook:
        with pytest.raises(AuthenticationError):
            await hook.submit("muscle-surge", {"image_url": fresh_emulator.sample_url()})
    assert fresh_emulator.stats()["responses"] == {"401": 1}


async def test_an_unknown_request_id_raises_request_expired(emu):
    async with SegmindAsyncHook() as hook:
        with pytest.raises(RequestExpired, match="1 hour"):
            await hook.get_result("no-such-request")
    assert emu.stats()["responses"] == {"404": 1}


async def test_a_bad_parameter_is_refused_without_any_call(emu):
    async with SegmindAsyncHook() as hook:
        with pytest.raises(InvalidParameter, match="motion_mode"):
            await hook.submit("muscle-surge", {"image_url": emu.sample_url(), "motion_mode": "fast", "duration": 8})
    assert emu.stats()["responses"] == {}


async def test_a_rate_limited_call_waits_what_the_server_asks_then_succeeds(special, monkeypatch, caplog):
    emu = special("rate_limited")  # 1 request per second per key
    use_connection(monkeypatch, emu.url)
    async with SegmindAsyncHook() as hook:
        request_id = (await hook.submit("muscle-surge", {"image_url": emu.sample_url()})).request_id
        started = time.monotonic()
        body = await hook.get_status(request_id)  # empty bucket: 429, wait ~1 s, then 200
        waited = time.monotonic() - started
    assert body["request_id"] == request_id
    (first_retry, *_) = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    slept = float(re.search(r"retrying in ([0-9.]+)s", first_retry).group(1))
    assert slept > FAST_RETRY["max_backoff"] + 0.2  # the server's ~1 s, not the 10-50 ms backoff
    assert waited >= slept - 0.05
    stats = emu.stats()
    assert 1 <= stats["rate_limited"] <= 2
    assert stats["status_polls"] == 1


async def test_a_server_that_keeps_failing_is_retried_a_bounded_number_of_times(special, monkeypatch, caplog):
    emu = special("down")  # every API call: 500, 502, 504 or a dropped connection
    use_connection(monkeypatch, emu.url)
    async with SegmindAsyncHook() as hook:
        with pytest.raises((ServerError, TransportError)) as excinfo:
            await hook.get_status("some-request")
    assert excinfo.value.retryable
    assert not isinstance(excinfo.value, AirflowFailException)
    retries = [r for r in caplog.records if r.getMessage().startswith("Segmind call failed")]
    assert len(retries) == FAST_RETRY["max_retries"]  # the policy made max_retries + 1 attempts
    # On the wire, aiohttp itself re-sends an idempotent GET once when a reused keep-alive connection
    # was dropped, so the server may see one extra request per dropped connection, never more.
    stats = emu.stats()
    attempts = FAST_RETRY["max_retries"] + 1
    assert attempts <= stats["faults_injected"] <= attempts + stats["dropped_connections"]


class LocalApi:
    """A loopback HTTP server answering ``(status, body)`` in turn (the last repeats); records the paths."""

    def __init__(self, answers: tuple[tuple[int, Any], ...]) -> None:
        self.answers = answers
        self.paths: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        status, body = self.answers[min(len(self.paths), len(self.answers)) - 1]
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html")
        return web.json_response(body, status=status)


@contextlib.asynccontextmanager
async def local_api(*answers: tuple[int, Any]) -> AsyncIterator[LocalApi]:
    api = LocalApi(answers)
    server = RawTestServer(api.handle, host="127.0.0.1")
    await server.start_server()
    try:
        api.url = str(server.make_url("")).rstrip("/")
        yield api
    finally:
        await server.close()


async def test_an_unknown_state_is_malformed_and_not_retried(monkeypatch):
    async with local_api((200, {"status": "DONE"})) as api:
        use_connection(monkeypatch, api.url)
        async with SegmindAsyncHook() as hook:
            with pytest.raises(MalformedResponse, match="DONE"):
                await wait(hook, "r1")
    assert api.paths == ["/v2/requests/r1/status"]


async def test_a_503_is_retried_and_the_next_answer_is_used(monkeypatch):
    async with local_api((503, "<html>Service Unavailable</html>"), (200, {"status": "PROCESSING"})) as api:
        use_connection(monkeypatch, api.url)
        async with SegmindAsyncHook() as hook:
            assert await hook.get_status("r1") == {"status": "PROCESSING"}
    assert api.paths == ["/v2/requests/r1/status"] * 2


async def test_a_proxy_page_on_a_status_poll_is_retried_as_a_glitch_then_reported(monkeypatch):
    async with local_api((200, "<html>maintenance</html>")) as api:
        use_connection(monkeypatch, api.url)
        async with SegmindAsyncHook() as hook:
            with pytest.raises(UnreadableAnswer, match="not JSON"):
                await hook.get_status("r1")
    assert len(api.paths) == FAST_RETRY["max_retries"] + 1
