"""Scenario "the API key never leaks" (tests/realairflow/test_failures_and_secrets.py).

Every path that touches the key runs once: blocking and deferrable operators, a poke and a
deferrable sensor, and failures (a content block in the triggerer, a rejected key). The deferrable
task's first status call is 8 s after the submit so the test can read the ``trigger`` table while
it is deferred. The test then searches everything the deployment kept for the key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator
from airflow_provider_muscle_surge.sensors.segmind import SegmindRequestSensor

IMAGE = "{{ dag_run.conf['image_url'] }}"
REQUEST_OF_BLOCKING = "{{ ti.xcom_pull(task_ids='blocking', key='request_id') }}"

with DAG(
    dag_id="surge_policy_secrets",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["realairflow", "surge_policy"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
):
    blocking = MuscleSurgeOperator(task_id="blocking", image_url=IMAGE, seed=7)
    MuscleSurgeOperator(
        task_id="deferred", image_url=IMAGE, seed=8, deferrable=True, poll_schedule={"first_poll_seconds": 8}
    )
    blocking >> SegmindRequestSensor(task_id="sensor_poke", request_id=REQUEST_OF_BLOCKING, poke_interval=1)
    blocking >> SegmindRequestSensor(task_id="sensor_deferred", request_id=REQUEST_OF_BLOCKING, deferrable=True)
    MuscleSurgeOperator(task_id="failing_deferred", image_url="{{ dag_run.conf['rai_image_url'] }}", deferrable=True)
    MuscleSurgeOperator(task_id="failing_bad_key", image_url=IMAGE, segmind_conn_id="segmind_badkey")
