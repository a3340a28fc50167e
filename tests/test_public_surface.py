"""The package's top-level names: importable from the package itself, and only when asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

import airflow_provider_muscle_surge as pkg


@pytest.mark.parametrize(
    "name", ["MuscleSurgeOperator", "SegmindSubmitOperator", "SegmindRequestSensor", "SegmindHook"]
)
def test_the_public_names_import_from_the_package(name):
    module = {"Sensor": "sensors", "Hook": "hooks"}.get(
        name[-6:] if name.endswith("Sensor") else name[-4:], "operators"
    )
    assert getattr(pkg, name).__module__ == f"airflow_provider_muscle_surge.{module}.segmind"


def test_importing_the_operator_from_the_package_does_not_load_the_hooks():
    code = (
        "import sys; from airflow_provider_muscle_surge import MuscleSurgeOperator; "
        "print(sorted(m for m in sys.modules if m.startswith(('airflow_provider_muscle_surge.hooks', 'aiohttp'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchThing"):
        pkg.NoSuchThing  # noqa: B018
