"""Extra links in the Airflow UI: one click from a task to its video and to its request.

Both read XCom that the operator and the sensor push (``output_url`` when the job completes,
``status_url`` right after the submit, before any wait or deferral). Airflow 3 evaluates
``get_link`` in the worker when a try ends *or defers* and stores the URL for the UI, so the
request link is there while the task is still deferred.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def _xcom_link(key: str, ti_key: Any) -> str:
    from airflow.sdk.execution_time.xcom import XCom

    value = XCom.get_value(ti_key=ti_key, key=key)
    return value if isinstance(value, str) and value.startswith(("http://", "https://")) else ""


class SegmindVideoLink(BaseOperatorLink):
    """The finished video (Segmind's output URL; it expires with the request after 1 hour)."""

    name = "Muscle Surge video"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _xcom_link("output_url", ti_key)


class SegmindRequestLink(BaseOperatorLink):
    """The request's status URL (JSON; needs the API key header to open)."""

    name = "Segmind request"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _xcom_link("status_url", ti_key)
