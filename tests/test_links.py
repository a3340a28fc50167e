"""Extra links: one click from a task in the Airflow UI to its output and to its Segmind request.

Airflow 3 evaluates ``get_link`` in the worker when the task finishes (or defers) and stores the
answer in XCom under ``link.xcom_key``; the UI reads that XCom. So the links read the XCom the
operator pushed (``output_url``, ``status_url``) and must never produce a broken link.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import DAG
from airflow.sdk.execution_time import xcom as sdk_xcom
from airflow.sdk.types import TaskInstanceKey
from dags_for_tests.dagtest_support import run_dag, use_private_airflow_db, xcom

from airflow_provider_muscle_surge.links import SegmindOutputLink, SegmindRequestLink, SegmindVideoLink
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator, SegmindSubmitOperator
from airflow_provider_muscle_surge.sensors.segmind import SegmindRequestSensor

KEY = TaskInstanceKey(dag_id="videos", task_id="surge", run_id="manual__1", try_number=1, map_index=-1)
VIDEO = "https://cdn.segmind.com/outputs/3f1c.mp4"
STATUS = "https://api.segmind.com/v2/requests/3f1c/status"


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    with use_private_airflow_db() as home:
        yield home


@pytest.fixture
def stored_xcom() -> Iterator[dict[str, Any]]:
    """XCom as the links see it (``XCom.get_value`` of the Task SDK): ``stored_xcom[key] = value``."""
    values: dict[str, Any] = {}
    with mock.patch.object(sdk_xcom.XCom, "get_value", side_effect=lambda *, ti_key, key: values.get(key)):
        yield values


def test_link_names_are_what_the_ui_shows() -> None:
    assert SegmindOutputLink().name == "Segmind output"
    assert SegmindRequestLink().name == "Segmind request"


def test_output_link_is_the_output_url(stored_xcom: dict[str, Any]) -> None:
    stored_xcom["output_url"] = VIDEO

    assert SegmindOutputLink().get_link(mock.sentinel.operator, ti_key=KEY) == VIDEO
    sdk_xcom.XCom.get_value.assert_called_once_with(ti_key=KEY, key="output_url")  # type: ignore[attr-defined]


def test_request_link_is_the_status_url(stored_xcom: dict[str, Any]) -> None:
    stored_xcom["status_url"] = STATUS

    assert SegmindRequestLink().get_link(mock.sentinel.operator, ti_key=KEY) == STATUS


@pytest.mark.parametrize("link", [SegmindOutputLink(), SegmindRequestLink()], ids=lambda link: link.name)
def test_link_is_empty_before_the_value_exists(stored_xcom: dict[str, Any], link: Any) -> None:
    assert link.get_link(mock.sentinel.operator, ti_key=KEY) == ""


@pytest.mark.parametrize("value", [None, "", 42, "javascript:alert(1)", "/relative/video.mp4", "ftp://x/v.mp4"])
def test_output_link_never_renders_something_that_is_not_a_web_url(stored_xcom: dict[str, Any], value: Any) -> None:
    stored_xcom["output_url"] = value

    assert SegmindOutputLink().get_link(mock.sentinel.operator, ti_key=KEY) == ""


def test_the_old_video_link_class_still_works_and_says_it_is_deprecated(stored_xcom: dict[str, Any]) -> None:
    """DAGs and plugins that name ``SegmindVideoLink`` keep their link (a subclass of the new one)."""
    stored_xcom["output_url"] = VIDEO

    with pytest.warns(AirflowProviderDeprecationWarning, match="SegmindOutputLink"):
        link = SegmindVideoLink()

    assert isinstance(link, SegmindOutputLink)
    assert link.name == SegmindOutputLink().name
    assert link.get_link(mock.sentinel.operator, ti_key=KEY) == VIDEO


@pytest.mark.parametrize(
    "task",
    [
        MuscleSurgeOperator(task_id="surge", image_url="https://storage.example.com/athlete.png"),
        SegmindSubmitOperator(task_id="submit", model="flux-schnell", payload={"prompt": "a runner"}),
        SegmindRequestSensor(task_id="wait", request_id="3f1c"),
    ],
    ids=["MuscleSurgeOperator", "SegmindSubmitOperator", "SegmindRequestSensor"],
)
def test_operators_and_sensor_expose_both_links(task: Any) -> None:
    names = {link.name for link in task.operator_extra_links}

    assert names == {"Segmind output", "Segmind request"}


def test_links_are_stored_for_the_ui_when_the_task_finishes(airflow_db: Path, segmind_conn: Any) -> None:
    emulator = segmind_conn
    with DAG("links_are_stored", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        MuscleSurgeOperator(task_id="surge", image_url=emulator.sample_url(), poll_interval=0.2)

    run = run_dag(dag)

    request_id = xcom(run, "surge", "request_id")
    assert xcom(run, "surge", SegmindOutputLink().xcom_key) == xcom(run, "surge", "output_url")
    assert re.fullmatch(rf"{emulator.url}/_emulator/outputs/{request_id}\.mp4", xcom(run, "surge", "output_url"))
    assert xcom(run, "surge", SegmindRequestLink().xcom_key) == f"{emulator.url}/v2/requests/{request_id}/status"
