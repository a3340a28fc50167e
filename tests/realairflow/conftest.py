"""Fixtures for tests that need a real Airflow deployment (see harness.py for why).

``airflow_deployment`` is a session-scoped factory: calling it with the same arguments returns the
same running deployment (start-up costs ~15-20 s, so modules share one), ``fresh=True`` forces a new
one for scenarios that break things on purpose. Every deployment is stopped at session end, and a
failing test gets the components' log tails attached to its report.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from .harness import DEFAULT_DAGS_FOLDER, AirflowDeployment, DeploymentSettings


class DeploymentFactory:
    """Creates, caches and finally stops ``AirflowDeployment`` objects."""

    def __init__(self) -> None:
        self._cache: dict[str, AirflowDeployment] = {}
        self.all: list[AirflowDeployment] = []

    def __call__(
        self,
        dags_folder: str | Path = DEFAULT_DAGS_FOLDER,
        env: Mapping[str, str] | None = None,
        *,
        fresh: bool = False,
        **settings: Any,
    ) -> AirflowDeployment:
        """Return a started deployment for these arguments.

        ``env`` is added to the environment of every component (and therefore every task and
        trigger), e.g. ``{"AIRFLOW_CONN_SEGMIND_DEFAULT": "..."}``; ``settings`` are
        ``DeploymentSettings`` fields such as ``parallelism`` or ``task_heartbeat_timeout``.
        """
        known = {f.name for f in fields(DeploymentSettings)}
        unknown = set(settings) - known
        if unknown:
            raise TypeError(f"unknown deployment settings: {sorted(unknown)}")
        key = json.dumps(
            {"dags": str(Path(dags_folder).resolve()), "env": dict(env or {}), "settings": settings},
            sort_keys=True,
            default=str,
        )
        existing = self._cache.get(key)
        if existing is not None and not fresh and not existing.stopped:
            return existing
        deployment = AirflowDeployment(
            DeploymentSettings(dags_folder=Path(dags_folder), env=dict(env or {}), **settings)
        )
        self.all.append(deployment)
        deployment.start()
        sys.stderr.write(
            f"\nrealairflow: deployment up in {deployment.timings['startup_total']:.1f}s"
            f" at {deployment.base_url} ({deployment.base_dir})\n"
        )
        self._cache[key] = deployment
        return deployment

    def running(self) -> list[AirflowDeployment]:
        return [d for d in self.all if not d.stopped]

    def stop_all(self) -> None:
        for deployment in self.running():
            deployment.stop()
            if "startup_total" in deployment.timings:
                phases = ", ".join(f"{k}={v:.1f}s" for k, v in deployment.timings.items())
                _SUMMARY.append(f"deployment {deployment.deployment_id[:8]} start-up: {phases}")


_FACTORY: DeploymentFactory | None = None
_SUMMARY: list[str] = []


@pytest.fixture(scope="session")
def airflow_deployment() -> Iterator[DeploymentFactory]:
    """Session-scoped factory ``airflow_deployment(dags_folder=..., env=..., fresh=False, **settings)``."""
    global _FACTORY
    factory = DeploymentFactory()
    _FACTORY = factory
    try:
        yield factory
    finally:
        factory.stop_all()
        _FACTORY = None


@pytest.fixture(scope="session")
def session_emulator() -> Iterator[Any]:
    """Session-scoped factory ``session_emulator(name, **flags)``: one emulator subprocess per name.

    Modules that share one deployment must call ``airflow_deployment`` with identical ``env``, and
    the emulators' URLs are part of that env, so the emulators must be shared for the session too.
    Flags are as for ``EmulatorProcess``; asking again for a name with other flags is an error.
    """
    from segmind_emulator.testing import EmulatorProcess

    started: dict[str, tuple[dict[str, Any], EmulatorProcess]] = {}

    def get(name: str, **flags: Any) -> EmulatorProcess:
        if name in started:
            known, emu = started[name]
            if known != flags:
                raise ValueError(f"emulator {name!r} already started with other flags: {known} != {flags}")
            return emu
        emu = EmulatorProcess(**flags).start()
        started[name] = (dict(flags), emu)
        return emu

    try:
        yield get
    finally:
        for _, emu in started.values():
            emu.stop()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop every deployment after the last deployment test, not at the end of the session.

    A deployment left running keeps its dag-processor re-parsing and its scheduler looping for the
    rest of the session, and on CI's two cores that slows every test that runs after it.
    """
    if _FACTORY is not None and (nextitem is None or _REALAIRFLOW_DIR not in Path(str(nextitem.path)).parents):
        _FACTORY.stop_all()


_REALAIRFLOW_DIR = Path(__file__).resolve().parent


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach component log tails of running deployments: the failure is usually there."""
    report = yield
    if report.failed and _FACTORY is not None:
        for deployment in _FACTORY.running():
            report.sections.append((f"realairflow {deployment.deployment_id[:8]}", deployment.diagnostics()))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print start-up timings of every deployment so CI logs show how long the harness took."""
    if _SUMMARY:
        terminalreporter.section("realairflow")
        for line in _SUMMARY:
            terminalreporter.write_line(line)
