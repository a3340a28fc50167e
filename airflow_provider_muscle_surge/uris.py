"""URIs the provider builds or reads: a local path as a ``file://`` URL, an API URL from a base and
a path, and the bytes inside a ``data:image/...;base64,`` URI.

The first two were written out by hand two or three times each, and the third is what any
model's image check needs, not only muscle-surge's. Each has a trap: ``Path.as_uri()``
percent-encodes, but ``ObjectStoragePath`` takes a URL's path literally, so the hook saved into
``a b/`` as a folder named ``a%20b``; a base URL with a trailing "/" doubles the slash of the path
after it; ``b64decode`` without ``validate=True`` quietly skips characters that are not base64.
One helper each, here, so the trap is avoided once.

Not to be confused with :mod:`airflow_provider_muscle_surge.urls`, which decides which URLs may
receive the API key. This module imports only the standard library (``ObjectStoragePath`` inside
the function that returns one): the operators import it while a DAG file is parsed.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: The form of an image given inline: the API takes it wherever it takes an image URL.
_IMAGE_DATA_URI_RE = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)


def file_url(path: str | os.PathLike[str]) -> str:
    """``file://`` and the absolute ``path``, exactly as written (not percent-encoded).

    ``ObjectStoragePath`` reads the path of a ``file://`` URL literally, so the ``as_uri()`` form
    (``file:///tmp/a%20b``) names another folder than ``/tmp/a b``.
    """
    return "file://" + str(Path(path).absolute())


def storage_path(location: str | os.PathLike[str] | ObjectStoragePath) -> ObjectStoragePath:
    """``location`` as an ``ObjectStoragePath``: a URL (``s3://``, ``file://`` ...) as it is, a local
    path (relative ones against the current folder) as its :func:`file_url`."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(location, ObjectStoragePath):
        return location
    text = os.fspath(location)
    return ObjectStoragePath(text if "://" in text else file_url(text))


def join_url(base_url: str, path: str) -> str:
    """``path`` on ``base_url`` with exactly one "/" between them, whichever side brought one."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def image_data_uri_bytes(value: str) -> bytes | None:
    """The bytes inside a ``data:image/<type>;base64,`` URI, or None when ``value`` is not one.

    Raises ``ValueError`` when the part after the comma is not strict base64 (whitespace,
    characters outside the alphabet and non-ASCII text included): a server that reads it strictly would refuse it,
    or worse, read another image than the one the lenient decoder saw.
    """
    if not _IMAGE_DATA_URI_RE.match(value):
        return None
    # Bad base64 raises binascii.Error and non-ASCII text a plain ValueError: both are ValueErrors.
    return base64.b64decode(value.split(",", 1)[1], validate=True)
