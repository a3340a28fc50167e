"""``segmind-emulator`` / ``python -m segmind_emulator``: run the emulator.

Prints exactly one line on stdout once the socket is bound --
``Segmind emulator listening on http://HOST:PORT`` -- and flushes it, because scripts and the
test helper start it with ``--port 0`` and parse that line to learn the port. Everything else
(logs) goes to stderr. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from segmind_emulator.config import DEFAULT_API_KEY, EmulatorConfig

READY_PREFIX = "Segmind emulator listening on "


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {value}")
    return value


def _job_seconds_rule(text: str) -> tuple[str, float]:
    rule, sep, seconds = text.rpartition("=")
    try:
        value = float(seconds)
    except ValueError:
        value = -1.0
    if not sep or "=" not in rule or value < 0:
        raise argparse.ArgumentTypeError(f"expected PARAM=VALUE=SECONDS (e.g. quality=1080p=90), got {text!r}")
    return rule, value


#: Fields of :class:`EmulatorConfig` that have a flag (the field name with dashes): (type, help).
#: One table for the parser and for :func:`config_from_args`, so a flag and its field cannot drift apart.
OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "host": (str, "interface to bind (default %(default)s)"),
    "port": (int, "port; 0 picks a free one (default %(default)s)"),
    "job_seconds": (float, "mean render time (default %(default)s)"),
    "job_spread": (float, "render time standard deviation as a fraction of the mean (default %(default)s)"),
    "retention_seconds": (
        float,
        "how long a request record, its output and uploads live, counted from submission (default %(default)s)",
    ),
    "credits": (int, "credits per key, 1 per job (default unlimited)"),
    "rate_limit": (float, "requests per second per key (default: no limit)"),
    "fault_rate": (_fraction, "fraction of API requests answered 500/502/504 or dropped, unprocessed (default 0)"),
    "max_image_bytes": (
        int,
        "largest input image fetched from image_url or a data URI; larger fails the job (default %(default)s)",
    ),
    "data_dir": (Path, "where outputs and uploads live (default: temp)"),
    "seed": (int, "seed for render times and faults (reproducible runs)"),
    "render_workers": (int, "encoder threads (default %(default)s)"),
}


def build_parser() -> argparse.ArgumentParser:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="segmind-emulator",
        description="A local emulator of the Segmind API (muscle-surge image-to-video, v1 and v2).",
    )
    for name, (kind, help_text) in OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults, name), help=help_text)
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted API key; repeatable (default: {DEFAULT_API_KEY!r} when none is given)",
    )
    parser.add_argument(
        "--job-seconds-for",
        action="append",
        type=_job_seconds_rule,
        dest="job_seconds_for",
        metavar="PARAM=VALUE=SECONDS",
        help="mean render time of muscle-surge jobs with this parameter value, e.g. quality=1080p=90; "
        "repeatable, the first match wins (default: --job-seconds for every job)",
    )
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="stderr log level"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        api_keys=tuple(args.api_keys or (DEFAULT_API_KEY,)),
        job_seconds_for=dict(args.job_seconds_for or ()),
        **{name: getattr(args, name) for name in OPTIONS},
    )


def _announce(url: str) -> None:
    print(f"{READY_PREFIX}{url}", flush=True)


async def _run(config: EmulatorConfig) -> None:
    from segmind_emulator.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop=stop, on_ready=_announce)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    # force=True: stdout must carry nothing but the ready line, whatever handler an embedding program
    # (or a library it imported) has installed on the root logger.
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )
    asyncio.run(_run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
