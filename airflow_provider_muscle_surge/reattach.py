"""Remembering a submitted request so a retry re-attaches to it instead of paying again.

A v2 submit is billed the moment it is accepted. If the worker then dies, or polling gives
up, Airflow retries the task, and a naive retry submits (and pays) again. We record the
request in Airflow 3.3's ``task_state_store`` right after the submit — it is scoped to this
dag, run, task and map index, and unlike XCom it survives retries — together with a
fingerprint of the exact request body. A later try re-attaches only when the fingerprint
matches: cleared with new parameters (new DAG-run conf, a changed template) means a new job.

Right before a submit, :func:`claim` writes a placeholder under the same key. The write goes
through the execution API, which refuses it when this try is no longer Airflow's live one (its
task instance was archived because the scheduler moved on to a new try, e.g. after an executor
event raced a deferral); a store *read* cannot tell that case from "nothing stored", so without the
write a stale process would submit, and pay, a second time.

Why not ``airflow.sdk.ResumableJobMixin`` (3.3), which also keeps an external id in
``task_state_store``: adopting it would remove about thirty lines here and lose three things this
provider promises. It resubmits when the previous job FAILED (a content block would be paid for
again with the same body); it stores only the id, so a retry with changed parameters would re-attach
to the old job (no body fingerprint); and it writes nothing before the submit, so a stale try that
Airflow already gave up on can still pay (its docstring names that window). It also drives only the
blocking path, while the deferrable path needs the same record. So the record stays here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

STATE_KEY = "segmind_request"


def fingerprint(model: str, body: dict[str, Any]) -> str:
    """Stable digest of what was sent: same model and same validated body, same fingerprint."""
    canonical = json.dumps({"model": model, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    status_url: str
    response_url: str
    model: str
    fingerprint: str
    submitted_at: float
    try_number: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, submission: Any, model: str, fingerprint: str, try_number: int | None) -> RequestRecord:
        """The record of a submit that was just accepted (the worker's and the trigger's alike)."""
        return cls(
            request_id=submission.request_id,
            status_url=submission.status_url,
            response_url=submission.response_url,
            model=model,
            fingerprint=fingerprint,
            submitted_at=time.time(),
            try_number=try_number,
        )

    @classmethod
    def from_dict(cls, data: Any) -> RequestRecord | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError:
            return None


def _store(context: Any) -> Any:
    store = context.get("task_state_store") if hasattr(context, "get") else None
    if store is None:
        log.warning("task_state_store is not available: a retry of this task cannot re-attach to its request")
    return store


def load(context: Any) -> RequestRecord | None:
    store = _store(context)
    return RequestRecord.from_dict(store.get(STATE_KEY)) if store is not None else None


def save(context: Any, record: RequestRecord) -> None:
    store = _store(context)
    if store is not None:
        store.set(STATE_KEY, record.to_dict())


def claim(context: Any, fingerprint: str, try_number: int | None) -> None:
    """Write-ahead before a submit: raises (and nothing is submitted) when this try is stale.

    The placeholder has no ``request_id``, so :func:`load` reads it as "nothing to re-attach to".
    """
    store = _store(context)
    if store is not None:
        placeholder = {"pending": True, "fingerprint": fingerprint, "try_number": try_number, "claimed_at": time.time()}
        store.set(STATE_KEY, placeholder)


# --- zero-worker mode: the same record, kept in XCom by the trigger ----------------------------------
# ``task_state_store`` cannot be reached from a trigger on Airflow 3.3.2 (the call never returns),
# while XCom can (``aget_one``/``aset``). A task started in the triggerer never runs a worker's
# start-of-try XCom purge, so the record survives Airflow retries and triggerer restarts. Same
# scope (dag, run, task, map index) and the same fingerprint rule as the record above.
XCOM_KEY = "segmind_request"


def _xcom_scope(ti: Any) -> dict[str, Any]:
    return {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}


async def aload(ti: Any) -> RequestRecord | None:
    """The request a previous try (or a previous triggerer) made for this task instance, if any."""
    from airflow.sdk.execution_time.xcom import XCom

    return RequestRecord.from_dict(await XCom.aget_one(key=XCOM_KEY, **_xcom_scope(ti)))


async def asave(ti: Any, record: RequestRecord) -> None:
    await apush(ti, XCOM_KEY, record.to_dict())


async def aclaim(ti: Any, fingerprint: str, try_number: int | None) -> None:
    """Write-ahead before a submit made in the triggerer; read back as "nothing to re-attach to"."""
    placeholder = {"pending": True, "fingerprint": fingerprint, "try_number": try_number, "claimed_at": time.time()}
    await apush(ti, XCOM_KEY, placeholder)


async def apush(ti: Any, key: str, value: Any) -> None:
    """Push an XCom of this task instance from the triggerer (the value JSON-encoded once)."""
    from airflow.sdk.execution_time.xcom import XCom

    await XCom.aset(key, value, **_xcom_scope(ti))
