"""Exceptions raised by the Segmind hooks, operators and sensors.

Why two families: Airflow decides whether to retry a task from the exception class alone.
Failures that cannot succeed later (a bad key, no credits, a content block, an expired
request) derive from :class:`AirflowFailException`, so the task fails at once even when
``retries`` is set; failures that can pass later (429, 5xx, dropped connections, a status
endpoint that stayed unreachable) derive from plain :class:`AirflowException`, so Airflow's
own retries take over after the hook's bounded backoff gave up.

Names follow the official ``segmind`` SDK where it has one (``InferenceFailed``,
``InferenceTimeout``). Messages say what happened and what to do; they carry the HTTP
status and the server's detail, never the API key (the hook also registers the key with
``mask_secret``).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "InferenceFailed",
    "InferenceTimeout",
    "InsecureConnection",
    "InsufficientCredits",
    "InvalidParameter",
    "MalformedResponse",
    "ModelNotFound",
    "PollingGaveUp",
    "RateLimited",
    "RequestExpired",
    "SegmindError",
    "ServerError",
    "TransportError",
]


class SegmindError(AirflowException):
    """Base class: every error this provider raises about the Segmind API."""

    #: Whether waiting and trying again can succeed. Hooks retry only these.
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail
        self.request_id = request_id

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword fields when the exception crosses a process boundary.
        return (rebuild, (type(self), str(self), self.__dict__.copy()))


def rebuild(cls: type[SegmindError], message: str, state: dict[str, Any]) -> SegmindError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class PermanentSegmindError(SegmindError, AirflowFailException):
    """A failure that will not pass on retry: the task fails without Airflow retries."""


# --- refused before any HTTP call -------------------------------------------------------------
class InvalidParameter(PermanentSegmindError, ValueError):
    """A request parameter breaks a documented rule; nothing was sent (and nothing billed)."""

    def __init__(self, field: str, value: Any, rule: str) -> None:
        super().__init__(f"invalid {field}={value!r}: {rule}")
        self.field = field
        self.value = value
        self.rule = rule


class InsecureConnection(PermanentSegmindError):
    """The connection would send the API key in clear text to a host that is not loopback."""


# --- permanent HTTP answers ---------------------------------------------------------------------
class BadRequest(PermanentSegmindError):
    """HTTP 400: the server rejected the parameters or the body format."""


class AuthenticationError(PermanentSegmindError):
    """HTTP 401/403: the key is missing, wrong, or lacks permission."""


class ModelNotFound(PermanentSegmindError):
    """HTTP 404 on a model endpoint: the slug does not exist."""


class RequestExpired(PermanentSegmindError):
    """HTTP 404 on a request id: unknown, or older than the 1-hour retention window."""


class InsufficientCredits(PermanentSegmindError):
    """HTTP 406: no credits left (also a team spend limit or a wrong Content-Type)."""


class InferenceFailed(PermanentSegmindError):
    """The request reached FAILED (served as HTTP 422); the server's detail says why."""


class MalformedResponse(PermanentSegmindError):
    """The server answered something the API contract does not allow (not JSON, no id, ...)."""


class InferenceTimeout(PermanentSegmindError):
    """The request did not reach a terminal state before the deadline.

    It is permanent for *this* try because the deadline is the user's decision; the job may
    still be running, so the message carries the request id to re-poll it.
    """

    def __init__(self, request_id: str, elapsed_s: float, status: str | None = None) -> None:
        where = f" (last status {status})" if status else ""
        super().__init__(
            f"Segmind request {request_id} did not finish within {elapsed_s:.0f}s{where}. "
            f"The job may still be running: poll it with SegmindRequestSensor(request_id="
            f"{request_id!r}) within 1 hour, or raise the timeout.",
            request_id=request_id,
        )
        self.elapsed_s = elapsed_s


# --- transient: worth another try ----------------------------------------------------------------
class RetryableSegmindError(SegmindError):
    """A failure that can pass later; the hook backs off and retries, then Airflow may retry."""

    retryable = True


class RateLimited(RetryableSegmindError):
    """HTTP 429. ``retry_after`` is the server's wait hint in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(RetryableSegmindError):
    """HTTP 5xx: the service is having trouble; retried with backoff."""


class TransportError(RetryableSegmindError):
    """No usable answer: connection refused or reset, read timeout, truncated body."""


class PollingGaveUp(RetryableSegmindError):
    """The status endpoint stayed unreachable; the job itself may be fine.

    Retryable on purpose: the request id is kept (in ``task_state_store``) so the next try
    re-attaches to the same paid job instead of submitting again.
    """
