"""Result URLs of the simulator's own jobs sent back as media inputs of a new job.

Krea accepts its own result URLs as inputs (a still as a clip's ``start_image``, a clip as
``start_video``) and fetches them like any URL. The simulator does the same for every string of
a request body, at any depth, that is a URL of its own CDN naming a job's result file: when the
CDN would refuse it (bad or expired signature, no such file yet), the POST is refused with 400
``{error}`` naming the field, as Krea would fail to fetch it; otherwise the job records which
of the simulator's jobs each field came from (``SimJob.inputs_from``), so a test can check that
a request carried another job's result. Other URLs (uploaded assets, the outside world) are
taken as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from orchestrator.simulator.responses import Refusal, error
from orchestrator.simulator.results import parse_result_path, servable
from orchestrator.simulator.service import Service

_NOT_FOUND = "The file was not found."


def own_inputs(service: Service, body: dict[str, Any]) -> dict[str, str] | Refusal:
    """Field path -> job id for every own result URL in ``body``, or the 400 for the first
    one the CDN would not serve."""
    base = urlsplit(service.base_url)
    found: dict[str, str] = {}
    for where, text in strings(body):
        parts = urlsplit(text.strip())
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or not base.netloc:
            continue
        wanted = parse_result_path(parts.path)
        if wanted is None:
            continue
        query = parse_qs(parts.query)
        problem = service.url_problem(parts.path, _first(query, "expires"), _first(query, "sig"))
        if problem is None and not servable(service.lifecycle.jobs.get(wanted.job_id), wanted):
            problem = _NOT_FOUND
        if problem is not None:
            return error(400, f"Could not download the file given in {where}: {problem}")
        found[where] = wanted.job_id
    return found


def strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string inside ``value`` with its field path (``style_images[0].url``)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, f"{where}[{index}]")


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None
