"""The CeleryExecutor scenario (tests/realairflow/test_celery.py): outputs on S3, workers and triggerers killed.

Both DAGs take sizes and places from the run's conf (``jobs``, ``emulator_url``, ``output_path``,
an ``s3://<conn_id>@bucket/prefix/`` URL) and talk to one emulator through connection
``segmind_celery``, so that emulator's counters hold every job the scenario paid for:

* ``celery_surge_load`` -- ``jobs`` deferrable renders mapped over the emulator's sample portraits,
  saved to S3 by whichever Celery worker runs the resumed task.
* ``celery_worker_crash`` -- one render that, on try 1, pauses between the submit and the deferral
  (:class:`PausedAfterSubmitOperator`), so the test can SIGKILL the Celery worker running it right
  after a paid submit; try 2 must re-attach on the other worker.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task
from sample_images import sample_image_urls

from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

START = datetime(2024, 1, 1)
CONN_ID = "segmind_celery"
OUTPUT_PATH = "{{ dag_run.conf['output_path'] }}"
TAGS = ["realairflow", "celery"]


class PausedAfterSubmitOperator(MuscleSurgeOperator):
    """On try 1, sleep in ``defer`` (after the submit, the task-state record and the XCom push).

    The real window between "request recorded" and "deferred" is milliseconds; the pause makes it
    wide enough to SIGKILL the worker from outside exactly there. Later tries defer at once.
    """

    def execute(self, context: Any) -> Any:
        self._pause = (
            float(context["dag_run"].conf.get("pause_after_submit", 0)) if context["ti"].try_number == 1 else 0
        )
        return super().execute(context)

    def defer(self, **kwargs: Any) -> Any:
        if self._pause > 0:
            self.log.info("Submitted; pausing %.0fs before deferring (kill my worker now)", self._pause)
            time.sleep(self._pause)
        return super().defer(**kwargs)


@dag(
    dag_id="celery_surge_load",
    schedule=None,
    start_date=START,
    catchup=False,
    tags=TAGS,
    # A task that was running on the killed worker comes back through the heartbeat timeout as a
    # retry, which re-attaches to its request (never resubmits).
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
)
def celery_surge_load() -> None:
    @task
    def images(**context: Any) -> list[str]:
        return sample_image_urls(dict(context["dag_run"].conf))

    MuscleSurgeOperator.partial(
        task_id="surge", segmind_conn_id=CONN_ID, quality="360p", deferrable=True, output_path=OUTPUT_PATH
    ).expand(image_url=images())


@dag(dag_id="celery_worker_crash", schedule=None, start_date=START, catchup=False, tags=TAGS)
def celery_worker_crash() -> None:
    PausedAfterSubmitOperator(
        task_id="victim",
        segmind_conn_id=CONN_ID,
        image_url="{{ dag_run.conf['emulator_url'] }}/_emulator/samples/athlete-3.png",
        quality="360p",
        deferrable=True,
        output_path=OUTPUT_PATH,
        retries=2,
        retry_delay=timedelta(seconds=2),
    )


celery_surge_load()
celery_worker_crash()
