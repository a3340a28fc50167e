"""The emulator's sample images, one URL per job a run's ``conf`` asks for.

Shared by the test pipelines in this folder (the folder is on ``sys.path`` when they are parsed and
run). Its text leaves out the two words the scheduler's safe mode looks for, so it is imported by
them and never parsed as a pipeline file itself.
"""

from __future__ import annotations

from typing import Any


def sample_image_urls(conf: dict[str, Any]) -> list[str]:
    """``conf["jobs"]`` URLs of the emulator at ``conf["emulator_url"]``, cycling through its four samples."""
    base = str(conf["emulator_url"]).rstrip("/")
    return [f"{base}/_emulator/samples/athlete-{i % 4 + 1}.png" for i in range(int(conf["jobs"]))]
