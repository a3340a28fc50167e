"""Run DAGs for real in tests: a private Airflow metadata DB and ``dag.test()`` plumbing.

Why this exists: ``dag.test()`` runs every task through Airflow's real task runner (the Task SDK
in-process supervisor and execution API), with real XCom, ``task_state_store``, retries,
reschedules and, for deferrable operators, the trigger run in-process. It needs two things a
plain pytest process lacks:

* a metadata database. Test modules import Airflow while pytest collects them, long before any
  fixture runs, so ``AIRFLOW_HOME`` cannot be chosen in time; instead :func:`use_private_airflow_db`
  points the already-imported Airflow at a fresh SQLite file in a temp dir (environment
  variables, which Airflow's config reads on every lookup, plus ``settings.reconfigure_orm``) and
  creates its tables. Nothing touches ``~/airflow``.
* the DAG in that database. ``dag.test()`` looks the DAG up by id among the serialized DAGs of
  the configured bundles; a DAG built inside a test lives in no bundle, so :func:`run_dag`
  serializes it into the DB first, exactly as the dag-processor would have.

The test modules wrap :func:`use_private_airflow_db` in a session fixture (it is idempotent).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_STATE: dict[str, Any] = {}


@contextmanager
def use_private_airflow_db() -> Iterator[Path]:
    """Point Airflow at a new SQLite DB for the duration of the block (shared when nested)."""
    if "home" in _STATE:
        yield _STATE["home"]
        return
    from airflow import settings
    from airflow.utils import db

    home = Path(tempfile.mkdtemp(prefix="airflow-dagtest-"))
    (home / "dags").mkdir()
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings.configure_vars()
    settings.reconfigure_orm()
    db.initdb()
    _STATE["home"] = home
    try:
        yield home
    finally:
        _STATE.pop("home", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        settings.configure_vars()
        settings.reconfigure_orm()


def register(dag: Any) -> None:
    """Write ``dag`` to the metadata DB as the dag-processor would (serialized, in the local bundle)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


def run_dag(dag: Any, run_conf: dict[str, Any] | None = None) -> Any:
    """``dag.test(run_conf=...)`` for a DAG built in a test; returns the finished DagRun."""
    register(dag)
    return dag.test(run_conf=run_conf)


def task_states(dagrun: Any) -> dict[str, str]:
    """``{task_id: state}`` read fresh from the DB."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances(session=session)}


def try_numbers(dagrun: Any) -> dict[str, int]:
    """``{task_id: try_number}``: how many times each task ran."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: ti.try_number for ti in dagrun.get_task_instances(session=session)}


def xcom(dagrun: Any, task_id: str, key: str = "return_value") -> Any:
    """The XCom value ``task_id`` pushed under ``key`` in this run (None when absent)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dagrun.run_id, dag_ids=dagrun.dag_id, task_ids=task_id, key=key)
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def task_state_store(dagrun: Any, task_id: str) -> dict[str, Any]:
    """Everything ``task_id`` wrote to its ``task_state_store`` in this run, decoded."""
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(TaskStateStoreModel).where(
                TaskStateStoreModel.dag_id == dagrun.dag_id,
                TaskStateStoreModel.run_id == dagrun.run_id,
                TaskStateStoreModel.task_id == task_id,
            )
        ).all()
        return {row.key: json.loads(row.value) for row in rows}


def dag_id_for(node_name: str) -> str:
    """A DAG id unique to the test (``test_x[deferrable]`` -> ``test_x_deferrable``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name).strip("_")


class FailureRecorder:
    """``on_failure_callback`` / ``on_retry_callback`` that keeps each exception the task raised.

    Not a list subclass on purpose: Airflow treats a list as a list of callbacks.
    """

    def __init__(self) -> None:
        self.errors: list[BaseException | None] = []

    def __call__(self, context: Any) -> None:
        self.errors.append(context.get("exception"))


# --- a hand-made context, for calling execute() directly ------------------------------------------
class FakeTI:
    """The bits of a running task instance the operators use: ``xcom_push`` and ``try_number``."""

    def __init__(self, try_number: int = 1) -> None:
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = json.loads(json.dumps(value))


class DictStateStore:
    """A ``task_state_store`` kept in a dict; values go through JSON like the real one's."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.data[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def fake_context(store: DictStateStore | None = None, try_number: int = 1) -> dict[str, Any]:
    """A minimal task context: ``ti`` and ``task_state_store`` (share ``store`` to simulate retries)."""
    return {"ti": FakeTI(try_number), "task_state_store": store if store is not None else DictStateStore()}
