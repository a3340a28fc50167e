"""Proves the real-Airflow harness end to end with harness-only DAGs (dags/harness_dags.py).

Why: phase-2 scenarios (load, worker crash after submit, triggerer crash) rely on every capability
checked here -- REST auth, triggering with conf, the triggerer, retries that keep task_state_store,
mapped TIs, logs/XCom/rendered fields over REST, killing a task's process and the triggerer.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil
import pytest
import requests

from .conftest import DeploymentFactory
from .harness import AirflowDeployment, HarnessError, wait_until

pytestmark = pytest.mark.realairflow

PROBE_CONN_URI = "http://probe-user:probe-secret@probe.invalid:8123/"


@pytest.fixture(scope="module")
def deployment(airflow_deployment: DeploymentFactory) -> AirflowDeployment:
    return airflow_deployment(env={"AIRFLOW_CONN_REALAIRFLOW_PROBE": PROBE_CONN_URI})


def _by_task(tis: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(ti["task_id"], int(ti["map_index"])): ti for ti in tis}


def test_deployment_is_healthy_and_authenticated(deployment: AirflowDeployment) -> None:
    health = deployment.client.health()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", health
    assert deployment.client.version()["version"].startswith("3.")
    # The REST API really requires the token the client obtains with the admin password.
    anonymous = requests.get(f"{deployment.base_url}/api/v2/dags", timeout=10)
    assert anonymous.status_code == 401
    bad = requests.post(
        f"{deployment.base_url}/auth/token", json={"username": "admin", "password": "wrong"}, timeout=10
    )
    assert bad.status_code == 401
    # The metadata DB really is the private PostgreSQL cluster, and the executor is LocalExecutor.
    (row,) = deployment.db_query("SELECT current_database() AS db, version() AS v")
    assert row["db"] == "airflow" and "PostgreSQL" in row["v"]
    for dag_id in ("realairflow_smoke", "realairflow_kill", "realairflow_triggerer_restart"):
        assert deployment.wait_for_dag(dag_id)["is_paused"] is True
    errors = deployment.client.import_errors()
    assert not errors, "\n".join(str(e.get("stack_trace")) for e in errors)
    pools = {p["name"]: p for p in deployment.client.pools()}
    assert pools["default_pool"]["slots"] == deployment.settings.default_pool_slots
    created = deployment.client.create_pool("realairflow_pool", 7, include_deferred=True, description="harness")
    assert created["include_deferred"] is True and created["slots"] == 7
    assert {p["name"] for p in deployment.client.pools()} >= {"default_pool", "realairflow_pool"}
    assert isinstance(deployment.client.connections(), list)


def test_smoke_dag_conf_deferral_retries_state_store_mapping(deployment: AirflowDeployment) -> None:
    dag_id = "realairflow_smoke"
    started = time.monotonic()
    run = deployment.run_dag(dag_id, {"label": "hello", "probe_conn": "realairflow_probe"}, timeout=150)
    run_id = run["dag_run_id"]
    elapsed = time.monotonic() - started
    assert run["state"] == "success", deployment.client.task_instances(dag_id, run_id)

    tis = _by_task(deployment.client.task_instances(dag_id, run_id))
    assert set(tis) == {
        ("greet", -1),
        ("deferred", -1),
        ("state_across_retries", -1),
        ("double", 0),
        ("double", 1),
        ("double", 2),
    }
    for ti in tis.values():
        assert ti["state"] == "success"
        assert ti["start_date"] and ti["end_date"] and ti["duration"] is not None
    assert tis[("deferred", -1)]["try_number"] == 1  # resuming after deferral is not a new try
    assert tis[("state_across_retries", -1)]["try_number"] == 2

    # Conf in, XCom out; the env connection reached the task process.
    greet = deployment.client.xcoms(dag_id, run_id, "greet")["return_value"]
    assert greet["conf"]["label"] == "hello"
    assert greet["probe_host"] == "probe.invalid"

    # The deferred task went through the triggerer and resumed with the trigger's event.
    deferred = deployment.client.xcoms(dag_id, run_id, "deferred")["return_value"]
    assert deferred["marker"] == "hello" and deferred["event"] not in ("", "None")
    assert deployment.client.rendered_fields(dag_id, run_id, "deferred")["marker"] == "hello"
    deferred_log = deployment.client.logs(dag_id, run_id, "deferred")[1]
    assert "deferring for" in deferred_log and "resumed after trigger fired" in deferred_log
    assert "Trigger fired event" in deferred_log  # the triggerer's own log lines are served too
    assert deployment.db_query("SELECT count(*) AS n FROM trigger")[0]["n"] == 0
    assert deployment.db_query("SELECT count(*) AS n FROM job WHERE job_type = 'TriggererJob'")[0]["n"] >= 1

    # task_state_store written in try 1 is visible in try 2; try 1's XCom is gone in try 2.
    result = deployment.client.xcoms(dag_id, run_id, "state_across_retries")
    assert result["return_value"] == {
        "try_number": 2,
        "job_id_seen": f"job-for-{run_id}",
        "try1_xcom_seen": None,
    }
    assert "try1_marker" not in result
    assert deployment.client.task_state_store(dag_id, run_id, "state_across_retries") == {
        "job_id": f"job-for-{run_id}",
        "finished_in_try": 2,
    }
    tries = deployment.client.task_tries(dag_id, run_id, "state_across_retries")
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "success")]
    logs = deployment.client.logs(dag_id, run_id, "state_across_retries")
    assert "deliberate failure in try 1" in logs[1]
    assert f"task_state_store job_id='job-for-{run_id}'" in logs[2]
    assert "XCom try1_marker=None" in logs[2]

    # Mapped TIs and their XComs.
    assert [deployment.client.xcoms(dag_id, run_id, "double", map_index=i)["return_value"] for i in range(3)] == [
        2,
        4,
        6,
    ]
    print(f"\nrealairflow: smoke run took {elapsed:.1f}s (trigger -> success)")


def test_kill_task_process_and_lost_worker(deployment: AirflowDeployment) -> None:
    dag_id = "realairflow_kill"
    client = deployment.client
    run_id = deployment.trigger(dag_id)

    def announced(task_id: str) -> int | None:
        value = client.task_state_store(dag_id, run_id, task_id).get("started_pid")
        return int(value) if value else None

    killed: dict[str, int] = {}
    for task_id, which in (("kill_task_process", "task"), ("kill_supervisor", "supervisor")):
        pid = wait_until(lambda t=task_id: announced(t), timeout=90, what=f"{task_id} to start")
        procs = deployment.task_processes(dag_id, run_id, task_id)
        assert procs["task"].pid == pid  # the process found by TI uuid is the one running the task
        assert "supervisor" in procs and procs["supervisor"].pid != pid
        killed[task_id] = deployment.kill_task(dag_id, run_id, task_id, which=which)
        assert killed[task_id] == (pid if which == "task" else procs["supervisor"].pid)
        assert not psutil.pid_exists(pid)

    run = client.wait_for_run(dag_id, run_id, timeout=150)
    assert run["state"] == "success", client.task_instances(dag_id, run_id)
    for task_id in killed:
        tries = client.task_tries(dag_id, run_id, task_id)
        assert [t["try_number"] for t in tries] == [1, 2]
        assert tries[-1]["state"] == "success" and tries[0]["state"] == "failed"
        value = client.xcoms(dag_id, run_id, task_id)["return_value"]
        assert value["try_number"] == 2 and value["previous_pid"] not in (None, value["pid"])
    assert deployment.components["scheduler"].alive()


def test_triggerer_sigkill_and_restart_keeps_deferred_task(deployment: AirflowDeployment) -> None:
    dag_id = "realairflow_triggerer_restart"
    client = deployment.client
    run_id = deployment.trigger(dag_id)
    client.wait_for_task_state(dag_id, run_id, "long_defer", {"deferred"}, timeout=90)
    rows = wait_until(
        lambda: deployment.db_query("SELECT id, triggerer_id, classpath FROM trigger WHERE triggerer_id IS NOT NULL"),
        timeout=30,
        what="trigger to be assigned to the triggerer",
    )
    assert rows[0]["classpath"].endswith("DateTimeTrigger")
    old_pid = deployment.components["triggerer"].pid
    deployment.kill_triggerer()
    assert not deployment.components["triggerer"].alive()
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
    assert client.task_instance(dag_id, run_id, "long_defer")["state"] == "deferred"
    deployment.start_triggerer()
    run = client.wait_for_run(dag_id, run_id, timeout=120)
    assert run["state"] == "success"
    ti = client.task_instance(dag_id, run_id, "long_defer")
    assert ti["try_number"] == 1
    deployment.wait_healthy(timeout=60)


def test_failed_start_leaves_nothing_behind(airflow_deployment: DeploymentFactory) -> None:
    """A deployment that never becomes healthy (2 s budget) must still kill its components and postgres."""
    with pytest.raises(HarnessError, match="timed out"):
        airflow_deployment(fresh=True, startup_timeout=2)
    failed = airflow_deployment.all[-1]
    assert failed.stopped
    assert set(failed.components) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert not any(c.alive() for c in failed.components.values())
    assert failed.owned_processes() == []
    base = str(failed.base_dir)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if base in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []  # the postmaster's command line names its data dir
    assert failed.base_dir.exists() == bool(os.environ.get("REALAIRFLOW_KEEP_TMP"))
