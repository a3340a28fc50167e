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
from collections.abc import Sequence
from pathlib import Path

from segmind_emulator.config import DEFAULT_API_KEY, DEFAULT_PORT, EmulatorConfig

READY_PREFIX = "Segmind emulator listening on "


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="segmind-emulator",
        description="A local emulator of the Segmind API (muscle-surge image-to-video, v1 and v2).",
    )
    parser.add_argument("--host", default=defaults.host, help="interface to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default %(default)s)")
    parser.add_argument(
        "--job-seconds", type=float, default=defaults.job_seconds, help="mean render time (default %(default)s)"
    )
    parser.add_argument(
        "--job-spread",
        type=float,
        default=defaults.job_spread,
        help="render time standard deviation as a fraction of the mean (default %(default)s)",
    )
    parser.add_argument(
        "--retention-seconds",
        type=float,
        default=defaults.retention_seconds,
        help="how long a request record lives, counted from its submission (default %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted API key; repeatable (default: {DEFAULT_API_KEY!r} when none is given)",
    )
    parser.add_argument("--credits", type=int, default=None, help="credits per key, 1 per job (default unlimited)")
    parser.add_argument(
        "--rate-limit", type=float, default=None, help="requests per second per key (default: no limit)"
    )
    parser.add_argument(
        "--fault-rate",
        type=_fraction,
        default=0.0,
        help="fraction of API requests answered 500/502/504 or dropped, before processing (default 0)",
    )
    parser.add_argument(
        "--max-image-bytes",
        type=int,
        default=defaults.max_image_bytes,
        help="largest input image fetched from image_url or a data URI; larger fails the job (default %(default)s)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="where outputs and uploads live (default: temp)")
    parser.add_argument("--seed", type=int, default=None, help="seed for render times and faults (reproducible runs)")
    parser.add_argument(
        "--render-workers", type=int, default=defaults.render_workers, help="encoder threads (default %(default)s)"
    )
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="stderr log level"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        job_seconds=args.job_seconds,
        job_spread=args.job_spread,
        retention_seconds=args.retention_seconds,
        api_keys=tuple(args.api_keys or (DEFAULT_API_KEY,)),
        credits=args.credits,
        rate_limit=args.rate_limit,
        fault_rate=args.fault_rate,
        data_dir=args.data_dir,
        seed=args.seed,
        render_workers=args.render_workers,
        max_image_bytes=args.max_image_bytes,
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
