"""Provider discovery: what Airflow reads from ``get_provider_info`` is true and complete.

Airflow finds the provider through the ``apache_airflow_provider`` entry point, lists it by
``package-name``, imports the modules it names and builds the connection form from
``conn-fields``; a typo in any of these only shows up in a running Airflow, so each is checked.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest
from airflow.sdk import Connection

from airflow_provider_muscle_surge import __version__, get_provider_info
from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
from airflow_provider_muscle_surge.hooks.settings import SegmindSettings

DISTRIBUTION = "airflow-provider-muscle-surge"
INFO = get_provider_info()


def segmind_connection_type() -> dict:
    (conn_type,) = [c for c in INFO["connection-types"] if c["connection-type"] == "segmind"]
    return conn_type


def test_package_name_is_the_installed_distribution_name():
    dist = metadata.distribution(DISTRIBUTION)
    assert INFO["package-name"] == dist.metadata["Name"] == DISTRIBUTION


def test_the_listed_version_is_the_installed_version():
    assert INFO["versions"][0] == __version__ == metadata.version(DISTRIBUTION)


def test_airflow_finds_the_provider_through_its_entry_point():
    (entry_point,) = [
        ep for ep in metadata.entry_points(group="apache_airflow_provider") if ep.dist.name == DISTRIBUTION
    ]
    assert entry_point.load() is get_provider_info


def test_the_segmind_connection_type_names_the_sync_hook():
    conn_type = segmind_connection_type()
    module, _, name = conn_type["hook-class-name"].rpartition(".")
    hook_class = getattr(importlib.import_module(module), name)
    assert hook_class is SegmindHook
    assert hook_class.conn_type == "segmind"
    assert conn_type["hook-name"] == hook_class.hook_name


def test_every_connection_form_field_is_read_by_the_hook():
    extra = {
        "upload_url": "https://u.example/up",
        "max_retries": 2,
        "max_retry_seconds": 9,
        "timeout": 7,
        "initial_backoff": 0.5,
        "max_backoff": 4,
        "max_retry_after": 11,
        "resubmit_on_unknown_outcome": True,
        "poll": {"expected_seconds": 30},
        "max_status_calls_per_second": 3.5,
        "max_concurrent_submits": 2,
    }
    assert set(extra) == set(segmind_connection_type()["conn-fields"])
    conn = Connection(
        conn_id="segmind_default",
        conn_type="segmind",
        host="https://api.segmind.com",
        password="k-123456",
        extra=json.dumps(extra),
    )
    settings = SegmindSettings.from_connection(conn)
    assert settings.upload_url == "https://u.example/up"
    retry = settings.retry
    assert (retry.max_retries, retry.max_retry_seconds, retry.initial_backoff) == (2, 9.0, 0.5)
    assert (retry.max_backoff, retry.max_retry_after) == (4.0, 11.0)
    assert settings.timeout == 7.0
    assert settings.resubmit_on_unknown_outcome is True
    assert settings.poll == {"expected_seconds": 30}
    assert (settings.max_status_calls_per_second, settings.max_concurrent_submits) == (3.5, 2)


def test_every_connection_form_field_has_a_label_and_a_json_schema():
    for name, field in segmind_connection_type()["conn-fields"].items():
        assert field["label"], name
        assert "type" in field["schema"], name


def test_every_extra_the_hook_reads_is_in_the_connection_form():
    from dataclasses import fields

    from airflow_provider_muscle_surge.retry import RetryPolicy

    budget = {"max_status_calls_per_second", "max_concurrent_submits"}
    read = {"upload_url", "timeout", "poll", "resubmit_on_unknown_outcome", *budget}
    read |= {f.name for f in fields(RetryPolicy)}
    assert set(segmind_connection_type()["conn-fields"]) == read


def test_the_port_field_is_honoured_and_the_scheme_comes_from_the_host():
    conn = Connection(conn_id="p", conn_type="segmind", host="http://127.0.0.1", port=8765, password="k", schema="ftp")
    assert SegmindSettings.from_connection(conn).base_url == "http://127.0.0.1:8765"
    bare = Connection(conn_id="b", conn_type="segmind", host="api.segmind.com", password="k", schema="http")
    assert SegmindSettings.from_connection(bare).base_url == "https://api.segmind.com"


def test_the_connection_form_hides_unused_fields_and_calls_the_password_api_key():
    behaviour = segmind_connection_type()["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"schema", "login"}
    assert behaviour["relabeling"]["password"] == "API key"
    assert behaviour["placeholders"]["host"] == "https://api.segmind.com"


@pytest.mark.parametrize("kind", ["hooks", "operators", "sensors", "triggers"])
def test_every_listed_module_imports(kind):
    modules = [m for entry in INFO[kind] for m in entry["python-modules"]]
    assert modules
    for module in modules:
        importlib.import_module(module)


def test_every_extra_link_class_exists():
    for path in INFO["extra-links"]:
        module, _, name = path.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type), path


def test_providers_manager_resolves_the_segmind_hook():
    from airflow.providers_manager import ProvidersManager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ProvidersManager.hooks is deprecated in favour of the task-sdk one
        hook_info = ProvidersManager().hooks["segmind"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_muscle_surge.hooks.segmind.SegmindHook"
    assert hook_info.package_name == DISTRIBUTION
    assert hook_info.connection_id_attribute_name == "segmind_conn_id"
    assert hook_info.connection_testable  # the UI's "Test" button calls SegmindHook.test_connection


def test_airflow_providers_list_shows_the_provider(tmp_path: Path):
    airflow = Path(sys.executable).with_name("airflow")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    env.pop("AIRFLOW_CONN_SEGMIND_DEFAULT", None)
    proc = subprocess.run(
        [str(airflow), "providers", "list", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = {p["package_name"]: p for p in json.loads(proc.stdout)}
    assert DISTRIBUTION in listed
    assert listed[DISTRIBUTION]["version"] == __version__
