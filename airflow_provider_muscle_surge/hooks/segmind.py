"""SegmindHook: the blocking client used in workers, built on the http provider's HttpHook.

What it adds to HttpHook: the ``x-api-key`` header instead of basic auth, the plain-http
refusal, the contract's error mapping, retries that honour the rate-limit headers, and the
v2 submit/poll/result cycle driven by the shared :class:`~airflow_provider_muscle_surge.polling.Watch`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import mimetypes
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from airflow_provider_muscle_surge import contract
from airflow_provider_muscle_surge.exceptions import (
    AuthenticationError,
    MalformedResponse,
    RequestExpired,
    SegmindError,
    TransportError,
)
from airflow_provider_muscle_surge.hooks.settings import DEFAULT_CONN_ID, SegmindSettings
from airflow_provider_muscle_surge.polling import PollSchedule, Step, Watch

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Outputs larger than this are refused: a muscle-surge MP4 is a few MB; 2 GiB means a wrong URL.
DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024**3
#: v1 blocks until the model is done; the docs say fine only for jobs well under ~600 s.
SYNC_READ_TIMEOUT = 600.0
CONNECT_TIMEOUT = 10.0
#: "No usable answer": refused/reset connections, timeouts, and a body cut short (requests raises
#: ChunkedEncodingError for a truncated body, which is not a ConnectionError).
_NO_ANSWER = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True)
class SavedFile:
    """Where an output was written, and what was written (so a reader can verify it)."""

    path: str
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SegmindHook(HttpHook):
    """Talk to the Segmind API (or the bundled emulator) from a worker.

    :param segmind_conn_id: a connection of type ``segmind``: API key in the password field,
        host defaulting to ``https://api.segmind.com``. Extra (all optional): ``max_retries``,
        ``max_retry_seconds``, ``timeout``, ``upload_url``, ``poll`` (PollSchedule overrides).
    """

    conn_name_attr = "segmind_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "segmind"
    hook_name = "Segmind"
    default_host = contract.DEFAULT_HOST

    def __init__(self, segmind_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(method="POST", http_conn_id=segmind_conn_id, **kwargs)
        self.segmind_conn_id = segmind_conn_id

    # --- connection -------------------------------------------------------------------------------
    @cached_property
    def settings(self) -> SegmindSettings:
        return SegmindSettings.from_connection(self.get_connection(self.segmind_conn_id))

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """A keep-alive session carrying the key header; the connection's extra is *not* sent as headers.

        HttpHook would turn every extra key into a header and the password into basic auth;
        neither is right for Segmind, so only its adapter mounting is reused.
        """
        self.base_url = self.settings.base_url
        session = self._configure_session_from_mount_adapters(requests.Session())
        session.headers.update(self.settings.headers)
        if headers:
            session.headers.update(headers)
        return session

    @cached_property
    def session(self) -> requests.Session:
        return self.get_conn()

    def _url(self, path: str) -> str:
        return path if "://" in path else self.settings.base_url + path

    # --- one call, with retries -----------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        request_id: str | None = None,
        failed_is_answer: bool = False,
        read_timeout: float | None = None,
        raw: bool = False,
    ) -> Any:
        """One API call: retried per the connection's policy, mapped to the contract's exceptions."""
        url = self._url(path)
        timeout = (CONNECT_TIMEOUT, read_timeout or self.settings.timeout)

        def attempt() -> Any:
            try:
                response = self.session.request(method, url, json=json, timeout=timeout)
                content = response.content
            except _NO_ANSWER as err:
                raise TransportError(f"no answer from Segmind at {url}: {type(err).__name__}") from None
            ok = 200 <= response.status_code < 300
            body = content if (raw and ok) else contract.decode_body(content)
            return contract.check_answer(
                response.status_code, body, response.headers, request_id=request_id, failed_is_answer=failed_is_answer
            )

        return self.settings.retry.call(attempt)

    # --- the API ---------------------------------------------------------------------------------------
    def run_sync(self, model: str, payload: dict[str, Any]) -> bytes:
        """v1: one blocking call that answers the output itself (MP4 for muscle-surge, image bytes otherwise)."""
        body = contract.validate_payload(model, payload)
        return self._call("POST", contract.v1_path(model), json=body, read_timeout=SYNC_READ_TIMEOUT, raw=True)

    def submit(self, model: str, payload: dict[str, Any]) -> contract.Submission:
        """v2 submit: validated first (a refused parameter costs nothing), billed once accepted."""
        body = contract.validate_payload(model, payload)
        answer = self._call("POST", contract.v2_submit_path(model), json=body)
        submission = contract.Submission.parse(answer)
        self.log.info("Submitted %s request %s", model, submission.request_id)
        return submission

    def get_status(self, request_id: str) -> dict[str, Any]:
        """The status body; a FAILED request is returned (its 422 is an answer, not an error)."""
        body = self._call("GET", contract.status_path(request_id), request_id=request_id, failed_is_answer=True)
        return contract.require_json_object(body, f"the status of {request_id}")

    def get_result(self, request_id: str) -> dict[str, Any]:
        """The final body of a COMPLETED request (``output``, ``metrics``); raises on FAILED."""
        body = self._call("GET", contract.result_path(request_id), request_id=request_id, failed_is_answer=True)
        return contract.completed_result(body, request_id)

    def wait_for_request(
        self,
        request_id: str,
        *,
        submitted_at: float | None = None,
        timeout: float = 3600.0,
        schedule: PollSchedule | None = None,
        on_step: Callable[[Step, Watch], None] | None = None,
    ) -> dict[str, Any]:
        """Block until the request is terminal; return its result body (COMPLETED) or raise.

        Polls on ``schedule`` (default: the model's, with the connection's ``poll`` extra on top).
        """
        from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook

        start = submitted_at or time.time()
        schedule = schedule or PollSchedule.for_model(contract.MUSCLE_SURGE, **self.settings.poll)

        async def wait() -> dict[str, Any]:
            async with SegmindAsyncHook(self.segmind_conn_id, settings=self.settings) as hook:
                return await hook.wait_for_request(
                    request_id, submitted_at=start, deadline=start + timeout, schedule=schedule, on_step=on_step
                )

        # One polling loop exists (the async one the trigger uses); blocking mode runs it to completion.
        return asyncio.run(wait())

    def download(
        self,
        url: str,
        destination: str | os.PathLike[str] | ObjectStoragePath,
        *,
        max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    ) -> SavedFile:
        """Stream ``url`` to ``destination`` atomically and return its size and sha256.

        Results expire after 1 hour, so callers save them as soon as a job completes. The bytes
        go to a temporary sibling first and are renamed into place only when complete, so a
        crash never leaves a truncated video under the final name. ``destination`` may be a
        local path or any ``ObjectStoragePath`` (``file://``, ``s3://`` ...).
        """
        from airflow.sdk import ObjectStoragePath

        dest = (
            destination
            if isinstance(destination, ObjectStoragePath)
            else ObjectStoragePath(Path(destination).absolute().as_uri())
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"
        digest, size = hashlib.sha256(), 0
        # Output URLs are pre-signed/public: the key is not sent to whatever host serves them.
        with self._stream(url) as response:
            try:
                with tmp.open("wb") as out:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        size += len(chunk)
                        if size > max_bytes:
                            raise MalformedResponse(f"output at {url} is larger than {max_bytes} bytes; refused")
                        digest.update(chunk)
                        out.write(chunk)
                tmp.rename(dest)
            except _NO_ANSWER as err:
                tmp.unlink(missing_ok=True)
                raise TransportError(f"download of {url} broke off after {size} bytes: {type(err).__name__}") from None
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        saved = SavedFile(path=str(dest), bytes=size, sha256=digest.hexdigest())
        self.log.info("Saved %s (%d bytes, sha256 %s)", saved.path, saved.bytes, saved.sha256[:12])
        return saved

    def _stream(self, url: str) -> requests.Response:
        def attempt() -> requests.Response:
            try:
                response = requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT, self.settings.timeout))
            except _NO_ANSWER as err:
                raise TransportError(f"could not download {url}: {type(err).__name__}") from None
            if response.status_code != 200:
                body = contract.decode_body(response.content)
                response.close()
                if response.status_code in (403, 404, 410):
                    # Output URLs are not API endpoints: "not found" here means the file is gone.
                    raise RequestExpired(
                        f"the output at {url} is gone (HTTP {response.status_code}); outputs expire, so save "
                        "them as soon as the job completes (set output_path)",
                        status_code=response.status_code,
                    )
                contract.check_answer(response.status_code, body, response.headers)
                raise MalformedResponse(f"download of {url} answered HTTP {response.status_code}")
            return response

        return self.settings.retry.call(attempt)

    def upload(self, data: bytes | str | os.PathLike[str], content_type: str | None = None) -> str:
        """Upload an image (bytes or a file) and return a URL the API accepts as ``image_url``.

        Same call as the SDK's ``files.upload``: a base64 data URL posted to ``/upload-asset``.
        """
        if isinstance(data, bytes):
            raw, guessed = data, content_type or "image/png"
        else:
            raw, guessed = Path(data).read_bytes(), content_type or mimetypes.guess_type(str(data))[0] or "image/png"
        data_url = f"data:{guessed};base64,{base64.b64encode(raw).decode()}"
        answer = contract.require_json_object(
            self._call("POST", self.settings.upload_url, json={"data_urls": [data_url]}), "the upload"
        )
        urls = answer.get("file_urls")
        if not (isinstance(urls, list) and urls and isinstance(urls[0], str)):
            raise MalformedResponse(f"upload answered without file_urls: {answer!r}"[:300])
        return urls[0]

    def test_connection(self) -> tuple[bool, str]:
        """Check the key with a status query for an id that cannot exist: no job, no credits.

        An accepted key gets 404 (unknown request); a rejected one gets 401/403.
        """
        try:
            self.get_status("airflow-connection-test")
        except RequestExpired:
            return True, f"Connection works: {self.settings.base_url} accepted the API key."
        except AuthenticationError as err:
            if err.status_code is None:  # no key configured: nothing was sent
                return False, str(err)
            return False, f"The API key was rejected (HTTP {err.status_code}). Check the password field."
        except SegmindError as err:
            return False, str(err)
        return True, f"Connection works: {self.settings.base_url} answered."
