"""OpenLineage for the Segmind operators: which image went in, which file came out, which request made it.

The OpenLineage provider's listener asks an operator for its lineage through
``get_openlineage_facets_on_start`` / ``get_openlineage_facets_on_complete`` (its
``DefaultExtractor``; on failure it falls back to the "complete" method). :class:`SegmindLineageMixin`
answers both from what the operator already has: the rendered request body (the input image URLs),
and the result dict the operator returned, which it leaves on itself as ``_segmind_result``
(the listener runs in the task's process right after ``execute``/``execute_complete``, on the same
operator object, so no second API call or XCom read is needed).

What is reported, following the OpenLineage dataset naming conventions:

- inputs: every top-level http(s) URL or ``data:`` URI in the request body (for Muscle Surge, the
  ``image_url``). An http(s) URL is namespace ``scheme://host[:port]`` and name its path; the query
  and fragment are dropped, because presigned URLs carry credentials there and the signature is
  not part of the object's identity. A ``data:`` URI has no location, so it is namespace ``data``
  and name ``<media type>;sha256=<digest of its bytes>``: the same image gets the same name.
- outputs: the saved file (``output_path``) as a storage dataset: ``file`` + absolute path for a
  local file, ``s3://bucket`` + key (``gs://``, ``abfs://`` alike) for object storage, without the
  Airflow connection id of ``s3://<conn_id>@bucket/key`` (which names credentials, not data), with
  its size in the ``outputStatistics`` facet. With no ``output_path``, the video at Segmind's
  output URL (kept there one hour).
- run facets: ``externalQuery`` (the Segmind request id, the standard facet for a job in another
  system) and ``segmind`` (:data:`FACET_NAME`: model, request id, status, output URL, the render
  metrics Segmind returned, and the saved file's URI, bytes and sha256).

Nothing here imports OpenLineage, the provider or Airflow at module level: DAG files import the
operators (and so this mixin) at parse time, and the OpenLineage provider is an optional extra
(``pip install 'airflow-provider-muscle-surge[openlineage]'``). Without it nobody calls these
methods; with it, the imports happen inside them, in the task process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes, urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

#: The operator attribute holding the result dict it returned (set where the result is built).
RESULT_ATTRIBUTE = "_segmind_result"
#: The key of the custom run facet.
FACET_NAME = "segmind"
#: ``_schemaURL`` of the custom facet. There is no public host for a JSON schema of it, so it is a
#: URN: a URI that names the facet and its version without pretending to be fetchable.
FACET_SCHEMA_URL = "urn:airflow-provider-muscle-surge:openlineage:SegmindRunFacet:1-0-0"
#: ``externalQuery.source``: the system the request id belongs to.
EXTERNAL_SOURCE = "segmind"
_LOCAL_SCHEMES = ("", "file", "local")
_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- dataset names ----------------------------------------------------------------------------------------
def url_dataset(url: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of an input or output given by URL, or None when it is not one.

    http(s): ``scheme://host[:port]`` and the path, without userinfo, query or fragment (a
    presigned URL's signature would otherwise make every run a "new" dataset and leak into the
    lineage backend). ``data:``: see :func:`data_uri_dataset`.
    """
    if not isinstance(url, str):
        return None
    if url[:5].lower() == "data:":
        return data_uri_dataset(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}", parts.path or "/"


def data_uri_dataset(uri: str) -> tuple[str, str] | None:
    """``("data", "<media type>;sha256=<hex>")`` for a ``data:`` URI (None when it is not one).

    An inline image has no location to name, and the URI itself can be megabytes; the digest of
    its decoded bytes is short and stable, so two runs on the same image name the same dataset.
    """
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        return None
    params = header.split(";")
    media_type = params[0].strip().lower() or "text/plain"
    try:
        data = base64.b64decode(payload, validate=False) if "base64" in params[1:] else unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        data = payload.encode()
    return "data", f"{media_type};sha256={hashlib.sha256(data).hexdigest()}"


def storage_dataset(path: str) -> tuple[str, str, str]:
    """``(namespace, name, uri)`` of a saved file, from the path the hook returned.

    ``file:///data/v.mp4`` (or a plain path) is ``("file", "/data/v.mp4")``; ``s3://conn@bucket/k``
    is ``("s3://bucket", "k")``. The Airflow connection id in the URL is dropped: it says which
    credentials wrote the object, and the same object written with another connection is the same
    dataset. ``uri`` is the object's URL without it (``file:///data/v.mp4``, ``s3://bucket/k``).
    """
    parts = urlsplit(path) if "://" in path else None
    scheme = parts.scheme.lower() if parts else ""
    if parts is None or scheme in _LOCAL_SCHEMES:
        local = parts.path if parts else path
        return "file", local, "file://" + local
    bucket = parts.netloc.rpartition("@")[2]
    key = parts.path.lstrip("/")
    return f"{scheme}://{bucket}", key or "/", f"{scheme}://{bucket}/{key}"


def input_urls(body: Mapping[str, Any]) -> list[str]:
    """The request body's top-level values (or list items) that are http(s) URLs or ``data:`` URIs.

    Segmind models take their inputs as URL fields (``image_url``, ``image``, ``input_images``...);
    prompts and numbers are parameters, not datasets. Duplicates are reported once.
    """

    def candidates() -> Iterator[Any]:
        for value in body.values():
            if isinstance(value, (list, tuple)):
                yield from value
            else:
                yield value

    seen: list[str] = []
    for value in candidates():
        if isinstance(value, str) and url_dataset(value) is not None and value not in seen:
            seen.append(value)
    return seen


# --- the facets -------------------------------------------------------------------------------------------
def _facet_class() -> type:
    """``SegmindRunFacet``, built on first use (the base class comes from the optional provider).

    It is published as a module attribute (and reachable through the module ``__getattr__``), so
    pickle finds it by name in any process, e.g. a lineage backend's process pool.
    """
    existing = globals().get("SegmindRunFacet")
    if existing is not None:
        return existing  # type: ignore[no-any-return]
    import attrs
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attrs.define
    class SegmindRunFacet(RunFacet):  # type: ignore[misc]
        """What Segmind did for this task: model, request id, status, output and render metrics."""

        model: str
        requestId: str | None = None  # noqa: N815
        status: str | None = None
        outputUrl: str | None = None  # noqa: N815
        metrics: dict[str, Any] | None = None
        saved: dict[str, Any] | None = None

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA_URL

    SegmindRunFacet.__module__, SegmindRunFacet.__qualname__ = __name__, "SegmindRunFacet"
    globals()["SegmindRunFacet"] = SegmindRunFacet
    return SegmindRunFacet


def __getattr__(name: str) -> Any:
    if name == "SegmindRunFacet":
        return _facet_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _without_query(url: Any) -> Any:
    """An output URL without query or fragment (presigned download tokens stay out of lineage)."""
    if not isinstance(url, str) or url.startswith("data:"):
        return url
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def operator_lineage(
    *,
    model: str,
    body: Mapping[str, Any],
    result: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> OperatorLineage:
    """The lineage of one Segmind request: ``body`` sent to ``model``; ``result`` the operator returned.

    ``result`` is None before or without a result (the start event, a failure before completion):
    then only the inputs and, when a request was submitted, its id are reported.
    """
    from airflow.providers.common.compat.openlineage.facet import (
        ExternalQueryRunFacet,
        InputDataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    result = result or {}
    inputs = [InputDataset(namespace=ns, name=name) for ns, name in filter(None, map(url_dataset, input_urls(body)))]
    outputs = []
    saved = result.get("saved") if isinstance(result.get("saved"), Mapping) else None
    saved_facet = None
    if saved and isinstance(saved.get("path"), str):
        namespace, name, uri = storage_dataset(saved["path"])
        stats = OutputStatisticsOutputDatasetFacet(size=saved.get("bytes"), fileCount=1)
        outputs.append(OutputDataset(namespace=namespace, name=name, outputFacets={"outputStatistics": stats}))
        saved_facet = {"uri": uri, "bytes": saved.get("bytes"), "sha256": saved.get("sha256")}
    elif isinstance(result.get("output"), str) and (found := url_dataset(result["output"])) is not None:
        outputs.append(OutputDataset(namespace=found[0], name=found[1]))

    request_id = result.get("request_id") or request_id
    run_facets: dict[str, Any] = {}
    if request_id:
        run_facets["externalQuery"] = ExternalQueryRunFacet(externalQueryId=str(request_id), source=EXTERNAL_SOURCE)
    metrics = result.get("metrics")
    run_facets[FACET_NAME] = _facet_class()(
        model=model,
        requestId=str(request_id) if request_id else None,
        status=result.get("status") or ("SUBMITTED" if request_id else None),
        outputUrl=_without_query(result.get("output")),
        metrics=dict(metrics) if isinstance(metrics, Mapping) else None,
        saved=saved_facet,
    )
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)


class SegmindLineageMixin:
    """OpenLineage methods for the Segmind operators (see the module docstring).

    Expects ``model`` and ``request_body()`` (or ``payload``) on the operator, and reads the
    result dict the operator stored as ``_segmind_result`` and the id in ``_request_id``.
    """

    def _lineage_body(self) -> Mapping[str, Any]:
        """The rendered request body; the raw payload when it does not validate (a failed task)."""
        try:
            body = self.request_body()  # type: ignore[attr-defined]
        except Exception:
            body = getattr(self, "payload", None)
        return body if isinstance(body, Mapping) else {}

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        """At task start: the input image(s), before anything is submitted."""
        return operator_lineage(model=str(getattr(self, "model", "")), body=self._lineage_body())

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """At task end (also on failure): inputs, the saved output, the request and its metrics."""
        result = getattr(self, RESULT_ATTRIBUTE, None)
        return operator_lineage(
            model=str(getattr(self, "model", "")),
            body=self._lineage_body(),
            result=result if isinstance(result, Mapping) else None,
            request_id=getattr(self, "_request_id", None),
        )
