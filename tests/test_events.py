"""Trigger events: how the outcome of a deferred wait crosses back to the worker.

A deferrable task must fail exactly like a blocking one: the same exception class (so Airflow
retries, or not, identically), the same message, the same fields. And an event the operator does
not understand is an error, never a success. No network here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_muscle_surge import contract, events
from airflow_provider_muscle_surge.exceptions import (
    AuthenticationError,
    CertificateError,
    InferenceFailed,
    InferenceTimeout,
    InsufficientCredits,
    MalformedResponse,
    PollingGaveUp,
    RateLimited,
    RedirectRefused,
    RequestExpired,
    SegmindError,
    ServerError,
    TransportError,
)
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator
from airflow_provider_muscle_surge.sensors.segmind import SegmindRequestSensor

REQUEST_ID = "b0c1d2e3-0000-4000-8000-000000000001"
RAI_DETAIL = "Content blocked by the responsible-AI filter: the input image was flagged as unsafe"


def over_the_wire(event: dict[str, Any]) -> dict[str, Any]:
    """What execute_complete receives: the event went through JSON (triggerer -> DB -> worker)."""
    return json.loads(json.dumps(event))


def raised_by(event: dict[str, Any]) -> SegmindError:
    with pytest.raises(SegmindError) as info:
        events.result_from_event(over_the_wire(event))
    return info.value


# What the blocking path raises for each way a wait can end (the same contract functions the hooks use).
BLOCKING_ERRORS = {
    "failed": lambda: contract.error_for_status(422, {"status": "FAILED", "error": RAI_DETAIL}, request_id=REQUEST_ID),
    "expired": lambda: contract.error_for_status(404, {"error": "Request not found"}, request_id=REQUEST_ID),
    "timeout": lambda: InferenceTimeout(REQUEST_ID, 61.7, "PROCESSING"),
    "auth": lambda: contract.error_for_status(401, {"error": "Invalid API key"}, request_id=REQUEST_ID),
    "credits": lambda: contract.error_for_status(406, {"error": "Insufficient credits"}, request_id=REQUEST_ID),
    "redirect": lambda: RedirectRefused("a redirect (HTTP 307)", status_code=307, request_id=REQUEST_ID),
    "certificate": lambda: CertificateError("TLS certificate verification failed", request_id=REQUEST_ID),
}


# --- completed ----------------------------------------------------------------------------------
def test_completed_event_carries_the_result_body() -> None:
    result = {"status": "COMPLETED", "output": "https://cdn.example/v.mp4", "metrics": {"render_seconds": 44.9}}

    event = over_the_wire(events.completed_event(REQUEST_ID, result))

    assert event == {"status": "completed", "request_id": REQUEST_ID, "result": result}
    assert events.result_from_event(event) == result


# --- each failure maps to the exception the blocking path raises ------------------------------------
@pytest.mark.parametrize(
    ("kind", "expected_class"),
    [
        ("failed", InferenceFailed),
        ("expired", RequestExpired),
        ("timeout", InferenceTimeout),
        ("auth", AuthenticationError),
        ("credits", InsufficientCredits),
        ("redirect", RedirectRefused),
        ("certificate", CertificateError),
    ],
)
def test_failure_event_raises_the_same_exception_as_the_blocking_path(
    kind: str, expected_class: type[SegmindError]
) -> None:
    blocking = BLOCKING_ERRORS[kind]()
    assert type(blocking) is expected_class

    event = events.error_event(REQUEST_ID, blocking)
    deferred = raised_by(event)

    assert event["status"] == kind
    assert "error_class" not in event, "a class name in a stored event breaks when the class is renamed"
    assert type(deferred) is expected_class
    assert str(deferred) == str(blocking)
    assert deferred.request_id == REQUEST_ID
    assert deferred.status_code == blocking.status_code
    assert deferred.detail == blocking.detail


@pytest.mark.parametrize("kind", sorted(BLOCKING_ERRORS))
def test_permanent_failures_stay_permanent_after_deferral(kind: str) -> None:
    deferred = raised_by(events.error_event(REQUEST_ID, BLOCKING_ERRORS[kind]()))

    assert isinstance(deferred, AirflowFailException), "Airflow must not retry this"


def test_failed_event_keeps_the_server_detail() -> None:
    deferred = raised_by(events.error_event(REQUEST_ID, BLOCKING_ERRORS["failed"]()))

    assert deferred.detail == RAI_DETAIL
    assert RAI_DETAIL in str(deferred)


def test_timeout_event_names_the_request_and_the_elapsed_time() -> None:
    deferred = raised_by(events.error_event(REQUEST_ID, BLOCKING_ERRORS["timeout"]()))

    assert isinstance(deferred, InferenceTimeout)
    assert deferred.elapsed_s == pytest.approx(61.7)
    assert REQUEST_ID in str(deferred)


@pytest.mark.parametrize(
    "transient",
    [
        ServerError("Segmind server error (HTTP 502)", status_code=502, detail="Bad gateway"),
        RateLimited("Segmind rate limit reached (HTTP 429)", retry_after=2.0, status_code=429, detail="slow down"),
        TransportError("no answer from Segmind: ClientConnectorError"),
    ],
    ids=["5xx", "429", "connection"],
)
def test_transient_errors_that_outlived_the_hook_retries_become_retryable_polling_gave_up(
    transient: SegmindError,
) -> None:
    event = events.error_event(REQUEST_ID, transient)
    deferred = raised_by(event)

    assert event["status"] == "gave_up"
    assert type(deferred) is PollingGaveUp
    assert isinstance(deferred, AirflowException)
    assert not isinstance(deferred, AirflowFailException), "Airflow must retry it (and the retry re-attaches)"
    assert deferred.request_id == REQUEST_ID
    assert deferred.status_code == transient.status_code
    assert "re-attaches" in str(deferred)


@pytest.mark.parametrize("kind", sorted(BLOCKING_ERRORS))
def test_events_hold_only_json_values(kind: str) -> None:
    event = events.error_event(REQUEST_ID, BLOCKING_ERRORS[kind]())

    assert over_the_wire(event) == event


# --- malformed events are errors, never success ------------------------------------------------------
@pytest.mark.parametrize(
    "event",
    [
        None,
        "completed",
        {},
        {"request_id": REQUEST_ID, "result": {"status": "COMPLETED"}},
        {"status": "COMPLETED", "request_id": REQUEST_ID, "result": {"status": "COMPLETED"}},
        {"status": "success", "request_id": REQUEST_ID},
        {"status": "completed", "request_id": REQUEST_ID},
        {"status": "completed", "request_id": REQUEST_ID, "result": "https://cdn.example/v.mp4"},
    ],
    ids=[
        "none",
        "not-a-dict",
        "empty",
        "missing-status",
        "uppercase-status",
        "unknown-status",
        "completed-without-result",
        "completed-with-non-dict-result",
    ],
)
def test_event_the_operator_does_not_understand_is_malformed(event: Any) -> None:
    with pytest.raises(MalformedResponse, match=r"does not understand|without a result body"):
        events.result_from_event(event)


def test_every_kind_maps_to_its_own_exception_class() -> None:
    assert len(set(events.ERROR_KINDS.values())) == len(events.ERROR_KINDS)
    for kind, cls in events.ERROR_KINDS.items():
        err = cls.__new__(cls)
        SegmindError.__init__(err, f"a {kind}")
        assert events.kind_of(err) == kind


def test_an_event_stored_by_0_1_0_with_a_class_name_still_reads() -> None:
    event = {"status": "error", "request_id": REQUEST_ID, "message": "bad key", "error_class": "AuthenticationError"}
    with pytest.raises(AuthenticationError, match="bad key"):
        events.result_from_event(event)


@pytest.mark.parametrize("error_class", ["KeyError", "AirflowFailException", "os.system", None, "rebuild"])
def test_error_class_outside_the_provider_exceptions_is_not_trusted(error_class: str | None) -> None:
    event = {"status": "error", "request_id": REQUEST_ID, "message": "boom", "error_class": error_class}

    with pytest.raises(MalformedResponse, match="boom"):
        events.result_from_event(event)


# --- execute_complete of the operator and the sensor ------------------------------------------------
class FakeTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def surge() -> MuscleSurgeOperator:
    return MuscleSurgeOperator(task_id="surge", image_url="https://storage.example.com/athlete.png")


def sensor() -> SegmindRequestSensor:
    return SegmindRequestSensor(task_id="wait", request_id=REQUEST_ID)


@pytest.mark.parametrize("make_task", [surge, sensor], ids=["operator", "sensor"])
@pytest.mark.parametrize(
    "event", [None, {"request_id": REQUEST_ID}, {"status": "done", "request_id": REQUEST_ID}], ids=str
)
def test_execute_complete_refuses_a_malformed_event(make_task: Any, event: Any) -> None:
    ti = FakeTI()

    with pytest.raises(MalformedResponse):
        make_task().execute_complete({"ti": ti}, event)
    assert "output_url" not in ti.xcom, "nothing may look like a finished job"


@pytest.mark.parametrize("make_task", [surge, sensor], ids=["operator", "sensor"])
@pytest.mark.parametrize("kind", sorted(BLOCKING_ERRORS))
def test_execute_complete_raises_what_the_blocking_path_raises(make_task: Any, kind: str) -> None:
    blocking = BLOCKING_ERRORS[kind]()
    event = over_the_wire(events.error_event(REQUEST_ID, blocking))

    with pytest.raises(type(blocking)) as info:
        make_task().execute_complete({"ti": FakeTI()}, event)
    assert str(info.value) == str(blocking)


@pytest.mark.parametrize("make_task", [surge, sensor], ids=["operator", "sensor"])
def test_execute_complete_raises_retryable_polling_gave_up(make_task: Any) -> None:
    event = over_the_wire(events.error_event(REQUEST_ID, ServerError("HTTP 500", status_code=500)))

    with pytest.raises(PollingGaveUp) as info:
        make_task().execute_complete({"ti": FakeTI()}, event)
    assert not isinstance(info.value, AirflowFailException)
