"""Settings of the emulator, shared by the CLI (``__main__``), the Python API and the test helper.

One dataclass so that every way of starting the server accepts the same knobs with the same
defaults; :func:`segmind_emulator.__main__.build_parser` maps each field to
one ``--flag``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from segmind_emulator import api_facts

#: The key accepted when no ``--api-key`` is given: a documented, obviously fake default so that
#: ``segmind-emulator`` works out of the box and nobody pastes a real key into a demo.
DEFAULT_API_KEY = "emulator-key"
DEFAULT_PORT = 8765


@dataclass
class EmulatorConfig:
    """Everything the server needs to know; each field has a CLI flag of the same name.

    ``credits`` and ``rate_limit`` of ``None`` mean unlimited / off. ``data_dir`` of ``None``
    means a temporary directory, removed when the server stops. ``seed`` makes render times,
    fault choices and videos reproducible for the same sequence of requests.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: Mean render time of a muscle-surge job; other models scale it by their typical latency.
    job_seconds: float = api_facts.MUSCLE_SURGE_RENDER_SECONDS
    #: Standard deviation of the render time, as a fraction of the mean.
    job_spread: float = 0.06
    #: Mean render time of muscle-surge jobs with a given parameter value, ``{"quality=1080p": 90.0}``:
    #: the real service's time depends on the parameters. The first matching entry wins; other
    #: jobs take ``job_seconds``.
    job_seconds_for: dict[str, float] = field(default_factory=dict)
    #: How long a v2 request record lives, counted from its submission.
    retention_seconds: float = float(api_facts.RETENTION_SECONDS)
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    #: Credits per key; 1 per accepted job (v1 or v2).
    credits: int | None = None
    #: Requests per second per key (token bucket, burst = max(1, rate)).
    rate_limit: float | None = None
    #: Fraction of API requests answered 500/502/504 or dropped, before they are processed.
    fault_rate: float = 0.0
    data_dir: Path | None = None
    seed: int | None = None
    #: Threads encoding videos; each libx264 encode also uses a couple of its own threads.
    render_workers: int = 2
    #: Timeout for fetching an ``image_url`` over HTTP(S).
    fetch_timeout: float = 10.0
    #: Largest input image (fetched from ``image_url`` or decoded from a data URI), in bytes.
    max_image_bytes: int = 25 * 1024 * 1024

    def mean_job_seconds(self, params: dict[str, object]) -> float:
        """The mean render time of a muscle-surge job with these parameters (see ``job_seconds_for``)."""
        for rule, seconds in self.job_seconds_for.items():
            name, _, value = rule.partition("=")
            if str(params.get(name)) == value:
                return seconds
        return self.job_seconds

    def __post_init__(self) -> None:
        if isinstance(self.api_keys, str):
            self.api_keys = (self.api_keys,)
        self.api_keys = tuple(self.api_keys) or (DEFAULT_API_KEY,)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within 0..1, got {self.fault_rate}")
        self.job_seconds_for = dict(self.job_seconds_for)
        for rule, seconds in self.job_seconds_for.items():
            name, sep, value = rule.partition("=")
            if not (sep and name and value) or not seconds >= 0:
                raise ValueError(f"job_seconds_for needs PARAMETER=VALUE -> seconds >= 0, got {rule!r}: {seconds!r}")
        if self.job_seconds < 0 or self.job_spread < 0:
            raise ValueError("job_seconds and job_spread must not be negative")
        if self.retention_seconds <= 0:
            raise ValueError("retention_seconds must be positive")
        if self.credits is not None and self.credits < 0:
            raise ValueError("credits must not be negative")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("rate_limit must be positive (omit it to turn rate limiting off)")
        if self.max_image_bytes < 1:
            raise ValueError("max_image_bytes must be at least 1")
        if self.render_workers < 1:
            raise ValueError("render_workers must be at least 1")
