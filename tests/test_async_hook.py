"""What only SegmindAsyncHook, the client the trigger polls with, promises (against the real emulator).

What it shares with the sync hook (the cycle, the error map, retries, what goes over the wire) is
tested once for both in ``test_hook.py``. Here: the sessions (reads share one per key in a process,
a submit has its own), the deadline, and that nothing it does holds the triggerer's event loop: asyncio's own
debug mode reports every step that runs longer than a threshold, and the detector is shown to
catch a real blocking call before its silence is trusted.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hostile import header_fields
from segmind_emulator.testing import EmulatorProcess
from support import FAST_RETRY, FAST_SCHEDULE, connection

from airflow_provider_muscle_surge.exceptions import InferenceTimeout, RequestExpired
from airflow_provider_muscle_surge.hooks import shared_session
from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook
from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger


@pytest.fixture
def emu(fresh_emulator: EmulatorProcess, segmind_connection: Callable[..., Any]) -> EmulatorProcess:
    segmind_connection(fresh_emulator)
    return fresh_emulator


async def wait(hook: SegmindAsyncHook, request_id: str, timeout: float = 30.0, **kwargs: Any) -> dict[str, Any]:
    now = time.time()
    return await hook.wait_for_request(
        request_id, submitted_at=now, deadline=now + timeout, schedule=FAST_SCHEDULE, **kwargs
    )


async def test_a_wait_past_its_deadline_raises_timeout_naming_the_request(emu):
    async with SegmindAsyncHook() as hook:
        submission = await hook.submit("muscle-surge", {"image_url": emu.sample_url()})
        with pytest.raises(InferenceTimeout) as excinfo:
            await wait(hook, submission.request_id, timeout=0.3)
    assert excinfo.value.request_id == submission.request_id
    assert submission.request_id in str(excinfo.value)
    # It gave up at the deadline, before the ~1 s job finished: one look at a running job, no result fetched.
    assert re.search(r"\(last status (QUEUED|PROCESSING)\)", str(excinfo.value)), str(excinfo.value)
    stats = emu.stats()
    assert (stats["status_polls"], stats["results"]) == (1, 0)


# --- the sessions: one pooled per key for reads, the submit's own -------------------------------------
async def test_a_whole_wait_polls_over_one_session_and_the_submit_goes_on_its_own(emu, sessions):
    async with SegmindAsyncHook() as hook:
        submission = await hook.submit("muscle-surge", {"image_url": emu.sample_url()})
        result = await wait(hook, submission.request_id)
        assert await hook.get_result(submission.request_id) == result
    assert emu.stats()["status_polls"] >= 3
    # The paid POST never rides a pooled keep-alive connection; every read shares one session.
    assert sorted(s.methods for s in sessions) == [["GET"] * len(sessions[0].methods), ["POST"]]
    assert all(s.closed for s in sessions)


async def test_waits_on_one_key_share_a_session_which_the_last_one_closes(emu, sessions):
    async with SegmindAsyncHook() as first, SegmindAsyncHook() as second:
        for hook in (first, second):
            with pytest.raises(RequestExpired):
                await hook.get_status("no-such-request")
        assert len(sessions) == 1
    assert sessions[0].closed
    assert shared_session.open_sessions() == 0


async def test_a_session_stays_open_while_another_wait_uses_it(emu, sessions):
    async with SegmindAsyncHook() as staying:
        async with SegmindAsyncHook() as leaving:
            with pytest.raises(RequestExpired):
                await leaving.get_status("no-such-request")
        assert not sessions[0].closed
        with pytest.raises(RequestExpired):
            await staying.get_status("no-such-request")
    assert sessions[0].closed


async def test_waits_on_different_keys_never_share_a_session(hostile_server, monkeypatch):
    # Each key reaches the server only on its own connection's requests.
    server = hostile_server(b'{"status": "PROCESSING"}')
    for conn_id, key in (("segmind_default", "key-one"), ("segmind_other", "key-two")):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection(server.url, key=key)))
    async with SegmindAsyncHook("segmind_default") as one, SegmindAsyncHook("segmind_other") as two:
        for hook in (one, two, one):
            await hook.get_status("abc")
        assert shared_session.open_sessions() == 2
    keys = [header_fields(raw).get("x-api-key") for raw in server.requests]
    assert keys == ["key-one", "key-two", "key-one"]


async def test_the_sessions_are_closed_when_the_block_raises(emu, sessions):
    with pytest.raises(RequestExpired):
        async with SegmindAsyncHook() as hook:
            await hook.get_status("no-such-request")
    assert sessions[0].closed
    assert shared_session.open_sessions() == 0


async def test_calling_outside_async_with_raises_a_clear_error(emu):
    hook = SegmindAsyncHook()
    with pytest.raises(RuntimeError, match="async with"):
        await hook.get_status("abc")
    async with hook:
        pass
    with pytest.raises(RuntimeError, match="async with"):
        await hook.get_status("abc")
    assert emu.stats()["responses"] == {}


# --- nothing holds the event loop -------------------------------------------------------------------------
#: A step of the loop that runs this long (seconds) without yielding is a blocking call.
SLOW_STEP = 0.05
#: Runs of a scenario before a slow step counts: a blocking call shows in every one.
RUNS = 3


class SlowSteps(logging.Handler):
    """Keeps asyncio's debug-mode warnings "Executing <handle> took 0.203 seconds"."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing ") and " took " in message:
            self.messages.append(message)


@pytest.fixture
def watched_loop() -> Iterator[Callable[[Callable[[], Awaitable[Any]]], tuple[Any, list[str]]]]:
    """``run(make_coroutine)``: run it on a new loop in debug mode; returns its result and the slow steps."""
    logger = logging.getLogger("asyncio")
    saved = (logger.level, logger.disabled)

    def run(make: Callable[[], Awaitable[Any]]) -> tuple[Any, list[str]]:
        steps = SlowSteps()
        logger.addHandler(steps)
        logger.setLevel(logging.WARNING)
        logger.disabled = False  # a logging config of Airflow's may have switched it off
        loop = asyncio.new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW_STEP
        gc.collect()  # a collection of this big test process is the interpreter's pause, not the hook's call
        gc.disable()
        try:
            result = loop.run_until_complete(make())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            gc.enable()
            loop.close()
            logger.removeHandler(steps)
        return result, steps.messages

    yield run
    logger.setLevel(saved[0])
    logger.disabled = saved[1]


def test_the_detector_catches_a_blocking_call_and_not_an_awaited_wait(watched_loop):
    async def sleeps_then_blocks() -> str:
        await asyncio.sleep(0.2)  # gives the loop back: not a slow step
        time.sleep(0.2)  # holds the loop: one slow step
        return "done"

    for _ in range(RUNS):  # every run: retrying cannot hide a blocking call
        result, slow = watched_loop(sleeps_then_blocks)

        assert result == "done"
        assert len(slow) == 1, slow
        assert "sleeps_then_blocks" in slow[0]


def test_a_whole_submit_and_trigger_wait_never_holds_the_event_loop(emu, watched_loop):
    async def submit_then_trigger() -> tuple[Any, list[dict[str, Any]]]:
        async with SegmindAsyncHook() as hook:  # the connection is read with aget_connection, on the loop
            settings = await hook.get_settings()
            submission = await hook.submit("muscle-surge", {"image_url": emu.sample_url()})
            await hook.get_status(submission.request_id)
        now = time.time()
        trigger = SegmindRequestTrigger(
            submission.request_id, deadline=now + 30, submitted_at=now, schedule=FAST_SCHEDULE.to_dict()
        )
        return settings, [event.payload async for event in trigger.run()]

    # The first use in a process imports modules on the loop (urllib3 for the URL check, the SDK's
    # supervisor for aget_connection): paid once per triggerer process, not per wait, so it is paid here.
    asyncio.run(submit_then_trigger())
    # A blocking call in the hook or the trigger holds the loop on every run; a step that was merely
    # descheduled on a busy machine does not come back. So a run with a slow step is run again.
    slow_steps: list[list[str]] = []
    for _ in range(RUNS):
        emu.reset()
        (settings, events), slow = watched_loop(submit_then_trigger)
        slow_steps.append(slow)
        if not slow:
            break

    assert slow_steps[-1] == [], f"a blocking call held the event loop in each of {RUNS} runs: {slow_steps}"
    assert (settings.base_url, settings.retry.max_retries) == (emu.url, FAST_RETRY["max_retries"])
    assert [event["status"] for event in events] == ["completed"]
    stats = emu.stats()
    assert stats["submissions_total"] == 1
    assert stats["status_polls"] >= 3, "a whole wait of several polls was watched"
    assert stats["results"] == 1
