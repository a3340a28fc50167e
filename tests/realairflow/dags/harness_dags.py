"""Harness-only DAGs proving the real-Airflow test harness works (tests/realairflow/test_harness.py).

Why these shapes: each DAG exercises one piece of machinery the provider's operators depend on in a
real deployment -- the triggerer (a task that always defers), retries with ``task_state_store``
(the crash-recovery mechanism our operator uses to re-attach to a submitted job instead of paying
for a second one), dynamic task mapping, and tasks that stay alive long enough to be killed.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseHook, BaseOperator, dag, task

START = datetime(2024, 1, 1)


class DeferOnceOperator(BaseOperator):
    """Always defers to a ``TimeDeltaTrigger`` so the triggerer is guaranteed to run something.

    ``TimeDeltaSensor`` measures from ``run_after`` and returns without deferring when the delta has
    already passed, which would make a triggerer check flaky; this operator defers unconditionally.
    """

    template_fields = ("marker",)

    def __init__(self, *, marker: str, seconds: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker = marker
        self.seconds = seconds

    def execute(self, context: Any) -> None:
        self.log.info("deferring for %s s (marker=%s, pid=%s)", self.seconds, self.marker, os.getpid())
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.seconds)), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        self.log.info("resumed after trigger fired: event=%r", event)
        return {"marker": self.marker, "event": str(event), "try_number": context["ti"].try_number}


@dag(dag_id="realairflow_smoke", schedule=None, start_date=START, catchup=False, tags=["realairflow"])
def realairflow_smoke() -> None:
    """Conf in, XCom out; a deferred task; retries with task_state_store; a mapped task."""

    @task
    def greet(**context: Any) -> dict[str, Any]:
        conf = dict(context["dag_run"].conf or {})
        print(f"greet: conf={conf}")
        probe_host = None
        if conf.get("probe_conn"):
            # Proves extra env (AIRFLOW_CONN_*) passed to the harness reaches task processes.
            probe_host = BaseHook.get_connection(conf["probe_conn"]).host
        return {"conf": conf, "pid": os.getpid(), "probe_host": probe_host}

    deferred = DeferOnceOperator(task_id="deferred", marker="{{ dag_run.conf.get('label', 'none') }}", seconds=2)

    @task(retries=1, retry_delay=timedelta(seconds=1))
    def state_across_retries(**context: Any) -> dict[str, Any]:
        ti = context["ti"]
        store = context["task_state_store"]
        if ti.try_number == 1:
            store.set("job_id", f"job-for-{ti.run_id}")
            ti.xcom_push(key="try1_marker", value="pushed-in-try-1")
            print("try 1: stored job_id in task_state_store and pushed XCom try1_marker; failing on purpose")
            raise RuntimeError("deliberate failure in try 1 after storing job_id")
        job_id = store.get("job_id")
        try1_xcom = ti.xcom_pull(task_ids=ti.task_id, key="try1_marker")
        print(f"try {ti.try_number}: task_state_store job_id={job_id!r}; XCom try1_marker={try1_xcom!r}")
        store.set("finished_in_try", ti.try_number)
        return {"try_number": ti.try_number, "job_id_seen": job_id, "try1_xcom_seen": try1_xcom}

    @task
    def double(x: int) -> int:
        return 2 * x

    greet() >> deferred >> state_across_retries() >> double.expand(x=[1, 2, 3])


@dag(dag_id="realairflow_kill", schedule=None, start_date=START, catchup=False, tags=["realairflow"])
def realairflow_kill() -> None:
    """A task that announces itself in task_state_store, then waits to be SIGKILLed by the test.

    Try 1 blocks until killed; a later try sees the value try 1 stored and finishes. One task is for
    killing only the task process, one for killing supervisor + task (a lost worker).
    """

    def _body(context: Any) -> dict[str, Any]:
        ti = context["ti"]
        store = context["task_state_store"]
        previous = store.get("started_pid")
        if ti.try_number == 1:
            store.set("started_pid", os.getpid())
            print(f"try 1 running as pid {os.getpid()}; waiting to be killed")
            time.sleep(600)
            raise RuntimeError("was not killed")
        return {"try_number": ti.try_number, "previous_pid": previous, "pid": os.getpid()}

    @task(retries=1, retry_delay=timedelta(seconds=1))
    def kill_task_process(**context: Any) -> dict[str, Any]:
        return _body(context)

    @task(retries=1, retry_delay=timedelta(seconds=1))
    def kill_supervisor(**context: Any) -> dict[str, Any]:
        return _body(context)

    kill_task_process()
    kill_supervisor()


@dag(dag_id="realairflow_triggerer_restart", schedule=None, start_date=START, catchup=False, tags=["realairflow"])
def realairflow_triggerer_restart() -> None:
    """A deferred task whose trigger must survive the triggerer being SIGKILLed and restarted."""
    DeferOnceOperator(task_id="long_defer", marker="restart", seconds=15)


realairflow_smoke()
realairflow_kill()
realairflow_triggerer_restart()
