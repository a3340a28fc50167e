"""Shared helpers of the benchmarks: statistics, tables, machine facts, emulator processes.

Only the standard library at import time (plus the emulator's stdlib-only test helper when an
emulator is started), so ``--help`` of every script is instant and ``parse_cost.py`` measures
imports in subprocesses that this module never pollutes.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import resource
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

#: The connection every benchmark's hooks and triggers use (set as ``AIRFLOW_CONN_<ID>``).
CONN_ID = "segmind_bench"


# --- statistics -------------------------------------------------------------------------------------
def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (``pct`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub-markdown table (pastes straight into RESULTS.md and reads fine in a terminal)."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join([line, sep, *body])


# --- machine ----------------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """The facts RESULTS.md records with every figure."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }
    for dist in ("apache-airflow", "aiohttp"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            info[dist] = version(dist)
    return info


def print_header(title: str, argv: Sequence[str] | None = None) -> None:
    info = machine_info()
    print(f"# {title}")
    print(
        f"{info['date']} | {info['cores']} cores, {info['cpu']} | Python {info['python']} | "
        f"Airflow {info.get('apache-airflow', '?')} | aiohttp {info.get('aiohttp', '?')}"
    )
    cmd = " ".join(argv if argv is not None else sys.argv)
    print(f"command: {cmd}\n", flush=True)


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``wanted`` (never above the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def write_json(path: str | None, data: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str))


# --- inputs -----------------------------------------------------------------------------------------
def tiny_png(width: int = 32, height: int = 48) -> bytes:
    """A small valid RGB PNG, built with zlib only (no Pillow in the benchmark process)."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in ((x * 7) % 256, (y * 5) % 256, 128)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def image_data_uri() -> str:
    """The input of every benchmark job: inline, so the emulator does no per-job image fetch, and
    identical, so the emulator encodes one video and serves every other job from its render cache."""
    return "data:image/png;base64," + base64.b64encode(tiny_png()).decode()


#: The request body of every benchmark job (the operator's defaults).
def job_payload() -> dict[str, Any]:
    return {"image_url": image_data_uri(), "duration": 5, "quality": "540p", "motion_mode": "normal", "seed": 7}


# --- Airflow and emulator environment -------------------------------------------------------------------
def isolated_airflow_home() -> str:
    """Point AIRFLOW_HOME at a throw-away directory: benchmarks never touch ~/airflow."""
    home = os.environ.get("BENCH_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="bench-airflow-home-")
    os.environ["AIRFLOW_HOME"] = home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    return home


def set_connection(conn_id: str, url: str, api_key: str, extra: dict[str, Any] | None = None) -> None:
    """Register a ``segmind`` connection for this process (and its children) through the environment."""
    conn = {"conn_type": "segmind", "host": url, "password": api_key, "extra": extra or {}}
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)


@contextlib.contextmanager
def emulators(count: int = 1, **flags: Any) -> Iterator[list[Any]]:
    """``count`` emulator processes (separate OS processes, free ports), stopped on exit."""
    from segmind_emulator.testing import EmulatorProcess

    started: list[Any] = []
    try:
        for index in range(count):
            seed = flags.get("seed")
            per = {**flags, "seed": None if seed is None else seed + 1000 * index}
            started.append(EmulatorProcess(**per).start())
        yield started
    finally:
        for emu in started:
            with contextlib.suppress(Exception):
                emu.stop()


def process_cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of another process, from /proc (no psutil needed)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def run_quiet(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)
