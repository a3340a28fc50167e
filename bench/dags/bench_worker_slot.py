"""The DAG of bench/worker_slot.py: the same muscle-surge job, deferrable, blocking and zero-worker, side by side.

``BENCH_WORKER_SLOT_TASKS`` (environment) sets how many tasks of each kind run in one DAG run, and
``BENCH_WORKER_SLOT_MODES`` which kinds (comma-separated: ``deferrable``, ``blocking``, ``zero``;
default all three). ``zero`` is zero-worker mode (``start_from_trigger=True``).
The input image is a tiny PNG built here (stdlib only), identical for every task, so the emulator
encodes one video and the tasks differ only in how they wait.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib
from datetime import datetime, timedelta

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseOperator, dag, task

from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator


def _png(size: int = 16) -> str:
    rows = b"".join(
        b"\x00" + bytes(v for x in range(size) for v in (x * 16 % 256, y * 16 % 256, 128)) for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


class DeferOnlyOperator(BaseOperator):
    """Airflow's floor for a deferrable task: defer for ``seconds``, resume, do nothing else."""

    def __init__(self, *, seconds: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def execute(self, context: object) -> None:
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.seconds)), method_name="execute_complete")

    def execute_complete(self, context: object, event: object = None) -> None:
        return None


TASKS = int(os.environ.get("BENCH_WORKER_SLOT_TASKS", "2"))
MODES = os.environ.get("BENCH_WORKER_SLOT_MODES", "deferrable,blocking,zero").split(",")


@dag(dag_id="bench_worker_slot", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["bench"])
def bench_worker_slot() -> None:
    image = _png()
    for index in range(TASKS):
        for mode in MODES:
            MuscleSurgeOperator(
                task_id=f"{mode}_{index}",
                image_url=image,
                seed=index + 1,
                segmind_conn_id="segmind_bench",
                deferrable=mode != "blocking",
                start_from_trigger=mode == "zero",
                reattach=False,
            )

    @task(task_id="floor_empty")
    def floor_empty() -> None:
        """Airflow's floor for any task: start a task process, run nothing, finish."""

    floor_empty()
    DeferOnlyOperator(task_id="floor_defer", seconds=float(os.environ.get("BENCH_WORKER_SLOT_DEFER", "45")))


bench_worker_slot()
