"""The emulator's files on disk: public outputs and uploads (with their retention) and the render cache.

Outputs and uploads are served at public URLs like a CDN's (no key), so they must also go away
like the real ones: when the retention passes, the file is deleted and its URL answers 404. The
render cache is internal (never served) and stays, so a repeated input costs no second encode.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

#: Public kinds: ``outputs`` (job results) and ``files`` (uploads), served under ``/_emulator/<kind>/``.
PUBLIC_KINDS = ("outputs", "files")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}\.[a-z0-9]{1,8}$")


class PublicFiles:
    """The data directory, and when each public file expires (monotonic time)."""

    def __init__(self, data_dir: Path | None, retention_seconds: float) -> None:
        self.owned = data_dir is None
        self.root = Path(data_dir or tempfile.mkdtemp(prefix="segmind-emulator-"))
        for sub in ("renders", *PUBLIC_KINDS):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.retention_seconds = retention_seconds
        self._deadlines: dict[Path, float] = {}

    def output(self, name: str) -> Path:
        return self.root / "outputs" / name

    def upload(self, name: str) -> Path:
        return self.root / "files" / name

    def render(self, cache_key: str) -> Path:
        return self.root / "renders" / f"{cache_key}.mp4"

    def expire_at(self, path: Path, deadline: float) -> None:
        """Register a public file; it is deleted at ``deadline`` (monotonic)."""
        self._deadlines[path] = deadline

    def keep_for_retention(self, path: Path) -> None:
        """An upload: it lives ``retention_seconds`` from now."""
        self.expire_at(path, time.monotonic() + self.retention_seconds)

    def lookup(self, kind: str, name: str) -> Path | None:
        """The file behind a public URL, or ``None``: bad name, never existed, or expired (deleted now)."""
        if kind not in PUBLIC_KINDS or not _NAME_RE.match(name):
            return None
        path = self.root / kind / name
        deadline = self._deadlines.get(path)
        if deadline is not None and time.monotonic() >= deadline:
            self._delete(path)
            return None
        return path if path.is_file() else None

    def sweep(self) -> int:
        """Delete every public file past its deadline; returns how many went."""
        now = time.monotonic()
        due = [path for path, deadline in self._deadlines.items() if deadline <= now]
        for path in due:
            self._delete(path)
        return len(due)

    def adopt_existing(self) -> None:
        """Files left in a reused ``--data-dir`` expire by their age, so a restart does not keep them forever."""
        wall, mono = time.time(), time.monotonic()
        for kind in PUBLIC_KINDS:
            for path in (self.root / kind).iterdir():
                with contextlib.suppress(OSError):
                    age = wall - path.stat().st_mtime
                    self.expire_at(path, mono - age + self.retention_seconds)

    def remove_all(self) -> None:
        """At shutdown: a temporary data directory goes entirely; a given ``--data-dir`` stays."""
        if self.owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def _delete(self, path: Path) -> None:
        self._deadlines.pop(path, None)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def link_or_copy(src: Path, dest: Path) -> None:
    """Give a request its own output file without copying megabytes: a hard link to the cached render."""
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
