"""Load and crash scenarios in a real Airflow deployment, against real emulator processes.

Why a real deployment: what these scenarios test only exists when scheduler, triggerer,
api-server and supervised task processes are separate OS processes sharing a real database --
a SIGKILLed worker after a paid submit, a SIGKILLed triggerer holding dozens of waits, a pool
that must count deferred tasks, hundreds of concurrent waits sharing one rate-limited key.

One deployment serves the module (``airflow_deployment`` with the same env), one emulator per
scenario (so each emulator's counters belong to one scenario), each behind its own connection:

============  =========================  ==================================================
emulator      connection                 used by
============  =========================  ==================================================
load          ``segmind_default``        ``surge_fault_load``: 429s + 5 % faults, 2 s jobs
crash         ``segmind_fault_crash``    ``surge_fault_worker_crash``: 8 s jobs
trig          ``segmind_fault_trig``     ``surge_fault_triggerer``: long jobs
gaveup        ``segmind_fault_gaveup``   ``surge_fault_gaveup``: status faults switched at run time
slow          ``segmind_fault_slow``     ``surge_fault_timeout``: jobs longer than the deadline
pool          ``segmind_fault_pool``     ``surge_fault_pool``: 12 jobs through a 3-slot pool
============  =========================  ==================================================

DAGs: ``dags/surge_load_dags.py`` and ``dags/surge_fault_crash_dags.py``. Runs are triggered and
read back through the REST API only; the emulators' ``/_emulator/stats`` say what really reached
"Segmind" (submissions are what a customer pays for).

Sizes: ``REALAIRFLOW_LOAD_JOBS`` (default 40) jobs in the load run, rate limit
``REALAIRFLOW_LOAD_RATE`` requests/s (default 3), ``REALAIRFLOW_TRIGGERER_JOBS`` (default 30).
The full load run alone: ``REALAIRFLOW_LOAD_JOBS=200 pytest -m realairflow <this file> -k load_mapped``
(``-k load`` also matches this module's name, so it selects every test here, the load one at N=200).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from segmind_emulator.testing import EmulatorProcess
from support import file_sha256

from airflow_provider_muscle_surge import contract

from .conftest import DeploymentFactory
from .harness import AirflowDeployment, AirflowRestClient, wait_until

pytestmark = pytest.mark.realairflow

LOAD_JOBS = int(os.environ.get("REALAIRFLOW_LOAD_JOBS", "40"))
LOAD_RATE = float(os.environ.get("REALAIRFLOW_LOAD_RATE", "3"))
TRIGGERER_JOBS = int(os.environ.get("REALAIRFLOW_TRIGGERER_JOBS", "30"))
TRIGGERER_JOB_SECONDS = float(os.environ.get("REALAIRFLOW_TRIGGERER_JOB_SECONDS", "30"))
POOL_JOBS, POOL_SLOTS = 12, 3

#: Fast polling for jobs of a few seconds (the default schedule is tuned for 45 s renders).
POLL = {"expected_seconds": 2, "dense_interval": 0.3, "max_interval": 2}
#: Fast retry bounds for tests: short backoffs, and a 429's server-given wait capped at 10 s.
FAST_RETRY = {"initial_backoff": 0.2, "max_backoff": 2, "max_retry_after": 10}

#: Per scenario: emulator flags, connection id, connection extra.
SCENARIOS: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    "load": (
        {"job_seconds": 2, "job_spread": 0.1, "rate_limit": LOAD_RATE, "fault_rate": 0.05, "seed": 21},
        "segmind_default",
        # Many calls share one rate-limited key: a generous retry budget, so the hook rides out
        # bursts of 429s and faults without failing the task. The emulator injects its faults before
        # processing, so a faulted submit was never accepted: the opt-in resubmits it, and the test's
        # "one accepted job per task" shows no lost answer was paid twice.
        {"poll": POLL, **FAST_RETRY, "max_retries": 60, "max_retry_seconds": 900, "resubmit_on_unknown_outcome": True},
    ),
    "crash": (
        {"job_seconds": 8, "job_spread": 0.05, "seed": 22},
        "segmind_fault_crash",
        {"poll": {"expected_seconds": 8, "dense_interval": 0.5, "max_interval": 2}, **FAST_RETRY},
    ),
    "trig": (
        {"job_seconds": TRIGGERER_JOB_SECONDS, "job_spread": 0.05, "seed": 23},
        "segmind_fault_trig",
        {"poll": {"expected_seconds": TRIGGERER_JOB_SECONDS, "dense_interval": 0.5, "max_interval": 3}, **FAST_RETRY},
    ),
    "gaveup": (
        {"job_seconds": 3, "job_spread": 0.05, "seed": 24},
        "segmind_fault_gaveup",
        # The bound the status faults must outlast: 2 retries, at most 3 s per call. The first poll
        # comes 8 s after the submit, so the trigger's event cannot overtake the executor's event of
        # the deferral itself (that race is Airflow's, apache/airflow#67287, and would fail try 1
        # before execute_complete could raise PollingGaveUp).
        {
            "poll": {**POLL, "expected_seconds": 3, "first_poll_seconds": 8},
            **FAST_RETRY,
            "max_retries": 2,
            "max_retry_seconds": 3,
            "max_backoff": 1,
        },
    ),
    "slow": (
        {"job_seconds": 120, "job_spread": 0.02, "seed": 25},
        "segmind_fault_slow",
        {**FAST_RETRY},
    ),
    "pool": (
        {"job_seconds": 3, "job_spread": 0.1, "seed": 26},
        "segmind_fault_pool",
        {"poll": {**POLL, "expected_seconds": 3}, **FAST_RETRY},
    ),
}

#: Figures of each scenario, printed at the end of the module (``-s``) for the record.
FIGURES: dict[str, dict[str, Any]] = {}


@dataclass
class Faults:
    """The module's deployment, its emulators (by scenario) and where outputs go."""

    deployment: AirflowDeployment
    emulators: dict[str, EmulatorProcess]
    output_root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> AirflowRestClient:
        return self.deployment.client

    def conf(self, scenario: str, **extra: Any) -> dict[str, Any]:
        out = self.output_root / scenario
        out.mkdir(parents=True, exist_ok=True)
        return {"emulator_url": self.emulators[scenario].url, "output_dir": str(out), **extra}


@pytest.fixture(scope="module")
def faults(airflow_deployment: DeploymentFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    emulators: dict[str, EmulatorProcess] = {}
    try:
        for name, (flags, _, _) in SCENARIOS.items():
            emulators[name] = EmulatorProcess(**flags).start()
        env = {}
        for name, (_, conn_id, extra) in SCENARIOS.items():
            conn = {**emulators[name].connection_dict(), "extra": extra}
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        deployment = airflow_deployment(env=env)
        yield Faults(deployment, emulators, tmp_path_factory.mktemp("surge-fault-outputs"), env)
        # Nobody else uses this env: free the 2-core machine for the next module right away.
        deployment.stop()
    finally:
        for emu in emulators.values():
            emu.stop()
        if FIGURES:
            sys.stderr.write("\nrealairflow load/crash figures:\n")
            for name, figures in FIGURES.items():
                sys.stderr.write(f"  {name}: {json.dumps(figures, default=str)}\n")


# --- helpers ----------------------------------------------------------------------------------------
def return_value(client: AirflowRestClient, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
    """One TI's XCom ``return_value`` through the REST API (one call, also for mapped TIs)."""
    body = client.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        params={"map_index": map_index, "deserialize": "true"},
    )
    return body.get("value")


def verify_saved(result: dict[str, Any], output_dir: str) -> str:
    """The video a task reported is on disk, under ``output_dir``, with the sha256 it reported."""
    saved = result["saved"]
    assert saved, result
    # The operator reports where it wrote as an ObjectStoragePath URL (file:// for local paths).
    path = urllib.parse.unquote(urllib.parse.urlsplit(saved["path"]).path)
    assert path.startswith(output_dir) and Path(path).name == f"{result['request_id']}.mp4", saved
    assert os.path.getsize(path) == saved["bytes"] > 1000
    assert file_sha256(path) == saved["sha256"], f"{path} does not match its reported sha256"
    return str(saved["sha256"])


def mapped_tis(client: AirflowRestClient, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
    tis = [ti for ti in client.task_instances(dag_id, run_id) if ti["task_id"] == task_id]
    return sorted(tis, key=lambda ti: int(ti["map_index"]))


def emulator_status(emu: EmulatorProcess, request_id: str) -> str:
    """The request's status as the API reports it; the test's own call meets the scenario's rate
    limit and injected faults like any other, so it asks again until it gets an answer."""

    def ask() -> str | None:
        try:
            resp = requests.get(
                emu.url + contract.status_path(request_id), headers={contract.API_KEY_HEADER: emu.api_key}, timeout=10
            )
            return str(resp.json()["status"]) if resp.status_code == 200 else None
        except (requests.RequestException, ValueError, KeyError):
            return None  # an injected fault: a dropped connection or a broken body

    return str(wait_until(ask, timeout=30, interval=0.4, what=f"a status answer for {request_id}"))


def trigger_rows(deployment: AirflowDeployment, classpath_suffix: str = "SegmindRequestTrigger") -> dict[int, Any]:
    """``trigger`` table rows (id -> {triggerer_id, kwargs}), kwargs decrypted like the triggerer does."""
    fernet = Fernet(deployment.env["AIRFLOW__CORE__FERNET_KEY"].encode())
    rows = deployment.db_query("SELECT id, classpath, kwargs, triggerer_id FROM trigger")
    out: dict[int, Any] = {}
    for row in rows:
        if not row["classpath"].endswith(classpath_suffix):
            continue
        raw = row["kwargs"]
        kwargs = json.loads(raw if raw.startswith("{") else fernet.decrypt(raw.encode()).decode())
        out[int(row["id"])] = {"triggerer_id": row["triggerer_id"], "kwargs": kwargs}
    return out


def triggerer_job_ids(deployment: AirflowDeployment) -> list[int]:
    rows = deployment.db_query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")
    return [int(r["id"]) for r in rows]


# --- 1. load ------------------------------------------------------------------------------------------
@pytest.mark.timeout(max(600, 60 + LOAD_JOBS * 12))
def test_load_mapped_jobs_ride_out_429s_and_faults_with_one_submission_each(faults: Faults) -> None:
    dag_id, n = "surge_fault_load", LOAD_JOBS
    emu, client = faults.emulators["load"], faults.client
    conf = faults.conf("load", jobs=n)
    started = time.monotonic()
    run_id = faults.deployment.trigger(dag_id, conf)
    run = client.wait_for_run(dag_id, run_id, timeout=max(300, 60 + n * 10))
    wall = time.monotonic() - started
    stats = emu.stats()

    tis = mapped_tis(client, dag_id, run_id, "surge")
    states = {ti["state"] for ti in tis}
    assert run["state"] == "success" and len(tis) == n and states == {"success"}, (run["state"], len(tis), states)
    # Exactly one paid submission per job, even though submits met 429s and faults.
    assert stats["submissions_total"] == n, stats
    assert stats["responses"].get("429", 0) > 0 and stats["rate_limited"] > 0, stats  # the limit really bit
    assert stats["faults_injected"] > 0, stats  # and transient 5xx/drops really happened
    results = [return_value(client, dag_id, run_id, "surge", i) for i in range(n)]
    assert len({r["request_id"] for r in results}) == n
    verified = [verify_saved(r, conf["output_dir"]) for r in results]
    files = sorted(Path(conf["output_dir"]).glob("*.mp4"))
    assert len(files) == n == len(verified)
    assert not list(Path(conf["output_dir"]).glob(".*.part"))  # no half-written leftovers
    FIGURES["load"] = {
        "jobs": n,
        "rate_limit_per_s": LOAD_RATE,
        "wall_seconds": round(wall, 1),
        "submissions_total": stats["submissions_total"],
        "responses_429": stats["responses"].get("429", 0),
        "faults_injected": stats["faults_injected"],
        "dropped_connections": stats["dropped_connections"],
        "status_polls": stats["status_polls"],
        "results": stats["results"],
        "outputs_verified": len(verified),
        "tis_with_airflow_retry": sum(1 for ti in tis if int(ti["try_number"]) > 1),
    }


# --- 2. worker crash after submit -----------------------------------------------------------------------
def test_worker_killed_after_submit_retry_reattaches_without_second_submission(faults: Faults) -> None:
    dag_id = "surge_fault_worker_crash"
    emu, client, deployment = faults.emulators["crash"], faults.client, faults.deployment
    conf = faults.conf("crash", pause_before_defer=240)
    run_id = deployment.trigger(dag_id, conf)

    submitted: dict[str, str] = {}
    status_at_kill: dict[str, str] = {}
    for task_id in ("blocking", "deferrable"):
        # The XCom request_id is pushed right after the request was saved to task_state_store.
        request_id = wait_until(
            lambda t=task_id: client.xcoms(dag_id, run_id, t).get("request_id"),
            timeout=180,
            interval=0.3,
            what=f"{task_id} to submit",
        )
        submitted[task_id] = str(request_id)
        ti = client.task_instance(dag_id, run_id, task_id)
        assert ti["state"] == "running" and ti["try_number"] == 1, ti
        deployment.kill_task(dag_id, run_id, task_id, which="task")
        status_at_kill[task_id] = emulator_status(emu, submitted[task_id])
    # Killed after the submit and before the job finished (blocking) / before deferring (deferrable).
    assert status_at_kill["blocking"] in {"QUEUED", "PROCESSING"}, status_at_kill

    run = client.wait_for_run(dag_id, run_id, timeout=240)
    assert run["state"] == "success", client.task_instances(dag_id, run_id)
    stats = emu.stats()
    assert stats["submissions_total"] == 2, stats  # one per task, none for the retries

    retries: dict[str, int] = {}
    for task_id, request_id in submitted.items():
        tries = client.task_tries(dag_id, run_id, task_id)
        states = [(t["try_number"], t["state"]) for t in tries]
        assert states[0] == (1, "failed") and states[-1][1] == "success", states
        if task_id == "blocking":
            assert len(states) == 2, states
        retries[task_id] = len(states) - 1
        logs = client.logs(dag_id, run_id, task_id)
        for try_number in range(2, len(states) + 1):  # every retry re-attached, none submitted
            assert f"Re-attaching to request {request_id}" in logs[try_number], logs[try_number][-3000:]
            assert "Submitted muscle-surge request" not in logs[try_number]
        result = return_value(client, dag_id, run_id, task_id)
        assert result["request_id"] == request_id and result["status"] == "COMPLETED"
        verify_saved(result, conf["output_dir"])
        record = client.task_state_store(dag_id, run_id, task_id)["segmind_request"]
        assert record["request_id"] == request_id and record["try_number"] == 1
    logs = client.logs(dag_id, run_id, "deferrable")
    assert "pausing 240s before deferring" in logs[1] and "DEFERRED" not in logs[1]  # killed before deferring
    FIGURES["worker_crash"] = {
        "tasks_killed": 2,
        "status_at_kill": status_at_kill,
        "submissions_total": stats["submissions_total"],
        "retries": retries,
        "deferrable_try2_deferred": "DEFERRED" in logs[2],
    }


# --- 3. triggerer crash --------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_triggerer_sigkill_with_deferred_jobs_loses_nothing_and_resubmits_nothing(faults: Faults) -> None:
    dag_id, n = "surge_fault_triggerer", TRIGGERER_JOBS
    emu, client, deployment = faults.emulators["trig"], faults.client, faults.deployment
    conf = faults.conf("trig", jobs=n)
    run_id = deployment.trigger(dag_id, conf)
    old_triggerers = triggerer_job_ids(deployment)

    # Kill while a good part of the jobs is deferred and being polled by the triggerer.
    wait_until(
        lambda: sum(1 for r in trigger_rows(deployment).values() if r["triggerer_id"]) >= min(8, n),
        timeout=240,
        what="deferred jobs to be picked up by the triggerer",
    )
    before_kill = trigger_rows(deployment)
    deployment.kill_triggerer()
    killed_at = time.monotonic()

    # The rest still submit and defer meanwhile; with no triggerer, none of them can finish.
    def all_deferred() -> bool:
        tis = mapped_tis(client, dag_id, run_id, "surge")
        return len(tis) == n and all(ti["state"] == "deferred" for ti in tis)

    wait_until(all_deferred, timeout=300, interval=1.0, what=f"all {n} jobs deferred")
    at_restart = trigger_rows(deployment)
    submissions_at_restart = emu.stats()["submissions_total"]
    assert len(at_restart) == n and submissions_at_restart == n
    for trigger_id, row in before_kill.items():
        assert at_restart[trigger_id]["kwargs"] == row["kwargs"]
    for row in at_restart.values():
        kwargs = row["kwargs"]
        # Absolute times, anchored at the submit: a restarted trigger keeps the same deadline.
        assert kwargs["deadline"] == kwargs["submitted_at"] + 600, kwargs
    deployment.start_triggerer()
    down_seconds = time.monotonic() - killed_at

    new_triggerer = wait_until(
        lambda: next((j for j in triggerer_job_ids(deployment) if j not in old_triggerers), None),
        timeout=120,
        what="the new triggerer to register",
    )
    # The new triggerer takes the triggers over (after the old one's heartbeat went stale).
    moved = wait_until(
        lambda: {tid: row for tid, row in trigger_rows(deployment).items() if row["triggerer_id"] == new_triggerer},
        timeout=120,
        interval=0.3,
        what="triggers to move to the new triggerer",
    )
    for trigger_id, row in moved.items():
        assert row["kwargs"] == at_restart[trigger_id]["kwargs"], "trigger kwargs changed when it moved"

    run = client.wait_for_run(dag_id, run_id, timeout=300)
    tis = mapped_tis(client, dag_id, run_id, "surge")
    assert run["state"] == "success" and {ti["state"] for ti in tis} == {"success"}, tis
    assert all(int(ti["try_number"]) == 1 for ti in tis), [ti["try_number"] for ti in tis]
    stats = emu.stats()
    assert stats["submissions_total"] == n == submissions_at_restart, stats  # moving triggers submits nothing
    results = [return_value(client, dag_id, run_id, "surge", i) for i in range(n)]
    assert {r["request_id"] for r in results} == {row["kwargs"]["request_id"] for row in at_restart.values()}
    verified = [verify_saved(r, conf["output_dir"]) for r in results]
    FIGURES["triggerer_crash"] = {
        "jobs": n,
        "job_seconds": TRIGGERER_JOB_SECONDS,
        "triggers_running_at_kill": sum(1 for r in before_kill.values() if r["triggerer_id"]),
        "triggerer_down_seconds": round(down_seconds, 1),
        "triggers_seen_moving": len(moved),
        "submissions_total": stats["submissions_total"],
        "status_polls": stats["status_polls"],
        "outputs_verified": len(verified),
    }


# --- 4. polling gave up is not a failed job -----------------------------------------------------------
def test_polling_gave_up_is_retried_and_reattaches_once_the_api_heals(faults: Faults) -> None:
    dag_id = "surge_fault_gaveup"
    emu, client, deployment = faults.emulators["gaveup"], faults.client, faults.deployment
    conf = faults.conf("gaveup")
    emu.set_faults(1.0, ["status"])
    try:
        run_id = deployment.trigger(dag_id, conf)
        client.wait_for_task_state(dag_id, run_id, "surge", {"up_for_retry", "failed", "success"}, timeout=180)
    finally:
        faults_during_outage = emu.stats()["faults_injected"]
        emu.set_faults(0)
    ti = client.task_instance(dag_id, run_id, "surge")
    assert ti["state"] == "up_for_retry", ti
    run = client.wait_for_run(dag_id, run_id, timeout=180)
    assert run["state"] == "success", client.task_instances(dag_id, run_id)

    stats = emu.stats()
    assert stats["submissions_total"] == 1, stats
    assert faults_during_outage >= 3, stats  # the trigger's first call plus its 2 retries at least
    tries = client.task_tries(dag_id, run_id, "surge")
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "success")], tries
    record = client.task_state_store(dag_id, run_id, "surge")["segmind_request"]
    request_id = record["request_id"]
    logs = client.logs(dag_id, run_id, "surge")
    assert "PollingGaveUp" in logs[1] and f"gave up polling Segmind request {request_id}" in logs[1], logs[1][-3000:]
    assert "InferenceFailed" not in logs[1]
    assert f"Re-attaching to request {request_id}" in logs[2], logs[2][-3000:]
    result = return_value(client, dag_id, run_id, "surge")
    assert result["request_id"] == request_id
    verify_saved(result, conf["output_dir"])
    FIGURES["polling_gave_up"] = {
        "faults_injected": faults_during_outage,
        "submissions_total": stats["submissions_total"],
        "tries": len(tries),
    }


# --- 5. deadline enforced for deferred tasks ------------------------------------------------------------
def test_deferred_deadline_fails_with_inference_timeout_after_a_last_poll(faults: Faults) -> None:
    dag_id = "surge_fault_timeout"
    emu, client, deployment = faults.emulators["slow"], faults.client, faults.deployment
    run_id = deployment.trigger(dag_id, faults.conf("slow"))
    run = client.wait_for_run(dag_id, run_id, timeout=180)
    assert run["state"] == "failed"
    stats = emu.stats()
    assert stats["submissions_total"] == 2 and stats["results"] == 0, stats
    # Fixed 12 s interval, 24 s deadline: one regular poll, then one exactly at the deadline, per task.
    assert stats["status_polls"] == 4, stats
    for task_id in ("operator_timeout", "execution_timeout"):
        tries = client.task_tries(dag_id, run_id, task_id)
        assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed")], tries  # permanent: no retry
        request_id = client.task_state_store(dag_id, run_id, task_id)["segmind_request"]["request_id"]
        log = client.logs(dag_id, run_id, task_id)[1]
        assert "InferenceTimeout" in log, log[-3000:]
        match = re.search(rf"Segmind request {request_id} did not finish within (\d+)s \(last status (\w+)\)", log)
        assert match, log[-3000:]
        # The last poll came at the deadline (24 s after the submit), and the job was still running.
        assert 24 <= int(match.group(1)) <= 27 and match.group(2) in {"QUEUED", "PROCESSING"}, match.group(0)
        assert emulator_status(emu, request_id) == "PROCESSING"
    FIGURES["timeout"] = {"tasks": 2, "status_polls": stats["status_polls"], "submissions_total": 2}


# --- 6. pool with include_deferred caps running + deferred --------------------------------------------
def test_pool_with_deferred_slots_caps_concurrent_jobs(faults: Faults) -> None:
    dag_id = "surge_fault_pool"
    emu, client, deployment = faults.emulators["pool"], faults.client, faults.deployment
    pool = client.create_pool("surge_fault_pool", POOL_SLOTS, include_deferred=True, description="surge_fault")
    assert pool["include_deferred"] is True
    conf = faults.conf("pool", jobs=POOL_JOBS)
    run_id = deployment.trigger(dag_id, conf)

    occupying = {"queued", "running", "deferred"}
    max_tis, max_remote, samples = 0, 0, 0
    seen_deferred = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        tis = mapped_tis(client, dag_id, run_id, "render")
        remote = emu.stats()["jobs"]
        samples += 1
        busy = [ti for ti in tis if ti["state"] in occupying]
        seen_deferred |= any(ti["state"] == "deferred" for ti in busy)
        max_tis = max(max_tis, len(busy))
        max_remote = max(max_remote, remote["QUEUED"] + remote["PROCESSING"])
        assert len(busy) <= POOL_SLOTS, [(ti["map_index"], ti["state"]) for ti in busy]
        if client.dag_run(dag_id, run_id)["state"] in ("success", "failed"):
            break
        time.sleep(0.5)
    run = client.dag_run(dag_id, run_id)
    tis = mapped_tis(client, dag_id, run_id, "render")
    assert run["state"] == "success" and len(tis) == POOL_JOBS, tis
    assert max_remote <= POOL_SLOTS  # the emulator never saw more than 3 jobs in flight either
    assert max_tis == POOL_SLOTS and seen_deferred  # the pool was really the limit, deferred tasks included
    stats = emu.stats()
    assert stats["submissions_total"] == POOL_JOBS
    verified = [verify_saved(return_value(client, dag_id, run_id, "render", i), conf["output_dir"]) for i in range(12)]
    FIGURES["pool"] = {
        "jobs": POOL_JOBS,
        "slots": POOL_SLOTS,
        "samples": samples,
        "max_running_plus_deferred": max_tis,
        "max_jobs_in_flight_at_emulator": max_remote,
        "submissions_total": stats["submissions_total"],
        "outputs_verified": len(verified),
    }
