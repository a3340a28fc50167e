"""Trigger events: how the outcome of a deferred wait crosses back to the worker.

A deferrable task must fail exactly like a blocking one: the same exception class (so Airflow
retries, or not, identically), the same message, the same fields. And an event the operator does
not understand is an error, never a success.

The expectations are written out here, not read from the provider's own map: which kind each
exception travels as (a stored event names its kind, so neither side may change silently), and
what each HTTP answer of the status endpoint ends in, taken from the README's error table. They
are checked on real waits: the trigger and the blocking wait, each run against a server answering
that status, and against the emulator for a content block, an unknown request, an outage of the
status endpoint and a passed deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from dags_for_tests.dagtest_support import fake_context
from hostile import STATUS, Answer
from segmind_emulator.testing import EmulatorProcess
from support import FAST_RETRY

from airflow_provider_muscle_surge import events
from airflow_provider_muscle_surge.exceptions import (
    AuthenticationError,
    BadRequest,
    CertificateError,
    InferenceFailed,
    InferenceTimeout,
    InsecureConnection,
    InsufficientCredits,
    InvalidParameter,
    MalformedResponse,
    ModelNotFound,
    PermanentSegmindError,
    PollingGaveUp,
    RateLimited,
    RedirectRefused,
    RequestExpired,
    SegmindError,
    ServerError,
    SubmitOutcomeUnknown,
    TransportError,
    UnreadableAnswer,
)
from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator
from airflow_provider_muscle_surge.polling import PollSchedule
from airflow_provider_muscle_surge.sensors.segmind import SegmindRequestSensor
from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger

REQUEST_ID = "b0c1d2e3-0000-4000-8000-000000000001"
RAI_DETAIL = "Content blocked by the responsible-AI filter: the input image was flagged as unsafe"
#: Every kind an event may carry, and the exception it stands for.
KINDS: dict[str, type[SegmindError]] = {
    "failed": InferenceFailed,
    "expired": RequestExpired,
    "timeout": InferenceTimeout,
    "gave_up": PollingGaveUp,
    "auth": AuthenticationError,
    "credits": InsufficientCredits,
    "bad_request": BadRequest,
    "model_not_found": ModelNotFound,
    "malformed": MalformedResponse,
    "insecure": InsecureConnection,
    "redirect": RedirectRefused,
    "certificate": CertificateError,
    "invalid": InvalidParameter,
    "error": PermanentSegmindError,
}
#: Exceptions without a kind of their own: a permanent one travels as "error" and comes back as
#: PermanentSegmindError (still no Airflow retry); a transient one as "gave_up" (the retry re-attaches).
NEAREST_KIND: dict[type[SegmindError], str] = {
    SubmitOutcomeUnknown: "error",
    ServerError: "gave_up",
    RateLimited: "gave_up",
    TransportError: "gave_up",
    UnreadableAnswer: "gave_up",
}


def over_the_wire(event: dict[str, Any]) -> dict[str, Any]:
    """What execute_complete receives: the event went through JSON (triggerer -> DB -> worker)."""
    return json.loads(json.dumps(event))


def raised_by(event: dict[str, Any]) -> SegmindError:
    with pytest.raises(SegmindError) as info:
        events.result_from_event(over_the_wire(event))
    return info.value


def bare(cls: type[SegmindError], message: str = "boom") -> SegmindError:
    """An instance of ``cls`` whatever its constructor takes (only the class matters here)."""
    err = cls.__new__(cls)
    SegmindError.__init__(err, message, request_id=REQUEST_ID)
    return err


#: Failures as the blocking path raises them, built by hand with their fields.
BLOCKING_ERRORS: dict[str, Callable[[], SegmindError]] = {
    "failed": lambda: InferenceFailed(
        f"Segmind request {REQUEST_ID} FAILED: {RAI_DETAIL}.", status_code=422, detail=RAI_DETAIL, request_id=REQUEST_ID
    ),
    "expired": lambda: RequestExpired(
        f"Segmind does not know request {REQUEST_ID} (HTTP 404): Request not found. Requests are kept for 1 hour.",
        status_code=404,
        detail="Request not found",
        request_id=REQUEST_ID,
    ),
    "timeout": lambda: InferenceTimeout(REQUEST_ID, 61.7, "PROCESSING"),
    "auth": lambda: AuthenticationError(
        "Segmind rejected the API key (HTTP 401)", status_code=401, detail="Invalid API key", request_id=REQUEST_ID
    ),
    "credits": lambda: InsufficientCredits(
        "Segmind refused the request (HTTP 406)", status_code=406, detail="Insufficient credits", request_id=REQUEST_ID
    ),
    "redirect": lambda: RedirectRefused("a redirect (HTTP 307)", status_code=307, request_id=REQUEST_ID),
    "certificate": lambda: CertificateError("TLS certificate verification failed", request_id=REQUEST_ID),
}


# --- completed ----------------------------------------------------------------------------------
def test_completed_event_carries_the_result_body() -> None:
    result = {"status": "COMPLETED", "output": "https://cdn.example/v.mp4", "metrics": {"render_seconds": 44.9}}

    event = over_the_wire(events.completed_event(REQUEST_ID, result))

    assert event == {"status": "completed", "request_id": REQUEST_ID, "result": result}
    assert events.result_from_event(event) == result


# --- each kind travels as its fixed name and comes back as its class ------------------------------------
def test_the_kinds_are_exactly_the_ones_written_here() -> None:
    assert dict(events.ERROR_KINDS) == KINDS, "a kind is never renamed or reused: stored events name it"


@pytest.mark.parametrize(("kind", "cls"), list(KINDS.items()), ids=list(KINDS))
def test_each_exception_travels_as_its_kind_and_comes_back_as_its_class(kind: str, cls: type[SegmindError]) -> None:
    event = events.error_event(REQUEST_ID, bare(cls))

    assert event["status"] == kind
    assert type(raised_by(event)) is cls


@pytest.mark.parametrize(("cls", "kind"), list(NEAREST_KIND.items()), ids=[c.__name__ for c in NEAREST_KIND])
def test_an_exception_without_a_kind_travels_as_the_nearest_one(cls: type[SegmindError], kind: str) -> None:
    event = events.error_event(REQUEST_ID, bare(cls))
    deferred = raised_by(event)

    assert event["status"] == kind
    assert type(deferred) is KINDS[kind]
    assert isinstance(deferred, AirflowFailException) == (kind != "gave_up")


@pytest.mark.parametrize("kind", sorted(BLOCKING_ERRORS))
def test_failure_event_raises_the_same_exception_as_the_blocking_path(kind: str) -> None:
    blocking = BLOCKING_ERRORS[kind]()

    event = events.error_event(REQUEST_ID, blocking)
    deferred = raised_by(event)

    assert event["status"] == kind
    assert "error_class" not in event, "a class name in a stored event breaks when the class is renamed"
    assert type(deferred) is KINDS[kind]
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


# --- real waits: the trigger's event and the blocking wait end alike -------------------------------------
def trigger_run(request_id: str, *, deadline_in: float = 30.0) -> dict[str, Any]:
    """The one event of a real trigger run (fixed 0.2 s polls)."""
    import asyncio

    async def run() -> list[dict[str, Any]]:
        now = time.time()
        trigger = SegmindRequestTrigger(
            request_id, deadline=now + deadline_in, submitted_at=now, schedule=PollSchedule.fixed(0.2).to_dict()
        )
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(run())
    return over_the_wire(event)


def blocking_wait(request_id: str, *, deadline_in: float = 30.0) -> SegmindError:
    """What the blocking wait raises for the same request."""
    with pytest.raises(SegmindError) as info:
        SegmindHook().wait_for_request(
            request_id, submitted_at=time.time(), timeout=deadline_in, schedule=PollSchedule.fixed(0.2)
        )
    return info.value


#: What a wait ends in when the status endpoint answers this HTTP status every time (README, "Errors
#: and retries"): the kind of the trigger's event, the class both paths raise, and the status calls made.
ATTEMPTS = FAST_RETRY["max_retries"] + 1
ON_A_STATUS_POLL: list[tuple[int, str, type[SegmindError], int]] = [
    (400, "bad_request", BadRequest, 1),
    (401, "auth", AuthenticationError, 1),
    (403, "auth", AuthenticationError, 1),
    (404, "expired", RequestExpired, 1),
    (406, "credits", InsufficientCredits, 1),
    (408, "gave_up", PollingGaveUp, ATTEMPTS),
    (422, "failed", InferenceFailed, 1),
    (429, "gave_up", PollingGaveUp, ATTEMPTS),
    (500, "gave_up", PollingGaveUp, ATTEMPTS),
    (501, "bad_request", BadRequest, 1),
    (502, "gave_up", PollingGaveUp, ATTEMPTS),
    (503, "gave_up", PollingGaveUp, ATTEMPTS),
    (504, "gave_up", PollingGaveUp, ATTEMPTS),
    (307, "redirect", RedirectRefused, 1),
]


@pytest.mark.parametrize(
    ("status", "kind", "cls", "calls"), ON_A_STATUS_POLL, ids=[str(c[0]) for c in ON_A_STATUS_POLL]
)
def test_each_http_answer_of_the_status_endpoint_ends_both_waits_alike(
    hostile_server: Any, segmind_connection: Any, status: int, kind: str, cls: type[SegmindError], calls: int
) -> None:
    body = json.dumps({"status": "FAILED", "error": f"server says {status}"}).encode()
    answer = Answer(body, status, headers={"Location": "http://127.0.0.2:9/elsewhere"} if status == 307 else {})
    server = hostile_server().route("status", STATUS, answer)
    segmind_connection(server.url)

    event = trigger_run(REQUEST_ID)
    calls_of_the_trigger = server.calls["status"]
    blocking = blocking_wait(REQUEST_ID)

    assert event["status"] == kind
    assert event["request_id"] == REQUEST_ID
    deferred = raised_by(event)
    assert type(deferred) is type(blocking) is cls
    assert str(deferred) == str(blocking)
    assert deferred.status_code == blocking.status_code == status
    assert isinstance(deferred, AirflowFailException) == (kind != "gave_up")
    assert (calls_of_the_trigger, server.calls["status"]) == (calls, 2 * calls), "the same calls on both paths"


def emulator_case(emu: EmulatorProcess, case: str) -> str:
    """Set the emulator up for ``case``; returns the request id to wait for."""
    if case == "expired":
        return "no-such-request"
    image = emu.sample_url() + ("?rai-block" if case == "failed" else "")
    request_id = SegmindHook().submit("muscle-surge", {"image_url": image}).request_id
    if case == "gave_up":
        emu.set_fault_rules({"mode": "error", "endpoints": ["status"], "status": 502})
    return request_id


#: The emulator's own answers: a content block, an unknown request, a status outage, a passed deadline.
ON_THE_EMULATOR: list[tuple[str, type[SegmindError], int | None]] = [
    ("failed", InferenceFailed, 422),
    ("expired", RequestExpired, 404),
    ("gave_up", PollingGaveUp, 502),
    ("timeout", InferenceTimeout, None),
]


@pytest.mark.parametrize(("kind", "cls", "status"), ON_THE_EMULATOR, ids=[c[0] for c in ON_THE_EMULATOR])
def test_a_real_wait_on_the_emulator_round_trips_through_its_event(
    segmind_conn: EmulatorProcess, kind: str, cls: type[SegmindError], status: int | None
) -> None:
    request_id = emulator_case(segmind_conn, kind)
    deadline_in = -5.0 if kind == "timeout" else 30.0

    event = trigger_run(request_id, deadline_in=deadline_in)
    blocking = blocking_wait(request_id, deadline_in=deadline_in)

    assert event["status"] == kind
    deferred = raised_by(event)
    assert type(deferred) is type(blocking) is cls
    assert deferred.request_id == blocking.request_id == request_id
    assert deferred.status_code == blocking.status_code == status
    if kind != "timeout":  # a timeout's message says how long the wait took, which differs
        assert str(deferred) == str(blocking)
    if kind == "failed":
        assert deferred.detail == blocking.detail == RAI_DETAIL


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
def surge() -> MuscleSurgeOperator:
    return MuscleSurgeOperator(task_id="surge", image_url="https://storage.example.com/athlete.png")


def sensor() -> SegmindRequestSensor:
    return SegmindRequestSensor(task_id="wait", request_id=REQUEST_ID)


@pytest.mark.parametrize("make_task", [surge, sensor], ids=["operator", "sensor"])
@pytest.mark.parametrize(
    "event", [None, {"request_id": REQUEST_ID}, {"status": "done", "request_id": REQUEST_ID}], ids=str
)
def test_execute_complete_refuses_a_malformed_event(make_task: Any, event: Any) -> None:
    context = fake_context()

    with pytest.raises(MalformedResponse):
        make_task().execute_complete(context, event)
    assert "output_url" not in context["ti"].xcom, "nothing may look like a finished job"


@pytest.mark.parametrize("make_task", [surge, sensor], ids=["operator", "sensor"])
@pytest.mark.parametrize("kind", sorted(BLOCKING_ERRORS))
def test_execute_complete_raises_what_the_blocking_path_raises(make_task: Any, kind: str) -> None:
    blocking = BLOCKING_ERRORS[kind]()
    event = over_the_wire(events.error_event(REQUEST_ID, blocking))

    with pytest.raises(type(blocking)) as info:
        make_task().execute_complete(fake_context(), event)
    assert str(info.value) == str(blocking)


@pytest.mark.parametrize("make_task", [surge, sensor], ids=["operator", "sensor"])
def test_execute_complete_raises_retryable_polling_gave_up(make_task: Any) -> None:
    event = over_the_wire(events.error_event(REQUEST_ID, ServerError("HTTP 500", status_code=500)))

    with pytest.raises(PollingGaveUp) as info:
        make_task().execute_complete(fake_context(), event)
    assert not isinstance(info.value, AirflowFailException)
