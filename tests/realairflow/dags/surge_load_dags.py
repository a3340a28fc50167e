"""Load and throttling scenarios (tests/realairflow/test_load_and_crashes.py).

Both DAGs map one ``MuscleSurgeOperator`` over a list of images built at run time from the run's
conf (``jobs``: how many, ``emulator_url``: whose sample portraits, ``output_dir``: where the
videos go), so the test decides sizes and paths without a DAG change:

* ``surge_fault_load`` -- N deferrable jobs at once against an emulator that rate-limits (429)
  and injects transient faults; connection ``segmind_default``.
* ``surge_fault_pool`` -- the example pipeline's throttle (``example_muscle_surge_daily``): the
  mapped renders run in a pool the test creates with ``include_deferred=True``, so a deferred
  render keeps its slot; connection ``segmind_fault_pool``, pool ``surge_fault_pool``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task
from sample_images import sample_image_urls

from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

START = datetime(2024, 1, 1)
OUTPUT_DIR = "{{ dag_run.conf['output_dir'] }}/"
POOL = "surge_fault_pool"


@dag(
    dag_id="surge_fault_load",
    schedule=None,
    start_date=START,
    catchup=False,
    tags=["realairflow", "surge_fault"],
    # The hook absorbs 429s and faults itself; an Airflow retry would re-attach, never resubmit.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
)
def surge_fault_load() -> None:
    @task
    def images(**context: Any) -> list[str]:
        return sample_image_urls(dict(context["dag_run"].conf))

    MuscleSurgeOperator.partial(
        task_id="surge",
        segmind_conn_id="segmind_default",
        quality="360p",
        deferrable=True,
        output_path=OUTPUT_DIR,
    ).expand(image_url=images())


@dag(
    dag_id="surge_fault_pool",
    schedule=None,
    start_date=START,
    catchup=False,
    tags=["realairflow", "surge_fault"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=2)},
)
def surge_fault_pool() -> None:
    @task
    def images(**context: Any) -> list[str]:
        return sample_image_urls(dict(context["dag_run"].conf))

    MuscleSurgeOperator.partial(
        task_id="render",
        segmind_conn_id="segmind_fault_pool",
        quality="360p",
        deferrable=True,
        output_path=OUTPUT_DIR,
        pool=POOL,
    ).expand(image_url=images())


surge_fault_load()
surge_fault_pool()
