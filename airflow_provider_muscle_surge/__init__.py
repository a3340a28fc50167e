"""Apache Airflow provider for Segmind's Muscle Surge image-to-video model.

Kept import-free on purpose: Airflow reads :func:`get_provider_info` while discovering
providers, and DAG files import this package at parse time.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_PKG = "airflow_provider_muscle_surge"

#: The public names, imported on first use (module ``__getattr__``): ``from airflow_provider_muscle_surge
#: import MuscleSurgeOperator`` costs a DAG file only the operator module, not the hooks or aiohttp.
_LAZY = {
    "MuscleSurgeOperator": f"{_PKG}.operators.segmind",
    "SegmindSubmitOperator": f"{_PKG}.operators.segmind",
    "SegmindRequestSensor": f"{_PKG}.sensors.segmind",
    "SegmindHook": f"{_PKG}.hooks.segmind",
    "SegmindAsyncHook": f"{_PKG}.hooks.segmind_async",
    "SegmindRequestTrigger": f"{_PKG}.triggers.segmind",
}
__all__ = ["__version__", "get_provider_info", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def get_provider_info() -> dict[str, Any]:
    """What Airflow needs to list this provider, its connection type and its form."""
    return {
        "package-name": "airflow-provider-muscle-surge",
        "name": "Segmind Muscle Surge",
        "description": "Turn still images into Segmind Muscle Surge videos from Airflow DAGs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Segmind",
                "external-doc-url": "https://www.segmind.com/models/muscle-surge/api",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": "Segmind", "python-modules": [f"{_PKG}.hooks.segmind", f"{_PKG}.hooks.segmind_async"]}
        ],
        "operators": [{"integration-name": "Segmind", "python-modules": [f"{_PKG}.operators.segmind"]}],
        "sensors": [{"integration-name": "Segmind", "python-modules": [f"{_PKG}.sensors.segmind"]}],
        "triggers": [{"integration-name": "Segmind", "python-modules": [f"{_PKG}.triggers.segmind"]}],
        "extra-links": [
            f"{_PKG}.links.SegmindOutputLink",
            f"{_PKG}.links.SegmindVideoLink",  # deprecated alias of SegmindOutputLink
            f"{_PKG}.links.SegmindRequestLink",
        ],
        "connection-types": [
            {
                "connection-type": "segmind",
                "hook-class-name": f"{_PKG}.hooks.segmind.SegmindHook",
                "hook-name": "Segmind",
                "conn-fields": {
                    "upload_url": {
                        "label": "Upload URL",
                        "schema": {
                            "type": ["string", "null"],
                            "examples": ["https://workflows-api.segmind.com/upload-asset"],
                        },
                        "description": "Where images are uploaded (default: Segmind storage, or <host>/upload-asset).",
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "schema": {"type": ["integer", "null"], "minimum": 0, "examples": [6]},
                        "description": "Retries of 429/5xx/connection errors per call (default 6).",
                    },
                    "max_retry_seconds": {
                        "label": "Max retry time (s)",
                        "schema": {"type": ["number", "null"], "minimum": 0, "examples": [120]},
                        "description": "Total time spent retrying one call (default 120).",
                    },
                    "timeout": {
                        "label": "Call time limit (s)",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0, "examples": [30]},
                        "description": "Total seconds one HTTP attempt may take, headers and body (default 30).",
                    },
                    "initial_backoff": {
                        "label": "Initial backoff (s)",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0, "examples": [1]},
                        "description": "First wait before retrying a 5xx or a dropped connection (default 1).",
                    },
                    "max_backoff": {
                        "label": "Max backoff (s)",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0, "examples": [30]},
                        "description": "Longest wait between retries (default 30).",
                    },
                    "max_retry_after": {
                        "label": "Max server-asked wait (s)",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0, "examples": [60]},
                        "description": "Cap on a 429's Retry-After / x-rate-limit-reset-at-utc (default 60).",
                    },
                    "resubmit_on_unknown_outcome": {
                        "label": "Resubmit when a submit's answer is lost",
                        "schema": {"type": ["boolean", "null"], "examples": [False]},
                        "description": "May pay twice: only when availability matters more than cost (default off).",
                    },
                    "max_status_calls_per_second": {
                        "label": "Status calls per second (per key)",
                        "schema": {"type": ["number", "null"], "minimum": 0.1, "maximum": 10000, "examples": [10]},
                        "description": "Shared by every wait in a process (a whole triggerer) using this API key; "
                        "a burst stretches polling intervals instead (default 10).",
                    },
                    "max_concurrent_submits": {
                        "label": "Submits in flight (per key)",
                        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000, "examples": [8]},
                        "description": "Paid submits in flight at once per process and API key; pools do not "
                        "bound tasks that submit from the triggerer (default 8).",
                    },
                    "poll": {
                        "label": "Polling schedule",
                        "schema": {
                            "type": ["object", "null"],
                            "examples": [{"expected_seconds": 45.5, "max_interval": 15}],
                        },
                        "description": "PollSchedule fields, e.g. expected_seconds, dense_interval, max_interval.",
                    },
                },
                "ui-field-behaviour": {
                    # The scheme is part of the host URL (https:// unless given); the port is honoured.
                    "hidden-fields": ["schema", "login"],
                    "relabeling": {"password": "API key", "host": "API base URL", "port": "Port (optional)"},
                    "placeholders": {
                        "host": "https://api.segmind.com",
                        "password": "SG_... (from cloud.segmind.com/console/api-keys)",
                        "upload_url": "https://workflows-api.segmind.com/upload-asset",
                        "max_retries": "6",
                        "max_retry_seconds": "120",
                        "timeout": "30",
                        "initial_backoff": "1",
                        "max_backoff": "30",
                        "max_retry_after": "60",
                        "max_status_calls_per_second": "10",
                        "max_concurrent_submits": "8",
                    },
                },
            }
        ],
    }
