"""Which URLs may receive the API key: ``urls.checked_url``, the one check every hook uses."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_muscle_surge.exceptions import InsecureConnection
from airflow_provider_muscle_surge.urls import Origin, checked_url, origin_of


@pytest.mark.parametrize(
    "host",
    [
        "https://api.segmind.com",
        "https://10.0.0.5:8443",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://[::1]:8080",
        "http://localhost:5000",
        "HTTP://LOCALHOST:5000",
        "https://proxy.example.com/segmind",
    ],
)
def test_https_anywhere_and_plain_http_on_loopback_are_allowed(host):
    origin, url = checked_url(host, "host")
    assert url.lower().startswith(str(origin))


@pytest.mark.parametrize(
    "host", ["http://api.segmind.com", "http://10.0.0.5:8080", "http://localhost.evil.example", "http://[2001:db8::1]"]
)
def test_plain_http_to_a_remote_host_is_refused_with_a_clear_message(host):
    with pytest.raises(InsecureConnection) as excinfo:
        checked_url(host, "host")
    message = str(excinfo.value)
    assert "plain http://" in message
    assert "loopback" in message
    assert isinstance(excinfo.value, AirflowFailException)


@pytest.mark.parametrize("host", ["ftp://api.segmind.com", "ws://127.0.0.1:8080", "api.segmind.com", "", None])
def test_other_schemes_are_refused(host):
    with pytest.raises(InsecureConnection):
        checked_url(host, "host")


@pytest.mark.parametrize(
    "url",
    [
        # urlsplit reads loopback here, urllib3 connects to 127.0.0.2 (the example).
        "http://127.0.0.2:8000\\@127.0.0.1:8000",
        "https://user:pass@api.segmind.com",
        "https://api.segmind.com@evil.example",
        "https://api.segmind.com\\.evil.example",
        "https://api.segmind.com/v2?x=1",
        "https://api.segmind.com/#frag",
        "https://api segmind.com",
        "https://api.segmind.com\t",
        "https://пример.рф",  # non-ASCII: the parsers disagree on the host's spelling
        "http://127.0.0.1:99999",
        "http://[::1",
        "https://api.segmind.com/../x",
    ],
)
def test_urls_the_parsers_may_read_differently_are_refused(url):
    with pytest.raises(InsecureConnection, match="refusing"):
        checked_url(url, "host")
    assert origin_of(url) is None


def test_the_accepted_url_is_rebuilt_from_the_agreed_parts():
    origin, url = checked_url("HTTPS://API.Segmind.com:443/", "host")
    assert origin == Origin("https", "api.segmind.com", 443)
    assert url == "https://api.segmind.com"
    assert checked_url("http://[::1]:8080/x/", "host")[1] == "http://[::1]:8080/x"


def test_origins_compare_scheme_host_and_port():
    assert origin_of("https://api.segmind.com/v2/requests/1/status") == origin_of("https://api.segmind.com")
    assert origin_of("http://127.0.0.1:1/x") != origin_of("http://127.0.0.1:2/x")
    assert origin_of("https://api.segmind.com") != origin_of("https://workflows-api.segmind.com")
