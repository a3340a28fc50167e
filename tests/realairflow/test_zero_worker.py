"""Zero-worker mode (``start_from_trigger=True``) in a real Airflow 3.3 deployment.

Why a real deployment: the claim is about processes. "No worker" means no task process was ever
started for the task instance, which only a real scheduler, triggerer and executor can show; the
re-attach claim needs a triggerer that is SIGKILLed and replaced; the retry claims need Airflow's
own retry routing of a task that starts in the triggerer; the fallbacks need Airflow's own choice
(a mapped task) and its own rendering (a template the triggerer cannot render goes to a worker).

How "no worker" is proven: every Airflow 3 task process sets its title to
``airflow worker -- <TI uuid>``. A sampler thread scans the process table every 50 ms for the whole
run and records every such title; the zero-worker TI's uuid must never appear, while the classic
task beside it (same job, same DAG run) must appear, which shows the sampler sees what it should.
The TI's ``pid`` and ``hostname``, which a worker sets when it starts a task, stay empty.

One deployment for the module, its own emulators (one per scenario, so each one's counters belong
to one scenario): ``zw`` (6 s jobs: success, permanent failure, mapped fallback), ``kill`` (40 s
jobs: triggerer SIGKILL), ``flaky`` (4 s jobs; its status endpoint is made to fail on try 1).
DAGs: ``dags/zero_worker_dags.py``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from segmind_emulator.testing import EmulatorProcess
from support import file_sha256

from .conftest import DeploymentFactory
from .harness import AirflowDeployment, AirflowRestClient, wait_until

pytestmark = pytest.mark.realairflow

TITLE = "airflow worker -- "
#: The classic task shares ``segmind_zero``: its first poll after 8 s keeps it clear of Airflow
#: 3.3.2's fast-trigger race (see dags/surge_policy_failures.py).
POLL = {"expected_seconds": 6, "dense_interval": 0.5, "max_interval": 2, "first_poll_seconds": 8}
FAST_RETRY = {"initial_backoff": 0.2, "max_backoff": 1, "max_retry_after": 10}
EMULATORS: dict[str, dict[str, Any]] = {
    "zw": {"job_seconds": 6, "job_spread": 0.05, "seed": 31},
    "kill": {"job_seconds": 40, "job_spread": 0.02, "seed": 32},
    "flaky": {"job_seconds": 4, "job_spread": 0.05, "seed": 33},
}
CONNECTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "segmind_zero": ("zw", {"poll": POLL, **FAST_RETRY}),
    "segmind_zero_kill": ("kill", {"poll": {**POLL, "expected_seconds": 40, "max_interval": 3}, **FAST_RETRY}),
    # Two retries of at most 3 s per status call: the faults below outlast them on try 1.
    "segmind_zero_flaky": (
        "flaky",
        {"poll": {**POLL, "expected_seconds": 4}, **FAST_RETRY, "max_retries": 2, "max_retry_seconds": 3},
    ),
}


class ProcessSampler(threading.Thread):
    """Every 50 ms: the TI uuids of all task processes (``airflow worker -- <uuid>``) that exist."""

    def __init__(self) -> None:
        super().__init__(name="zero-worker-sampler", daemon=True)
        self.seen: set[str] = set()
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                cmdline = " ".join(proc.info.get("cmdline") or []).strip()
                if cmdline.startswith(TITLE):
                    self.seen.add(cmdline[len(TITLE) :])
            self.samples += 1
            self._halt.wait(0.05)

    def __enter__(self) -> ProcessSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(10)


@dataclass
class ZeroWorker:
    deployment: AirflowDeployment
    emulators: dict[str, EmulatorProcess]
    output_root: Path

    @property
    def client(self) -> AirflowRestClient:
        return self.deployment.client

    def conf(self, emulator: str, scenario: str) -> dict[str, Any]:
        out = self.output_root / scenario
        out.mkdir(parents=True, exist_ok=True)
        return {"emulator_url": self.emulators[emulator].url, "output_dir": str(out)}

    def run(self, dag_id: str, conf: dict[str, Any], *, timeout: float = 240) -> tuple[str, dict[str, Any]]:
        run_id = self.deployment.trigger(dag_id, conf)
        return run_id, self.client.wait_for_run(dag_id, run_id, timeout=timeout)

    def log_text(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        return "\n".join(self.client.logs(dag_id, run_id, task_id, map_index).values())


@pytest.fixture(scope="module")
def zw(airflow_deployment: DeploymentFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZeroWorker]:
    emulators: dict[str, EmulatorProcess] = {}
    try:
        for name, flags in EMULATORS.items():
            emulators[name] = EmulatorProcess(**flags).start()
        env = {
            f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps({**emulators[emu].connection_dict(), "extra": extra})
            for conn_id, (emu, extra) in CONNECTIONS.items()
        }
        # A fresh API server can take tens of seconds over its first task start on a loaded 2-core machine;
        # the default 5 s then fails the classic task before it starts (the zero-worker one makes no such call).
        env["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"] = "120"
        deployment = airflow_deployment(env=env)
        yield ZeroWorker(deployment, emulators, tmp_path_factory.mktemp("zero-worker-outputs"))
        # Nobody else uses this env: free the 2-core machine for the next module right away.
        deployment.stop()
    finally:
        for emu in emulators.values():
            emu.stop()


# --- helpers ----------------------------------------------------------------------------------------
def saved_file(result: dict[str, Any], output_dir: str) -> Path:
    """The video a task reported, checked: under ``output_dir``, its size and sha256 as reported."""
    saved = result["saved"]
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(saved["path"]).path))
    assert str(path).startswith(output_dir) and path.name == f"{result['request_id']}.mp4", saved
    assert os.path.getsize(path) == saved["bytes"] > 1000
    assert file_sha256(str(path)) == saved["sha256"], f"{path} does not match its reported sha256"
    return path


def submissions(emu: EmulatorProcess) -> int:
    return int(emu.stats()["submissions_total"])


# --- 1. success, side by side with the classic path ---------------------------------------------------
@pytest.mark.timeout(420)
def test_a_zero_worker_task_runs_without_any_worker_process_and_ends_like_the_classic_one(zw: ZeroWorker) -> None:
    dag_id, emu = "zero_worker_surge", zw.emulators["zw"]
    conf = zw.conf("zw", "surge")
    before = submissions(emu)
    with ProcessSampler() as sampler:
        run_id, run = zw.run(dag_id, conf)
    assert run["state"] == "success", run
    zero = zw.client.task_instance(dag_id, run_id, "zero")
    classic = zw.client.task_instance(dag_id, run_id, "classic")

    # No task process ever existed for the zero-worker TI; the classic one's did, so the sampler saw them.
    assert sampler.samples > 20
    assert classic["id"] in sampler.seen, sampler.seen
    assert zero["id"] not in sampler.seen, sampler.seen
    assert zero["state"] == "success" and zero["try_number"] == 1, zero
    assert not zero.get("pid") and not zero.get("hostname"), zero  # a worker would have set both
    # One paid submission per task: two tasks, two jobs.
    assert submissions(emu) - before == 2

    values = {t: zw.client.xcoms(dag_id, run_id, t) for t in ("zero", "classic")}
    results = {t: values[t]["return_value"] for t in values}
    for task_id, result in results.items():
        assert isinstance(result, dict), (task_id, result)  # stored once, not JSON-encoded twice
        saved_file(result, conf["output_dir"])
    # The same job gives the same video, whichever path waited for it.
    assert results["zero"]["saved"]["sha256"] == results["classic"]["saved"]["sha256"]
    # The same return value, apart from what names the job itself.
    per_job = {"request_id", "status_url", "output", "saved", "metrics"}
    assert {k: v for k, v in results["zero"].items() if k not in per_job} == {
        k: v for k, v in results["classic"].items() if k not in per_job
    }
    assert results["zero"].keys() == results["classic"].keys()
    assert results["zero"]["metrics"].keys() == results["classic"]["metrics"].keys()
    assert results["zero"]["saved"].keys() == results["classic"]["saved"].keys()
    # The same XComs (the zero-worker one also keeps its request record there, see reattach.py).
    assert set(values["zero"]) - {"segmind_request"} == set(values["classic"]), values
    for task_id, xcoms in values.items():
        assert xcoms["request_id"] == results[task_id]["request_id"]
        assert xcoms["status_url"] == results[task_id]["status_url"]
        assert xcoms["output_url"] == results[task_id]["output"]
        # The UI's extra links: stored by the worker when a try ends, by the trigger in zero-worker mode.
        assert xcoms["_link_SegmindOutputLink"] == results[task_id]["output"]
        assert xcoms["_link_SegmindRequestLink"] == results[task_id]["status_url"]
    assert values["zero"]["segmind_request"]["request_id"] == results["zero"]["request_id"]


# --- 2. triggerer SIGKILL mid-wait ---------------------------------------------------------------------
@pytest.mark.timeout(480)
def test_after_a_triggerer_sigkill_mid_wait_the_new_triggerer_reattaches_without_a_second_submission(
    zw: ZeroWorker,
) -> None:
    dag_id, emu, client = "zero_worker_kill", zw.emulators["kill"], zw.client
    conf = zw.conf("kill", "kill")
    before = submissions(emu)
    with ProcessSampler() as sampler:
        run_id = zw.deployment.trigger(dag_id, conf)
        # Submitted (the request id is in XCom) and waiting: kill the triggerer holding the job.
        request_id = wait_until(
            lambda: client.xcoms(dag_id, run_id, "zero").get("request_id"), timeout=120, what="the submit"
        )
        time.sleep(3)
        zw.deployment.kill_triggerer()
        assert emu.stats()["submissions_total"] - before == 1
        zw.deployment.start_triggerer()
        run = client.wait_for_run(dag_id, run_id, timeout=300)
    ti = client.task_instance(dag_id, run_id, "zero")
    assert run["state"] == "success" and ti["try_number"] == 1, (run["state"], ti)
    assert submissions(emu) - before == 1  # re-attached: still one paid job
    result = client.xcoms(dag_id, run_id, "zero")["return_value"]
    assert result["request_id"] == request_id
    saved_file(result, conf["output_dir"])
    assert ti["id"] not in sampler.seen  # the restart did not move the task to a worker either
    assert "Re-attaching to request " + request_id in zw.log_text(dag_id, run_id, "zero")


# --- 3. failures: the same exceptions and retry rules as the classic path ------------------------------
@pytest.mark.timeout(300)
def test_a_permanent_failure_fails_after_one_try_with_the_classic_error(zw: ZeroWorker) -> None:
    dag_id, emu = "zero_worker_failures", zw.emulators["zw"]
    before = submissions(emu)
    run_id, run = zw.run(dag_id, zw.conf("zw", "failures"))
    ti = zw.client.task_instance(dag_id, run_id, "blocked")
    assert run["state"] == "failed" and ti["state"] == "failed", (run, ti)
    assert ti["try_number"] == 1, "a content block is permanent: retries=2 must not be used"
    assert submissions(emu) - before == 1  # the content block's; nothing for the template below
    log = zw.log_text(dag_id, run_id, "blocked")
    assert "InferenceFailed" in log and "responsible-AI filter" in log, log[-3000:]


@pytest.mark.timeout(300)
def test_a_template_the_triggerer_cannot_render_goes_to_a_worker_and_is_never_paid_for(zw: ZeroWorker) -> None:
    dag_id, emu = "zero_worker_failures", zw.emulators["zw"]
    before = submissions(emu)
    run_id, _ = zw.run(dag_id, zw.conf("zw", "undefined"))
    ti = zw.client.task_instance(dag_id, run_id, "undefined")
    assert ti["state"] == "failed", ti
    # Airflow's own triggerer rendering would have made it "" and submitted it; here nothing was sent.
    assert submissions(emu) - before == 1  # the content-block task of the same DAG run only
    log = zw.log_text(dag_id, run_id, "undefined")
    assert "handing the task to a worker (nothing was submitted)" in log, log[-3000:]
    assert "no_such_key" in log, log[-3000:]  # the worker's own rendering names what is undefined


@pytest.mark.timeout(360)
def test_a_retryable_failure_is_retried_and_the_retry_reattaches_to_the_same_job(zw: ZeroWorker) -> None:
    dag_id, emu, client = "zero_worker_flaky", zw.emulators["flaky"], zw.client
    conf = zw.conf("flaky", "flaky")
    before = submissions(emu)
    # The first status calls of try 1 fail (its 2 retries do not outlast them): PollingGaveUp, retryable.
    emu.set_fault_rules({"mode": "error", "status": 500, "endpoints": ["status"], "times": 3})
    try:
        run_id, run = zw.run(dag_id, conf)
    finally:
        emu.set_fault_rules()
    ti = client.task_instance(dag_id, run_id, "zero")
    assert run["state"] == "success" and ti["try_number"] >= 2, (run["state"], ti)
    assert submissions(emu) - before == 1  # every retry re-attached through the XCom record
    logs = client.logs(dag_id, run_id, "zero")
    assert "PollingGaveUp" in logs[1], logs[1][-3000:]
    result = client.xcoms(dag_id, run_id, "zero")["return_value"]
    assert "Re-attaching to request " + result["request_id"] in logs[max(logs)]
    saved_file(result, conf["output_dir"])


# --- 4. fallback ----------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_a_mapped_task_falls_back_to_the_classic_path_and_says_so(zw: ZeroWorker) -> None:
    dag_id, emu = "zero_worker_mapped", zw.emulators["zw"]
    conf = zw.conf("zw", "mapped")
    before = submissions(emu)
    run_id, run = zw.run(dag_id, conf)
    assert run["state"] == "success", run
    assert submissions(emu) - before == 2
    for index in (0, 1):
        log = zw.log_text(dag_id, run_id, "surge", index)
        assert "start_from_trigger=True, but this task runs in a worker: a mapped task" in log, log[-3000:]
        result = zw.client.xcoms(dag_id, run_id, "surge", index)["return_value"]
        saved_file(result, conf["output_dir"])
