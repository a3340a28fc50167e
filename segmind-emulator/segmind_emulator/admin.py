"""The emulator's own endpoints under ``/_emulator/``: admin (stats, reset, faults, health) and public files.

Admin endpoints reveal and change server state -- who submitted what, the fault switch -- so they
need a valid ``x-api-key`` like the API (the middleware checks :data:`ADMIN_PATHS`); a stranger on
the network must not be able to switch the faults off during someone's test. The public ones are
what a client is *handed*: output and upload URLs (like a CDN's, no key; gone after the retention)
and the sample portraits. None of them is ever faulted or counted in the stats.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from segmind_emulator.answers import api_error, origin, read_json
from segmind_emulator.faults import FaultSwitch

if TYPE_CHECKING:
    from segmind_emulator.server import Emulator

log = logging.getLogger("segmind_emulator")

#: Paths that need a valid key (401 JSON otherwise).
ADMIN_PATHS = frozenset({"/_emulator/stats", "/_emulator/reset", "/_emulator/faults", "/_emulator/health"})


class Admin:
    """Handlers of the ``/_emulator/`` endpoints of one :class:`~segmind_emulator.server.Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self._samples: dict[str, bytes] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/_emulator/stats", self.stats)
        app.router.add_post("/_emulator/reset", self.reset)
        app.router.add_get("/_emulator/faults", self.faults)
        app.router.add_post("/_emulator/faults", self.faults)
        app.router.add_get("/_emulator/health", self.health)
        app.router.add_get("/_emulator/samples", self.sample_index)
        app.router.add_get("/_emulator/samples/{name}.png", self.sample)
        app.router.add_get("/_emulator/{kind:outputs|files}/{name}", self.public_file)

    # --- admin (key required) --------------------------------------------------------------------
    async def stats(self, request: web.Request) -> web.StreamResponse:
        """Counters (see :class:`~segmind_emulator.state.Stats`), live jobs by state, credits, fault rules."""
        emu = self.emu
        body = emu.stats.snapshot()
        body["jobs"] = emu.jobs.counts()
        body["credits"] = emu.credits.snapshot()
        body["faults"] = emu.faults.to_dict()
        return web.json_response(body)

    async def reset(self, request: web.Request) -> web.StreamResponse:
        self.emu.reset()
        return web.json_response({"message": "emulator state reset"})

    async def faults(self, request: web.Request) -> web.StreamResponse:
        """``GET`` shows the rules (with the ``times`` each has left); ``POST`` replaces them all."""
        if request.method == "POST":
            body = await read_json(request)
            try:
                self.emu.faults = FaultSwitch.parse(body)
            except ValueError as exc:  # the switch stays as it was
                raise api_error(400, str(exc)) from None
            log.info("fault switch set to %s", self.emu.faults.to_dict())
        return web.json_response(self.emu.faults.to_dict())

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok", "jobs": len(self.emu.jobs)})

    # --- public (no key) -------------------------------------------------------------------------
    async def public_file(self, request: web.Request) -> web.StreamResponse:
        kind, name = request.match_info["kind"], request.match_info["name"]
        path = self.emu.files.lookup(kind, name)
        if path is None:
            raise api_error(404, f"No such file: {kind}/{name}")
        return web.FileResponse(path)

    async def sample(self, request: web.Request) -> web.StreamResponse:
        from segmind_emulator import render

        name = request.match_info["name"]
        if name not in render.SAMPLES:
            raise api_error(404, f"No such sample {name!r}; try one of {sorted(render.SAMPLES)}")
        if name not in self._samples:
            self._samples[name] = await self.emu.pipeline.blocking(render.render_sample, name)
        return web.Response(body=self._samples[name], content_type="image/png")

    async def sample_index(self, request: web.Request) -> web.StreamResponse:
        from segmind_emulator import render

        base = origin(request)
        return web.json_response(
            {
                name: {"url": f"{base}/_emulator/samples/{name}.png", "width": w, "height": h}
                for name, (w, h) in render.SAMPLES.items()
            }
        )
