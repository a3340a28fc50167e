"""Outputs on S3-compatible object storage, for real: a ``moto_server`` process, Airflow's ``s3://`` filesystem.

The README promises ``output_path="s3://<conn_id>@bucket/videos/"``. Here that path goes through
everything a deployment uses: the amazon provider's ``ObjectStoragePath`` filesystem (s3fs on
aiobotocore) with credentials and endpoint from an Airflow ``aws`` connection, writing over HTTP
to a real S3 API server (moto's, in a subprocess on loopback). No boto, S3 or Airflow object is
mocked; the bytes are read back with boto3 and with ``ObjectStoragePath`` and compared with what
the emulator served.

Why the connection id is in the URL: without it, the filesystem falls back to boto3's default
credential chain (environment, ``~/.aws``, instance metadata), which a worker usually does not
have for the output bucket; writing then fails with ``NoCredentialsError``, after the job was
paid for. The last test states that such a path must be refused before the submit.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from dags_for_tests.dagtest_support import FailureRecorder, run_dag, task_states, xcom
from segmind_emulator.testing import EmulatorProcess
from test_example_dags import DagRunner, DagTestWorker, dag_test_worker  # noqa: F401  (fixture)

from airflow_provider_muscle_surge.exceptions import InvalidParameter
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

#: The Airflow connection the ``s3://`` paths name (``AIRFLOW_CONN_AWS_TEST``).
AWS_CONN_ID = "aws_test"
#: Fixed test credentials: moto accepts any, but signs and checks them like S3 does.
AWS_KEY, AWS_SECRET, AWS_REGION = "testing", "testing", "us-east-1"
FAST = {"poll_interval": 0.2}
FAST_DEFERRED = {"poll_schedule": {"expected_seconds": 1, "dense_interval": 0.2, "first_poll_seconds": 0.3}}
#: Environment variables through which boto3 could find credentials or a config of its own.
_AWS_CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


# --- a real S3 API on loopback ------------------------------------------------------------------------
class MotoServer:
    """``python -m moto.server`` on 127.0.0.1, on a port the OS picks (read from its start-up line).

    Port 0 avoids the race of picking a free port first and binding it later. Everything it
    prints is kept (``output``) for failure messages.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.output: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = self.proc.stdout

        def pump() -> None:
            for line in stdout:  # type: ignore[union-attr]
                self.output.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="moto-server", daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"moto_server did not start within 60 s:\n{''.join(self.output)}") from None
            if line is None:
                raise RuntimeError(f"moto_server exited at start:\n{''.join(self.output)}")
            if found := re.search(r"Running on (http://127\.0\.0\.1:\d+)", line):
                self.url = found.group(1)
                return

    def client(self) -> Any:
        """A boto3 S3 client with the test credentials: the independent reader of what was written."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=AWS_KEY,
            aws_secret_access_key=AWS_SECRET,
            region_name=AWS_REGION,
        )

    def connection_json(self) -> str:
        """The Airflow ``aws`` connection to this server, as ``AIRFLOW_CONN_AWS_TEST`` takes it."""
        extra = {"endpoint_url": self.url, "region_name": AWS_REGION}
        return json.dumps({"conn_type": "aws", "login": AWS_KEY, "password": AWS_SECRET, "extra": extra})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A new, empty bucket; ``aws_test`` points at the server, and boto3 has no credentials of its own.

    With the default credential chain emptied (no key in the environment, no ``~/.aws`` files, no
    instance metadata), a write can only succeed through the connection named in the URL. Every
    S3 endpoint boto3 could fall back to is the loopback server, so nothing leaves the machine.
    """
    for name in _AWS_CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}", moto_server.connection_json())
    name = f"videos-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=name)
    return name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keys(moto_server: MotoServer, bucket: str) -> list[str]:
    listing = moto_server.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def read_object(moto_server: MotoServer, bucket: str, key: str) -> bytes:
    return moto_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def served_by_emulator(url: str) -> bytes:
    """The output as the emulator serves it (no key: output downloads are public)."""
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read()  # type: ignore[no-any-return]


def surge_run(
    new_dag: Any, emulator: EmulatorProcess, output_path: str, image: str = "athlete-1", **kwargs: Any
) -> Any:
    """One 360p MuscleSurgeOperator saving to ``output_path``, run with ``dag.test()``."""
    with new_dag() as dag:
        MuscleSurgeOperator(
            task_id="surge", image_url=emulator.sample_url(image), quality="360p", output_path=output_path, **kwargs
        )
    return run_dag(dag)


# --- the operator writes to S3 ------------------------------------------------------------------------------
@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_video_is_saved_to_s3_through_the_connection_named_in_the_url(
    new_dag: Any, segmind_conn: EmulatorProcess, moto_server: MotoServer, bucket: str, deferrable: bool
) -> None:
    from airflow.sdk import ObjectStoragePath

    output_path = f"s3://{AWS_CONN_ID}@{bucket}/videos/"
    run = surge_run(
        new_dag, segmind_conn, output_path, deferrable=deferrable, **(FAST_DEFERRED if deferrable else FAST)
    )

    assert task_states(run) == {"surge": "success"}
    result = xcom(run, "surge")
    request_id, saved = result["request_id"], result["saved"]
    assert saved["path"] == f"s3://{AWS_CONN_ID}@{bucket}/videos/{request_id}.mp4"
    assert keys(moto_server, bucket) == [f"videos/{request_id}.mp4"], "the file alone: no temporary .part left"
    stored = read_object(moto_server, bucket, f"videos/{request_id}.mp4")
    assert len(stored) == saved["bytes"] > 0
    assert sha256(stored) == saved["sha256"]
    assert sha256(ObjectStoragePath(saved["path"]).read_bytes()) == saved["sha256"], "read back by Airflow too"
    assert sha256(served_by_emulator(result["output"])) == saved["sha256"], "the bytes the emulator rendered"
    assert stored[4:8] == b"ftyp", "an MP4"
    assert segmind_conn.stats()["submissions_total"] == 1


def test_output_path_naming_a_file_in_s3_is_that_object(
    new_dag: Any, segmind_conn: EmulatorProcess, moto_server: MotoServer, bucket: str
) -> None:
    run = surge_run(new_dag, segmind_conn, f"s3://{AWS_CONN_ID}@{bucket}/campaign/hero.mp4", "athlete-2", **FAST)

    assert task_states(run) == {"surge": "success"}
    saved = xcom(run, "surge")["saved"]
    assert saved["path"] == f"s3://{AWS_CONN_ID}@{bucket}/campaign/hero.mp4"
    assert keys(moto_server, bucket) == ["campaign/hero.mp4"]
    assert sha256(read_object(moto_server, bucket, "campaign/hero.mp4")) == saved["sha256"]


# --- the example chain -> publish DAGs with S3 storage -----------------------------------------------------
class S3DagRunner(DagRunner):
    """The example DAGs' runner with the ``aws_test`` connection in the worker's environment too."""

    def __init__(self, *args: Any, aws_connection: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aws_connection = aws_connection

    def env(self) -> dict[str, str]:
        return {**super().env(), f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}": self.aws_connection}


def test_chain_then_publish_with_storage_on_s3(
    dag_test_worker: DagTestWorker,  # noqa: F811
    tmp_path: Path,
    segmind_conn: EmulatorProcess,
    moto_server: MotoServer,
    bucket: str,
) -> None:
    runner = S3DagRunner(dag_test_worker, tmp_path, segmind_conn, aws_connection=moto_server.connection_json())
    runner.variables["muscle_surge_storage"] = f"s3://{AWS_CONN_ID}@{bucket}/videos"
    runner.variables["muscle_surge_publish"] = f"s3://{AWS_CONN_ID}@{bucket}/published"

    chain = runner.run("example_muscle_surge_chain", {"quality": "360p"})

    assert chain["state"] == "success", chain["log"][-4000:]
    video = chain["xcom"]["render_video"]
    request_id, saved = video["request_id"], video["saved"]
    prefix = f"s3://{AWS_CONN_ID}@{bucket}/videos/"
    assert saved["path"].startswith(prefix) and saved["path"].endswith(f"/{request_id}.mp4")
    key = saved["path"].removeprefix(f"s3://{AWS_CONN_ID}@{bucket}/")
    assert sha256(read_object(moto_server, bucket, key)) == saved["sha256"]
    assert sha256(served_by_emulator(video["output"])) == saved["sha256"]
    [event] = chain["asset_events"]
    assert (event["extra"]["path"], event["extra"]["sha256"]) == (saved["path"], saved["sha256"])

    publish = runner.run("example_muscle_surge_publish")

    assert publish["state"] == "success", publish["log"][-4000:]
    assert keys(moto_server, bucket) == sorted([key, f"published/{request_id}.mp4", f"published/{request_id}.json"]), (
        "nothing written outside the bucket's two folders, no temporary files left"
    )
    published = read_object(moto_server, bucket, f"published/{request_id}.mp4")
    assert sha256(published) == saved["sha256"]
    manifest = json.loads(read_object(moto_server, bucket, f"published/{request_id}.json"))
    assert manifest["sha256"] == saved["sha256"] and manifest["bytes"] == len(published)
    assert manifest["request_id"] == request_id
    assert manifest["video"] == f"s3://{AWS_CONN_ID}@{bucket}/published/{request_id}.mp4"
    assert segmind_conn.stats()["submissions"] == {"muscle-surge": 1}


# --- a path the worker cannot write to is refused before anything is paid ------------------------------------
def test_s3_path_without_a_connection_or_credentials_is_refused_before_the_submit(
    new_dag: Any, segmind_conn: EmulatorProcess, moto_server: MotoServer, bucket: str
) -> None:
    failures = FailureRecorder()
    assert not any(os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE")), "no credentials here"
    run = surge_run(new_dag, segmind_conn, f"s3://{bucket}/videos/", on_failure_callback=failures, **FAST)

    assert task_states(run) == {"surge": "failed"}
    assert keys(moto_server, bucket) == []
    stats = segmind_conn.stats()
    assert stats["submissions_total"] == 0, "refused before the submit: no job paid for a video it cannot save"
    [error] = failures.errors
    assert isinstance(error, InvalidParameter) and error.field == "output_path", repr(error)
