"""Reading a ``segmind`` Airflow connection: shared by the sync and the async hook.

Both hooks must agree on the base URL, the key, the retry bounds and the URL policy, so the
translation from a Connection lives here once. Every setting is checked here, before any call:
a bad one is refused with the setting's name, never discovered after a paid submit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from airflow_provider_muscle_surge.checks import finite_number
from airflow_provider_muscle_surge.contract import (
    API_KEY_HEADER,
    DEFAULT_HOST,
    Submission,
    result_path,
    status_path,
    upload_url_for,
)
from airflow_provider_muscle_surge.contract import DEFAULT_CONN_ID as DEFAULT_CONN_ID  # for the hooks and trigger
from airflow_provider_muscle_surge.exceptions import AuthenticationError, InvalidParameter
from airflow_provider_muscle_surge.hooks.key_budget import (
    DEFAULT_MAX_CONCURRENT_SUBMITS,
    DEFAULT_STATUS_CALLS_PER_SECOND,
    KeyBudget,
    budget_for,
)
from airflow_provider_muscle_surge.retry import RetryPolicy, seconds_from_extra
from airflow_provider_muscle_surge.urls import Origin, checked_url, origin_of

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: Total seconds one HTTP call may take (connect, headers and body), not per socket read.
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class SegmindSettings:
    base_url: str
    origin: Origin
    api_key: str = field(repr=False)
    upload_url: str
    retry: RetryPolicy
    timeout: float
    #: Overrides for the polling schedule (``PollSchedule`` field names), from the extra ``poll``.
    poll: dict[str, Any]
    #: Resubmit when a submit's answer is lost after sending (may pay twice). Off unless opted in.
    resubmit_on_unknown_outcome: bool = False
    #: Status and result calls per second for this key, shared by every waiter of the process.
    max_status_calls_per_second: float = DEFAULT_STATUS_CALLS_PER_SECOND
    #: Paid submits in flight for this key in the process (pools do not bound the triggerer).
    max_concurrent_submits: int = DEFAULT_MAX_CONCURRENT_SUBMITS

    @classmethod
    def from_connection(cls, conn: Connection) -> SegmindSettings:
        from airflow.sdk.log import mask_secret

        extra = conn.extra_dejson or {}
        host = (conn.host or DEFAULT_HOST).rstrip("/")
        if "://" not in host:  # the scheme belongs in the host URL; the form hides ``schema``
            host = f"https://{host}"
        if conn.port:
            host = f"{host}:{conn.port}"
        origin, base_url = checked_url(host, f"the host of connection {conn.conn_id!r}")
        _, upload_url = checked_url(extra.get("upload_url") or upload_url_for(base_url), "the upload_url extra")
        if not conn.password:
            raise AuthenticationError(
                f"connection {conn.conn_id!r} has no API key: put the Segmind key in its password field"
            )
        # Registered before any request: whatever logs or exception text might echo it is redacted.
        mask_secret(conn.password)
        poll = extra.get("poll") or {}
        if not isinstance(poll, dict):  # its fields are checked where a schedule is built (PollSchedule.checked)
            raise InvalidParameter("extra.poll", poll, "a JSON object of PollSchedule fields")
        return cls(
            base_url=base_url,
            origin=origin,
            api_key=conn.password,
            upload_url=upload_url,
            retry=RetryPolicy.from_extra(extra),
            timeout=seconds_from_extra(extra, "timeout", DEFAULT_TIMEOUT),
            poll=dict(poll),
            resubmit_on_unknown_outcome=_flag(extra, "resubmit_on_unknown_outcome"),
            max_status_calls_per_second=_rate(extra, "max_status_calls_per_second"),
            max_concurrent_submits=_count(extra, "max_concurrent_submits"),
        )

    def key_budget(self) -> KeyBudget:
        """The process-wide budget of this connection's key on its origin (see ``hooks/key_budget.py``)."""
        return budget_for(
            str(self.origin),
            self.api_key,
            status_rate=self.max_status_calls_per_second,
            max_submits=self.max_concurrent_submits,
        )

    @property
    def headers(self) -> dict[str, str]:
        from airflow_provider_muscle_surge import __version__

        return {API_KEY_HEADER: self.api_key, "User-Agent": f"airflow-provider-muscle-surge/{__version__}"}

    def resend(self, override: bool | None) -> bool:
        """Whether a paid call may be sent again when its outcome is unknown: the caller's word, else the extra's."""
        return self.resubmit_on_unknown_outcome if override is None else bool(override)

    def url(self, path: str) -> str:
        return self.base_url + path

    def pin(self, submission: Submission) -> Submission:
        """The submission with URLs on the configured origin: a server cannot point us elsewhere.

        The hooks poll ``status_path(request_id)`` on the configured host anyway; this keeps a
        foreign ``status_url`` out of XCom and the UI links too.
        """
        if origin_of(submission.status_url) == self.origin and origin_of(submission.response_url) == self.origin:
            return submission
        return replace(
            submission,
            status_url=self.url(status_path(submission.request_id)),
            response_url=self.url(result_path(submission.request_id)),
        )


def _flag(extra: dict[str, Any], name: str) -> bool:
    value = extra.get(name, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidParameter(f"extra.{name}", value, "true or false")
    return value


#: Bounds of the budget extras: below the lowest, a wait would last minutes per call; above the
#: highest, the bucket would no longer bound anything a process can send.
_MIN_RATE, _MAX_RATE = 0.1, 10_000.0
_MAX_SUBMITS = 1000


def _rate(extra: dict[str, Any], name: str) -> float:
    value = extra.get(name)
    if value in (None, ""):
        return DEFAULT_STATUS_CALLS_PER_SECOND
    rule = f"calls per second, a finite number from {_MIN_RATE:g} to {_MAX_RATE:g}"
    number = finite_number(f"extra.{name}", value, rule)
    if not _MIN_RATE <= number <= _MAX_RATE:
        raise InvalidParameter(f"extra.{name}", value, rule)
    return number


def _count(extra: dict[str, Any], name: str) -> int:
    value = extra.get(name)
    if value in (None, ""):
        return DEFAULT_MAX_CONCURRENT_SUBMITS
    rule = f"a whole number from 1 to {_MAX_SUBMITS}"
    if isinstance(value, bool) or not str(value).strip().isdigit() or not 1 <= int(str(value)) <= _MAX_SUBMITS:
        raise InvalidParameter(f"extra.{name}", value, rule)
    return int(str(value))
