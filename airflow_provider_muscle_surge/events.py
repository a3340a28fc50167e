"""Trigger events: how a wait's outcome crosses from the triggerer back to the worker.

The trigger turns the outcome of :meth:`SegmindAsyncHook.wait_for_request` into one event;
``execute_complete`` turns the event back into the *same* exception class the blocking path
raises, so a deferrable and a blocking task fail identically (and retry, or not, identically).

Events hold plain JSON only, and name an outcome by a fixed *kind* from :data:`ERROR_KINDS`, never
by a Python class name: an event may sit in the database across an upgrade, and renaming a class
must not turn a stored deferral into an unreadable one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    RetryableSegmindError,
    SegmindError,
    ServerError,
    SubmitOutcomeUnknown,
    TransportError,
    UnreadableAnswer,
    rebuild,
)

COMPLETED = "completed"
#: Every failure kind an event may carry, and the exception it stands for. Append only: a stored
#: event names one of these, so a kind is never renamed or reused.
ERROR_KINDS: Mapping[str, type[SegmindError]] = {
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
#: Kinds only the zero-worker trigger sends, for an error raised outside a wait (its submit, saving
#: the output): the worker raises it as it is, as ``execute`` would have. Append only, as above.
DIRECT_KINDS: Mapping[str, type[SegmindError]] = {
    "submit_unknown": SubmitOutcomeUnknown,
    "rate_limited": RateLimited,
    "server": ServerError,
    "transport": TransportError,
    "unreadable": UnreadableAnswer,
    "retryable": RetryableSegmindError,
}
#: Not an outcome: the zero-worker trigger hands the task to a worker before anything was submitted.
RUN_ON_WORKER = "run_on_worker"
KINDS = (COMPLETED, *ERROR_KINDS, *DIRECT_KINDS)
#: Events written by 0.1.0 said ``"status": "error"`` and named the class; these are the names it used.
_LEGACY_CLASSES = {
    cls.__name__: cls
    for cls in (AuthenticationError, BadRequest, InsufficientCredits, MalformedResponse, ModelNotFound, PollingGaveUp)
}


def completed_event(request_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"status": COMPLETED, "request_id": request_id, "result": result}


def kind_of(err: SegmindError, table: Mapping[str, type[SegmindError]] = ERROR_KINDS) -> str:
    """The kind of the nearest class of ``err`` in ``table`` (most specific first)."""
    for cls in type(err).__mro__:
        for kind, known in table.items():
            if cls is known:
                return kind
    return "gave_up" if err.retryable else "error"


def error_event(request_id: str, err: SegmindError) -> dict[str, Any]:
    """The event for a wait that ended in ``err``.

    A transient error that outlived the hook's retries becomes :class:`PollingGaveUp` (the wait
    already raises it; this covers anything else): the job may be fine, and the retried task must
    re-attach to it, not submit again.
    """
    if err.retryable and not isinstance(err, PollingGaveUp):
        err = PollingGaveUp.after(request_id, err)
    return {
        "status": kind_of(err),
        "request_id": request_id,
        "message": str(err),
        "error_state": _plain_state(err),
    }


def failure_event(request_id: str | None, err: SegmindError, *, waiting: bool = True) -> dict[str, Any]:
    """The event for a zero-worker job that ended in ``err``: during the wait as :func:`error_event`;
    before the submit (no request id yet) or while saving the output, the error itself, so the
    worker raises what ``execute`` would have raised there."""
    if request_id and waiting:
        return error_event(request_id, err)
    return {
        "status": kind_of(err, {**DIRECT_KINDS, **ERROR_KINDS}),
        "request_id": request_id or "",
        "message": str(err),
        "error_state": _plain_state(err),
    }


def run_on_worker_event(reason: str) -> dict[str, Any]:
    return {"status": RUN_ON_WORKER, "reason": reason}


def run_on_worker_reason(event: Any) -> str | None:
    """The reason when ``event`` hands the task to a worker (see :func:`run_on_worker_event`), else None."""
    if isinstance(event, dict) and event.get("status") == RUN_ON_WORKER:
        return str(event.get("reason") or "no reason given")
    return None


def _plain_state(err: SegmindError) -> dict[str, Any]:
    return {k: v for k, v in vars(err).items() if isinstance(v, (str, int, float, bool, type(None)))}


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
    cls = ERROR_KINDS.get(event["status"]) or DIRECT_KINDS[event["status"]]
    if event["status"] == "error" and "error_class" in event:
        cls = _LEGACY_CLASSES.get(str(event["error_class"]), MalformedResponse)
    raise rebuild(cls, str(event.get("message") or event), dict(event.get("error_state") or {}))
