"""A local emulator of the Segmind API for muscle-surge (and simple image models).

Run it with ``segmind-emulator`` or ``python -m segmind_emulator``; use it from Python with
:class:`EmulatorConfig` plus :func:`build_app` / :func:`serve`, or from tests with
:class:`segmind_emulator.testing.EmulatorProcess`. On start it prints one line,
``Segmind emulator listening on http://HOST:PORT``; logs go to stderr.

Modules: :mod:`.server` (application, state, middleware), :mod:`.api` (API handlers),
:mod:`.pipeline` (jobs, image fetch, render cache), :mod:`.admin` (``/_emulator/`` endpoints),
:mod:`.faults` (the fault switch), :mod:`.files` (public files and their retention),
:mod:`.render` (pixels), :mod:`.state` (jobs, credits, rate limits, counters), :mod:`.api_facts`.

API endpoints (``x-api-key`` required; default key ``emulator-key`` when no ``--api-key`` is given):

- ``POST /v1/muscle-surge`` -> the MP4 itself after the render time; ``POST /v1/<other-model>``
  -> a PNG drawn from the body's ``prompt``. A failed v1 run answers 422 and is not billed.
- ``POST /v2/<model>`` -> ``{request_id, status, status_url, response_url}`` (absolute URLs from
  the request's Host); ``GET /v2/requests/<id>/status``; ``GET /v2/requests/<id>`` (``output`` URL
  and ``metrics`` when COMPLETED). FAILED is HTTP 422 with ``status``/``error`` on both.
- ``POST /upload-asset`` with ``{"data_urls": [...]}`` -> ``{"file_urls": [...], "message"}``.

Emulator-only endpoints (never faulted, not counted): the admin endpoints ``GET /_emulator/stats``,
``POST /_emulator/reset``, ``GET``/``POST /_emulator/faults`` (the runtime fault switch, below) and
``GET /_emulator/health`` need a valid ``x-api-key`` like the API (401 otherwise), so nobody on the
network can read the counters or switch faults on; public without a key: ``GET /_emulator/samples``
(index), ``/_emulator/samples/athlete-{1..4}.png`` and the file URLs ``/_emulator/outputs/<name>``
and ``/_emulator/files/<name>`` (like a CDN's; deleted when the retention passes).

Documented choices where the real API is silent:

- The API facts (parameter rules, states, error codes, retention, render time, quality -> height)
  are stated in :mod:`.api_facts`, from Segmind's public documentation; this package shares no
  code with any client (it imports nothing from Airflow or the provider).
- Order of checks: faults that answer instead of the server, auth (401), rate limit (429),
  Content-Type (406), JSON and parameters (400), credits (406). 4xx answers are never billed.
- Retention (``--retention-seconds``) counts from submission (uploads: from the upload); after it,
  the id answers 404 and the output file and uploaded assets are deleted (their URLs answer 404).
- Input images whose URL contains ``rai-block`` fail with a responsible-AI block; unreachable or
  undecodable images fail too, and so do images over ``--max-image-bytes`` (25 MiB). Failures show
  after 10-20 % of the render time.
- Faults: ``--fault-rate`` answers that fraction of API requests 500/502/504 or drops the
  connection. ``POST /_emulator/faults`` replaces the switch while the server runs: ``{"rules":
  [RULE, ...]}`` (first matching rule wins), one ``RULE``, or ``{"rate": r, "endpoints": [...]}``;
  ``{"rate": 0}`` / ``{"rules": []}`` turn faults off; jobs keep running meanwhile, and ``reset``
  restores ``--fault-rate``. A RULE is ``{"mode", "endpoints" (submit, status, result, v1, upload;
  default all), "rate" (1.0), "times" (null = unlimited)}`` plus mode parameters; modes ``error``,
  ``redirect``, ``echo_key``, ``not_json``, ``gateway`` answer instead of the server (nothing
  accepted), ``accept_then_drop``, ``cut_body``, ``drip``, ``oversize`` spoil the answer of a request
  the server processed (accepted and billed). See :mod:`.faults`.
- Render times: normal(mean=``--job-seconds``, sd=``--job-spread`` x mean), 3 % tail x1.2-1.6,
  at least 0.05 s; QUEUED for the first 5-10 %. A job completes at the later of its drawn time and
  the real encode. Other models take the mean scaled by their typical latency (:mod:`.api_facts`).

Importing this package is deliberately light: the aiohttp server loads on first use of
``build_app``/``serve``, and PyAV, Pillow and numpy only when something is rendered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segmind_emulator.config import DEFAULT_API_KEY, EmulatorConfig

if TYPE_CHECKING:
    from segmind_emulator.server import build_app, serve

__all__ = ["DEFAULT_API_KEY", "EmulatorConfig", "build_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("build_app", "serve"):
        from segmind_emulator import server

        return getattr(server, name)
    raise AttributeError(name)
