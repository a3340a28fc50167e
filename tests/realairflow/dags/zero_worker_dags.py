"""Zero-worker mode (``start_from_trigger=True``) in a real deployment (tests/realairflow/test_zero_worker.py).

Each DAG takes its paths from the run's conf (``output_dir``, ``emulator_url``) and talks to its
own emulator through its own connection, so each emulator's counters belong to one scenario:

* ``zero_worker_surge`` -- the same job twice, ``zero`` in zero-worker mode and ``classic`` the
  classic deferrable way, so the test can compare their results and XComs. ``segmind_zero``.
* ``zero_worker_kill`` -- a long job; the test SIGKILLs the triggerer mid-wait. ``segmind_zero_kill``.
* ``zero_worker_failures`` -- a content block (FAILED, HTTP 422): permanent, ends after one try
  although ``retries=2``; and a template naming a conf key the run does not have, which the
  triggerer must not render as "" and pay for: the task goes to a worker, which fails to render it.
  ``segmind_zero``.
* ``zero_worker_flaky`` -- the test makes the status endpoint fail past the retry bound on try 1
  (``PollingGaveUp``, retryable); try 2 re-attaches. ``segmind_zero_flaky``.
* ``zero_worker_mapped`` -- ``.partial(start_from_trigger=True).expand(...)``: Airflow starts mapped
  tasks in a worker; the operator falls back to the classic path and logs it. ``segmind_zero``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag

from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

START = datetime(2024, 1, 1)
OUTPUT_DIR = "{{ dag_run.conf['output_dir'] }}/"
IMAGE = "{{ dag_run.conf['emulator_url'] }}/_emulator/samples/athlete-2.png"
TAGS = ["realairflow", "zero_worker"]
COMMON: dict[str, Any] = {"image_url": IMAGE, "quality": "360p", "seed": 7, "output_path": OUTPUT_DIR}
#: For the tasks that run in a worker (the classic one, the mapped fallback): on a loaded machine a
#: task process can lose its first call to the API server (a read timeout while the API server
#: starts up), and Airflow 3.3.2's fast-trigger race can fail a resumed try; the retry re-attaches.
WORKER_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(seconds=1)}


@dag(dag_id="zero_worker_surge", schedule=None, start_date=START, catchup=False, tags=TAGS)
def zero_worker_surge() -> None:
    MuscleSurgeOperator(task_id="zero", segmind_conn_id="segmind_zero", start_from_trigger=True, **COMMON)
    MuscleSurgeOperator(task_id="classic", segmind_conn_id="segmind_zero", deferrable=True, **COMMON, **WORKER_RETRIES)


@dag(dag_id="zero_worker_kill", schedule=None, start_date=START, catchup=False, tags=TAGS)
def zero_worker_kill() -> None:
    MuscleSurgeOperator(task_id="zero", segmind_conn_id="segmind_zero_kill", start_from_trigger=True, **COMMON)


@dag(dag_id="zero_worker_failures", schedule=None, start_date=START, catchup=False, tags=TAGS)
def zero_worker_failures() -> None:
    MuscleSurgeOperator(
        task_id="blocked",
        segmind_conn_id="segmind_zero",
        start_from_trigger=True,
        retries=2,
        retry_delay=timedelta(seconds=1),
        **{**COMMON, "image_url": IMAGE + "?rai-block"},
    )
    MuscleSurgeOperator(
        task_id="undefined",
        segmind_conn_id="segmind_zero",
        start_from_trigger=True,
        **{**COMMON, "image_url": "{{ dag_run.conf['no_such_key'] }}"},
    )


@dag(dag_id="zero_worker_flaky", schedule=None, start_date=START, catchup=False, tags=TAGS)
def zero_worker_flaky() -> None:
    MuscleSurgeOperator(
        task_id="zero",
        segmind_conn_id="segmind_zero_flaky",
        start_from_trigger=True,
        retries=2,
        retry_delay=timedelta(seconds=1),
        **COMMON,
    )


@dag(dag_id="zero_worker_mapped", schedule=None, start_date=START, catchup=False, tags=TAGS)
def zero_worker_mapped() -> None:
    MuscleSurgeOperator.partial(
        task_id="surge",
        segmind_conn_id="segmind_zero",
        start_from_trigger=True,
        image_url=IMAGE,
        quality="360p",
        output_path=OUTPUT_DIR,
        **WORKER_RETRIES,
    ).expand(seed=[1, 2])


zero_worker_surge()
zero_worker_kill()
zero_worker_failures()
zero_worker_flaky()
zero_worker_mapped()
