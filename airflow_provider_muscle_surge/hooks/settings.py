"""Reading a ``segmind`` Airflow connection: shared by the sync and the async hook.

Both hooks must agree on the base URL, the key, the retry bounds and the plain-http refusal,
so the translation from a Connection lives here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_muscle_surge.contract import DEFAULT_HOST, check_transport, upload_url_for
from airflow_provider_muscle_surge.exceptions import AuthenticationError
from airflow_provider_muscle_surge.retry import RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_CONN_ID = "segmind_default"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class SegmindSettings:
    base_url: str
    api_key: str = field(repr=False)
    upload_url: str
    retry: RetryPolicy
    timeout: float
    #: Overrides for the polling schedule (``PollSchedule`` field names), from the extra ``poll``.
    poll: dict[str, Any]

    @classmethod
    def from_connection(cls, conn: Connection) -> SegmindSettings:
        from airflow.sdk.log import mask_secret

        extra = conn.extra_dejson or {}
        host = (conn.host or DEFAULT_HOST).rstrip("/")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        if conn.port:
            host = f"{host}:{conn.port}"
        check_transport(host)
        if not conn.password:
            raise AuthenticationError(
                f"connection {conn.conn_id!r} has no API key: put the Segmind key in its password field"
            )
        # Registered before any request: whatever logs or exception text might echo it is redacted.
        mask_secret(conn.password)
        return cls(
            base_url=host,
            api_key=conn.password,
            upload_url=extra.get("upload_url") or upload_url_for(host),
            retry=RetryPolicy.from_extra(extra),
            timeout=float(extra.get("timeout") or DEFAULT_TIMEOUT),
            poll=dict(extra.get("poll") or {}),
        )

    @property
    def headers(self) -> dict[str, str]:
        from airflow_provider_muscle_surge import __version__

        return {"x-api-key": self.api_key, "User-Agent": f"airflow-provider-muscle-surge/{__version__}"}
