"""Real Airflow 3 deployment for end-to-end tests: PostgreSQL + LocalExecutor (or Celery) + separate components.

Why this exists: unit tests of the provider run operators with mocked contexts, which cannot show
how a deferrable operator behaves when the scheduler, the triggerer, the api-server (execution API)
and the supervised task processes are real, separate OS processes sharing a real metadata database.
This module starts exactly that on loopback, drives it only through the public REST API (like a
user or the UI would), exposes process control for fault-injection scenarios (killing the
triggerer or the process running a task) and tears everything down again, even after failures.

Nothing here imports Airflow: the test process stays free of Airflow configuration, so the only
configuration the components see is the environment this module builds for them.

``DeploymentSettings(executor="CeleryExecutor")`` starts the distributed form instead: a private
``redis-server`` as the Celery broker (result backend on the same PostgreSQL database), several
``airflow celery worker`` processes and several triggerers (``celery-worker-1``, ``triggerer-1``, ...),
so a scenario can SIGKILL one worker or one triggerer and watch the others carry on.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import psutil
import psycopg2
import requests
from cryptography.fernet import Fernet

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DAGS_FOLDER = Path(__file__).resolve().parent / "dags"

#: Environment variable set on every process the harness starts (see ``AirflowDeployment.owns``).
MARKER_ENV = "REALAIRFLOW_DEPLOYMENT_ID"

CELERY_EXECUTOR = "CeleryExecutor"
#: Component names (prefixes when there are several: ``celery-worker-1``, ``triggerer-2``...).
CELERY_WORKER, TRIGGERER = "celery-worker", "triggerer"
#: Components started (in this order) after ``airflow db migrate``, before the triggerer(s) and workers.
CORE_COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor")
#: The default deployment's components: LocalExecutor (workers are the scheduler's children), one triggerer.
COMPONENTS: tuple[str, ...] = (*CORE_COMPONENTS, TRIGGERER)

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
#: Audit-log events of the scheduler ending a try itself (airflow/jobs/scheduler_job_runner.py, 3.3.2).
SCHEDULER_EVENTS = ("state mismatch", "heartbeat timeout", "stuck in queued tries exceeded")
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"

T = TypeVar("T")


class HarnessError(RuntimeError):
    """Raised when the deployment cannot be brought up or an expectation times out."""


def free_port() -> int:
    """Return a currently free loopback TCP port (the kernel picks it, so parallel runs don't clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy; raise ``HarnessError`` with context otherwise."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
        except (requests.RequestException, psycopg2.OperationalError) as exc:  # transient while starting
            last_exc = exc
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout else ""
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}; last error={last_exc!r}\n{detail}")
        time.sleep(interval)


def _airflow_cli() -> list[str]:
    """The ``airflow`` entry point of the interpreter running the tests (the shared venv in CI)."""
    script = Path(sys.executable).parent / "airflow"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "airflow"]


def _postgres_bindir() -> Path:
    """Newest ``/usr/lib/postgresql/<ver>/bin`` containing initdb (installed by .ci/install-postgres.sh)."""
    env_dir = os.environ.get("REALAIRFLOW_PG_BINDIR")
    if env_dir:
        return Path(env_dir)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        found = shutil.which("initdb")
        if found:
            return Path(found).parent
        raise HarnessError("PostgreSQL server binaries not found; run .ci/install-postgres.sh")
    return candidates[-1].parent


def _tail(path: Path, lines: int = 60) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"<{path} unreadable>"
    return "\n".join(content[-lines:])


# --------------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------------


class PostgresCluster:
    """A throw-away PostgreSQL cluster in a temp dir, on a free loopback port.

    PostgreSQL refuses to run as root, so when the tests run as root the cluster is owned by and
    started as the ``postgres`` OS user (created by the Debian package). Durability settings are
    off because the data is discarded at teardown and Airflow's migrations are fsync-heavy.
    """

    def __init__(self, base_dir: Path, *, db_name: str = "airflow", user: str = "airflow") -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "pgdata"
        self.socket_dir = base_dir / "pgsock"
        self.log_file = base_dir / "logs" / "postgres.log"
        self.port = free_port()
        self.db_name = db_name
        self.user = user
        self.password = uuid.uuid4().hex
        self.bindir = _postgres_bindir()
        self.os_user: str | None = "postgres" if os.geteuid() == 0 else None
        self.started = False

    def _run(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            user=self.os_user,
            check=True,
            capture_output=True,
            text=True,
            cwd=self.base_dir,
            **kwargs,
        )

    def start(self) -> None:
        """initdb + pg_ctl start + create the Airflow role and database."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        for d in (self.data_dir, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
        if self.os_user:
            # The postgres user must be able to traverse the base dir and own its own dirs.
            self.base_dir.chmod(0o755)
            self.log_file.parent.chmod(0o777)
            for d in (self.data_dir, self.socket_dir):
                shutil.chown(d, user=self.os_user, group=self.os_user)
        try:
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            )
            options = " ".join(
                [
                    f"-p {self.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories={self.socket_dir}",
                    "-c max_connections=300",
                    "-c shared_buffers=128MB",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                ]
            )
            self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        except subprocess.CalledProcessError as exc:
            raise HarnessError(
                f"PostgreSQL failed: {exc.cmd}\nstdout={exc.stdout}\nstderr={exc.stderr}\n{_tail(self.log_file)}"
            ) from exc
        self.started = True
        with contextlib.closing(self.connect(superuser=True)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE ROLE {self.user} LOGIN PASSWORD %s", (self.password,))
                cur.execute(f"CREATE DATABASE {self.db_name} OWNER {self.user}")

    def connect(self, *, superuser: bool = False) -> Any:
        """A psycopg2 connection: superuser over the unix socket, else the Airflow role over TCP."""
        if superuser:
            return psycopg2.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres")
        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=self.db_name
        )

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.db_name}"

    @property
    def async_sqlalchemy_url(self) -> str:
        return f"postgresql+asyncpg://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.db_name}"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Fast shutdown; falls back to SIGKILL of the postmaster so teardown never leaves it behind."""
        if not self.data_dir.exists():
            return
        pid = self.postmaster_pid()
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "20", "stop"])
        if pid and psutil.pid_exists(pid):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
        self.started = False


# --------------------------------------------------------------------------------------------------
# Redis (the Celery broker)
# --------------------------------------------------------------------------------------------------


class RedisServer:
    """A throw-away ``redis-server`` on a free loopback port, in the deployment's base dir.

    Only the Celery broker lives here (queued task messages), so persistence is off: a lost broker is
    a lost deployment in these tests. It runs in its own session like the components, so teardown
    (and ``AirflowDeployment.owns``) finds it even if the test process dies.
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "redis"
        self.log_file = base_dir / "logs" / "redis.log"
        self.port = free_port()
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = os.environ.get("REALAIRFLOW_REDIS_SERVER") or shutil.which("redis-server")
        if not binary:
            raise HarnessError("redis-server not found; run .ci/install-redis.sh")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        args = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir)]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "yes", "--logfile", str(self.log_file)]
        self.popen = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )

        def pong() -> bool:
            if self.popen is not None and self.popen.poll() is not None:
                raise HarnessError(f"redis-server exited with {self.popen.returncode}:\n{_tail(self.log_file)}")
            return self.ping()

        wait_until(pong, timeout=30, interval=0.1, what="redis-server to answer PING")

    def ping(self) -> bool:
        """One ``PING`` over the RESP protocol (no client library needed for that)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


# --------------------------------------------------------------------------------------------------
# REST client
# --------------------------------------------------------------------------------------------------


class AirflowRestClient:
    """Thin client for Airflow's public REST API v2, authenticating like a real user would.

    It logs in through the simple auth manager's ``POST /auth/token`` and re-logs in once on 401, so a
    long phase-2 scenario survives token expiry. All helpers return plain JSON dicts so tests can assert
    on exactly what the API returns.
    """

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.session = requests.Session()
        self._token: str | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def token(self, *, refresh: bool = False) -> str:
        if self._token is None or refresh:
            resp = self.session.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=self.timeout,
            )
            if resp.status_code not in (200, 201):
                raise HarnessError(f"login failed: {resp.status_code} {resp.text}")
            self._token = str(resp.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, *, expected: Iterable[int] = (200,), **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        kwargs.setdefault("timeout", self.timeout)
        resp: requests.Response | None = None
        for attempt in range(2):
            headers = dict(kwargs.pop("headers", {}) or {})
            headers["Authorization"] = f"Bearer {self.token(refresh=attempt > 0)}"
            resp = self.session.request(method, url, headers=headers, **kwargs)
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if resp.status_code != 401:
                break
        assert resp is not None
        expected_codes = set(expected)
        if expected_codes and resp.status_code not in expected_codes:
            raise HarnessError(f"{method} {path} -> {resp.status_code}: {resp.text[:2000]}")
        return resp

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def paged(
        self, path: str, key: str, params: Mapping[str, Any] | None = None, page: int = 100
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            body = self.get(path, params={**(params or {}), "limit": page, "offset": offset})
            chunk = body[key]
            items.extend(chunk)
            offset += len(chunk)
            if not chunk or offset >= int(body.get("total_entries", offset)):
                return items

    # -- monitor / parsing -----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Unauthenticated health endpoint: metadatabase, scheduler, triggerer, dag_processor status."""
        resp = self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=self.timeout)
        resp.raise_for_status()
        return dict(resp.json())

    def version(self) -> dict[str, Any]:
        return dict(self.session.get(f"{self.base_url}/api/v2/version", timeout=self.timeout).json())

    def import_errors(self) -> list[dict[str, Any]]:
        return self.paged("/api/v2/importErrors", "import_errors")

    def dags(self) -> list[dict[str, Any]]:
        return self.paged("/api/v2/dags", "dags")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        resp = self.request("GET", f"/api/v2/dags/{dag_id}", expected=(200, 404))
        return None if resp.status_code == 404 else dict(resp.json())

    def wait_for_dag(self, dag_id: str, *, timeout: float = 90.0, dags_folder: Path | None = None) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``; fail fast with its import error if any.

        An import error is attributed to ``dag_id`` when its stack trace names the DAG or, given
        ``dags_folder``, when the failing file's source mentions it -- so a broken operator import fails
        the test in seconds with the traceback instead of after the timeout.
        """

        def mentions(error: dict[str, Any]) -> bool:
            if dag_id in str(error.get("stack_trace", "")):
                return True
            if dags_folder is None or not error.get("filename"):
                return False
            path = Path(dags_folder) / str(error["filename"])
            try:
                return dag_id in path.read_text(errors="replace")
            except OSError:
                return False

        def check() -> dict[str, Any] | None:
            dag = self.dag(dag_id)
            if dag is not None:
                return dag
            relevant = [e for e in self.import_errors() if mentions(e)]
            if relevant:
                stack = "\n".join(f"{e.get('filename')}: {e.get('stack_trace')}" for e in relevant)
                raise HarnessError(f"DAG {dag_id} has import errors:\n{stack}")
            return None

        return wait_until(
            check,
            timeout=timeout,
            interval=1.0,
            what=f"DAG {dag_id} to be parsed",
            on_timeout=lambda: f"import errors: {self.import_errors()}",
        )

    # -- dags and runs -------------------------------------------------------------------------

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused}).json())

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return self.set_paused(dag_id, False)

    def trigger_dag(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        logical_date: datetime | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "conf": dict(conf or {}),
            "logical_date": logical_date.isoformat() if logical_date else None,
        }
        if run_id:
            body["dag_run_id"] = run_id
        if note:
            body["note"] = note
        return dict(self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body).json())

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.paged(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs")

    def wait_for_run(
        self, dag_id: str, run_id: str, *, timeout: float = 180.0, states: Iterable[str] = TERMINAL_RUN_STATES
    ) -> dict[str, Any]:
        wanted = set(states)

        def check() -> dict[str, Any] | None:
            run = self.dag_run(dag_id, run_id)
            return run if run.get("state") in wanted else None

        return wait_until(
            check,
            timeout=timeout,
            interval=1.0,
            what=f"run {dag_id}/{run_id} to reach {sorted(wanted)}",
            on_timeout=lambda: json.dumps(self.task_instances(dag_id, run_id), indent=1, default=str)[:6000],
        )

    # -- task instances ----------------------------------------------------------------------

    def task_instances(self, dag_id: str, run_id: str, **filters: Any) -> list[dict[str, Any]]:
        """All TIs of a run, mapped ones included (one entry per map_index), with state/try/duration."""
        return self.paged(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances", filters)

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        base = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        return dict(self.get(base if map_index < 0 else f"{base}/{map_index}"))

    def task_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of a TI (history + current), oldest first."""
        base = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        path = f"{base}/tries" if map_index < 0 else f"{base}/{map_index}/tries"
        tries = self.paged(path, "task_instances")
        return sorted(tries, key=lambda t: int(t["try_number"]))

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str],
        *,
        map_index: int = -1,
        timeout: float = 120.0,
        min_try_number: int = 0,
    ) -> dict[str, Any]:
        wanted = set(states)

        def check() -> dict[str, Any] | None:
            resp = self.request(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                + ("" if map_index < 0 else f"/{map_index}"),
                expected=(200, 404),
            )
            if resp.status_code == 404:
                return None
            ti = dict(resp.json())
            return ti if ti.get("state") in wanted and int(ti["try_number"]) >= min_try_number else None

        return wait_until(
            check, timeout=timeout, interval=0.5, what=f"{dag_id}/{run_id}/{task_id}[{map_index}] in {sorted(wanted)}"
        )

    def rendered_fields(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        return dict(self.task_instance(dag_id, run_id, task_id, map_index).get("rendered_fields") or {})

    # -- logs, xcom, state store ---------------------------------------------------------------

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """One try's task log rendered as text (structured events flattened to ``event key=value``)."""
        resp = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true", "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        return render_log_content(resp.json().get("content", []))

    def logs(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[int, str]:
        """Logs of all tries of a TI, keyed by try_number."""
        tries = self.task_tries(dag_id, run_id, task_id, map_index)
        return {int(t["try_number"]): self.log(dag_id, run_id, task_id, int(t["try_number"]), map_index) for t in tries}

    def xcoms(self, dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> dict[str, Any]:
        """XCom key -> deserialized value for one TI (``map_index=None``: unmapped; else that index)."""
        params: dict[str, Any] = {}
        if map_index is not None:
            params["map_index"] = map_index
        entries = self.paged(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries", "xcom_entries", params
        )
        result: dict[str, Any] = {}
        for entry in entries:
            idx = int(entry["map_index"])
            if map_index is None and idx != -1:
                continue
            value = self.get(
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{entry['key']}",
                params={"map_index": idx, "deserialize": "true"},
            )
            result[str(entry["key"])] = value.get("value")
        return result

    def task_state_store(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The TI's task_state_store entries (key -> value) via the public REST API."""
        params = {} if map_index < 0 else {"map_index": map_index}
        entries = self.paged(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/state-store", "task_state_store", params
        )
        return {str(e["key"]): e["value"] for e in entries}

    def scheduler_interventions(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[str]:
        """The scheduler's audit entries for tries it ended itself, one line each: an executor's
        report that contradicted the TI's state ("state mismatch"), a lost heartbeat, a task stuck
        in queued. A try ended this way was not ended by the task's own code."""
        params: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "included_events": list(SCHEDULER_EVENTS)}
        if task_id is not None:
            params["task_id"] = task_id
        entries = self.paged("/api/v2/eventLogs", "event_logs", params)
        return [
            f"{e['when']} {e['event']} {e['task_id']}[{e.get('map_index')}] try {e.get('try_number')}: "
            f"{str(e.get('extra'))[:400]}"
            for e in entries
        ]

    # -- connections and pools -------------------------------------------------------------------

    def connections(self) -> list[dict[str, Any]]:
        return self.paged("/api/v2/connections", "connections")

    def pools(self) -> list[dict[str, Any]]:
        return self.paged("/api/v2/pools", "pools")

    def create_pool(
        self, name: str, slots: int, *, include_deferred: bool = True, description: str | None = None
    ) -> dict[str, Any]:
        body = {"name": name, "slots": slots, "include_deferred": include_deferred, "description": description}
        return dict(self.request("POST", "/api/v2/pools", json=body, expected=(200, 201)).json())

    def clear_task_instances(self, dag_id: str, run_id: str, task_ids: Sequence[str], *, dry_run: bool = False) -> Any:
        body = {"dag_run_id": run_id, "task_ids": list(task_ids), "dry_run": dry_run, "only_failed": False}
        return self.request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", json=body).json()


def render_log_content(content: Sequence[Any]) -> str:
    """Flatten the log endpoint's structured events into text lines tests can grep."""
    lines: list[str] = []
    for item in content:
        if isinstance(item, str):
            lines.append(item)
            continue
        if not isinstance(item, dict):
            lines.append(str(item))
            continue
        extra = {k: v for k, v in item.items() if k not in {"event", "timestamp", "level", "logger"}}
        parts = [
            str(item.get("timestamp", "")),
            str(item.get("level", "")),
            str(item.get("logger", "")),
            str(item.get("event", "")),
        ]
        line = " ".join(p for p in parts if p)
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Deployment
# --------------------------------------------------------------------------------------------------


@dataclass
class DeploymentSettings:
    """Knobs a scenario may change; everything else is fixed by the harness.

    ``parallelism`` bounds *running* task slots of the LocalExecutor (each is a forked worker plus a
    supervised task process), so it stays small on a 2-core machine; deferred tasks hold no executor
    slot, so many deferrable tasks still progress. The pool and per-DAG limits are high so they do
    not cap deferred tasks unless a scenario creates a restrictive pool on purpose.

    ``executor="CeleryExecutor"`` adds Redis and ``celery_workers`` workers of ``celery_concurrency``
    slots each. ``triggerers`` > 1 runs that many triggerers, named ``triggerer-1``...; one is named
    ``triggerer`` (what ``kill_triggerer``/``start_triggerer`` act on).
    """

    dags_folder: Path = DEFAULT_DAGS_FOLDER
    env: dict[str, str] = field(default_factory=dict)
    parallelism: int = 8
    max_active_tasks_per_dag: int = 256
    default_pool_slots: int = 512
    api_workers: int = 1
    task_heartbeat_timeout: int = 30
    startup_timeout: float = 120.0
    executor: str = "LocalExecutor"
    triggerers: int = 1
    celery_workers: int = 2
    celery_concurrency: int = 4
    username: str = "admin"
    password: str = field(default_factory=lambda: "pw-" + uuid.uuid4().hex[:16])


@dataclass
class ComponentProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: datetime = field(default_factory=lambda: utcnow())

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class AirflowDeployment:
    """A running (or stopped) real Airflow deployment; see the module docstring for why.

    Lifecycle: ``start()`` (postgres, ``db migrate``, components, health) and ``stop()``, which is
    idempotent and also registered with ``atexit`` so an interrupted session cleans up.
    """

    def __init__(self, settings: DeploymentSettings | None = None, *, base_dir: Path | None = None) -> None:
        self.settings = settings or DeploymentSettings()
        self.deployment_id = uuid.uuid4().hex
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="realairflow-"))
        self.airflow_home = self.base_dir / "airflow_home"
        self.logs_dir = self.base_dir / "logs"
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.postgres = PostgresCluster(self.base_dir)
        self.redis = RedisServer(self.base_dir) if self.celery else None
        self.components: dict[str, ComponentProcess] = {}
        #: Per component: environment on top of ``env`` (each worker and triggerer serves its logs on its own port).
        self.component_env: dict[str, dict[str, str]] = {name: self._own_env(name) for name in self.component_names}
        self.client = AirflowRestClient(self.base_url, self.settings.username, self.settings.password)
        self.timings: dict[str, float] = {}
        self._stopped = False
        self._restarts: dict[str, int] = {}
        self._session_ids: set[int] = set()
        self.env = self._build_env()
        atexit.register(self.stop)

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def celery(self) -> bool:
        return self.settings.executor == CELERY_EXECUTOR

    @property
    def triggerer_names(self) -> tuple[str, ...]:
        n = self.settings.triggerers
        return (TRIGGERER,) if n == 1 else tuple(f"{TRIGGERER}-{i}" for i in range(1, n + 1))

    @property
    def worker_names(self) -> tuple[str, ...]:
        """Celery worker components (none with the LocalExecutor, whose workers are the scheduler's children)."""
        return tuple(f"{CELERY_WORKER}-{i}" for i in range(1, self.settings.celery_workers + 1)) if self.celery else ()

    @property
    def component_names(self) -> tuple[str, ...]:
        """Every component, in start order; the LocalExecutor default is ``COMPONENTS``."""
        return (*CORE_COMPONENTS, *self.triggerer_names, *self.worker_names)

    @staticmethod
    def _own_env(name: str) -> dict[str, str]:
        """Workers and triggerers each start a log server; on one host every one needs its own port.

        A triggerer also gets its own ``LOGNAME``: Airflow stores it (``getpass.getuser()``) as the
        ``unixname`` of the triggerer's job row, so ``triggerer_job_id`` can tell which ``triggerer_id``
        in the ``trigger`` table is which process.
        """
        if name.startswith(CELERY_WORKER):
            return {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        if name.startswith(TRIGGERER):
            return {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()), "LOGNAME": f"realairflow-{name}"}
        return {}

    # -- configuration ------------------------------------------------------------------------

    def _build_env(self) -> dict[str, str]:
        """Environment shared by every component (and so by the task processes they fork)."""
        s = self.settings
        # Drop outer Airflow config so a developer's shell can't leak into the deployment.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
        env.pop("AIRFLOW_HOME", None)
        pythonpath = [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env.update(
            {
                MARKER_ENV: self.deployment_id,
                "PYTHONPATH": os.pathsep.join(pythonpath),
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.sqlalchemy_url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": self.postgres.async_sqlalchemy_url,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(s.parallelism),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(s.max_active_tasks_per_dag),
                "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
                "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": str(s.default_pool_slots),
                "AIRFLOW__CORE__DAGS_FOLDER": str(Path(s.dags_folder).resolve()),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    self.airflow_home / "simple_auth_manager_passwords.json.generated"
                ),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": str(s.api_workers),
                "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
                "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.airflow_home / "logs"),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(s.task_heartbeat_timeout),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "0",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
                "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "30",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(self.base_dir / "bundles"),
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                # As the README recommends for production: a task supervisor reports its process's end
                # within 1 s instead of 5 s, so a deferred task frees its slot (and an early trigger
                # event is held) that much less (bench/worker_slot.py sets its own value).
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                "AIRFLOW__TRIGGERER__CAPACITY": "1000",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False",
                "AIRFLOW__STATE_STORE__CLEAR_ON_SUCCESS": "False",
            }
        )
        if self.celery:
            assert self.redis is not None
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": CELERY_EXECUTOR,
                    "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.sqlalchemy_url,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(s.celery_concurrency),
                    "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                    # [scheduler] task_queued_timeout stays at its default (600 s): shorter, a task that
                    # merely waits for a free slot on these two cores is revoked and re-queued, and failed
                    # after two re-queues. A SIGKILLed worker loses no reserved message here anyway: the
                    # prefetch (concurrency x worker_prefetch_multiplier 1) never exceeds its free slots.
                }
            )
        if len(self.triggerer_names) > 1:
            # Triggerer HA: a triggerer whose heartbeat is older than the threshold counts as dead and the
            # others adopt its triggers. Heartbeat every second, dead after 10 s (default 30 s).
            env["AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC"] = "1"
            env["AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"] = "10"
        env.update(s.env)
        return env

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> AirflowDeployment:
        """Bring everything up; on any failure stop what was started and re-raise with component logs."""
        t0 = time.monotonic()
        try:
            self.airflow_home.mkdir(parents=True, exist_ok=True)
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            # Known credentials for the simple auth manager: it only generates passwords for users
            # missing from this file, so pre-seeding it makes the admin password deterministic.
            (self.airflow_home / "simple_auth_manager_passwords.json.generated").write_text(
                json.dumps({self.settings.username: self.settings.password}) + "\n"
            )
            self.postgres.start()
            self.timings["postgres"] = time.monotonic() - t0
            t1 = time.monotonic()
            self._migrate()
            self.timings["db_migrate"] = time.monotonic() - t1
            if self.redis is not None:
                self.redis.start()
                self._session_ids.add(self.redis.popen.pid)  # type: ignore[union-attr]
            t2 = time.monotonic()
            for name in self.component_names:
                self.start_component(name)
            self.wait_healthy(timeout=self.settings.startup_timeout)
            for name in self.worker_names:
                self.wait_worker_ready(name)
            self.timings["components_healthy"] = time.monotonic() - t2
        except BaseException:
            diagnostics = self.diagnostics()
            self.stop()
            keep = "REALAIRFLOW_KEEP_TMP=1 keeps logs"
            sys.stderr.write(f"\nrealairflow deployment failed to start ({keep})\n{diagnostics}\n")
            raise
        self.timings["startup_total"] = time.monotonic() - t0
        return self

    def _migrate(self) -> None:
        log_path = self.logs_dir / "db-migrate.log"
        with log_path.open("wb") as log:
            proc = subprocess.run(
                [*_airflow_cli(), "db", "migrate"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                timeout=300,
                check=False,
            )
        if proc.returncode != 0:
            raise HarnessError(f"airflow db migrate failed ({proc.returncode}):\n{_tail(log_path)}")

    def _component_args(self, name: str) -> list[str]:
        if name.startswith(CELERY_WORKER):
            # Distinct node names on one host; no gossip/mingle: nothing to synchronise, faster start.
            return ["celery", "worker", "--celery-hostname", f"{name}@%h", "--without-gossip", "--without-mingle"]
        if name.startswith(TRIGGERER):
            return ["triggerer"]
        if name == "api-server":
            return [
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
                "--workers",
                str(self.settings.api_workers),
            ]
        return [name]

    def start_component(self, name: str) -> ComponentProcess:
        """Start one component in its own session/process group, logging to ``logs/<name>[.N].log``."""
        if name in self.components and self.components[name].alive():
            raise HarnessError(f"{name} already running (pid {self.components[name].pid})")
        count = self._restarts.get(name, 0)
        self._restarts[name] = count + 1
        log_path = self.logs_dir / (f"{name}.log" if count == 0 else f"{name}.{count}.log")
        log = log_path.open("ab")
        started_at = utcnow()
        popen = subprocess.Popen(
            [*_airflow_cli(), *self._component_args(name)],
            env={**self.env, **self.component_env.get(name, {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.base_dir,
            start_new_session=True,
        )
        log.close()
        self._session_ids.add(popen.pid)  # start_new_session: the child's sid is its pid
        comp = ComponentProcess(name, popen, log_path, started_at)
        self.components[name] = comp
        return comp

    def stop_component(self, name: str, sig: int = signal.SIGTERM, *, timeout: float = 20.0) -> None:
        """Signal a component's whole process group; escalate to SIGKILL if it lingers."""
        comp = self.components.get(name)
        if comp is None:
            return
        _signal_group(comp.pid, sig)
        try:
            comp.popen.wait(timeout=timeout if sig != signal.SIGKILL else 10)
        except subprocess.TimeoutExpired:
            _signal_group(comp.pid, signal.SIGKILL)
            comp.popen.wait(timeout=10)
        if sig == signal.SIGKILL or comp.popen.returncode is not None:
            # Make sure no member of the group (e.g. the TriggerRunner subprocess) survives.
            _signal_group(comp.pid, signal.SIGKILL)

    def kill_component(self, name: str) -> None:
        """SIGKILL a component and its process group, like an OOM kill or a node loss."""
        self.stop_component(name, signal.SIGKILL)

    def kill_triggerer(self, name: str = TRIGGERER) -> None:
        self.kill_component(name)

    def start_triggerer(self, name: str = TRIGGERER) -> ComponentProcess:
        return self.start_component(name)

    def triggerer_job_id(self, name: str, *, timeout: float = 90.0) -> int:
        """Id of the ``TriggererJob`` row of triggerer ``name``'s latest start: its ``trigger.triggerer_id``.

        Waits for the row (a triggerer writes it a few seconds after its process starts).
        """
        comp = self.components[name]
        sql = (
            "SELECT id FROM job WHERE job_type = 'TriggererJob' AND unixname = %s AND start_date >= %s"
            " ORDER BY id DESC LIMIT 1"
        )
        params = (self.component_env[name]["LOGNAME"], comp.started_at - timedelta(seconds=1))

        def newest() -> int | None:
            rows = self.db_query(sql, params)
            if rows:
                return int(rows[0]["id"])
            if not comp.alive():
                raise HarnessError(f"{name} exited with {comp.popen.returncode}:\n{_tail(comp.log_path)}")
            return None

        return wait_until(newest, timeout=timeout, interval=0.3, what=f"{name}'s job row")

    def wait_worker_ready(self, name: str, *, timeout: float = 90.0) -> None:
        """A Celery worker logs ``<node> ready.`` once it consumes from the broker."""
        comp = self.components[name]

        def ready() -> bool:
            if not comp.alive():
                raise HarnessError(f"{name} exited with {comp.popen.returncode}:\n{_tail(comp.log_path)}")
            return " ready." in comp.log_path.read_text(errors="replace")

        wait_until(ready, timeout=timeout, interval=0.3, what=f"{name} to be ready", on_timeout=self.diagnostics)

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL a Celery worker like a lost node: its process group *and* every task it runs.

        Task supervisors move to process groups of their own, so killing the worker's group alone
        would leave them running; every process of the worker's session goes. Returns their pids.
        """
        comp = self.components[name]
        members = [p for p in psutil.process_iter(["pid"]) if _session_of(p.pid) == comp.pid]
        _signal_group(comp.pid, signal.SIGKILL)
        for proc in members:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(members, timeout=10)
        comp.popen.wait(timeout=10)
        return [p.pid for p in members]

    def component_of(self, proc: psutil.Process) -> str | None:
        """The component a process descends from (components start new sessions; descendants keep the id)."""
        sid = _session_of(proc.pid)
        return next((name for name, comp in self.components.items() if comp.pid == sid), None)

    def wait_healthy(
        self,
        *,
        timeout: float = 60.0,
        components: Iterable[str] = ("metadatabase", "scheduler", "triggerer", "dag_processor"),
    ) -> dict[str, Any]:
        wanted = list(components)

        def check() -> dict[str, Any] | None:
            for comp in self.components.values():
                if not comp.alive():
                    raise HarnessError(f"{comp.name} exited with {comp.popen.returncode}:\n{_tail(comp.log_path)}")
            health = self.client.health()
            ok = all((health.get(c) or {}).get("status") == "healthy" for c in wanted)
            return health if ok else None

        return wait_until(check, timeout=timeout, interval=0.5, what=f"health of {wanted}", on_timeout=self.diagnostics)

    def stop(self) -> None:
        """Stop every process this deployment started; safe to call repeatedly and from atexit."""
        if self._stopped:
            return
        self._stopped = True
        # SIGTERM all groups at once (graceful shutdown lets the scheduler release its DB locks), then
        # SIGKILL whatever is left, including task processes that moved to their own process groups.
        alive = [c for c in self.components.values() if c.alive()]
        for comp in alive:
            _signal_group(comp.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for comp in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for comp in self.components.values():
            _signal_group(comp.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.popen.wait(timeout=5)
        with contextlib.suppress(Exception):
            self.kill_owned_processes()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        with contextlib.suppress(Exception):
            self.postgres.stop()
        self.client.session.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if not os.environ.get("REALAIRFLOW_KEEP_TMP"):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def owns(self, proc: psutil.Process) -> bool:
        """Whether ``proc`` belongs to this deployment.

        Every component starts a new session (``start_new_session``), and its descendants keep that
        session id even when they change process group (task supervisors call ``setpgid``) or are
        orphaned by a SIGKILLed parent. The environment marker is a second signal, but not a reliable
        one on its own: ``setproctitle`` (LocalExecutor workers, task processes) overwrites the memory
        ``/proc/<pid>/environ`` reads from.
        """
        try:
            if os.getsid(proc.pid) in self._session_ids:
                return True
        except OSError:
            return False
        return _has_marker(proc, self.deployment_id)

    def owned_processes(self) -> list[psutil.Process]:
        me = os.getpid()
        return [p for p in psutil.process_iter(["pid"]) if p.pid != me and self.owns(p)]

    def kill_owned_processes(self) -> list[int]:
        """SIGKILL every process still belonging to the deployment (see ``owns``); returns their pids."""
        procs = self.owned_processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=5)
        return [p.pid for p in procs]

    # -- task processes ----------------------------------------------------------------------

    def task_processes(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, psutil.Process]:
        """Find the OS processes running a TI right now.

        Returns ``{"task": ..., "supervisor": ...}`` (either may be missing). The task process sets its
        title to ``airflow worker -- <ti uuid>`` (task_runner.startup); its parent is the supervisor,
        which runs inside a LocalExecutor worker. Matching on the TI's UUID (from the REST API) is
        unambiguous even with hundreds of concurrent tasks; the TI's ``pid`` field is the fallback.
        """
        ti = self.client.task_instance(dag_id, run_id, task_id, map_index)
        title = f"airflow worker -- {ti['id']}"
        found: dict[str, psutil.Process] = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(proc.info.get("cmdline") or [])
            if cmdline.strip() == title:
                found["task"] = proc
                break
        if "task" not in found and ti.get("pid"):
            proc_or_none = _safe_process(int(ti["pid"]))
            if proc_or_none is not None and self.owns(proc_or_none):
                found["task"] = proc_or_none
        if "task" in found:
            with contextlib.suppress(psutil.Error):
                parent = found["task"].parent()
                if parent is not None and self.owns(parent):
                    found["supervisor"] = parent
        return found

    def wait_for_task_process(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, *, timeout: float = 60.0
    ) -> dict[str, psutil.Process]:
        def check() -> dict[str, psutil.Process] | None:
            procs = self.task_processes(dag_id, run_id, task_id, map_index)
            return procs if "task" in procs else None

        return wait_until(
            check, timeout=timeout, interval=0.3, what=f"process of {dag_id}/{run_id}/{task_id}[{map_index}]"
        )

    def kill_task(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, *, which: str = "task", timeout: float = 60.0
    ) -> int:
        """SIGKILL the process running a TI and return its pid.

        ``which="task"`` kills the task process only: the supervisor survives and reports the failure at
        once (the TI goes to retry immediately). ``which="supervisor"`` kills supervisor and task together,
        i.e. a lost worker: nobody reports, and the scheduler notices via the heartbeat timeout
        (``DeploymentSettings.task_heartbeat_timeout``).
        """
        procs = self.wait_for_task_process(dag_id, run_id, task_id, map_index, timeout=timeout)
        targets = [procs["task"]]
        if which == "supervisor":
            if "supervisor" not in procs:
                raise HarnessError("supervisor process not found")
            targets = [procs["supervisor"], procs["task"]]
        elif which != "task":
            raise ValueError(f"which must be 'task' or 'supervisor', not {which!r}")
        for proc in targets:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(targets, timeout=10)
        return targets[0].pid

    # -- convenience for tests ------------------------------------------------------------------

    def run_dag(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, *, timeout: float = 180.0, run_id: str | None = None
    ) -> dict[str, Any]:
        """Wait for parse, unpause, trigger, and wait for the run to finish; returns the final run."""
        self.wait_for_dag(dag_id)
        self.client.unpause(dag_id)
        run = self.client.trigger_dag(dag_id, conf, run_id=run_id)
        return self.client.wait_for_run(dag_id, str(run["dag_run_id"]), timeout=timeout)

    # Shortcuts to the REST client for the calls scenarios make most (see AirflowRestClient).

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, *, run_id: str | None = None) -> str:
        """Unpause (idempotent) and trigger ``dag_id``; returns the new run_id without waiting."""
        self.wait_for_dag(dag_id)
        self.client.unpause(dag_id)
        return str(self.client.trigger_dag(dag_id, conf, run_id=run_id)["dag_run_id"])

    def wait_for_dag(self, dag_id: str, *, timeout: float = 90.0) -> dict[str, Any]:
        return self.client.wait_for_dag(dag_id, timeout=timeout, dags_folder=Path(self.settings.dags_folder))

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 180.0) -> dict[str, Any]:
        return self.client.wait_for_run(dag_id, run_id, timeout=timeout)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.client.task_instances(dag_id, run_id)

    def logs(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[int, str]:
        return self.client.logs(dag_id, run_id, task_id, map_index)

    def xcoms(self, dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> dict[str, Any]:
        return self.client.xcoms(dag_id, run_id, task_id, map_index)

    def task_state_store(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        return self.client.task_state_store(dag_id, run_id, task_id, map_index)

    def db_query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run SQL against the metadata DB (e.g. the ``trigger`` table) and return rows as dicts."""
        with contextlib.closing(self.postgres.connect()) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, params)
                if cur.description is None:
                    return []
                cols = [c.name for c in cur.description]
                return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def component_log(self, name: str) -> str:
        """All log files of a component (including restarts), concatenated."""
        parts = sorted(self.logs_dir.glob(f"{name}*.log"))
        return "\n".join(p.read_text(errors="replace") for p in parts)

    def task_log_files(self) -> list[Path]:
        return sorted((self.airflow_home / "logs").rglob("*.log"))

    def all_log_text(self) -> Iterator[tuple[Path, str]]:
        """Every log the deployment wrote (components, postgres, task and trigger logs): for secret scans."""
        for path in sorted(self.base_dir.rglob("*")):
            if path.is_file() and (path.suffix == ".log" or "logs" in path.parts):
                yield path, path.read_text(errors="replace")

    def diagnostics(self) -> str:
        lines = [f"deployment dir: {self.base_dir}"]
        for comp in self.components.values():
            state = "alive" if comp.alive() else f"exited {comp.popen.returncode}"
            lines.append(f"--- {comp.name} (pid {comp.pid}, {state}) {comp.log_path}\n{_tail(comp.log_path, 40)}")
        return "\n".join(lines)

    def __enter__(self) -> AirflowDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _safe_process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _has_marker(proc: psutil.Process, deployment_id: str) -> bool:
    try:
        return proc.environ().get(MARKER_ENV) == deployment_id
    except (psutil.Error, OSError):
        return False


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
