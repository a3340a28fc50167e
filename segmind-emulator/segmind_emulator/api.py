"""The API endpoints a client sees: v1 runs, v2 submit/status/result, uploads.

Each handler reads as the documented behaviour; the refusals (400, 404, 406, 422) are raised by
the helpers as JSON :class:`aiohttp.web.HTTPException` answers, so no handler has to check
whether a helper returned a job or an error. Auth, rate limits and faults happen before these
handlers, in the middleware (:mod:`segmind_emulator.server`).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from segmind_emulator import api_facts
from segmind_emulator.answers import api_error, json_exception, origin, read_json
from segmind_emulator.api_facts import RequestStatus
from segmind_emulator.pipeline import DATA_URL_RE
from segmind_emulator.state import Job, iso_utc, mask_key

if TYPE_CHECKING:
    from segmind_emulator.server import Emulator


class Api:
    """Handlers of the API endpoints of one :class:`~segmind_emulator.server.Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(api_facts.UPLOAD_PATH, self.upload)
        app.router.add_get(api_facts.status_path("{request_id}"), self.v2_status)
        app.router.add_get(api_facts.result_path("{request_id}"), self.v2_result)
        app.router.add_post(api_facts.v1_path("{model}"), self.v1_run)
        app.router.add_post(api_facts.v2_submit_path("{model}"), self.v2_submit)

    # --- accepting work --------------------------------------------------------------------------
    async def _accept_job(self, request: web.Request) -> Job:
        """The job a v1 run or v2 submit asks for, charged one credit; raises the answer that refuses it.

        Order: model (404), body (406/400), parameters (400), credits (406). A refusal costs nothing.
        """
        model = request.match_info["model"]
        if not api_facts.MODEL_SLUG.match(model):
            raise api_error(404, f"No such model: {model!r}")
        body = await read_json(request)
        try:
            params = api_facts.check_body(model, body)
        except api_facts.ParameterError as exc:
            raise api_error(400, str(exc)) from None
        key: str = request["api_key"]
        if not self.emu.credits.try_charge(key):
            raise api_error(
                406, f"Insufficient credits: key {mask_key(key)} has 0 credits left; each {model} job costs 1"
            )
        self.emu.stats.credits_charged += 1
        return self.emu.pipeline.new_job(model, params, key)

    async def v1_run(self, request: web.Request) -> web.StreamResponse:
        """Synchronous run: the answer is the output itself, after the render time."""
        job = await self._accept_job(request)
        self.emu.stats.v1_runs[job.model] += 1
        state = await job.wait_terminal()
        path = self.emu.files.lookup("outputs", job.output_name) if job.output_name else None
        if state is not RequestStatus.COMPLETED or path is None:
            # The sync API has no request to poll: the failure is the answer, and a 4xx is not billed.
            self.emu.credits.refund(job.api_key)
            self.emu.stats.credits_charged -= 1
            detail = job.error or "the output expired before it could be sent"
            raise json_exception(422, {"status": "FAILED", "error": detail})
        ctype = "video/mp4" if path.suffix == ".mp4" else "image/png"
        body = await self.emu.pipeline.blocking(path.read_bytes)
        return web.Response(body=body, content_type=ctype, headers={"x-request-id": job.request_id})

    async def v2_submit(self, request: web.Request) -> web.StreamResponse:
        job = await self._accept_job(request)
        self.emu.jobs.add(job)  # stored before the 200 leaves: an acknowledged job is never lost
        self.emu.stats.submissions[job.model] += 1
        base = origin(request)
        return web.json_response(
            {
                "request_id": job.request_id,
                "status": job.status().value,
                "status_url": base + api_facts.status_path(job.request_id),
                "response_url": base + api_facts.result_path(job.request_id),
                "model": job.model,
                "created_at": iso_utc(job.submitted_wall),
            }
        )

    # --- reading a request -----------------------------------------------------------------------
    def _live_job(self, request: web.Request) -> tuple[Job, RequestStatus]:
        """The job and its state; raises 404 for an unknown or expired id, 422 for FAILED (both endpoints)."""
        request_id = request.match_info["request_id"]
        job = self.emu.jobs.get(request_id)
        if job is None:
            raise api_error(404, f"Request {request_id} not found")
        state = job.status()
        if state is RequestStatus.FAILED:
            failed = {"request_id": job.request_id, "status": "FAILED", "error": job.error, "model": job.model}
            raise json_exception(422, failed)
        return job, state

    async def v2_status(self, request: web.Request) -> web.StreamResponse:
        self.emu.stats.status_polls += 1
        job, state = self._live_job(request)
        return web.json_response(
            {
                "request_id": job.request_id,
                "status": state.value,
                "model": job.model,
                "created_at": iso_utc(job.submitted_wall),
            }
        )

    async def v2_result(self, request: web.Request) -> web.StreamResponse:
        self.emu.stats.results += 1
        job, state = self._live_job(request)
        body: dict[str, Any] = {"request_id": job.request_id, "status": state.value, "model": job.model}
        if state is RequestStatus.COMPLETED:
            body["output"] = f"{origin(request)}/_emulator/outputs/{job.output_name}"
            body["metrics"] = job.metrics
        return web.json_response(body)

    # --- uploads ---------------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.StreamResponse:
        """``{"data_urls": [...]}`` -> public URLs of the decoded files, kept for the retention."""
        body = await read_json(request)
        urls = body.get("data_urls") if isinstance(body, dict) else None
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise api_error(400, "data_urls must be a non-empty list of data:<mime>;base64,... strings")
        decoded = [_decode_data_url(index, url) for index, url in enumerate(urls)]  # all valid before any write
        base = origin(request)
        file_urls = []
        for ext, payload in decoded:
            name = f"{uuid.uuid4().hex}.{ext}"
            path = self.emu.files.upload(name)
            await self.emu.pipeline.blocking(path.write_bytes, payload)
            self.emu.files.keep_for_retention(path)
            file_urls.append(f"{base}/_emulator/files/{name}")
        self.emu.stats.uploads += len(file_urls)
        self.emu.stats.upload_requests += 1
        return web.json_response({"file_urls": file_urls, "message": f"{len(file_urls)} file(s) uploaded successfully"})


def _decode_data_url(index: int, url: str) -> tuple[str, bytes]:
    """(file extension, bytes) of ``data_urls[index]``, or the 400 that names which entry is bad."""
    match = DATA_URL_RE.match(url)
    if not match:
        raise api_error(400, f"data_urls[{index}] is not a data:<mime>;base64,... URI")
    try:
        payload = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise api_error(400, f"data_urls[{index}] is not valid base64") from None
    return (mimetypes.guess_extension(match.group(1).lower()) or ".bin").lstrip("."), payload
