"""Shared pytest fixtures.

Emulator fixtures: one real emulator subprocess per test session (fast jobs, generous credits,
no faults) that tests share via ``emulator`` / ``fresh_emulator``, plus ``emulator_factory`` for
tests that need special flags (credits, rate limits, faults, short retention). All of them talk
HTTP to a real process, so what passes here passes against a real server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from dags_for_tests.dagtest_support import dag_id_for, use_private_airflow_db
from hostile import HostileServer
from hypothesis import settings
from segmind_emulator.testing import EmulatorProcess
from support import EMULATOR_KEY, HOOKS, TEST_KEY, Client, connection

# --- emulator ------------------------------------------------------------------------------------
#: Flags of the session emulator: ~1 s jobs with little spread, so state tests are quick and stable.
EMULATOR_DEFAULT_FLAGS: dict[str, Any] = {"job_seconds": 1.0, "job_spread": 0.02, "credits": 1_000_000, "seed": 1234}


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    """The session-wide emulator (key ``test-key``); state accumulates across tests, see ``fresh_emulator``."""
    with EmulatorProcess(api_key=TEST_KEY, **EMULATOR_DEFAULT_FLAGS) as emu:
        yield emu


@pytest.fixture
def fresh_emulator(emulator: EmulatorProcess) -> EmulatorProcess:
    """The session emulator after ``reset()``: no jobs, zero counters, full credits."""
    emulator.reset()
    return emulator


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorProcess]]:
    """Start extra emulators with their own flags (``emulator_factory(credits=1, rate_limit=2)``).

    Defaults to the session flags and key ``test-key``; every emulator started here is stopped at
    teardown, also when the test fails.
    """
    started: list[EmulatorProcess] = []

    def start(**flags: Any) -> EmulatorProcess:
        if "api_keys" not in flags:
            flags.setdefault("api_key", TEST_KEY)
        emu = EmulatorProcess(**{**EMULATOR_DEFAULT_FLAGS, **flags})
        started.append(emu)
        return emu.start()

    yield start
    for emu in started:
        emu.stop()


# --- the connection --------------------------------------------------------------------------------
@pytest.fixture
def segmind_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    """``segmind_connection(host_or_emulator, key=..., **extra)``: point ``segmind_default`` at it.

    Sets ``AIRFLOW_CONN_SEGMIND_DEFAULT`` (no database; undone at teardown) to
    :func:`support.connection`: fast retries in the extra unless ``extra`` says otherwise, the
    emulator's key (or ``test-key`` for a URL; ``key=None``: no key). Returns the connection dict.
    """

    def use(target: str | EmulatorProcess, *, key: str | None = EMULATOR_KEY, **extra: Any) -> dict[str, Any]:
        conn = connection(target, key=key, **extra)
        monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_DEFAULT", json.dumps(conn))
        return conn

    return use


@pytest.fixture
def segmind_conn(fresh_emulator: EmulatorProcess, segmind_connection: Callable[..., Any]) -> EmulatorProcess:
    """``segmind_default`` pointing at the (reset) session emulator, fast retries; returns the emulator."""
    segmind_connection(fresh_emulator)
    return fresh_emulator


@pytest.fixture(params=HOOKS)
def either_hook(request: pytest.FixtureRequest) -> Client:
    """The sync hook, then the async one, behind one interface (:class:`support.Client`)."""
    return Client(request.param)


# --- aiohttp sessions -----------------------------------------------------------------------------------
@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every aiohttp.ClientSession created while the test runs, in order; each one's ``methods`` it sent."""
    import aiohttp

    created: list[Any] = []

    class CountingSession(aiohttp.ClientSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.methods: list[str] = []
            created.append(self)

        def request(self, method: str, *args: Any, **kwargs: Any) -> Any:
            self.methods.append(method)
            return super().request(method, *args, **kwargs)

    monkeypatch.setattr(aiohttp, "ClientSession", CountingSession)
    return created


# --- the hostile server ------------------------------------------------------------------------------
@pytest.fixture
def hostile_server() -> Iterator[Callable[..., HostileServer]]:
    """Start :class:`hostile.HostileServer` instances (``hostile_server(body, drip=1.0)``, then
    ``.route(...)`` for per-endpoint answers), closed at teardown."""
    servers: list[HostileServer] = []

    def start(body: bytes = b"", **kwargs: Any) -> HostileServer:
        servers.append(HostileServer(body, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# --- hypothesis ------------------------------------------------------------------------------------
# CI runs the property tests on a fixed seed, so a red build reproduces; locally they explore anew.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# --- Airflow for dag.test() ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """A private SQLite metadata DB for the session's ``dag.test()`` runs (never ``~/airflow``)."""
    with use_private_airflow_db() as home:
        yield home


@pytest.fixture
def new_dag(request: pytest.FixtureRequest, airflow_db: Path) -> Callable[..., DAG]:
    """``with new_dag(**dag_kwargs) as dag:``: a DAG with an id unique to this test."""

    def make(**kwargs: Any) -> DAG:
        return DAG(dag_id_for(request.node.name), schedule=None, start_date=datetime(2026, 1, 1), **kwargs)

    return make
