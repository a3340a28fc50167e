"""Publish every new Muscle Surge video: scheduled on the Asset that the chain DAG updates.

Runs whenever ``example_muscle_surge_chain`` produces a video or a reviewer approves one in
``example_muscle_surge_marketing`` (the Asset ``muscle_surge_video`` gets an event whose extra holds
the video's path, sha256, request id and source image, and for a reviewed video who approved it). It
copies the video to the publish folder, checking the sha256 on the way, and writes a manifest
JSON next to it::

    <publish folder>/<request id>.mp4
    <publish folder>/<request id>.json   {"video", "sha256", "bytes", "request_id", "source_image", "approval", ...}

Publish folder: the Variable ``muscle_surge_publish``, else the environment variable
``MUSCLE_SURGE_PUBLISH``, else ``file://<MUSCLE_SURGE_OUTPUT or /tmp/muscle-surge>/published``;
any ``ObjectStoragePath`` URL works (``s3://bucket/site/videos`` ...). Triggered by hand, it
publishes the latest video of the Asset.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import Asset, dag, task

from airflow_provider_muscle_surge.uris import file_url

VIDEO_ASSET = Asset("muscle_surge_video")
_LOCAL_BASE = os.environ.get("MUSCLE_SURGE_OUTPUT", "/tmp/muscle-surge")
PUBLISH = os.environ.get("MUSCLE_SURGE_PUBLISH") or file_url(Path(_LOCAL_BASE) / "published")


@dag(
    dag_id="example_muscle_surge_publish",
    schedule=[VIDEO_ASSET],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["example", "segmind", "muscle-surge"],
    doc_md=__doc__,
)
def example_muscle_surge_publish():
    @task(inlets=[VIDEO_ASSET])
    def publish(*, triggering_asset_events=None, inlet_events=None) -> dict:
        """Copy the video (sha256-checked) to the publish folder and write its manifest."""
        import hashlib
        import json

        from airflow.sdk import ObjectStoragePath, Variable, timezone
        from airflow.sdk.exceptions import AirflowFailException

        events = list((triggering_asset_events or {}).get(VIDEO_ASSET, []))
        if not events:  # a manual run: the Asset's latest event
            latest = inlet_events[VIDEO_ASSET]
            events = [latest[-1]] if len(latest) else []
        if not events:
            raise AirflowFailException("no video to publish yet: run example_muscle_surge_chain first")
        event = events[-1]
        info = dict(event.extra or {})
        if not info.get("path") or not info.get("sha256"):
            raise AirflowFailException(f"asset event without a saved video: {info}")

        source = ObjectStoragePath(info["path"])
        folder = ObjectStoragePath(Variable.get("muscle_surge_publish", default=PUBLISH))
        folder.mkdir(parents=True, exist_ok=True)
        name = info.get("request_id") or source.stem
        target = folder / f"{name}{source.suffix or '.mp4'}"
        digest, size = hashlib.sha256(), 0
        with source.open("rb") as src, target.open("wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if digest.hexdigest() != info["sha256"]:
            target.unlink(missing_ok=True)
            raise AirflowFailException(
                f"{source} does not match the sha256 recorded when it was rendered: not published"
            )

        manifest = {
            "video": str(target),
            "sha256": info["sha256"],
            "bytes": size,
            "request_id": info.get("request_id"),
            "source_image": info.get("source_image"),
            "rendered_to": str(source),
            "output_url": info.get("output_url"),
            "approval": info.get("approval"),
            "asset_event_at": event.timestamp.isoformat() if getattr(event, "timestamp", None) else None,
            "published_at": timezone.utcnow().isoformat(),
        }
        manifest_path = folder / f"{name}.json"
        manifest_path.write_text(json.dumps(manifest, indent=2))
        print(f"Published {target} (sha256 {info['sha256'][:12]}), manifest {manifest_path}")
        return {**manifest, "manifest": str(manifest_path)}

    publish()


example_muscle_surge_publish()
