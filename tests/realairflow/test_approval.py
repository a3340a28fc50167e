"""The marketing example with a person in the loop, in a real deployment and a real browser.

Why a real deployment: that the review task waits in ``awaiting_input`` with no process and no
trigger, that an answer given through the REST API resumes it, that the scheduler applies the
Reject default when nobody answers in time, and that only an approved video reaches the
asset-scheduled publish DAG, all happen between separate scheduler, api-server and task processes
sharing PostgreSQL; ``dag.test()`` (tests/test_example_dags.py) has no scheduler and no UI.

Three runs of ``example_muscle_surge_marketing`` are started together and all wait for review:
one is approved and one rejected through ``PATCH .../hitlDetails`` (what the UI's "Required
Actions" buttons call), the third is left alone with a 45-second ``review_minutes``. While they
wait, headless Chromium shows the approval page (``docs/screenshots/approval-required-action.png``).
The deployment runs the example DAGs folder against its own emulator (a dedicated deployment:
the other modules use the test DAGs folder).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import DeploymentFactory
from .harness import REPO_ROOT, AirflowDeployment, AirflowRestClient, utcnow, wait_until
from .test_ui import SCREENSHOTS, Browser, _chromium, sign_in

pytestmark = pytest.mark.realairflow

DAG_ID = "example_muscle_surge_marketing"
PUBLISH_DAG_ID = "example_muscle_surge_publish"
#: ~1.5 s emulator jobs; the first status call 8 s after the submit, beyond the up-to-5 s lag of the
#: supervisor's report of a deferral (Airflow 3.3.2's fast-trigger race, see surge_policy_failures.py).
POLL = {"expected_seconds": 2, "dense_interval": 0.3, "max_interval": 2, "first_poll_seconds": 8}
#: The run nobody answers gets this long (the scheduler checks for expired reviews every 5 s here).
SHORT_REVIEW_MINUTES = 0.75


@dataclass
class Approval:
    deployment: AirflowDeployment
    emulator: Any
    output: Path
    runs: dict[str, str]  # "approve" / "reject" / "ignore" -> run id

    @property
    def client(self) -> AirflowRestClient:
        return self.deployment.client

    def hitl_path(self, run: str) -> str:
        return f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(self.runs[run])}/taskInstances/review/-1/hitlDetails"

    def xcom(self, run: str, task_id: str) -> Any:
        return self.client.xcoms(DAG_ID, self.runs[run], task_id)["return_value"]

    def state(self, run: str, task_id: str) -> str:
        return str(self.client.task_instance(DAG_ID, self.runs[run], task_id)["state"])


@pytest.fixture(scope="module")
def approval(
    airflow_deployment: DeploymentFactory,
    session_emulator: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Approval]:
    """The example DAGs on their own deployment; three marketing runs, each waiting for its review.

    The deployment is stopped when the module ends: no other module uses it, and a failed test must
    not leave its components (or a run parked for a day) running beside the rest of the session.
    """
    emulator = session_emulator("approval", job_seconds=1.5, job_spread=0.05, seed=31)
    output = tmp_path_factory.mktemp("approval-output")
    conn = {**emulator.connection_dict(), "extra": {"poll": POLL}}
    env = {"AIRFLOW_CONN_SEGMIND_DEFAULT": json.dumps(conn), "MUSCLE_SURGE_OUTPUT": str(output)}
    deployment = airflow_deployment(dags_folder=REPO_ROOT / "example_dags", env=env)
    confs = {
        "approve": {"image_url": emulator.sample_url("athlete-2"), "quality": "360p", "seed": 4242},
        "reject": {"image_url": emulator.sample_url("athlete-3"), "quality": "360p", "style": "comic"},
        "ignore": {"quality": "360p", "review_minutes": SHORT_REVIEW_MINUTES},
    }
    try:
        deployment.wait_for_dag(PUBLISH_DAG_ID)
        deployment.client.unpause(PUBLISH_DAG_ID)  # scheduled on the Asset that an approval updates
        runs = {name: deployment.trigger(DAG_ID, conf) for name, conf in confs.items()}
        for name in ("ignore", "approve", "reject"):  # the one with the short review first: it waits only 45 s
            deployment.client.wait_for_task_state(DAG_ID, runs[name], "review", ["awaiting_input"], timeout=180)
        yield Approval(deployment, emulator, output, runs)
    finally:
        deployment.stop()


def test_review_waits_for_a_person_holding_no_process_and_no_trigger(approval: Approval) -> None:
    client, run_id = approval.client, approval.runs["approve"]
    ti = client.task_instance(DAG_ID, run_id, "review")
    assert ti["state"] == "awaiting_input" and ti["operator"] == "ReviewOperator"
    assert ti["trigger"] is None
    parked = approval.deployment.db_query(
        "SELECT trigger_id, next_method, trigger_timeout FROM task_instance WHERE id = %s", (ti["id"],)
    )
    assert parked[0]["trigger_id"] is None and parked[0]["next_method"] == "execute_complete"
    assert parked[0]["trigger_timeout"] > utcnow() + timedelta(hours=23)  # the day to review, kept by the scheduler
    # The process that parked it ends (the supervisor may take up to its 5 s heartbeat to notice).
    wait_until(
        lambda: not approval.deployment.task_processes(DAG_ID, run_id, "review"),
        timeout=30,
        what="the review task's process to end",
    )
    assert client.task_instance(DAG_ID, run_id, "review")["state"] == "awaiting_input"

    # What the reviewer is shown: the stored copy (not Segmind's expiring URL), its checksum, the request id.
    detail = client.get(approval.hitl_path("approve"))
    link = approval.xcom("approve", "report")
    assert detail["subject"] == f"Publish Muscle Surge video {link['request_id']}?"
    assert f"`{link['saved_path']}`" in detail["body"] and link["sha256"] in detail["body"]
    assert link["video_url"] not in detail["body"]
    assert "quality 360p" in detail["body"] and "seed 4242" in detail["body"]
    assert (detail["options"], detail["defaults"], detail["response_received"]) == (
        ["Approve", "Reject"],
        ["Reject"],
        False,
    )


def test_approval_page_in_the_ui_shows_the_stored_video_and_the_request_id(approval: Approval) -> None:
    executable = _chromium()
    if executable is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (see .ci/run)")
    link = approval.xcom("approve", "report")
    browser = Browser(executable, width=1440, height=1000)
    try:
        sign_in(browser, approval.deployment)
        run_id = quote(approval.runs["approve"])
        browser.goto(f"{approval.deployment.base_url}/dags/{DAG_ID}/runs/{run_id}/tasks/review/required_actions")
        # The page renders the request's subject and Markdown body, then the option buttons.
        subject = f"Publish Muscle Surge video {link['request_id']}?"
        for text in (subject, link["saved_path"], link["sha256"]):
            browser.wait(f"document.body.innerText.includes({json.dumps(text)})", timeout=90)
        buttons = "Array.from(document.querySelectorAll('button')).map(b => b.innerText.trim())"
        browser.wait(f"['Approve', 'Reject'].every(o => {buttons}.includes(o))", timeout=90)
        png = browser.screenshot(SCREENSHOTS / "approval-required-action.png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    finally:
        browser.close()
    # Looking is not answering: the task still waits.
    assert approval.state("approve", "review") == "awaiting_input"


def _answer(approval: Approval, run: str, option: str) -> dict[str, Any]:
    """What the UI's button does: PATCH the task's hitlDetails with the chosen option."""
    resp = approval.client.request("PATCH", approval.hitl_path(run), json={"chosen_options": [option]})
    return dict(resp.json())


def test_only_the_approved_video_is_published_and_the_rejected_one_is_skipped_with_the_reason(
    approval: Approval,
) -> None:
    client, deployment = approval.client, approval.deployment
    approved, rejected = _answer(approval, "approve", "Approve"), _answer(approval, "reject", "Reject")
    assert (approved["chosen_options"], approved["responded_by"]["name"]) == (["Approve"], "admin")
    assert rejected["chosen_options"] == ["Reject"]
    again = client.request("PATCH", approval.hitl_path("approve"), json={"chosen_options": ["Reject"]}, expected=())
    assert again.status_code == 409  # an answer is final
    for run in ("approve", "reject"):
        assert deployment.wait_for_run(DAG_ID, approval.runs[run], timeout=120)["state"] == "success"
        tries = client.task_tries(DAG_ID, approval.runs[run], "review")
        assert [(t["try_number"], t["state"]) for t in tries] == [(1, "success")]  # resumed, not retried

    # Rejected: the publish task is skipped and its log says who rejected it; the video stays in storage.
    assert approval.state("reject", "publish") == "skipped"
    rejected_link = approval.xcom("reject", "report")
    log = client.log(DAG_ID, approval.runs["reject"], "publish", 1)
    assert "Not published: Reject by admin at " in log, log[-3000:]
    assert f"The video stays at {rejected_link['saved_path']}" in log
    assert Path(rejected_link["saved_path"].removeprefix("file://")).is_file()

    # Approved: one asset-triggered publish run copied exactly the stored video.
    link = approval.xcom("approve", "report")
    stored = Path(link["saved_path"].removeprefix("file://")).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == link["sha256"]

    def published() -> list[dict[str, Any]] | None:
        runs = [r for r in client.dag_runs(PUBLISH_DAG_ID) if r["run_type"] == "asset_triggered"]
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

    [publish_run] = wait_until(published, timeout=120, interval=1.0, what="the asset-triggered publish run")
    assert publish_run["state"] == "success", client.logs(PUBLISH_DAG_ID, publish_run["dag_run_id"], "publish")
    info = client.xcoms(PUBLISH_DAG_ID, publish_run["dag_run_id"], "publish")["return_value"]
    manifest = json.loads(Path(info["manifest"].removeprefix("file://")).read_text())
    assert (manifest["request_id"], manifest["sha256"]) == (link["request_id"], link["sha256"])
    assert manifest["approval"]["by"] == "admin"
    assert Path(manifest["video"].removeprefix("file://")).read_bytes() == stored
    folder = approval.output / "published"
    assert sorted(p.name for p in folder.iterdir()) == [f"{link['request_id']}.json", f"{link['request_id']}.mp4"]
    events = client.get("/api/v2/assets/events", params={"source_dag_id": DAG_ID})["asset_events"]
    assert [e["source_run_id"] for e in events] == [approval.runs["approve"]]


def test_no_answer_in_time_is_a_reject_and_publishes_nothing(approval: Approval) -> None:
    client, run_id = approval.client, approval.runs["ignore"]
    run = approval.deployment.wait_for_run(DAG_ID, run_id, timeout=180)
    assert run["state"] == "success"
    detail = client.get(approval.hitl_path("ignore"))
    assert detail["chosen_options"] == ["Reject"] and detail["responded_by_user"] is None  # the scheduler's default
    assert approval.state("ignore", "publish") == "skipped"
    log = client.log(DAG_ID, run_id, "publish", 1)
    expected = f"Not published: nobody answered within {SHORT_REVIEW_MINUTES} minutes, so the default (Reject) applied"
    assert expected in log, log[-3000:]
    events = client.get("/api/v2/assets/events", params={"source_dag_id": DAG_ID})["asset_events"]
    assert run_id not in [e["source_run_id"] for e in events]
