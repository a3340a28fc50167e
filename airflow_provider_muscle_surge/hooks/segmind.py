"""SegmindHook: the blocking client used in workers, built on the http provider's HttpHook.

What it reuses of HttpHook: the connection plumbing (``conn_name_attr``, ``get_connection``, the
``adapter`` argument) and its public face (``run``, ``run_with_advanced_retry``, ``check_response``),
which are overridden below so they follow the same rules as the rest of this hook rather than
HttpHook's (basic auth, extras sent as headers, redirects followed, per-read timeouts).

What it adds to HttpHook: the ``x-api-key`` header instead of basic auth, one URL check for every
address that receives the key, no redirects on API calls, a total time limit per call and per
retry budget (not per socket read), capped and key-redacted answers, the contract's error map,
retries that honour the rate-limit headers and never repeat a paid submit whose outcome is
unknown, and the v2 submit/poll/result cycle driven by the shared
:class:`~airflow_provider_muscle_surge.polling.Watch`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import mimetypes
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from airflow_provider_muscle_surge import answers, contract
from airflow_provider_muscle_surge.answers import MAX_ANSWER_BYTES, RawAnswer
from airflow_provider_muscle_surge.exceptions import (
    AuthenticationError,
    CertificateError,
    MalformedResponse,
    RequestExpired,
    SegmindError,
    SubmitOutcomeUnknown,
    TransportError,
)
from airflow_provider_muscle_surge.hooks.settings import DEFAULT_CONN_ID, SegmindSettings
from airflow_provider_muscle_surge.hooks.time_limit import TimeLimit, time_limited_session
from airflow_provider_muscle_surge.polling import PollSchedule, Step, Watch
from airflow_provider_muscle_surge.retry import MIN_ATTEMPT_SECONDS
from airflow_provider_muscle_surge.uris import storage_path

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Outputs larger than this are refused: a muscle-surge MP4 is a few MB; 2 GiB means a wrong URL.
DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024**3
#: v1 answers the video itself, held in memory: a muscle-surge MP4 is a few MB.
MAX_SYNC_OUTPUT_BYTES = 512 * 1024**2
#: v1 blocks until the model is done; the docs say fine only for jobs well under ~600 s.
SYNC_TIME_LIMIT = 600.0
CONNECT_TIMEOUT = 10.0
#: A download may take the connection's ``timeout`` plus one second per this many bytes received:
#: a healthy transfer of any size finishes, one that drips is cut.
MIN_DOWNLOAD_BYTES_PER_SECOND = 64 * 1024
_CHUNK = 256 * 1024
_REQUEST_PATH = re.compile(r"^/v2/requests/([A-Za-z0-9_-]{1,128})(?:/status)?$")


@dataclass(frozen=True)
class SavedFile:
    """Where an output was written, and what was written (so a reader can verify it)."""

    path: str
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def transport_error(err: requests.RequestException, url: str, limit: TimeLimit) -> SegmindError:
    """What a ``requests`` failure means for the caller: refused, cut by the limit, lost, or bad TLS."""
    name = type(err).__name__
    if limit.expired:
        return TransportError(
            f"Segmind at {url} did not answer completely within the time limit of one call "
            "(a stalled or dripping answer); the request may have been received.",
            outcome_unknown=True,
        )
    text = str(err)
    if isinstance(err, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in text.upper():
        return CertificateError(
            f"TLS certificate verification failed for {url}: {contract.shorten(text)}. Not retried: check the "
            "connection's host, or a proxy that intercepts TLS."
        )
    if isinstance(err, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)) or _never_connected(err):
        return TransportError(
            f"could not connect to Segmind at {url} ({name}); nothing was sent", outcome_unknown=False
        )
    return TransportError(
        f"the answer from Segmind at {url} was lost after the request was sent ({name})", outcome_unknown=True
    )


def _never_connected(err: BaseException) -> bool:
    """True when the connection was refused or the name did not resolve: the request never left."""
    from urllib3.exceptions import NewConnectionError

    seen: list[BaseException] = []
    todo: list[Any] = [err]
    while todo and len(seen) < 10:
        item = todo.pop()
        if not isinstance(item, BaseException) or item in seen:
            continue
        if isinstance(item, NewConnectionError):
            return True
        seen.append(item)
        todo.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
    return False


def _read_capped(chunks: Iterator[bytes], max_bytes: int) -> tuple[bytes, bool]:
    """At most ``max_bytes`` of a body, and whether that was all of it."""
    content = bytearray()
    for chunk in chunks:
        content += chunk
        if len(content) > max_bytes:
            return bytes(content[:max_bytes]), False
    return bytes(content), True


class SegmindHook(HttpHook):
    """Talk to the Segmind API (or the bundled emulator) from a worker.

    :param segmind_conn_id: a connection of type ``segmind``: API key in the password field,
        host defaulting to ``https://api.segmind.com``. Extra (all optional): ``max_retries``,
        ``max_retry_seconds``, ``timeout``, ``upload_url``, ``poll`` (PollSchedule overrides),
        ``resubmit_on_unknown_outcome``, ``max_status_calls_per_second`` and ``max_concurrent_submits``
        (the key's budget in this process, shared with every other wait using it: ``hooks/key_budget.py``).
    """

    conn_name_attr = "segmind_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "segmind"
    hook_name = "Segmind"
    default_host = contract.DEFAULT_HOST

    def __init__(
        self,
        segmind_conn_id: str = DEFAULT_CONN_ID,
        method: str = "POST",
        *,
        settings: SegmindSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(method=method, http_conn_id=segmind_conn_id, **kwargs)
        self.segmind_conn_id = segmind_conn_id
        if settings is not None:
            # Already read (e.g. with aget_connection in a triggerer): no blocking connection lookup.
            self.__dict__["settings"] = settings

    # --- connection -------------------------------------------------------------------------------
    @cached_property
    def settings(self) -> SegmindSettings:
        return SegmindSettings.from_connection(self.get_connection(self.segmind_conn_id))

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """A keep-alive, time-limited session carrying the key header; the extra is *not* sent as headers.

        HttpHook would turn every extra key into a header and the password into basic auth, and its
        keep-alive adapter would replace the time-limited one; none of that is right for Segmind.
        """
        self.base_url = self.settings.base_url
        session = time_limited_session()
        if self.adapter:  # a caller's own adapter (HttpHook's ``adapter``): its connections are not time-limited
            session.mount(f"{self.settings.origin.scheme}://", self.adapter)
        session.headers.update(self.settings.headers)
        if headers:
            session.headers.update(headers)
        return session

    @cached_property
    def session(self) -> requests.Session:
        return self.get_conn()

    @cached_property
    def _download_session(self) -> requests.Session:
        """Output URLs are pre-signed or public: no key goes to whatever host serves them."""
        return time_limited_session()

    # --- one call, with retries -----------------------------------------------------------------------
    def _call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        request_id: str | None = None,
        failed_is_answer: bool = False,
        time_limit: float | None = None,
        binary: bool = False,
        max_bytes: int = MAX_ANSWER_BYTES,
        resend: bool = True,
        whole_response: bool = False,
        rated: bool = False,
    ) -> Any:
        """One API call: each attempt time-limited as a whole, retried per the connection's policy.

        Returns the decoded answer, or (``whole_response``) the ``requests.Response`` holding it.
        Each attempt first waits for the key's process-wide budget, as in the async hook (threads
        of one worker share it with its triggers' and waits' calls): a 429's pause, and a token
        when ``rated`` (status and result calls).
        """
        settings = self.settings
        budget = settings.key_budget()

        def attempt(limit: float) -> Any:
            limit = max(MIN_ATTEMPT_SECONDS, limit - budget.acquire_sync(rated=rated))
            with TimeLimit(limit) as clock:
                try:
                    response = self.session.request(
                        method,
                        url,
                        json=json,
                        timeout=(min(CONNECT_TIMEOUT, limit), limit),
                        allow_redirects=False,
                        stream=True,
                    )
                    with response:
                        content, complete = _read_capped(response.iter_content(_CHUNK), max_bytes)
                except requests.RequestException as err:
                    raise transport_error(err, url, clock) from None
                if clock.expired:  # the shutdown may read as a clean end of a body without a length
                    raise transport_error(requests.exceptions.ReadTimeout(), url, clock)
            answer = RawAnswer(response.status_code, response.headers, content, complete)
            with budget.pausing_on_429(settings.retry.max_retry_after):
                body = answers.interpret(
                    answer,
                    url=url,
                    api_key=settings.api_key,
                    request_id=request_id,
                    failed_is_answer=failed_is_answer,
                    binary=binary,
                )
            if whole_response:
                response._content = content  # what was read (capped), so .json() and .text work
                return response
            return body

        return settings.retry.call(attempt, per_attempt=time_limit or settings.timeout, resend=resend)

    # --- HttpHook's public surface, with this hook's rules -------------------------------------------
    def run(
        self,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        **request_kwargs: Any,
    ) -> requests.Response:
        """HttpHook's ``run``, for API paths this hook has no method for (e.g. another model's endpoint).

        Same rules as every other call of this hook: the configured origin only, no redirects, the
        total time limit, the connection's retry policy, the Segmind error map (a non-2xx raises the
        provider's exception, with the key redacted) and, for a POST, no second request when the
        first one's outcome is unknown. ``headers``, ``extra_options`` and ``request_kwargs`` are not
        supported: they could override the key header or the limits.
        """
        if headers or extra_options or request_kwargs:
            raise TypeError("SegmindHook.run() takes only endpoint and data: headers and options come from the hook")
        path = "/" + (endpoint or "").lstrip("/")
        about = _REQUEST_PATH.match(path)  # a 404 there means an expired request, not a missing model
        method = self.method.upper()
        return self._call(
            method,
            self.settings.url(path),
            json=data,
            request_id=about.group(1) if about else None,
            failed_is_answer=bool(about),
            binary=True,
            resend=method in ("GET", "HEAD", "OPTIONS"),
            whole_response=True,
        )

    def run_with_advanced_retry(self, _retry_args: dict[Any, Any], *args: Any, **kwargs: Any) -> requests.Response:
        """``run`` under the connection's retry policy: one policy per connection, not one per call site."""
        self.log.info("SegmindHook retries per the connection's policy; _retry_args are not used")
        return self.run(*args, **kwargs)

    def check_response(self, response: requests.Response) -> None:
        """Raise the provider's exception for a non-2xx answer (the Segmind error map, key redacted)."""
        answer = RawAnswer(response.status_code, response.headers, response.content)
        answers.interpret(
            answer, url=response.url or self.settings.base_url, api_key=self.settings.api_key, binary=True
        )

    # --- the API ---------------------------------------------------------------------------------------
    def run_sync(
        self, model: str, payload: dict[str, Any], *, resubmit_on_unknown_outcome: bool | None = None
    ) -> bytes:
        """v1: one blocking call that answers the output itself (MP4 for muscle-surge, image bytes otherwise).

        Billed like a submit, so a lost answer is never followed by a second POST unless opted in.
        """
        body = contract.validate_payload(model, payload)
        with SubmitOutcomeUnknown.guard(model):
            return self._call(
                "POST",
                self.settings.url(contract.v1_path(model)),
                json=body,
                time_limit=SYNC_TIME_LIMIT,
                binary=True,
                max_bytes=MAX_SYNC_OUTPUT_BYTES,
                resend=self.settings.resend(resubmit_on_unknown_outcome),
            )

    def submit(
        self, model: str, payload: dict[str, Any], *, resubmit_on_unknown_outcome: bool | None = None
    ) -> contract.Submission:
        """v2 submit: validated first (a refused parameter costs nothing), billed once accepted.

        At most one accepted submit per call: an answer lost after sending raises
        :class:`SubmitOutcomeUnknown` instead of posting again, unless ``resubmit_on_unknown_outcome``
        (or the connection extra of that name) says availability matters more than cost.
        """
        body = contract.validate_payload(model, payload)
        settings = self.settings
        slot = settings.key_budget().submit_slot_sync(settings.retry.max_retry_seconds)
        with slot, SubmitOutcomeUnknown.guard(model):
            answer = self._call(
                "POST",
                settings.url(contract.v2_submit_path(model)),
                json=body,
                resend=settings.resend(resubmit_on_unknown_outcome),
            )
        submission = self.settings.pin(contract.Submission.parse(answer))
        self.log.info("Submitted %s request %s", model, submission.request_id)
        return submission

    def get_status(self, request_id: str) -> dict[str, Any]:
        """The status body; a FAILED request is returned (its 422 is an answer, not an error)."""
        url = self.settings.url(contract.status_path(request_id))
        body = self._call("GET", url, request_id=request_id, failed_is_answer=True, rated=True)
        return contract.require_json_object(body, f"the status of {request_id}")

    def get_result(self, request_id: str) -> dict[str, Any]:
        """The final body of a COMPLETED request (``output``, ``metrics``); raises on FAILED."""
        url = self.settings.url(contract.result_path(request_id))
        return contract.completed_result(
            self._call("GET", url, request_id=request_id, failed_is_answer=True, rated=True), request_id
        )

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
        The deadline holds during a status call too (see ``SegmindAsyncHook.wait_for_request``).
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
        crash never leaves a truncated video under the final name; temporary files a killed
        download left for the same destination are removed first. Bounded in size and in time:
        the connection's ``timeout`` plus one second per ``MIN_DOWNLOAD_BYTES_PER_SECOND`` received.
        ``destination`` may be a local path or any ``ObjectStoragePath`` (``file://``, ``s3://`` ...).
        """
        from airflow.sdk import ObjectStoragePath

        dest = destination if isinstance(destination, ObjectStoragePath) else storage_path(destination)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for stale in dest.parent.glob(f".{dest.name}.*.part"):
            stale.unlink(missing_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"
        try:
            saved = self.settings.retry.call(
                lambda limit: self._download_once(url, tmp, limit, max_bytes), per_attempt=self.settings.timeout
            )
            tmp.rename(dest)
        finally:
            tmp.unlink(missing_ok=True)
        saved = SavedFile(path=str(dest), bytes=saved.bytes, sha256=saved.sha256)
        self.log.info("Saved %s (%d bytes, sha256 %s)", saved.path, saved.bytes, saved.sha256[:12])
        return saved

    def _download_once(self, url: str, tmp: ObjectStoragePath, limit: float, max_bytes: int) -> SavedFile:
        digest, size = hashlib.sha256(), 0
        started = time.monotonic()
        with TimeLimit(limit) as clock:
            try:
                response = self._download_session.get(
                    url, stream=True, timeout=(min(CONNECT_TIMEOUT, limit), limit), allow_redirects=True
                )
                with response:
                    if response.status_code != 200:
                        content, complete = _read_capped(response.iter_content(_CHUNK), MAX_ANSWER_BYTES)
                        _refuse_download(url, RawAnswer(response.status_code, response.headers, content, complete))
                    with tmp.open("wb") as out:
                        for chunk in response.iter_content(_CHUNK):
                            size += len(chunk)
                            if size > max_bytes:
                                raise MalformedResponse(f"output at {url} is larger than {max_bytes} bytes; refused")
                            digest.update(chunk)
                            out.write(chunk)
                            clock.extend_until(started + limit + size / MIN_DOWNLOAD_BYTES_PER_SECOND)
            except requests.RequestException as err:
                cause = transport_error(err, url, clock)
                if not isinstance(cause, TransportError):
                    raise cause from None
                raise TransportError(f"download of {url} broke off after {size} bytes: {cause}") from None
            if clock.expired:
                raise transport_error(requests.exceptions.ReadTimeout(), url, clock)
        return SavedFile(path=str(tmp), bytes=size, sha256=digest.hexdigest())

    def upload(self, data: bytes | str | os.PathLike[str], content_type: str | None = None) -> str:
        """Upload an image (bytes or a file) and return a URL the API accepts as ``image_url``.

        Same call as the SDK's ``files.upload``: a base64 data URL posted to ``/upload-asset``.
        """
        if isinstance(data, bytes):
            raw, guessed = data, content_type or "image/png"
        else:
            raw, guessed = Path(data).read_bytes(), content_type or mimetypes.guess_type(str(data))[0] or "image/png"
        data_url = f"data:{guessed};base64,{base64.b64encode(raw).decode()}"
        # Not billed: a lost answer may leave an orphan file behind, never a charge, so it is retried.
        answer = contract.require_json_object(
            self._call("POST", self.settings.upload_url, json={"data_urls": [data_url]}), "the upload"
        )
        urls = answer.get("file_urls")
        if not (isinstance(urls, list) and urls and isinstance(urls[0], str)):
            raise MalformedResponse(f"upload answered without file_urls: {contract.shorten(answer)}")
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


def _refuse_download(url: str, answer: RawAnswer) -> None:
    """Raise for a download that did not answer 200 (outputs are not API endpoints: no key, no map)."""
    if answer.status in (403, 404, 410):
        # "Not found" here means the file is gone.
        raise RequestExpired(
            f"the output at {url} is gone (HTTP {answer.status}); outputs expire, so save "
            "them as soon as the job completes (set output_path)",
            status_code=answer.status,
        )
    answers.interpret(answer, url=url, api_key=None)
    raise MalformedResponse(f"download of {url} answered HTTP {answer.status}")
