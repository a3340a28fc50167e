"""Policy scenarios in a real deployment: re-attach rules, permanent failures, and the API key.

Why a real deployment: whether a cleared task re-attaches depends on ``task_state_store`` rows kept
by the api-server across tries; whether a permanent error skips ``retries`` is decided by the real
task runner and scheduler; and where a key could leak (task and trigger logs, XCom, rendered
fields, the ``trigger`` table, component logs) only exists when scheduler, triggerer, api-server
and supervised task processes are separate processes writing to a real database.

Everything runs against emulators started for the session (``session_emulator``): ``policy-main``
(the normal API, its only key is a canary), ``policy-broke`` (no credits: 406) and ``policy-short``
(request records kept 2 s: 404). DAG runs are triggered and read back through the REST API only.
DAGs: ``dags/surge_policy_params.py``, ``surge_policy_failures.py``, ``surge_policy_secrets.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet

from .conftest import DeploymentFactory
from .harness import AirflowDeployment, AirflowRestClient, HarnessError, wait_until

pytestmark = pytest.mark.realairflow

#: Distinctive keys: the secret scan looks for each of them everywhere the deployment keeps text.
CANARY_KEY = f"sk-canary-{uuid.uuid4()}"
BAD_KEY = f"sk-canary-{uuid.uuid4()}"  # a key the emulator does not know (401)
BROKE_KEY = f"sk-canary-{uuid.uuid4()}"  # a valid key with no credits (406)
SHORT_KEY = f"sk-canary-{uuid.uuid4()}"  # a valid key on the 2-second-retention emulator (404)
ALL_KEYS = (CANARY_KEY, BAD_KEY, BROKE_KEY, SHORT_KEY)

#: The small poll schedule for ~1.5 s emulator jobs, in every connection's extra.
POLL = {"expected_seconds": 2, "dense_interval": 0.3, "max_interval": 2}
POLICY_DAGS = ("surge_policy_params", "surge_policy_failures", "surge_policy_secrets", "surge_policy_ui")

#: Texts of errors and failure messages the tests read (scanned for the key at the end).
COLLECTED_TEXT: list[str] = []


@dataclass
class Policy:
    """The shared deployment and the emulators behind its connections."""

    deployment: AirflowDeployment
    main: Any
    broke: Any
    short: Any
    env: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> AirflowRestClient:
        return self.deployment.client


def _conn(emulator: Any, key: str) -> str:
    return json.dumps({"conn_type": "segmind", "host": emulator.url, "password": key, "extra": {"poll": POLL}})


def start_policy_deployment(airflow_deployment: DeploymentFactory, session_emulator: Callable[..., Any]) -> Policy:
    """The one deployment the policy and UI modules share (same emulators, same env: same deployment)."""
    main = session_emulator("policy-main", api_key=CANARY_KEY, job_seconds=1.5, job_spread=0.05, seed=11)
    broke = session_emulator("policy-broke", api_key=BROKE_KEY, credits=0, job_seconds=1.0, seed=12)
    short = session_emulator("policy-short", api_key=SHORT_KEY, retention_seconds=2, job_seconds=0.2, seed=13)
    env = {
        "AIRFLOW_CONN_SEGMIND_DEFAULT": _conn(main, CANARY_KEY),
        "AIRFLOW_CONN_SEGMIND_BADKEY": _conn(main, BAD_KEY),
        "AIRFLOW_CONN_SEGMIND_BROKE": _conn(broke, BROKE_KEY),
        "AIRFLOW_CONN_SEGMIND_SHORT": _conn(short, SHORT_KEY),
    }
    return Policy(airflow_deployment(env=env), main, broke, short, env)


@pytest.fixture(scope="module")
def policy(airflow_deployment: DeploymentFactory, session_emulator: Callable[..., Any]) -> Policy:
    return start_policy_deployment(airflow_deployment, session_emulator)


# --- helpers ------------------------------------------------------------------------------------------
def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    """Per-status-code response counts added between two ``/_emulator/stats`` snapshots."""
    codes = set(after["responses"]) | set(before["responses"])
    diff = {c: after["responses"].get(c, 0) - before["responses"].get(c, 0) for c in codes}
    return {c: n for c, n in sorted(diff.items()) if n}


def _tis(policy: Policy, dag_id: str, run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    return {(t["task_id"], int(t["map_index"])): t for t in policy.client.task_instances(dag_id, run_id)}


def _log(policy: Policy, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
    return policy.client.log(dag_id, run_id, task_id, try_number, map_index)


def _xcom(policy: Policy, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
    return policy.client.xcoms(dag_id, run_id, task_id, map_index=map_index)


def _run(policy: Policy, dag_id: str, conf: dict[str, Any], *, timeout: float = 150) -> str:
    run_id = policy.deployment.trigger(dag_id, conf)
    run = policy.client.wait_for_run(dag_id, run_id, timeout=timeout)
    assert run["state"] in ("success", "failed")
    return run_id


def _wait_rerun(policy: Policy, dag_id: str, run_id: str, keys: list[tuple[str, int]], try_number: int) -> None:
    """After a clear: wait until every cleared TI finished its new try (and the run is terminal again)."""

    def done() -> bool:
        tis = _tis(policy, dag_id, run_id)
        return all(tis[k]["try_number"] >= try_number and tis[k]["state"] in ("success", "failed") for k in keys)

    wait_until(done, timeout=150, interval=1.0, what=f"{dag_id}/{run_id} {keys} to finish try {try_number}")
    policy.client.wait_for_run(dag_id, run_id, timeout=60)


def _set_variable(policy: Policy, key: str, value: str) -> None:
    resp = policy.client.request("PATCH", f"/api/v2/variables/{key}", json={"key": key, "value": value}, expected=())
    if resp.status_code == 404:
        policy.client.request("POST", "/api/v2/variables", json={"key": key, "value": value}, expected=(200, 201))
    elif resp.status_code != 200:
        raise HarnessError(f"PATCH variable {key} -> {resp.status_code}: {resp.text}")


def _clear(policy: Policy, dag_id: str, run_id: str, task_ids: list[Any]) -> None:
    cleared = policy.client.clear_task_instances(dag_id, run_id, task_ids)
    assert cleared["task_instances"], cleared


# --- A: re-attach only to the same task, run, map index and request body ------------------------------
PARAM_TASKS = [("render", -1), ("render_twin", -1), ("render_mapped", 0), ("render_mapped", 1), ("render_mapped", 2)]


def test_retry_after_params_changed_reattaches_only_for_the_same_request_body(policy: Policy) -> None:
    dag_id = "surge_policy_params"
    client = policy.client
    conf = {"image_url": policy.main.sample_url("athlete-1"), "seed": 101}
    _set_variable(policy, "surge_policy_quality", "360p")

    def request_ids(run_id: str) -> dict[tuple[str, int], str]:
        return {k: _xcom(policy, dag_id, run_id, k[0], k[1])["request_id"] for k in PARAM_TASKS}

    def stored(run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        return {k: client.task_state_store(dag_id, run_id, k[0], k[1])["segmind_request"] for k in PARAM_TASKS}

    # 1. First run: five TIs, five requests -- also where two TIs send the very same body.
    before = policy.main.stats()
    run1 = _run(policy, dag_id, conf)
    tis = _tis(policy, dag_id, run1)
    assert {k: t["state"] for k, t in tis.items()} == dict.fromkeys(PARAM_TASKS, "success")
    first = request_ids(run1)
    assert policy.main.stats()["submissions_total"] - before["submissions_total"] == 5
    assert len(set(first.values())) == 5, first
    records = stored(run1)
    assert {k: r["request_id"] for k, r in records.items()} == first
    fingerprint = {k: r["fingerprint"] for k, r in records.items()}
    assert fingerprint[("render", -1)] == fingerprint[("render_twin", -1)], "same body in two tasks..."
    assert fingerprint[("render_mapped", 1)] == fingerprint[("render_mapped", 2)], "...and at two map indexes"
    assert fingerprint[("render_mapped", 0)] != fingerprint[("render_mapped", 1)]
    for key, request_id in first.items():
        assert f"Submitted muscle-surge request {request_id}" in _log(policy, dag_id, run1, key[0], 1, key[1])

    # 2. Clear everything and re-run with the same conf: every TI re-attaches to its own request.
    before = policy.main.stats()
    _clear(policy, dag_id, run1, ["render", "render_twin", "render_mapped"])
    _wait_rerun(policy, dag_id, run1, PARAM_TASKS, 2)
    after = policy.main.stats()
    assert after["submissions_total"] == before["submissions_total"], "a re-attach submits (and pays) nothing"
    tis = _tis(policy, dag_id, run1)
    assert {k: (t["state"], t["try_number"]) for k, t in tis.items()} == dict.fromkeys(PARAM_TASKS, ("success", 2))
    assert request_ids(run1) == first, "each TI got its own old request back, none a neighbour's"
    for key, request_id in first.items():
        log = _log(policy, dag_id, run1, key[0], 2, key[1])
        assert f"Re-attaching to request {request_id} (submitted by try 1, now COMPLETED)" in log, log[-3000:]
        assert "no new submission" in log and "Submitted muscle-surge request" not in log
        assert _xcom(policy, dag_id, run1, key[0], key[1])["return_value"]["output"].endswith(f"{request_id}.mp4")

    # 3. Change a parameter (quality, via the Variable the template reads) and clear one TI: a new request.
    _set_variable(policy, "surge_policy_quality", "540p")
    try:
        before = policy.main.stats()
        _clear(policy, dag_id, run1, ["render"])
        _wait_rerun(policy, dag_id, run1, [("render", -1)], 3)
    finally:
        _set_variable(policy, "surge_policy_quality", "360p")
    assert policy.main.stats()["submissions_total"] - before["submissions_total"] == 1
    ti = _tis(policy, dag_id, run1)[("render", -1)]
    assert (ti["state"], ti["try_number"]) == ("success", 3)
    log = _log(policy, dag_id, run1, "render", 3)
    assert f"Previous request {first[('render', -1)]} was for different parameters: submitting anew" in log
    new_id = _xcom(policy, dag_id, run1, "render")["request_id"]
    assert new_id not in first.values() and f"Submitted muscle-surge request {new_id}" in log
    assert client.rendered_fields(dag_id, run1, "render")["quality"] == "540p"
    record = client.task_state_store(dag_id, run1, "render")["segmind_request"]
    assert record["request_id"] == new_id and record["fingerprint"] != fingerprint[("render", -1)]
    assert record["try_number"] == 3

    # 4. New runs: a different seed, and even the identical conf, never re-attach to another run's request.
    before = policy.main.stats()
    run2 = policy.deployment.trigger(dag_id, {**conf, "seed": 202})
    run3 = policy.deployment.trigger(dag_id, conf)
    for run_id in (run2, run3):
        assert client.wait_for_run(dag_id, run_id, timeout=150)["state"] == "success"
    assert policy.main.stats()["submissions_total"] - before["submissions_total"] == 10
    second, third = request_ids(run2), request_ids(run3)
    all_ids = [*first.values(), new_id, *second.values(), *third.values()]
    assert len(set(all_ids)) == len(all_ids) == 16, "every (run, task, map index, body) paid for its own job"
    assert client.rendered_fields(dag_id, run2, "render")["seed"] == "202"
    assert stored(run3)[("render", -1)]["fingerprint"] == fingerprint[("render", -1)], "same body, other run"
    for key in PARAM_TASKS:
        assert "Re-attaching" not in _log(policy, dag_id, run3, key[0], 1, key[1])
    print(f"\nscenario A: submissions run1=5, clear same body=0, clear changed body=1, two new runs=10; ids={all_ids}")


# --- B: permanent failures end after one try, and say what happened and what to do ---------------------
FAILURE_EXPECTATIONS: dict[str, tuple[str, ...]] = {
    "content_blocked": ("FAILED", "Content blocked by the responsible-AI filter", "change the input image"),
    "content_blocked_deferred": ("FAILED", "Content blocked by the responsible-AI filter", "change the input image"),
    "no_credits": ("HTTP 406", "Insufficient credits", "top up at cloud.segmind.com/console/billing"),
    "bad_key": ("rejected the API key", "HTTP 401", "Check the password of the Segmind connection"),
    "expired_poke": ("HTTP 404", "kept for 1 hour", "must be submitted again"),
    "expired_deferred": ("HTTP 404", "kept for 1 hour", "must be submitted again"),
}


def _expired_request_id(policy: Policy) -> str:
    """Submit to the 2-second-retention emulator and wait until the record has expired (404)."""
    short = policy.short
    headers = {"x-api-key": SHORT_KEY}
    body = {"image_url": short.sample_url("athlete-2"), "duration": 5, "quality": "360p", "motion_mode": "normal"}
    answer = requests.post(f"{short.url}/v2/muscle-surge", json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    request_id = str(answer.json()["request_id"])

    def gone() -> bool:
        return (
            requests.get(f"{short.url}/v2/requests/{request_id}/status", headers=headers, timeout=10).status_code == 404
        )

    wait_until(gone, timeout=20, interval=0.3, what=f"request {request_id} to expire")
    return request_id


def test_permanent_failures_end_after_one_try_with_a_clear_message(policy: Policy) -> None:
    dag_id = "surge_policy_failures"
    client = policy.client
    expired_id = _expired_request_id(policy)
    main0, broke0, short0 = policy.main.stats(), policy.broke.stats(), policy.short.stats()
    conf = {
        "image_url": policy.main.sample_url("athlete-3"),
        "rai_image_url": f"{policy.main.url}/_emulator/samples/rai-block-athlete.png",
        "expired_request_id": expired_id,
    }
    started = time.monotonic()
    run_id = _run(policy, dag_id, conf, timeout=120)
    elapsed = time.monotonic() - started
    tis = _tis(policy, dag_id, run_id)
    assert {k[0]: t["state"] for k, t in tis.items()} == dict.fromkeys(FAILURE_EXPECTATIONS, "failed")
    figures = {}
    for task_id, phrases in FAILURE_EXPECTATIONS.items():
        ti = tis[(task_id, -1)]
        assert ti["max_tries"] == 2, "retries=2 is configured..."
        tries = client.task_tries(dag_id, run_id, task_id)
        outcome = [(t["try_number"], t["state"]) for t in tries]
        if outcome != [(1, "failed")]:
            interventions = client.scheduler_interventions(dag_id, run_id, task_id)
            logs = "\n".join(
                f"--- try {n}:\n{text[-3000:]}" for n, text in client.logs(dag_id, run_id, task_id).items()
            )
            # A try the scheduler ended itself is Airflow's retry, not ours; anything else is ours.
            assert interventions, f"{task_id}: tries {outcome}, yet there was one try only\n{logs}"
            print(f"\n{task_id}: tries {outcome}: the scheduler ended a try itself: {interventions}")
            assert outcome[-1][1] == "failed"
        assert ti["duration"] is not None and ti["duration"] < 60, ti
        log = _log(policy, dag_id, run_id, task_id, outcome[-1][0])
        COLLECTED_TEXT.append(log)
        for phrase in phrases:
            assert phrase in log, f"{task_id}: {phrase!r} missing from its log:\n{log[-4000:]}"
        assert "AirflowFailException" in log or "marking task as FAILED" in log or "Task failed" in log
        figures[task_id] = round(float(ti["duration"]), 1)

    # Each permanent answer was asked for exactly once: no hook-level retries either.
    assert _delta(policy.broke.stats(), broke0) == {"406": 1}
    assert policy.broke.stats()["submissions_total"] == 0, "nothing accepted, nothing billed"
    main_delta = _delta(policy.main.stats(), main0)
    assert main_delta["401"] == 1, main_delta
    assert policy.main.stats()["submissions_total"] - main0["submissions_total"] == 2, "one per content-block task"
    assert _delta(policy.short.stats(), short0) == {"404": 2}, "one status call per sensor"
    interventions = client.scheduler_interventions(dag_id, run_id)
    print(f"\nscenario B: run took {elapsed:.1f}s; durations {figures}; main {main_delta}; scheduler {interventions}")


# --- D: the key appears nowhere ------------------------------------------------------------------------
class SecretScan:
    """Collects texts by source and reports, per source, how many bytes were searched and what matched."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.bytes: dict[str, int] = {}
        self.items: dict[str, int] = {}
        self.hits: list[str] = []

    def add(self, source: str, where: str, text: Any) -> None:
        text = text if isinstance(text, str) else json.dumps(text, default=str)
        self.bytes[source] = self.bytes.get(source, 0) + len(text.encode())
        self.items[source] = self.items.get(source, 0) + 1
        for key in self.keys:
            if key in text:
                at = text.index(key)
                self.hits.append(f"{source} {where}: ...{text[max(0, at - 200) : at + 60]}...")

    def summary(self) -> str:
        return ", ".join(f"{s}: {self.items[s]} items/{self.bytes[s]} bytes" for s in self.bytes)


def _readable_kwargs(fernet: Fernet, stored: str) -> str:
    """Trigger kwargs as the triggerer reads them: Fernet-decrypted, or as stored when stored as JSON.

    (Airflow 3.3's execution API stores the kwargs a task defers with as plain JSON; only rows
    written through ``Trigger(kwargs=...)`` are encrypted. Either way the key must not be there.)
    """
    return stored if stored.startswith("{") else fernet.decrypt(stored.encode()).decode()


def _scan_triggers(policy: Policy, scan: SecretScan, fernet: Fernet, label: str) -> list[dict[str, Any]]:
    rows = policy.deployment.db_query("SELECT id, classpath, kwargs FROM trigger")
    for row in rows:
        readable = _readable_kwargs(fernet, row["kwargs"])
        encrypted = "encrypted" if readable != row["kwargs"] else "plain JSON"
        scan.add(f"trigger table ({label})", f"trigger {row['id']} ({encrypted})", row["kwargs"])
        if readable != row["kwargs"]:
            scan.add(f"trigger table ({label}, decrypted)", f"trigger {row['id']}", readable)
        row["readable"], row["stored_as"] = readable, encrypted
    return rows


def _scan_metadata_db(policy: Policy, scan: SecretScan) -> None:
    tables = policy.deployment.db_query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    for row in tables:
        name = row["table_name"]
        (text,) = policy.deployment.db_query(f"SELECT coalesce(string_agg(t::text, E'\\n'), '') AS x FROM \"{name}\" t")
        scan.add("metadata DB (every table as text)", name, text["x"])


def _scan_rest(policy: Policy, scan: SecretScan) -> int:
    """Every try's log, every XCom and the rendered fields of every TI of the policy DAGs, via REST."""
    client = policy.client
    tries_read = 0
    for dag_id in POLICY_DAGS:
        if client.dag(dag_id) is None:
            continue
        for run in client.dag_runs(dag_id):
            run_id = run["dag_run_id"]
            scan.add("REST dag runs", f"{dag_id}/{run_id}", run)
            for ti in client.task_instances(dag_id, run_id):
                task_id, map_index = ti["task_id"], int(ti["map_index"])
                where = f"{dag_id}/{run_id}/{task_id}[{map_index}]"
                scan.add("REST task instances", where, ti)
                scan.add("REST rendered fields", where, ti.get("rendered_fields") or {})
                scan.add("REST XCom", where, client.xcoms(dag_id, run_id, task_id, map_index=map_index))
                for attempt in client.task_tries(dag_id, run_id, task_id, map_index):
                    number = int(attempt["try_number"])
                    if number < 1 or attempt.get("state") is None:
                        continue
                    scan.add(
                        "REST task logs (every try)",
                        f"{where} try {number}",
                        client.log(dag_id, run_id, task_id, number, map_index),
                    )
                    tries_read += 1
    return tries_read


def test_the_api_key_appears_nowhere(policy: Policy) -> None:
    dag_id = "surge_policy_secrets"
    client = policy.client
    deployment = policy.deployment
    fernet = Fernet(deployment.env["AIRFLOW__CORE__FERNET_KEY"].encode())
    control = SecretScan(ALL_KEYS)  # the scanner itself finds a key where one is: in the connection env
    control.add("control", "env", json.dumps(policy.env))
    assert len(control.hits) == len(ALL_KEYS)
    scan = SecretScan(ALL_KEYS)
    conf = {
        "image_url": policy.main.sample_url("athlete-4"),
        "rai_image_url": f"{policy.main.url}/_emulator/samples/rai-block-secrets.png",
    }
    run_id = deployment.trigger(dag_id, conf)

    # While the deferrable task waits in the triggerer, its trigger row is there: read it, decrypted too.
    client.wait_for_task_state(dag_id, run_id, "deferred", {"deferred"}, timeout=120)
    rows = wait_until(
        lambda: [
            r
            for r in _scan_triggers(policy, scan, fernet, "while deferred")
            if "SegmindRequestTrigger" in r["classpath"]
        ],
        timeout=30,
        interval=0.3,
        what="the SegmindRequestTrigger row",
    )
    kwargs = [json.loads(r["readable"]) for r in rows]
    assert any("segmind_conn_id" in json.dumps(k) and "request_id" in json.dumps(k) for k in kwargs), kwargs
    stored_as = sorted({r["stored_as"] for r in rows})
    deferred_ti = client.task_instance(dag_id, run_id, "deferred")
    assert deferred_ti["state"] == "deferred"

    run = client.wait_for_run(dag_id, run_id, timeout=150)
    assert run["state"] == "failed", "two tasks fail on purpose"
    states = {k[0]: t["state"] for k, t in _tis(policy, dag_id, run_id).items()}
    assert states == {
        "blocking": "success",
        "deferred": "success",
        "sensor_poke": "success",
        "sensor_deferred": "success",
        "failing_deferred": "failed",
        "failing_bad_key": "failed",
    }
    deferred_log = _log(policy, dag_id, run_id, "deferred", 1)
    assert "Trigger fired event" in deferred_log or "SegmindRequestTrigger" in deferred_log, "trigger lines are in"
    assert "Segmind request" in _log(policy, dag_id, run_id, "failing_deferred", 1)
    COLLECTED_TEXT.append(_log(policy, dag_id, run_id, "failing_bad_key", 1))

    _scan_triggers(policy, scan, fernet, "after the run")
    tries_read = _scan_rest(policy, scan)
    _scan_metadata_db(policy, scan)
    for path, text in deployment.all_log_text():
        scan.add("files under the deployment dir (component, task, trigger, postgres logs)", str(path), text)
    for index, text in enumerate(COLLECTED_TEXT):
        scan.add("exception and failure texts collected by the tests", str(index), text)

    print(f"\nscenario D: trigger kwargs stored as {stored_as}; {tries_read} task tries' logs; {scan.summary()}")
    assert not scan.hits, "the API key leaked:\n" + "\n".join(scan.hits[:20])
    assert scan.bytes["REST task logs (every try)"] > 10_000 and tries_read >= 6
    assert scan.items["trigger table (while deferred)"] >= 1
