"""Airflow's distributed engine: CeleryExecutor with two workers, two triggerers, outputs on S3.

Why: a team that outgrows one LocalExecutor runs Celery workers on several machines and several
triggerers for high availability, and keeps the videos in object storage. What the provider
promises there only shows with every part real and separate: PostgreSQL (metadata and Celery
results), Redis (the broker), scheduler, dag-processor, api-server, two ``airflow celery worker``
and two ``airflow triggerer`` processes (``harness.py``), the Segmind emulator, and an S3 API
(``moto_server``) the workers write to through an ``aws`` connection named in the URL
(``s3://aws_test@bucket/...``).

The scenario, in one mapped run of ``celery_surge_load`` (``dags/celery_surge_dags.py``):

1. ``REALAIRFLOW_CELERY_JOBS`` (default 40, full size 200) deferrable renders against an emulator
   with a per-key rate limit (429s) and 5 % injected faults;
2. once both triggerers hold triggers, the one holding more is SIGKILLed: the other adopts its
   triggers when its heartbeat is older than ``[triggerer] triggerer_health_check_threshold``
   (10 s here); the test measures how long that took;
3. once every render is submitted, ``celery_worker_crash`` submits one more and pauses before
   deferring; the Celery worker running it is SIGKILLed with everything it runs (a lost node).

Pass: every task succeeds, the emulator accepted exactly one job per task instance, every video in
the bucket has the sha256 its task reported and that the emulator served, and no trigger's
deadline moved. The figures are printed at the end (``-s``) and go to the README's closing note.

    REALAIRFLOW_CELERY_JOBS=200 .venv/bin/pytest -m celery tests/realairflow -s
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from segmind_emulator.testing import EmulatorProcess
from test_storage_s3 import AWS_CONN_ID, MotoServer

from .conftest import DeploymentFactory
from .harness import DEFAULT_DAGS_FOLDER, AirflowDeployment, wait_until
from .test_load_and_crashes import FAST_RETRY, emulator_status, mapped_tis, return_value, trigger_rows

pytestmark = [pytest.mark.realairflow, pytest.mark.celery]

JOBS = int(os.environ.get("REALAIRFLOW_CELERY_JOBS", "40"))
JOB_SECONDS = float(os.environ.get("REALAIRFLOW_CELERY_JOB_SECONDS", "30"))
#: The key's limit (requests/s) grows with the size: 3/s for 40 jobs, 8/s for 200. At 3/s, 200 jobs ran submits out
#: of their 60 attempts and tasks out of their retries; at 15/s the provider's own per-process key budget kept
#: every call under the limit (no 429 at all, and the test wants the limit to bite).
RATE = float(os.environ.get("REALAIRFLOW_CELERY_RATE", str(max(3.0, JOBS / 25))))
CONN_ID = "segmind_celery"
DAG_FILE = DEFAULT_DAGS_FOLDER / "celery_surge_dags.py"
#: The operator's default ``timeout``: every trigger's deadline is its submit time plus this.
TIMEOUT = 3600

EMULATOR_FLAGS = {"job_seconds": JOB_SECONDS, "job_spread": 0.05, "rate_limit": RATE, "fault_rate": 0.05, "seed": 31}
#: As the LocalExecutor load test: a generous retry budget for a key shared by every job, and the
#: emulator's faults come before processing, so a faulted submit was never accepted (safe to resend).
#: The first poll 8 s after the submit keeps clear of Airflow 3.3.2's fast-trigger race.
CONNECTION_EXTRA = {
    "poll": {"expected_seconds": JOB_SECONDS, "dense_interval": 0.5, "max_interval": 3, "first_poll_seconds": 8},
    **FAST_RETRY,
    "max_retries": 60,
    "max_retry_seconds": 900,
    "resubmit_on_unknown_outcome": True,
}

#: The scenario's figures, printed at the end of the module.
FIGURES: dict[str, Any] = {}


@dataclass
class CeleryScenario:
    deployment: AirflowDeployment
    emulator: EmulatorProcess
    s3: MotoServer
    bucket: str

    def conf(self, prefix: str, **extra: Any) -> dict[str, Any]:
        return {
            "emulator_url": self.emulator.url,
            "output_path": f"s3://{AWS_CONN_ID}@{self.bucket}/{prefix}/",
            **extra,
        }


@pytest.fixture(scope="module")
def celery_scenario(
    airflow_deployment: DeploymentFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryScenario]:
    # Only this module's DAG file in the deployment's DAG folder: the dag-processor re-parses every
    # file every few seconds, CPU the two cores need for the workers.
    # (Plus the helper module it imports, which the dag-processor does not parse as a DAG file.)
    dags = tmp_path_factory.mktemp("celery-dags")
    for name in (DAG_FILE.name, "sample_images.py"):
        (dags / name).symlink_to(DEFAULT_DAGS_FOLDER / name)
    no_aws = tmp_path_factory.mktemp("no-aws")
    s3 = MotoServer()
    emulator = EmulatorProcess(**EMULATOR_FLAGS)
    try:
        emulator.start()
        env = {
            f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps({**emulator.connection_dict(), "extra": CONNECTION_EXTRA}),
            f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}": s3.connection_json(),
            # The workers reach the bucket only through the connection in the URL, as in production.
            "AWS_SHARED_CREDENTIALS_FILE": str(no_aws / "credentials"),
            "AWS_CONFIG_FILE": str(no_aws / "config"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        deployment = airflow_deployment(
            dags,
            env,
            executor="CeleryExecutor",
            triggerers=2,
            celery_workers=2,
            celery_concurrency=4,
        )
        bucket = f"videos-{uuid.uuid4().hex[:12]}"
        s3.client().create_bucket(Bucket=bucket)
        yield CeleryScenario(deployment, emulator, s3, bucket)
        deployment.stop()  # nobody else uses this deployment: free the cores at once
    finally:
        emulator.stop()
        s3.stop()
        if FIGURES:
            sys.stderr.write(f"\nrealairflow celery figures: {json.dumps(FIGURES, default=str)}\n")


# --- helpers ----------------------------------------------------------------------------------------
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TriggerLedger:
    """Every ``SegmindRequestTrigger`` row seen, by id: its kwargs must never change while it lives.

    A trigger's ``deadline`` is absolute (submit time + timeout); a triggerer that adopts it, or a
    retry that re-defers, must keep it. Each ``sample`` compares the rows now with the first sight.
    """

    def __init__(self, deployment: AirflowDeployment) -> None:
        self.deployment = deployment
        self.first_seen: dict[int, dict[str, Any]] = {}

    def sample(self) -> dict[int, Any]:
        rows = trigger_rows(self.deployment)
        for trigger_id, row in rows.items():
            kwargs = self.first_seen.setdefault(trigger_id, row["kwargs"])
            assert row["kwargs"] == kwargs, f"trigger {trigger_id} changed: {kwargs} -> {row['kwargs']}"
            assert kwargs["deadline"] == kwargs["submitted_at"] + TIMEOUT, kwargs
        return rows


def all_submitted(deployment: AirflowDeployment, run_id: str) -> bool:
    """Every mapped render has pushed ``request_id`` (done right after the request was recorded).

    Fails at once when the run has failed, with each try's state: nothing would submit any more.
    """
    rows = deployment.db_query(
        "SELECT count(*) AS n FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = 'surge' AND key = 'request_id'",
        ("celery_surge_load", run_id),
    )
    if deployment.client.dag_run("celery_surge_load", run_id)["state"] == "failed":
        raise AssertionError(f"the load run failed: {ti_summary(deployment, 'celery_surge_load', run_id)}")
    return int(rows[0]["n"]) == JOBS


def ti_summary(deployment: AirflowDeployment, dag_id: str, run_id: str) -> list[tuple[Any, ...]]:
    """(task, map index, try, state) of every try that did not succeed: what a failure message needs."""
    rows = deployment.db_query(
        "SELECT task_id, map_index, try_number, state FROM task_instance_history WHERE dag_id = %s AND run_id = %s"
        " UNION ALL SELECT task_id, map_index, try_number, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
        (dag_id, run_id, dag_id, run_id),
    )
    return sorted((r["task_id"], r["map_index"], r["try_number"], r["state"]) for r in rows if r["state"] != "success")


def queued_tis(deployment: AirflowDeployment) -> int:
    return int(deployment.db_query("SELECT count(*) AS n FROM task_instance WHERE state = 'queued'")[0]["n"])


def verify_in_bucket(scenario: CeleryScenario, result: dict[str, Any], prefix: str) -> str:
    """The video is in the bucket where the task said, with its sha256, and is what the emulator served."""
    saved, request_id = result["saved"], result["request_id"]
    key = f"{prefix}/{request_id}.mp4"
    assert saved["path"] == f"s3://{AWS_CONN_ID}@{scenario.bucket}/{key}", saved
    stored = scenario.s3.client().get_object(Bucket=scenario.bucket, Key=key)["Body"].read()
    assert len(stored) == saved["bytes"] > 1000 and sha256(stored) == saved["sha256"], (key, saved)
    with urllib.request.urlopen(result["output"], timeout=30) as answer:
        assert sha256(answer.read()) == saved["sha256"], f"{key} is not the video the emulator rendered"
    return key


# --- the deployment -----------------------------------------------------------------------------------
def test_celery_deployment_runs_two_workers_and_two_triggerers(celery_scenario: CeleryScenario) -> None:
    """What the scenario stands on: the components it kills are really separate live processes."""
    deployment = celery_scenario.deployment
    assert deployment.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert deployment.redis is not None and deployment.redis.ping()
    names = set(deployment.worker_names) | set(deployment.triggerer_names)
    assert names == {"celery-worker-1", "celery-worker-2", "triggerer-1", "triggerer-2"}
    assert all(deployment.components[n].alive() for n in names)
    assert len({deployment.components[n].pid for n in names}) == 4
    jobs = {deployment.triggerer_job_id(name) for name in deployment.triggerer_names}
    assert len(jobs) == 2, "each triggerer has its own job row"


# --- the scenario -----------------------------------------------------------------------------------
@pytest.mark.timeout(max(900, 300 + JOBS * 6))
def test_celery_workers_and_triggerers_killed_mid_run_lose_nothing_and_pay_once(
    celery_scenario: CeleryScenario,
) -> None:
    scenario = celery_scenario
    deployment, emulator, client = scenario.deployment, scenario.emulator, scenario.deployment.client
    ledger = TriggerLedger(deployment)
    started = time.monotonic()
    load_conf = scenario.conf("load", jobs=JOBS)
    load_run = deployment.trigger("celery_surge_load", load_conf)

    # 1. Once a triggerer runs a good number of triggers, SIGKILL it (the one holding more).
    jobs_of = {deployment.triggerer_job_id(name): name for name in deployment.triggerer_names}

    def busiest() -> tuple[int, int] | None:
        held = [row["triggerer_id"] for row in ledger.sample().values() if row["triggerer_id"] in jobs_of]
        count, job = max((held.count(job), job) for job in jobs_of)
        return (job, count) if count >= min(8, JOBS // 4) else None

    victim_job, held_at_kill = wait_until(busiest, timeout=300, interval=0.5, what="a triggerer to hold triggers")
    [survivor_job] = [job for job in jobs_of if job != victim_job]
    orphans = {tid for tid, row in ledger.sample().items() if row["triggerer_id"] == victim_job}
    deployment.kill_triggerer(jobs_of[victim_job])
    killed_at = time.monotonic()

    first_adopted: list[float] = []

    def adopted() -> bool:
        rows = ledger.sample()
        owners = {rows[tid]["triggerer_id"] for tid in orphans if tid in rows}
        if survivor_job in owners and not first_adopted:
            first_adopted.append(time.monotonic() - killed_at)
        return owners <= {survivor_job}

    wait_until(adopted, timeout=120, interval=0.2, what=f"triggerer {survivor_job} to adopt {len(orphans)} triggers")
    all_adopted_seconds = time.monotonic() - killed_at

    # 2. Every render is submitted (and recorded); one more submits and pauses before deferring:
    #    SIGKILL the Celery worker running it, with all it runs, like a lost node.
    wait_until(lambda: all_submitted(deployment, load_run), timeout=max(300, JOBS * 6), what="every render to submit")
    crash_conf = scenario.conf("crash", pause_after_submit=600)
    crash_run = deployment.trigger("celery_worker_crash", crash_conf)
    request_id = str(
        wait_until(
            lambda: client.xcoms("celery_worker_crash", crash_run, "victim").get("request_id"),
            timeout=180,
            interval=0.3,
            what="the victim to submit",
        )
    )
    task = deployment.wait_for_task_process("celery_worker_crash", crash_run, "victim")["task"]
    worker = deployment.component_of(task)
    assert worker in deployment.worker_names, worker
    # A message a worker had just reserved dies with it (Airflow re-queues it only after
    # [scheduler] task_queued_timeout): kill when nothing waits in a queue, if that comes within 10 s.
    for _ in range(50):
        if queued_tis(deployment) == 0:
            break
        time.sleep(0.2)
    killed_pids = deployment.kill_worker(worker)
    status_at_kill = emulator_status(emulator, request_id)
    assert status_at_kill in {"QUEUED", "PROCESSING"}, status_at_kill

    def deferred_again() -> bool:
        ledger.sample()
        ti = client.task_instance("celery_worker_crash", crash_run, "victim")
        return ti["state"] in {"deferred", "success"} and int(ti["try_number"]) > 1

    wait_until(deferred_again, timeout=240, interval=1.0, what="the victim's retry")

    crash = client.wait_for_run("celery_worker_crash", crash_run, timeout=300)
    load = client.wait_for_run("celery_surge_load", load_run, timeout=max(300, JOBS * 5))
    wall = time.monotonic() - started
    ledger.sample()
    stats = emulator.stats()

    # Every task succeeded.
    tis = mapped_tis(client, "celery_surge_load", load_run, "surge")
    assert load["state"] == "success" and len(tis) == JOBS and {ti["state"] for ti in tis} == {"success"}, ti_summary(
        deployment, "celery_surge_load", load_run
    )
    assert crash["state"] == "success", ti_summary(deployment, "celery_worker_crash", crash_run)
    # Exactly one accepted (paid) job per task instance: the adopted triggers, the killed worker's
    # retries and every 429 or fault resubmitted nothing.
    assert stats["submissions_total"] == JOBS + 1, stats
    assert stats["responses"].get("429", 0) > 0 and stats["faults_injected"] > 0, stats  # both really happened
    # The victim's retries re-attached to the request try 1 paid for.
    tries = client.task_tries("celery_worker_crash", crash_run, "victim")
    assert tries[0]["state"] == "failed" and tries[-1]["state"] == "success", tries
    logs = client.logs("celery_worker_crash", crash_run, "victim")
    for try_number in range(2, len(tries) + 1):
        assert f"Re-attaching to request {request_id}" in logs[try_number], logs[try_number][-3000:]
        assert "Submitted muscle-surge request" not in logs[try_number]
    victim = return_value(client, "celery_worker_crash", crash_run, "victim")
    assert victim["request_id"] == request_id
    # Every video is in the bucket with the sha256 its task reported, and nothing else is.
    results = [return_value(client, "celery_surge_load", load_run, "surge", i) for i in range(JOBS)]
    assert len({r["request_id"] for r in results}) == JOBS
    keys = [verify_in_bucket(scenario, r, "load") for r in results] + [verify_in_bucket(scenario, victim, "crash")]
    listing = scenario.s3.client().list_objects_v2(Bucket=scenario.bucket, MaxKeys=1000)
    assert sorted(o["Key"] for o in listing.get("Contents", [])) == sorted(keys), "no temporary or stray objects"
    # No deadline moved: every trigger ever seen kept its first kwargs (checked at each sample), and
    # the victim's re-deferred trigger counts from try 1's submit.
    record = client.task_state_store("celery_worker_crash", crash_run, "victim")["segmind_request"]
    assert record["request_id"] == request_id and record["try_number"] == 1
    victim_triggers = [kw for kw in ledger.first_seen.values() if kw["request_id"] == request_id]
    assert all(kw["submitted_at"] == record["submitted_at"] for kw in victim_triggers), victim_triggers

    FIGURES.update(
        {
            "jobs": JOBS + 1,
            "job_seconds": JOB_SECONDS,
            "rate_limit_per_s": RATE,
            "wall_seconds": round(wall, 1),
            "submissions_total": stats["submissions_total"],
            "responses_429": stats["responses"].get("429", 0),
            "faults_injected": stats["faults_injected"],
            "status_polls": stats["status_polls"],
            "result_calls": stats["results"],
            "triggers_on_killed_triggerer": len(orphans),
            "held_at_kill": held_at_kill,
            "adoption_first_seconds": round(first_adopted[0], 1) if first_adopted else None,
            "adoption_all_seconds": round(all_adopted_seconds, 1),
            "killed_worker": worker,
            "killed_worker_processes": len(killed_pids),
            "victim_status_at_kill": status_at_kill,
            "victim_tries": len(tries),
            "load_tis_retried": sum(1 for ti in tis if int(ti["try_number"]) > 1),
            "triggers_seen": len(ledger.first_seen),
            "outputs_verified": len(keys),
        }
    )
    assert orphans and first_adopted, "the killed triggerer held triggers, and the other one adopted them"
