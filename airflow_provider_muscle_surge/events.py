"""Trigger events: how a wait's outcome crosses from the triggerer back to the worker.

The trigger turns the outcome of :meth:`SegmindAsyncHook.wait_for_request` into one event;
``execute_complete`` turns the event back into the *same* exception class the blocking path
raises, so a deferrable and a blocking task fail identically (and retry, or not, identically).
Events hold plain JSON only.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_muscle_surge import exceptions as exc_module
from airflow_provider_muscle_surge.exceptions import (
    InferenceFailed,
    InferenceTimeout,
    MalformedResponse,
    PollingGaveUp,
    RequestExpired,
    SegmindError,
    rebuild,
)

COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"
TIMEOUT = "timeout"
ERROR = "error"
KINDS = (COMPLETED, FAILED, EXPIRED, TIMEOUT, ERROR)


def completed_event(request_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"status": COMPLETED, "request_id": request_id, "result": result}


def error_event(request_id: str, err: SegmindError) -> dict[str, Any]:
    """The event for a wait that ended in ``err``.

    A transient error that outlived the hook's retries becomes :class:`PollingGaveUp`: the
    job may be fine, and the retried task must re-attach to it, not submit again.
    """
    if err.retryable:
        err = PollingGaveUp(
            f"gave up polling Segmind request {request_id} after repeated transient errors ({err}). "
            "The job itself may still be running; the next try re-attaches to it instead of paying again.",
            status_code=err.status_code,
            detail=err.detail,
            request_id=request_id,
        )
    kind = {InferenceFailed: FAILED, RequestExpired: EXPIRED, InferenceTimeout: TIMEOUT}.get(type(err), ERROR)
    return {
        "status": kind,
        "request_id": request_id,
        "message": str(err),
        "error_class": type(err).__name__,
        "error_state": {k: v for k, v in vars(err).items() if isinstance(v, (str, int, float, bool, type(None)))},
    }


def result_from_event(event: Any) -> dict[str, Any]:
    """The COMPLETED result carried by ``event``, or raise what the blocking path would have raised.

    A missing or unknown status is an error, never a success.
    """
    if not isinstance(event, dict) or event.get("status") not in KINDS or not isinstance(event.get("request_id"), str):
        raise MalformedResponse(f"the Segmind trigger sent an event this operator does not understand: {event!r}")
    if event["status"] == COMPLETED:
        result = event.get("result")
        if not isinstance(result, dict):
            raise MalformedResponse(f"the Segmind trigger reported completion without a result body: {event!r}")
        return result
    cls = getattr(exc_module, str(event.get("error_class")), None)
    if not (isinstance(cls, type) and issubclass(cls, SegmindError)):
        cls = MalformedResponse
    raise rebuild(cls, str(event.get("message") or event), dict(event.get("error_state") or {}))
