"""Crash and give-up scenarios (tests/realairflow/test_load_and_crashes.py).

Each DAG takes its paths and sizes from the run's conf (``output_dir``, ``emulator_url``, ``jobs``)
and talks to its own emulator through its own connection, so the emulator's counters belong to
one scenario:

* ``surge_fault_worker_crash`` -- the process running a task is SIGKILLed after the submit; the
  retry must re-attach. ``blocking`` waits in the worker; ``deferrable`` pauses between the submit
  and the deferral on try 1 (see :class:`PauseBeforeDeferOperator`) so the test can kill it exactly
  there. Connection ``segmind_fault_crash``.
* ``surge_fault_triggerer`` -- ``jobs`` deferred renders while the triggerer is SIGKILLed and
  restarted. Connection ``segmind_fault_trig``.
* ``surge_fault_gaveup`` -- the status endpoint fails past the trigger's retry bound
  (``PollingGaveUp``); the retry re-attaches. Connection ``segmind_fault_gaveup``.
* ``surge_fault_timeout`` -- the job outlives the operator's ``timeout`` / the task's
  ``execution_timeout``: ``InferenceTimeout`` after one last poll at the deadline. Connection
  ``segmind_fault_slow``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task
from sample_images import sample_image_urls

from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

START = datetime(2024, 1, 1)
OUTPUT_DIR = "{{ dag_run.conf['output_dir'] }}/"
IMAGE = "{{ dag_run.conf['emulator_url'] }}/_emulator/samples/athlete-2.png"
TAGS = ["realairflow", "surge_fault"]


class PauseBeforeDeferOperator(MuscleSurgeOperator):
    """MuscleSurgeOperator that, on try 1 only, sleeps between the submit and the deferral.

    The real window between "request saved in task_state_store" and "deferred" is a few
    milliseconds, too short to hit with a SIGKILL from outside. Sleeping inside ``defer`` (called
    after the submit, the state-store write and the XCom push) widens exactly that window without
    changing any other step; the test kills the task while it sleeps. Later tries defer at once.
    """

    def execute(self, context: Any) -> Any:
        self._pause_seconds = float(context["dag_run"].conf.get("pause_before_defer", 0))
        self._try_number = context["ti"].try_number
        return super().execute(context)

    def defer(self, **kwargs: Any) -> Any:
        if self._try_number == 1 and self._pause_seconds > 0:
            self.log.info("Submitted; pausing %.0fs before deferring (kill me now)", self._pause_seconds)
            time.sleep(self._pause_seconds)
        return super().defer(**kwargs)


@dag(dag_id="surge_fault_worker_crash", schedule=None, start_date=START, catchup=False, tags=TAGS)
def surge_fault_worker_crash() -> None:
    common: dict[str, Any] = {
        "segmind_conn_id": "segmind_fault_crash",
        "image_url": IMAGE,
        "quality": "360p",
        "output_path": OUTPUT_DIR,
        "retry_delay": timedelta(seconds=1),
    }
    MuscleSurgeOperator(task_id="blocking", deferrable=False, retries=1, **common)
    # One spare retry: when try 2 defers and its trigger fires within a second or two, Airflow's
    # scheduler can fail the resumed try on the stale executor event of the deferral
    # (apache/airflow#67287); the next try must then re-attach too.
    PauseBeforeDeferOperator(task_id="deferrable", deferrable=True, retries=2, **common)


@dag(dag_id="surge_fault_triggerer", schedule=None, start_date=START, catchup=False, tags=TAGS)
def surge_fault_triggerer() -> None:
    @task
    def images(**context: Any) -> list[str]:
        return sample_image_urls(dict(context["dag_run"].conf))

    MuscleSurgeOperator.partial(
        task_id="surge",
        segmind_conn_id="segmind_fault_trig",
        quality="360p",
        deferrable=True,
        timeout=600,
        output_path=OUTPUT_DIR,
        retries=1,
        retry_delay=timedelta(seconds=2),
    ).expand(image_url=images())


@dag(dag_id="surge_fault_gaveup", schedule=None, start_date=START, catchup=False, tags=TAGS)
def surge_fault_gaveup() -> None:
    MuscleSurgeOperator(
        task_id="surge",
        segmind_conn_id="segmind_fault_gaveup",
        image_url=IMAGE,
        quality="360p",
        deferrable=True,
        output_path=OUTPUT_DIR,
        retries=1,
        # Long enough for the test to see up_for_retry and heal the emulator before try 2 starts.
        retry_delay=timedelta(seconds=6),
    )


@dag(dag_id="surge_fault_timeout", schedule=None, start_date=START, catchup=False, tags=TAGS)
def surge_fault_timeout() -> None:
    # A fixed 12 s poll interval and a 24 s deadline: one poll ~12 s after the trigger starts,
    # then one at the deadline itself (as long as the trigger starts < 12 s after the submit).
    common: dict[str, Any] = {
        "segmind_conn_id": "segmind_fault_slow",
        "image_url": IMAGE,
        "quality": "360p",
        "deferrable": True,
        "poll_interval": 12,
        "retries": 1,
        "retry_delay": timedelta(seconds=1),
    }
    MuscleSurgeOperator(task_id="operator_timeout", timeout=24, **common)
    MuscleSurgeOperator(task_id="execution_timeout", execution_timeout=timedelta(seconds=24), **common)


surge_fault_worker_crash()
surge_fault_triggerer()
surge_fault_gaveup()
surge_fault_timeout()
