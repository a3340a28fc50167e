"""Extra links in the Airflow UI: one click from a task to its output and to its request.

Both read XCom that the operator and the sensor push (``output_url`` when the job completes,
``status_url`` right after the submit, before any wait or deferral). Airflow 3 evaluates
``get_link`` in the worker when a try ends *or defers* and stores the URL for the UI, so the
request link is there while the task is still deferred.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def _xcom_link(key: str, ti_key: Any) -> str:
    from airflow.sdk.execution_time.xcom import XCom

    return _as_link(XCom.get_value(ti_key=ti_key, key=key))


def _as_link(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith(("http://", "https://")) else ""


def link_xcoms(values: Mapping[str, Any]) -> dict[str, str]:
    """What a worker stores for these links when a try ends (``<link.xcom_key>: url``), from the XComs
    the links read (``values``). For a task ended in the triggerer (zero-worker mode), where no worker
    evaluates ``get_link``: the trigger pushes these itself, so the UI shows the same links."""
    links = (SegmindOutputLink(), SegmindRequestLink())
    return {link.xcom_key: _as_link(values.get(link.source_key)) for link in links}


class SegmindOutputLink(BaseOperatorLink):
    """The finished output (Segmind's output URL; it expires with the request after 1 hour).

    Named for what any model returns, a video for Muscle Surge, an image for an image model:
    ``SegmindSubmitOperator`` runs every model under the same link.
    """

    name = "Segmind output"
    #: The XCom the link shows.
    source_key = "output_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _xcom_link(self.source_key, ti_key)


class SegmindVideoLink(SegmindOutputLink):
    """Deprecated: use :class:`SegmindOutputLink` (this is its earlier name, and the same link).

    Kept so that an operator or plugin that still names this class, and a DAG serialized with
    this class path, load and show the link instead of failing on a missing class. Its XCom key
    (``_link_SegmindVideoLink``, from the class name) is the one tasks of those DAGs stored.
    """

    def __init__(self) -> None:
        warnings.warn(
            "SegmindVideoLink is deprecated; use airflow_provider_muscle_surge.links.SegmindOutputLink",
            AirflowProviderDeprecationWarning,
            stacklevel=2,
        )
        super().__init__()


class SegmindRequestLink(BaseOperatorLink):
    """The request's status URL (JSON; needs the API key header to open)."""

    name = "Segmind request"
    source_key = "status_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _xcom_link(self.source_key, ti_key)
