"""Scenario "permanent failures end fast and clearly" (tests/realairflow/test_failures_and_secrets.py).

Every task has ``retries=2`` and must still end failed after one try, with a log that says what
happened and what to do: a content block (FAILED, HTTP 422) in blocking and deferrable mode, no
credits (406), a rejected key (401), and a request id older than the retention window (404) in
poke and deferrable sensor mode. Connections (set by the test): ``segmind_default`` (the normal
emulator), ``segmind_badkey`` (same emulator, a key it does not know), ``segmind_broke`` (an
emulator with no credits) and ``segmind_short`` (an emulator keeping records for 2 s).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator
from airflow_provider_muscle_surge.sensors.segmind import SegmindRequestSensor

IMAGE = "{{ dag_run.conf['image_url'] }}"
#: A first look at once: the content block is seen before the worker's report of the deferral is, and
#: the trigger must hold it (Airflow 3.3.2 would otherwise fail the resumed try as "state changed externally").
LOOK_AT_ONCE = {"first_poll_seconds": 0.0}

with DAG(
    dag_id="surge_policy_failures",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["realairflow", "surge_policy"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
):
    MuscleSurgeOperator(task_id="content_blocked", image_url="{{ dag_run.conf['rai_image_url'] }}")
    MuscleSurgeOperator(
        task_id="content_blocked_deferred",
        image_url="{{ dag_run.conf['rai_image_url'] }}",
        deferrable=True,
        poll_schedule=LOOK_AT_ONCE,
    )
    MuscleSurgeOperator(task_id="no_credits", image_url=IMAGE, segmind_conn_id="segmind_broke")
    MuscleSurgeOperator(task_id="bad_key", image_url=IMAGE, segmind_conn_id="segmind_badkey")
    SegmindRequestSensor(
        task_id="expired_poke",
        request_id="{{ dag_run.conf['expired_request_id'] }}",
        segmind_conn_id="segmind_short",
        poke_interval=1,
        timeout=120,
    )
    SegmindRequestSensor(
        task_id="expired_deferred",
        request_id="{{ dag_run.conf['expired_request_id'] }}",
        segmind_conn_id="segmind_short",
        deferrable=True,
        poll_schedule=LOOK_AT_ONCE,
        timeout=120,
    )
