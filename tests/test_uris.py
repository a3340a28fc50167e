"""The URI helpers: a local path as a storage URL, an API URL from base and path, a data URI's bytes.

The trap each one exists for is tested here: a folder with a space must stay that folder (not
``a%20b``) in the hook's download and the operator's output path alike.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath
from segmind_emulator.testing import EmulatorProcess

from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
from airflow_provider_muscle_surge.uris import file_url, image_data_uri_bytes, join_url, storage_path


def test_file_url_keeps_the_path_as_written(tmp_path: Path) -> None:
    assert file_url(tmp_path / "my videos" / "100%") == f"file://{tmp_path}/my videos/100%"


def test_file_url_of_a_relative_path_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert file_url("a b/clip.mp4") == f"file://{tmp_path}/a b/clip.mp4"


@pytest.mark.parametrize("as_given", [str, Path], ids=["str", "Path"])
def test_storage_path_of_a_local_path_with_a_space_names_that_folder(tmp_path: Path, as_given: type) -> None:
    target = storage_path(as_given(tmp_path / "a b" / "clip.mp4"))

    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"video")

    assert (tmp_path / "a b" / "clip.mp4").read_bytes() == b"video"
    assert not (tmp_path / "a%20b").exists()


def test_storage_path_takes_urls_and_object_storage_paths_as_they_are(tmp_path: Path) -> None:
    existing = ObjectStoragePath(f"file://{tmp_path}/v.mp4")
    assert storage_path(existing) is existing
    assert storage_path("s3://bucket/videos/v.mp4").protocol == "s3"
    assert storage_path(f"file://{tmp_path}/v.mp4").path == f"{tmp_path}/v.mp4"


def test_hook_download_to_a_local_path_with_a_space(segmind_conn: EmulatorProcess, tmp_path: Path) -> None:
    hook = SegmindHook()
    url = hook.upload(b"\x89PNG\r\n\x1a\n not really a png", content_type="image/png")
    destination = tmp_path / "my videos" / "clip 1.png"

    saved = hook.download(url, destination)

    assert destination.read_bytes() == b"\x89PNG\r\n\x1a\n not really a png"
    assert Path(saved.path.removeprefix("file://")) == destination
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my videos"]


@pytest.mark.parametrize(
    ("base", "path"),
    [("http://h:1", "/v2/x"), ("http://h:1/", "/v2/x"), ("http://h:1", "v2/x"), ("http://h:1//", "//v2/x")],
)
def test_join_url_puts_exactly_one_slash_between_base_and_path(base: str, path: str) -> None:
    assert join_url(base, path) == "http://h:1/v2/x"


def test_image_data_uri_bytes_decodes_strictly() -> None:
    data = b"\x89PNG image bytes"
    assert image_data_uri_bytes("data:image/png;base64," + base64.b64encode(data).decode()) == data
    assert image_data_uri_bytes("Data:Image/WebP;Base64,") == b""
    assert image_data_uri_bytes("https://example.com/a.png") is None
    assert image_data_uri_bytes("data:text/plain;base64,aGVsbG8=") is None
    for not_base64 in ("data:image/png;base64,AA AA", "data:image/png;base64,!!!!", "data:image/png;base64,é"):
        with pytest.raises(ValueError):
            image_data_uri_bytes(not_base64)
