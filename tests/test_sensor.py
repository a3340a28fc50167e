"""SegmindRequestSensor: wait for a request that another task (or system) submitted.

The common pattern: a ``MuscleSurgeOperator`` with ``wait_for_completion=False`` submits, and
the sensor, its ``request_id`` templated from that task's XCom, waits in poke, reschedule or
deferrable mode. COMPLETED returns the result; FAILED and expired fail the task at once
(``AirflowFailException`` subclasses) with the server's detail.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from dags_for_tests.dagtest_support import FailureRecorder, fake_context, run_dag, task_states, try_numbers, xcom
from segmind_emulator.testing import EmulatorProcess

from airflow_provider_muscle_surge.exceptions import InferenceFailed, InvalidParameter, RequestExpired
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator
from airflow_provider_muscle_surge.sensors.segmind import SegmindRequestSensor

RAI_DETAIL = "Content blocked by the responsible-AI filter: the input image was flagged as unsafe"
FROM_SUBMIT = "{{ ti.xcom_pull(task_ids='submit', key='request_id') }}"
MODES = {
    "poke": {"mode": "poke", "poke_interval": 0.2},
    "reschedule": {"mode": "reschedule", "poke_interval": 0.2},
    "deferrable": {"deferrable": True, "poll_schedule": {"expected_seconds": 1, "dense_interval": 0.2}},
}


def submit_then_wait(emulator: EmulatorProcess, *, image_url: str | None = None, **sensor_kwargs: Any) -> None:
    """``submit >> wait`` inside the current DAG."""
    submit = MuscleSurgeOperator(
        task_id="submit", image_url=image_url or emulator.sample_url(), wait_for_completion=False
    )
    wait = SegmindRequestSensor(task_id="wait", request_id=FROM_SUBMIT, timeout=60, **sensor_kwargs)
    submit >> wait


def reschedules(run: Any, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count())
            .select_from(TaskReschedule)
            .join(TaskInstance, TaskReschedule.ti_id == TaskInstance.id)
            .where(TaskInstance.run_id == run.run_id, TaskInstance.task_id == task_id)
        )


@pytest.mark.parametrize("mode", MODES)
def test_sensor_waits_for_the_request_an_upstream_task_submitted(
    new_dag: Any, segmind_conn: EmulatorProcess, mode: str
) -> None:
    with new_dag() as dag:
        submit_then_wait(segmind_conn, **MODES[mode])

    run = run_dag(dag)

    assert task_states(run) == {"submit": "success", "wait": "success"}
    request_id = xcom(run, "submit", "request_id")
    result = xcom(run, "wait")
    assert result["request_id"] == request_id
    assert result["status"] == "COMPLETED"
    assert result["output"] == f"{segmind_conn.url}/_emulator/outputs/{request_id}.mp4"
    assert result["metrics"]["credits_used"] == 1
    assert xcom(run, "wait", "output_url") == result["output"]
    assert xcom(run, "wait", "status_url") == f"{segmind_conn.url}/v2/requests/{request_id}/status"
    # The operator's result shape; the sensor knows the request only by id and saves nothing.
    assert set(result) == {"model", "request_id", "status", "output", "metrics", "status_url", "saved"}
    assert result["status_url"] == xcom(run, "wait", "status_url")
    assert (result["model"], result["saved"]) == (None, None)
    assert segmind_conn.stats()["submissions_total"] == 1, "the sensor only watches"


def test_reschedule_mode_gives_the_worker_slot_back_between_pokes(new_dag: Any, segmind_conn: EmulatorProcess) -> None:
    with new_dag() as dag:
        submit_then_wait(segmind_conn, **MODES["reschedule"])

    run = run_dag(dag)

    assert task_states(run)["wait"] == "success"
    assert reschedules(run, "wait") >= 1, "the first poke saw a running job and rescheduled"
    assert try_numbers(run)["wait"] == 1, "a reschedule is not a retry"


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_failed_request_fails_the_sensor_at_once_with_the_server_detail(
    new_dag: Any, segmind_conn: EmulatorProcess, mode: str
) -> None:
    failures = FailureRecorder()
    with new_dag() as dag:
        submit_then_wait(
            segmind_conn,
            image_url=segmind_conn.sample_url() + "?rai-block",
            retries=2,
            retry_delay=timedelta(0),
            on_failure_callback=failures,
            **MODES[mode],
        )

    run = run_dag(dag)

    assert task_states(run) == {"submit": "success", "wait": "failed"}
    assert try_numbers(run)["wait"] == 1, "not retried"
    (error,) = failures.errors
    assert type(error) is InferenceFailed
    assert isinstance(error, AirflowFailException)
    assert error.detail == RAI_DETAIL
    assert RAI_DETAIL in str(error)


def test_expired_request_fails_the_poke_with_retention_explained(segmind_conn: EmulatorProcess) -> None:
    sensor = SegmindRequestSensor(task_id="wait", request_id="expired-request-0001")

    with pytest.raises(RequestExpired) as info:
        sensor.poke(fake_context())

    assert isinstance(info.value, AirflowFailException)
    assert info.value.status_code == 404
    assert "expired-request-0001" in str(info.value)
    assert "kept for 1 hour" in str(info.value)


def test_expired_request_fails_the_deferred_sensor_too(new_dag: Any, segmind_conn: EmulatorProcess) -> None:
    failures = FailureRecorder()
    with new_dag() as dag:
        SegmindRequestSensor(
            task_id="wait",
            request_id="expired-request-0002",
            retries=2,
            on_failure_callback=failures,
            **MODES["deferrable"],
        )

    run = run_dag(dag)

    assert task_states(run) == {"wait": "failed"}
    assert try_numbers(run) == {"wait": 1}
    (error,) = failures.errors
    assert type(error) is RequestExpired
    assert "kept for 1 hour" in str(error)


def test_poke_says_not_yet_while_the_job_runs(segmind_conn: EmulatorProcess) -> None:
    submit = MuscleSurgeOperator(task_id="submit", image_url=segmind_conn.sample_url(), wait_for_completion=False)
    request_id = submit.execute(fake_context())["request_id"]
    sensor = SegmindRequestSensor(task_id="wait", request_id=request_id)
    context = fake_context()

    assert sensor.poke(context) is False
    assert "output_url" not in context["ti"].xcom


# --- bad settings: refused before the first status call ---------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_a_bad_poll_setting_in_the_connection_fails_the_sensor_before_any_status_call(
    new_dag: Any, segmind_conn: EmulatorProcess, segmind_connection: Any, mode: str
) -> None:
    segmind_connection(segmind_conn, poll={"max_interval": 0.1})
    failures = FailureRecorder()
    with new_dag() as dag:
        SegmindRequestSensor(
            task_id="wait", request_id="req-1", timeout=60, retries=2, on_failure_callback=failures, **MODES[mode]
        )

    run = run_dag(dag)

    assert task_states(run) == {"wait": "failed"}
    assert try_numbers(run) == {"wait": 1}
    (error,) = failures.errors
    assert isinstance(error, InvalidParameter)
    assert (error.field, error.value) == ("extra.poll.max_interval", 0.1)
    assert segmind_conn.stats()["status_polls"] == 0


@pytest.mark.parametrize(
    ("attribute", "value"), [("timeout", 0), ("deferrable", "false"), ("poll_schedule", {"jitter": 2})], ids=repr
)
def test_a_setting_changed_after_definition_is_checked_again_before_any_status_call(
    segmind_conn: EmulatorProcess, attribute: str, value: Any
) -> None:
    sensor = SegmindRequestSensor(task_id="wait", request_id="req-1")
    setattr(sensor, attribute, value)

    with pytest.raises(InvalidParameter) as info:
        sensor.execute(fake_context())

    assert info.value.field.split(".")[0] == attribute
    assert segmind_conn.stats()["status_polls"] == 0
