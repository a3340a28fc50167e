"""Re-attach on retry: a retried task never pays twice for the same job.

A v2 submit is billed once accepted. When a try fails after its submit (polling gave up, the
worker died), Airflow's retry must pick up the *same* request, found in ``task_state_store``,
instead of submitting again. The proof is the emulator's billing counter: ``submissions_total``.

The retries here are real: ``dag.test()`` runs the task, Airflow marks it ``up_for_retry`` and runs
try 2 with the same ``task_state_store`` (Airflow 3.3 keeps it per run/task/map index across
tries). So is the failure of try 1: the emulator's fault switch makes its status endpoint answer
502 until the real wait gives up (``PollingGaveUp``), and the task's ``on_retry_callback``, which
Airflow runs between the tries, heals it.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from dags_for_tests.dagtest_support import (
    DictStateStore,
    fake_context,
    run_dag,
    task_state_store,
    task_states,
    try_numbers,
    xcom,
)
from segmind_emulator.testing import EmulatorProcess
from support import FAST, FAST_DEFERRED, FAST_RETRY

from airflow_provider_muscle_surge import reattach
from airflow_provider_muscle_surge.exceptions import InferenceFailed, PollingGaveUp
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

RETRY_ONCE = {"retries": 1, "retry_delay": timedelta(0)}
#: Every status call of try 1 fails, as many times as the connection's retries allow.
STATUS_DOWN = {"mode": "error", "endpoints": ["status"], "status": 502}


class StatusOutage:
    """The status endpoint answers 502 from now on; as ``on_retry_callback`` it records the error of
    try 1 and heals the switch, so try 2 meets a working API.

    :param until_completed: before healing, wait until the job of try 1 is COMPLETED on the emulator
        (watched through its admin counters, which are no API calls).
    """

    def __init__(self, emulator: EmulatorProcess, *, until_completed: bool = False) -> None:
        self.emulator = emulator
        self.until_completed = until_completed
        self.errors: list[Any] = []
        self.stats_at_retry: dict[str, Any] = {}
        emulator.set_fault_rules(STATUS_DOWN)

    def __call__(self, context: Any) -> None:
        self.errors.append(context.get("exception"))
        if self.until_completed:
            for _ in range(300):
                if self.emulator.stats()["jobs"]["COMPLETED"] == 1:
                    break
                time.sleep(0.05)
        self.stats_at_retry = self.emulator.stats()
        self.emulator.set_fault_rules()

    @property
    def request_of_try_1(self) -> str:
        (error,) = self.errors
        assert type(error) is PollingGaveUp, error
        return error.request_id


def surge(emulator: EmulatorProcess, **kwargs: Any) -> MuscleSurgeOperator:
    return MuscleSurgeOperator(task_id="surge", **{"image_url": emulator.sample_url(), **FAST, **RETRY_ONCE, **kwargs})


# --- (a) blocking: the retry re-attaches to the running job --------------------------------------------
def test_blocking_retry_reattaches_instead_of_paying_again(
    new_dag: Any, segmind_conn: EmulatorProcess, capfd: pytest.CaptureFixture[str]
) -> None:
    outage = StatusOutage(segmind_conn)
    with new_dag() as dag:
        surge(segmind_conn, on_retry_callback=outage)

    run = run_dag(dag)

    assert task_states(run) == {"surge": "success"}
    assert try_numbers(run) == {"surge": 2}
    first_request = outage.request_of_try_1
    assert outage.errors[0].status_code == 502
    assert outage.stats_at_retry["faults_by_mode"] == {"error": FAST_RETRY["max_retries"] + 1}, "the wait's own retries"
    assert outage.stats_at_retry["submissions_total"] == segmind_conn.stats()["submissions_total"] == 1, "billed once"
    assert xcom(run, "surge")["request_id"] == first_request, "try 2 finished the request try 1 gave up on"
    record = task_state_store(run, "surge")[reattach.STATE_KEY]
    assert (record["request_id"], record["try_number"]) == (first_request, 1)
    assert f"Re-attaching to request {first_request} (submitted by try 1" in capfd.readouterr().out


# --- (b) deferrable: the trigger's error event, then the retry re-attaches ------------------------------
def test_deferrable_retry_after_an_error_event_reattaches(new_dag: Any, segmind_conn: EmulatorProcess) -> None:
    outage = StatusOutage(segmind_conn)
    with new_dag() as dag:
        surge(segmind_conn, deferrable=True, on_retry_callback=outage, **FAST_DEFERRED)

    run = run_dag(dag)

    assert task_states(run) == {"surge": "success"}
    assert try_numbers(run) == {"surge": 2}
    first_request = outage.request_of_try_1  # the trigger's error event became the retryable exception
    assert outage.errors[0].status_code == 502
    assert outage.stats_at_retry["faults_by_mode"] == {"error": FAST_RETRY["max_retries"] + 1}
    assert segmind_conn.stats()["submissions_total"] == 1, "billed once"
    assert xcom(run, "surge")["request_id"] == first_request
    assert task_state_store(run, "surge")[reattach.STATE_KEY]["try_number"] == 1


# --- (c) the job finished meanwhile: the retry takes its result without polling -------------------------
def test_retry_takes_the_result_of_a_request_that_completed_meanwhile(
    new_dag: Any, segmind_conn: EmulatorProcess
) -> None:
    outage = StatusOutage(segmind_conn, until_completed=True)
    with new_dag() as dag:
        surge(segmind_conn, on_retry_callback=outage)

    run = run_dag(dag)

    assert task_states(run) == {"surge": "success"}
    assert try_numbers(run) == {"surge": 2}
    before, after = outage.stats_at_retry, segmind_conn.stats()
    assert before["jobs"]["COMPLETED"] == 1
    assert after["submissions_total"] == before["submissions_total"] == 1
    assert after["status_polls"] - before["status_polls"] == 1, "one status check to re-attach, no polling"
    assert after["results"] - before["results"] == 1
    result = xcom(run, "surge")
    assert (result["request_id"], result["status"]) == (outage.request_of_try_1, "COMPLETED")
    assert result["output"] == xcom(run, "surge", "output_url")


# --- (d) different parameters are a different job ------------------------------------------------------
def test_retry_with_different_parameters_submits_a_new_request(
    new_dag: Any, segmind_conn: EmulatorProcess, capfd: pytest.CaptureFixture[str]
) -> None:
    outage = StatusOutage(segmind_conn)
    with new_dag() as dag:
        surge(segmind_conn, seed="{{ ti.try_number }}", on_retry_callback=outage)  # renders 1, then 2

    run = run_dag(dag)

    assert task_states(run) == {"surge": "success"}
    assert segmind_conn.stats()["submissions_total"] == 2
    first, second = outage.request_of_try_1, xcom(run, "surge")["request_id"]
    assert first != second
    assert task_state_store(run, "surge")[reattach.STATE_KEY]["request_id"] == second
    assert f"Previous request {first} was for different parameters: submitting anew" in capfd.readouterr().out


# --- (e) re-attach switched off ----------------------------------------------------------------------------
def test_reattach_false_submits_again_on_retry(new_dag: Any, segmind_conn: EmulatorProcess) -> None:
    outage = StatusOutage(segmind_conn)
    with new_dag() as dag:
        surge(segmind_conn, reattach=False, on_retry_callback=outage)

    run = run_dag(dag)

    assert task_states(run) == {"surge": "success"}
    assert segmind_conn.stats()["submissions_total"] == 2
    assert outage.request_of_try_1 != xcom(run, "surge")["request_id"]


# --- two tries by hand (execute() twice, one store) --------------------------------------------------------
def test_deferred_retry_defers_on_the_same_request_with_the_same_deadline(segmind_conn: EmulatorProcess) -> None:
    store = DictStateStore()
    op = surge(segmind_conn, deferrable=True, timeout=600, **FAST_DEFERRED)

    with pytest.raises(TaskDeferred) as try_1:
        op.execute(fake_context(store, try_number=1))
    with pytest.raises(TaskDeferred) as try_2:
        op.execute(fake_context(store, try_number=2))

    first, second = try_1.value.trigger.serialize()[1], try_2.value.trigger.serialize()[1]
    assert second["request_id"] == first["request_id"]
    assert second["submitted_at"] == first["submitted_at"]
    assert second["deadline"] == first["deadline"], "a retry does not extend the user's timeout"
    assert segmind_conn.stats()["submissions_total"] == 1


def test_expired_previous_request_is_submitted_anew(segmind_conn: EmulatorProcess) -> None:
    op = surge(segmind_conn, wait_for_completion=False)
    store = DictStateStore()
    gone = reattach.RequestRecord(
        request_id="expired-long-ago",
        status_url=f"{segmind_conn.url}/v2/requests/expired-long-ago/status",
        response_url=f"{segmind_conn.url}/v2/requests/expired-long-ago",
        model="muscle-surge",
        fingerprint=reattach.fingerprint("muscle-surge", op.request_body()),
        submitted_at=0.0,
        try_number=1,
    )
    store.set(reattach.STATE_KEY, gone.to_dict())

    result = op.execute(fake_context(store, try_number=2))

    assert result["request_id"] != "expired-long-ago"
    assert store.get(reattach.STATE_KEY)["request_id"] == result["request_id"]
    assert store.get(reattach.STATE_KEY)["try_number"] == 2
    assert segmind_conn.stats()["submissions_total"] == 1


def failed_first_try(emulator: EmulatorProcess) -> tuple[MuscleSurgeOperator, DictStateStore]:
    """An operator whose try 1 (run by hand) ended in a content block, and the store it left."""
    op = surge(emulator, image_url=emulator.sample_url() + "?rai-block")
    store = DictStateStore()
    with pytest.raises(InferenceFailed):
        op.execute(fake_context(store, try_number=1))
    return op, store


def test_failed_previous_request_with_the_same_body_fails_again_without_paying(segmind_conn: EmulatorProcess) -> None:
    op, store = failed_first_try(segmind_conn)
    failed_id = store.get(reattach.STATE_KEY)["request_id"]

    with pytest.raises(InferenceFailed) as info:
        op.execute(fake_context(store, try_number=2))

    assert info.value.request_id == failed_id
    assert segmind_conn.stats()["submissions_total"] == 1


def test_failed_previous_request_is_submitted_anew_when_reattach_is_off(segmind_conn: EmulatorProcess) -> None:
    op, store = failed_first_try(segmind_conn)
    op.reattach = False
    op.wait_for_completion = False

    op.execute(fake_context(store, try_number=2))

    assert segmind_conn.stats()["submissions_total"] == 2


class ArchivedTryStore(DictStateStore):
    """The store as a stale try sees it once Airflow archived its task instance: reads find
    nothing (the execution API answers 404 either way), writes are refused."""

    def get(self, key: str, default: Any = None) -> Any:
        return default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        raise RuntimeError("API_SERVER_ERROR: 404 Task instance not found")


def test_a_stale_try_fails_before_submitting_because_the_write_ahead_is_refused(
    segmind_conn: EmulatorProcess,
) -> None:
    # Found in a real deployment under load: an executor event raced a deferral, the scheduler
    # moved on to a new try, and the old try's process still ran execute(), read "no record" and paid.
    op = surge(segmind_conn, wait_for_completion=False)

    with pytest.raises(RuntimeError, match="Task instance not found"):
        op.execute(fake_context(ArchivedTryStore(), try_number=1))

    assert segmind_conn.stats()["submissions_total"] == 0


def test_the_write_ahead_placeholder_is_not_a_request_to_reattach_to(segmind_conn: EmulatorProcess) -> None:
    store = DictStateStore()
    reattach.claim(fake_context(store), "f" * 64, 1)
    assert store.get(reattach.STATE_KEY)["pending"] is True
    assert reattach.load(fake_context(store)) is None

    result = surge(segmind_conn, wait_for_completion=False).execute(fake_context(store, try_number=2))

    assert store.get(reattach.STATE_KEY)["request_id"] == result["request_id"]
    assert segmind_conn.stats()["submissions_total"] == 1


def test_without_a_task_state_store_it_still_runs_and_says_it_cannot_reattach(
    segmind_conn: EmulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    op = surge(segmind_conn, wait_for_completion=False)
    context = fake_context()
    del context["task_state_store"]

    result = op.execute(context)

    assert result["status"] == "SUBMITTED"
    assert "task_state_store is not available" in caplog.text


# --- the record and its fingerprint -----------------------------------------------------------------------
BODY = {"image_url": "https://example.com/a.png", "duration": 5, "quality": "540p", "motion_mode": "normal"}


def test_fingerprint_ignores_key_order_but_not_values_or_model() -> None:
    reordered = dict(reversed(list(BODY.items())))

    assert reattach.fingerprint("muscle-surge", BODY) == reattach.fingerprint("muscle-surge", reordered)
    assert reattach.fingerprint("muscle-surge", BODY) != reattach.fingerprint("muscle-surge", {**BODY, "seed": 7})
    assert reattach.fingerprint("muscle-surge", BODY) != reattach.fingerprint("other-model", BODY)


def test_record_round_trips_through_json() -> None:
    record = reattach.RequestRecord("r1", "https://s", "https://r", "muscle-surge", "f" * 64, 1.5, 1)

    assert reattach.RequestRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


@pytest.mark.parametrize("stored", [None, "r1", ["r1"], {"request_id": "r1"}], ids=str)
def test_unusable_stored_value_means_no_previous_request(stored: Any) -> None:
    store = DictStateStore()
    if stored is not None:
        store.set(reattach.STATE_KEY, stored)

    assert reattach.load(fake_context(store)) is None
