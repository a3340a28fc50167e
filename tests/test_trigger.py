"""SegmindRequestTrigger: waits for one request in the triggerer and yields exactly one event.

Run against the emulator (a real HTTP server): the trigger polls until COMPLETED, FAILED, expired
(404), its deadline, or a persistent error, and reports each as one JSON event. Its kwargs are
plain JSON and never contain the API key, and one run uses one HTTP session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
import pytest
import requests
from airflow.sdk._shared.module_loading import import_string
from segmind_emulator.testing import EmulatorProcess

from airflow_provider_muscle_surge.polling import PollSchedule
from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger, deferral_time, resume_settle_seconds

RAI_DETAIL = "Content blocked by the responsible-AI filter: the input image was flagged as unsafe"
#: A quick, regular cadence for 1 s emulator jobs.
FAST = PollSchedule.fixed(0.1).to_dict()


def submit(emulator: EmulatorProcess, image_url: str | None = None) -> str:
    """Submit a muscle-surge job straight over HTTP (not through the code under test); returns its id."""
    answer = requests.post(
        f"{emulator.url}/v2/muscle-surge",
        json={"image_url": image_url or emulator.sample_url()},
        headers={"x-api-key": emulator.api_key},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["request_id"]


def trigger_for(request_id: str, *, deadline_in: float = 30.0, schedule: dict[str, Any] | None = None) -> Any:
    return SegmindRequestTrigger(
        request_id=request_id,
        deadline=time.time() + deadline_in,
        submitted_at=time.time(),
        schedule=schedule or FAST,
    )


async def run_to_end(trigger: SegmindRequestTrigger) -> list[dict[str, Any]]:
    """All events of one run, as payloads (what the triggerer hands to execute_complete)."""
    return [event.payload async for event in trigger.run()]


# --- serialization --------------------------------------------------------------------------------
def test_serialize_round_trips_into_the_same_trigger() -> None:
    trigger = SegmindRequestTrigger(
        request_id="3f1c", deadline=1_800_000_000.5, submitted_at=1_799_996_400.0, segmind_conn_id="segmind_prod"
    )

    classpath, kwargs = trigger.serialize()
    rebuilt = import_string(classpath)(**kwargs)

    assert type(rebuilt) is SegmindRequestTrigger
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["deadline"] == 1_800_000_000.5, "an absolute deadline: a restarted triggerer keeps the clock"


def test_serialized_kwargs_are_plain_json() -> None:
    _, kwargs = SegmindRequestTrigger(request_id="3f1c", deadline=1_800_000_000.0).serialize()

    assert json.loads(json.dumps(kwargs)) == kwargs
    assert set(kwargs) == {"request_id", "deadline", "submitted_at", "segmind_conn_id", "schedule", "deferred_at"}
    assert PollSchedule.from_dict(kwargs["schedule"]) == PollSchedule(), "default: the muscle-surge schedule"


async def test_serialized_kwargs_never_contain_the_api_key(segmind_conn: EmulatorProcess) -> None:
    trigger = trigger_for(submit(segmind_conn))
    await run_to_end(trigger)  # the key has been read from the connection and used by now

    text = json.dumps(trigger.serialize())

    assert segmind_conn.api_key not in text
    assert '"segmind_conn_id": "segmind_default"' in text


# --- outcomes ------------------------------------------------------------------------------------
async def test_completed_request_yields_one_event_with_the_result_body(segmind_conn: EmulatorProcess) -> None:
    request_id = submit(segmind_conn)

    events = await run_to_end(trigger_for(request_id))

    assert len(events) == 1
    event = events[0]
    assert event["status"] == "completed"
    assert event["request_id"] == request_id
    assert event["result"]["status"] == "COMPLETED"
    assert event["result"]["output"] == f"{segmind_conn.url}/_emulator/outputs/{request_id}.mp4"
    assert event["result"]["metrics"]["credits_used"] == 1
    assert json.loads(json.dumps(event)) == event


async def test_failed_request_yields_a_failed_event_with_the_server_detail(segmind_conn: EmulatorProcess) -> None:
    request_id = submit(segmind_conn, image_url=segmind_conn.sample_url() + "?look=rai-block")

    (event,) = await run_to_end(trigger_for(request_id))

    assert event["status"] == "failed"
    assert event["error_state"]["status_code"] == 422
    assert event["error_state"]["detail"] == RAI_DETAIL
    assert RAI_DETAIL in event["message"]


async def test_unknown_request_yields_an_expired_event(segmind_conn: EmulatorProcess) -> None:
    (event,) = await run_to_end(trigger_for("no-such-request"))

    assert event["status"] == "expired"
    assert event["error_state"]["status_code"] == 404
    assert "1 hour" in event["message"]


async def test_deadline_in_the_past_polls_exactly_once_more_then_times_out(segmind_conn: EmulatorProcess) -> None:
    request_id = submit(segmind_conn)

    (event,) = await run_to_end(trigger_for(request_id, deadline_in=-5.0))

    assert event["status"] == "timeout"
    assert request_id in event["message"]
    stats = segmind_conn.stats()
    assert stats["status_polls"] == 1, "a job that finished in the last interval is not reported as timed out"
    assert stats["results"] == 0


async def test_persistent_server_faults_yield_a_retryable_error_event(
    segmind_conn: EmulatorProcess, segmind_connection: Any, caplog: pytest.LogCaptureFixture
) -> None:
    segmind_connection(segmind_conn, max_retries=2)
    segmind_conn.set_fault_rules({"mode": "error"})  # every API call: 500, 502, 504 or a dropped connection

    (event,) = await run_to_end(trigger_for("3f1c0000-any-id"))

    assert event["status"] == "gave_up"
    assert event["request_id"] == "3f1c0000-any-id"
    assert "re-attaches" in event["message"]
    retries = [r for r in caplog.records if r.getMessage().startswith("Segmind call failed")]
    assert len(retries) == 2, "the connection's max_retries bounds the wait on a dead API"
    assert segmind_conn.stats()["faults_injected"] >= 3


# --- how it waits ---------------------------------------------------------------------------------
async def until_polled(emulator: EmulatorProcess, times: int) -> int:
    """Until the emulator has answered ``times`` status calls (its admin counters are no API calls)."""
    for _ in range(200):
        polls = emulator.stats()["status_polls"]
        if polls >= times:
            return polls
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {emulator.stats()['status_polls']} status calls")


async def test_trigger_keeps_polling_a_long_job(emulator_factory: Any, segmind_connection: Any) -> None:
    slow = emulator_factory(job_seconds=30)
    segmind_connection(slow)
    trigger = trigger_for(submit(slow), deadline_in=60.0)

    waiting = asyncio.create_task(trigger.run().__anext__())
    try:
        await until_polled(slow, 3)  # it is polling, not stuck
        assert not waiting.done(), "no event while the job is still running"
        assert slow.stats()["jobs"]["COMPLETED"] == 0
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting


async def test_one_run_opens_exactly_one_http_session(
    segmind_conn: EmulatorProcess, sessions: list[aiohttp.ClientSession]
) -> None:
    (event,) = await run_to_end(trigger_for(submit(segmind_conn)))

    assert event["status"] == "completed"
    assert segmind_conn.stats()["status_polls"] >= 3
    assert len(sessions) == 1
    assert sessions[0].closed


async def test_cancelled_run_closes_its_http_session(
    segmind_conn: EmulatorProcess, sessions: list[aiohttp.ClientSession]
) -> None:
    waiting = asyncio.create_task(trigger_for(submit(segmind_conn)).run().__anext__())
    await until_polled(segmind_conn, 1)  # the run has opened its session and waits between polls

    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting

    assert len(sessions) == 1
    assert sessions[0].closed, "a triggerer cancelling the wait must not leak connections"


# --- not resuming before Airflow has seen the task defer ----------------------------------------
HELD = "resuming the task in"


@pytest.fixture
def one_second_heartbeat(monkeypatch: pytest.MonkeyPatch) -> float:
    """``[workers] min_heartbeat_interval = 1``: the hold is then that plus the scheduler's slack."""
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "1")
    return resume_settle_seconds()


def test_the_hold_follows_the_supervisors_heartbeat_setting(one_second_heartbeat: float) -> None:
    assert one_second_heartbeat == 6.0, "1 s of supervisor wait + 5 s for the scheduler to read the report"


async def test_a_failure_right_after_the_deferral_is_held_until_airflow_has_seen_the_deferral(
    segmind_conn: EmulatorProcess, one_second_heartbeat: float, capsys: pytest.CaptureFixture[str]
) -> None:
    # Airflow 3.3.2 fails a try that an event resumes before the scheduler read the deferring
    # process's exit ("state changed externally"): a permanent failure would cost a second try.
    trigger = trigger_for(submit(segmind_conn, image_url=segmind_conn.sample_url() + "?look=rai-block"))
    trigger.deferred_at = time.time()

    (event,) = await run_to_end(trigger)

    assert event["status"] == "failed", "held, not changed"
    assert time.time() >= trigger.deferred_at + one_second_heartbeat
    assert HELD in capsys.readouterr().out, "the trigger's log says why the task resumes later"


async def test_an_answer_long_after_the_deferral_is_not_held(
    segmind_conn: EmulatorProcess, one_second_heartbeat: float, capsys: pytest.CaptureFixture[str]
) -> None:
    trigger = trigger_for(submit(segmind_conn))
    trigger.deferred_at = time.time() - one_second_heartbeat  # a triggerer restart, or a long job

    (event,) = await run_to_end(trigger)

    assert event["status"] == "completed"
    output = capsys.readouterr().out
    assert "COMPLETED after" in output, "the trigger's log is captured here"
    assert HELD not in output


def test_a_task_run_in_process_by_dag_test_is_never_held() -> None:
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms

    assert isinstance(deferral_time(), float), "under a supervisor (a worker): the deferral is timed"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(task_runner, "SUPERVISOR_COMMS", object.__new__(InProcessSupervisorComms), raising=False)
        assert deferral_time() is None, "dag.test() runs the trigger after the task in one process: no race"
