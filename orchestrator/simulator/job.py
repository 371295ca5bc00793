"""One simulated Krea job: its record, Krea's status words, and its JSON as Krea shows it.

The record keeps what Krea would know (status, timestamps, result) next to what only the
simulator exposes under ``/_sim/`` (the request, its hash, the price and the charge), so the two
renderings below come from the same facts.

Timestamps are integer epoch milliseconds for ``created_at`` (the list cursor compares them
exactly) and float epoch seconds for the rest (they come from the event heap).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from orchestrator.jobs import canonical_json
from orchestrator.simulator.clock import iso_ms, to_ms
from orchestrator.simulator.outcomes import ERROR_MESSAGES, Plan

STATUSES = (
    "backlogged",
    "queued",
    "scheduled",
    "processing",
    "sampling",
    "intermediate-complete",
    "completed",
    "failed",
    "cancelled",
)
TERMINAL = frozenset({"completed", "failed", "cancelled"})
#: Statuses DELETE may cancel; later ones answer 409 (see the package docstring).
CANCELLABLE = frozenset({"backlogged", "queued", "scheduled", "processing"})
#: The ``type`` of a job is its kind: ``video`` or ``image`` (UNCONFIRMED values; Krea's docs
#: show job-type names such as ``externalImage`` here). ``GET /jobs?types=`` filters on it.
JOB_TYPES = ("video", "image")


@dataclass(slots=True, eq=False)
class SimJob:
    """A job and everything the simulator knows about it."""

    job_id: str
    account: str
    model: str
    request: dict[str, Any]
    body_sha256: str
    created_ms: int
    price_micro: int
    plan: Plan
    webhook_url: str | None
    status: str = "backlogged"
    started_s: float | None = None  #: left the backlog
    finished_s: float | None = None  #: reached a terminal status
    charged_micro: int = 0
    error_code: str | None = None
    walk: tuple[tuple[float, str], ...] = ()  #: (offset from start, status) steps
    step: int = 0  #: index of the current step in ``walk``
    version: int = 0  #: bumped on every change; stale heap events carry an old one
    foreign: bool = False  #: created by the simulated other client (``foreign_jobs_per_s``)
    kind: str = "video"  #: ``video`` or ``image`` (the endpoint's ``Endpoint.kind``)
    media_ext: str = "mp4"  #: the result file's extension: mp4, png or jpg (``results``)
    #: Field path in the request (``start_image``, ``style_images[0].url``) -> the id of the
    #: simulator's job whose result URL it carried (see ``inputs``).
    inputs_from: dict[str, str] = field(default_factory=dict)

    @property
    def created_at(self) -> str:
        return iso_ms(self.created_ms)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def running(self) -> bool:
        """Started and not finished (holds one of the account's concurrency slots)."""
        return self.started_s is not None and self.finished_s is None

    @property
    def error(self) -> dict[str, str] | None:
        if self.error_code is None:
            return None
        return {"code": self.error_code, "message": ERROR_MESSAGES[self.error_code]}


def body_digest(model: str, body: dict[str, Any]) -> str:
    """sha256 of model and canonical body: equal for two submissions of the same request."""
    return hashlib.sha256(f"{model}\n{canonical_json(body)}".encode()).hexdigest()


def creation_json(job: SimJob) -> dict[str, Any]:
    """The POST answer: the pending job, exactly the spec's five fields plus ``type``."""
    return {
        "job_id": job.job_id,
        "status": job.status,
        "created_at": job.created_at,
        "completed_at": None,
        "result": None,
        "type": job.kind,
    }


def api_json(job: SimJob, urls: list[str] | None, pending_shape: str) -> dict[str, Any]:
    """The job as ``GET /jobs/{id}``, list items and webhooks show it.

    ``pending_shape`` "spec" omits ``completed_at`` and gives ``result: {}`` until the job ends
    (what the GET schema allows); "null" gives both as null (what Krea's examples show).
    """
    out: dict[str, Any] = {"job_id": job.job_id, "status": job.status, "created_at": job.created_at}
    if job.finished_s is not None:
        out["completed_at"] = iso_ms(to_ms(job.finished_s))
    elif pending_shape == "null":
        out["completed_at"] = None
    result: dict[str, Any] = {"urls": urls} if urls else {}
    error = job.error
    if error is not None:
        result["error"] = error
    out["result"] = None if not result and pending_shape == "null" and not job.terminal else result
    out["type"] = job.kind
    if error is not None:
        out["error"] = error
    return out


def drifted(body: dict[str, Any], words: dict[str, str], urls_shape: str) -> dict[str, Any]:
    """``body`` (a job's JSON) as a drifted contract shows it: renamed statuses, other urls shapes.

    ``words`` maps a status to the unknown word shown instead; ``urls_shape`` "objects" gives
    ``result.urls`` as ``[{"url": ...}]`` and "map" as ``{"video": ..., "video_2": ...}`` (or
    ``image``, ``image_2``, … for an image job).
    """
    word = words.get(body.get("status", ""))
    if word:
        body["status"] = word
    result = body.get("result")
    if not isinstance(result, dict) or not result.get("urls"):
        return body
    urls = result["urls"]
    if urls_shape == "objects":
        result["urls"] = [{"url": url} for url in urls]
    elif urls_shape == "map":
        kind = "image" if body.get("type") == "image" else "video"
        names = [kind, *(f"{kind}_{i}" for i in range(2, len(urls) + 1))]
        result["urls"] = dict(zip(names, urls, strict=True))
    return body


def reshaped_times(body: dict[str, Any], shape: str) -> dict[str, Any]:
    """``body`` with its ISO timestamps (``…:58.265Z``) written another valid way (``shape``)."""
    for name in ("created_at", "completed_at"):
        value = body.get(name)
        if isinstance(value, str) and value.endswith("Z") and "." in value:
            whole, millis = value[:-1].split(".")
            body[name] = {
                "seconds": f"{whole}Z",
                "offset": f"{whole}.{millis}+00:00",
                "micros": f"{whole}.{millis}000Z",
            }.get(shape, value)
    return body


def sim_json(job: SimJob) -> dict[str, Any]:
    """The job as ``GET /_sim/jobs`` shows it: ground truth for tests and benchmarks."""
    return {
        "job_id": job.job_id,
        "account": job.account,
        "model": job.model,
        "kind": job.kind,
        "request": job.request,
        "inputs_from": dict(job.inputs_from),
        "body_sha256": job.body_sha256,
        "status": job.status,
        "created_at": job.created_at,
        "started_at": _iso_or_none(job.started_s),
        "completed_at": _iso_or_none(job.finished_s),
        "price_micro": job.price_micro,
        "charged_micro": job.charged_micro,
        "webhook_url": job.webhook_url,
        "outcome": job.plan.outcome,
        "error_code": job.error_code,
        "foreign": job.foreign,
    }


def _iso_or_none(epoch_s: float | None) -> str | None:
    return None if epoch_s is None else iso_ms(to_ms(epoch_s))
