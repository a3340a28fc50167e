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

import contextlib
from collections.abc import Iterator
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "CertificateError",
    "InferenceFailed",
    "InferenceTimeout",
    "InsecureConnection",
    "InsufficientCredits",
    "InvalidParameter",
    "MalformedResponse",
    "ModelNotFound",
    "PollingGaveUp",
    "RateLimited",
    "RedirectRefused",
    "RequestExpired",
    "SegmindError",
    "ServerError",
    "SubmitOutcomeUnknown",
    "TransportError",
    "UnreadableAnswer",
]


class SegmindError(AirflowException):
    """Base class: every error this provider raises about the Segmind API."""

    #: Whether waiting and trying again can succeed. Hooks retry only these.
    retryable: bool = False
    #: The request may have reached the server and been acted on (a reset or timeout after it was
    #: sent, a body cut short, a gateway's 502/504). Harmless for a status poll; for a paid submit
    #: it means "maybe accepted and billed", which the hooks never answer with a second POST.
    outcome_unknown: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        outcome_unknown: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail
        self.request_id = request_id
        if outcome_unknown is not None:
            self.outcome_unknown = outcome_unknown

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
    """The connection would send the API key in clear text, or to a host it was not configured for."""


class RedirectRefused(InsecureConnection):
    """The API answered a redirect. Following it would send the key wherever the answer says.

    ``requests`` strips only ``Authorization`` on a cross-host redirect and aiohttp strips nothing, so
    ``x-api-key`` would go to the new host; the hooks never follow redirects on API calls.
    """


class CertificateError(PermanentSegmindError):
    """TLS verification failed: retrying cannot fix a wrong or intercepted certificate."""


class SubmitOutcomeUnknown(PermanentSegmindError):
    """The answer to a paid submit was lost after it was sent: the job may exist and be billed.

    Permanent on purpose: an automatic retry would POST again and could pay twice. The message says
    where to look and how to resubmit deliberately (clear the task, or opt in to resubmission with
    ``resubmit_on_unknown_outcome``).
    """

    def __init__(self, model: str, cause: SegmindError, *, console: str = "https://cloud.segmind.com/console") -> None:
        super().__init__(
            f"The answer to the {model} submit was lost after the request was sent ({cause}). Segmind may have "
            f"accepted and billed the job, so it was NOT submitted again. Check the requests/usage pages of "
            f"{console} for a {model} request made at this time before resubmitting. To submit again on purpose, "
            "clear this task; to let the provider resubmit automatically in this situation (availability over "
            "cost), set resubmit_on_unknown_outcome=True on the operator or in the connection's extra.",
            status_code=cause.status_code,
            detail=cause.detail,
            outcome_unknown=True,
        )
        self.model = model

    @classmethod
    @contextlib.contextmanager
    def guard(cls, model: str) -> Iterator[None]:
        """Around a paid call: an error whose outcome is unknown becomes this exception."""
        try:
            yield
        except SegmindError as err:
            if err.outcome_unknown and not isinstance(err, cls):
                raise cls(model, err) from None
            raise


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
    """No usable answer: connection refused or reset, a time limit passed, a truncated body.

    ``outcome_unknown`` tells "never reached the server" (refused, connect timeout) from "sent, then
    the answer was lost" (reset, timeout after sending, a body cut short).
    """


class UnreadableAnswer(RetryableSegmindError):
    """A 2xx answer that cannot be the API's: HTML from a proxy, or a body over the size cap.

    Retryable (bounded) because a proxy glitch on a status poll passes; on a submit it is an unknown
    outcome, since the server did answer 2xx.
    """

    outcome_unknown = True


class PollingGaveUp(RetryableSegmindError):
    """The status endpoint stayed unreachable; the job itself may be fine.

    Retryable on purpose: the request id is kept (in ``task_state_store``) so the next try
    re-attaches to the same paid job instead of submitting again. The blocking wait and the trigger
    both end a wait with it, so both modes fail (and retry) the same way.
    """

    @classmethod
    def after(cls, request_id: str, err: SegmindError) -> PollingGaveUp:
        return cls(
            f"gave up polling Segmind request {request_id} after repeated transient errors ({err}). "
            "The job itself may still be running; the next try re-attaches to it instead of paying again.",
            status_code=err.status_code,
            detail=err.detail,
            request_id=request_id,
        )
