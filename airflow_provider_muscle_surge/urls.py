"""Which URLs may receive the API key: one check, shared by every place that sends it.

Why three parsers: the check must decide about the URL the HTTP client will really connect to.
``requests`` parses with urllib3, aiohttp with yarl, and the standard library with ``urlsplit``;
they disagree on hostile input (``http://127.0.0.2:8000\\@127.0.0.1:8000`` is loopback to one and
another host to the next). So a URL is accepted only when all three agree on scheme, host and
port, it carries no userinfo, backslash, whitespace, query or fragment, and its host is a plain
ASCII name or IP literal. The accepted URL is rebuilt from those agreed parts, and the clients
are only ever handed rebuilt URLs.

This module does no I/O. It imports urllib3 and yarl at module level, which the hooks import anyway,
so nothing is imported on a triggerer's event loop at a hook's first connection read; DAG files
never reach it (only ``hooks/settings.py`` imports it).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3.util
import yarl

from airflow_provider_muscle_surge.exceptions import InsecureConnection

#: Loopback names that never leave the machine: the only hosts plain http:// may carry the key to.
_LOOPBACK_NAMES = ("localhost",)
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_PATH_RE = re.compile(r"^(/(?!\.{1,2}(/|$))[A-Za-z0-9._~-]+)*/?$")
_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f\\@?#]")


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port: what decides where a request (and its key) goes."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(hostname: str) -> bool:
    if hostname.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def checked_url(url: object, what: str) -> tuple[Origin, str]:
    """``(origin, canonical URL)`` of a URL that may receive the key; :class:`InsecureConnection` otherwise.

    ``what`` names the setting in the error ("connection host", "upload_url", ...).
    """

    def refuse(reason: str) -> InsecureConnection:
        return InsecureConnection(f"refusing {what} {url!r}: {reason}. The API key goes only to a checked https:// URL")

    if not isinstance(url, str) or "://" not in url:
        raise refuse("not an absolute http(s) URL")
    if _FORBIDDEN_RE.search(url.split("://", 1)[1]):
        raise refuse("it contains userinfo ('@'), a backslash, whitespace, a query or a fragment")
    try:
        split = urlsplit(url)
        u3 = urllib3.util.parse_url(url)
        yl = yarl.URL(url)
        views = {
            "urlsplit": (split.scheme.lower(), (split.hostname or "").lower(), split.port),
            "urllib3": ((u3.scheme or "").lower(), (u3.host or "").lower().strip("[]"), u3.port),
            "yarl": ((yl.scheme or "").lower(), (yl.raw_host or "").lower().strip("[]"), yl.explicit_port),
        }
    except (ValueError, TypeError, urllib3.exceptions.LocationParseError) as err:
        raise refuse(f"it does not parse ({type(err).__name__})") from None
    if len(set(views.values())) != 1:
        raise refuse(f"URL parsers disagree about where it points ({views})")
    scheme, host, port = views["urlsplit"]
    if scheme not in ("http", "https"):
        raise refuse("the scheme must be https:// (or http:// for a loopback emulator)")
    if not host or not (_HOSTNAME_RE.match(host) or _is_ip(host)):
        raise refuse("the host must be a plain ASCII host name or an IP address")
    if not _PATH_RE.match(split.path):
        raise refuse("the path may only hold plain segments")
    if scheme == "http" and not is_loopback(host):
        raise InsecureConnection(
            f"refusing to send the API key over plain http:// to {host!r} ({what}): use https://, "
            "or http:// only for a loopback emulator (127.0.0.1, ::1, localhost)"
        )
    origin = Origin(scheme, host, port or (443 if scheme == "https" else 80))
    return origin, f"{origin}{split.path.rstrip('/')}"


def origin_of(url: str) -> Origin | None:
    """The origin of any URL, or ``None`` when it does not parse cleanly (never raises)."""
    try:
        return checked_url(url, "URL")[0]
    except InsecureConnection:
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
