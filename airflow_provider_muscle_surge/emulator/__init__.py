"""A local emulator of the Segmind API for muscle-surge (and simple image models).

Run it with ``segmind-emulator`` or ``python -m airflow_provider_muscle_surge.emulator``; use it
from Python with :class:`EmulatorConfig` plus :func:`build_app` / :func:`serve`, or from tests with
:class:`airflow_provider_muscle_surge.emulator.testing.EmulatorProcess`.

Importing this package is deliberately light: the aiohttp server loads on first use of
``build_app``/``serve``, and PyAV, Pillow and numpy only when something is rendered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_muscle_surge.emulator.config import DEFAULT_API_KEY, EmulatorConfig

if TYPE_CHECKING:
    from airflow_provider_muscle_surge.emulator.server import build_app, serve

__all__ = ["DEFAULT_API_KEY", "EmulatorConfig", "build_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("build_app", "serve"):
        from airflow_provider_muscle_surge.emulator import server

        return getattr(server, name)
    raise AttributeError(name)
