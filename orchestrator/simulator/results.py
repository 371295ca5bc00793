"""Where a job's result file lives on the CDN, and whether the CDN would serve it now.

One place decides both directions, so the URLs a job shows, the files the CDN serves and the
check of result URLs sent back as inputs (``inputs``) can never disagree:

* video jobs: ``/videos/{job_id}.mp4``, previews ``/previews/{job_id}.mp4``;
* image jobs: ``/images/{job_id}.png`` (``.jpg`` when the request asked for
  ``output_format: "jpeg"``), previews ``/previews/{job_id}.png`` (or ``.jpg``).

A final file exists once the job has completed; a preview from the moment the job shows
``intermediate-complete`` (and, as before, once it has completed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.simulator.job import SimJob

_PATH = re.compile(r"^/(videos|images|previews)/([^/]+)\.(mp4|png|jpg)$")


@dataclass(frozen=True)
class ResultFile:
    """A CDN path taken apart: which job, final file or preview, which extension."""

    job_id: str
    preview: bool
    ext: str  #: ``mp4``, ``png`` or ``jpg``


def extension(kind: str, body: Mapping[str, Any]) -> str:
    """The file extension of a job's result from its kind and (alias-translated) request:
    ``mp4`` for video, ``png`` for images unless ``output_format`` asks for ``jpeg``."""
    if kind != "image":
        return "mp4"
    return "jpg" if body.get("output_format") == "jpeg" else "png"


def result_path(job: SimJob, preview: bool) -> str:
    """The CDN path of a job's final file or preview."""
    ext = job.media_ext
    folder = "previews" if preview else ("videos" if ext == "mp4" else "images")
    return f"/{folder}/{job.job_id}.{ext}"


def parse_result_path(path: str) -> ResultFile | None:
    """The job file a CDN path names, or None when it names none (an asset, anything else)."""
    match = _PATH.match(path)
    if match is None:
        return None
    folder, job_id, ext = match.groups()
    if (folder == "videos") != (ext == "mp4") and folder != "previews":
        return None
    return ResultFile(job_id=job_id, preview=folder == "previews", ext=ext)


def servable(job: SimJob | None, wanted: ResultFile) -> bool:
    """Whether the CDN serves ``wanted`` of ``job`` now (the job exists, the file is its own)."""
    if job is None or job.job_id != wanted.job_id or job.media_ext != wanted.ext:
        return False
    if job.status == "completed":
        return True
    return wanted.preview and job.plan.intermediate and job.status == "intermediate-complete"
