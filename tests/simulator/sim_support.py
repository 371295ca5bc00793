"""Helpers shared by the simulator tests: a thin HTTP client, request bodies, schema checks.

The client is deliberately dumb (status + parsed JSON): the tests check the simulator's answers,
not our real client's interpretation of them.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from jsonschema import Draft202012Validator

from orchestrator.spec import Endpoint, generate_path, load_spec

TOKEN = "sim-test-token-alpha"
OTHER_TOKEN = "sim-test-token-bravo"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
#: Before the camelCase alias sunset (2026-06-19), so the default contract is the May spec.
SPRING = "2026-05-01T00:00:00Z"


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """Status + JSON over a real aiohttp session."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str = TOKEN) -> None:
        self.http = http
        self.base = base
        self.token = token

    async def create(
        self,
        model: str = "kling/kling-2.5",
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """POST to the model's generate path (``image/…`` models go to /generate/image/)."""
        body = {"prompt": "a red fox in fresh snow"} if body is None else body
        url = self.base + generate_path(model)
        async with self.http.post(
            url, json=body, headers={**auth(self.token), **(headers or {})}
        ) as r:
            return r.status, await _json(r)

    async def job(self, job_id: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.base}/jobs/{job_id}", headers=auth(self.token)) as r:
            return r.status, await _json(r)

    async def list(self, **params: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.base}/jobs", params=params, headers=auth(self.token)) as r:
            return r.status, await _json(r)

    async def cancel(self, job_id: str) -> tuple[int, Any]:
        async with self.http.delete(f"{self.base}/jobs/{job_id}", headers=auth(self.token)) as r:
            return r.status, await _json(r)

    async def created_id(self, model: str = "kling/kling-2.5", **body: Any) -> str:
        status, answer = await self.create(model, {"prompt": "a fox", **body} if body else None)
        assert status == 200, answer
        return str(answer["job_id"])


async def _json(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    try:
        return json.loads(text)
    except ValueError:
        return text


def minimal_body(endpoint: Endpoint) -> dict[str, Any]:
    """``prompt`` plus every other required field with a plausible value."""
    body: dict[str, Any] = {"prompt": "a lighthouse at dusk, slow dolly in"}
    values = {"width": 1280, "height": 720}
    url = "https://example.com/input." + ("png" if endpoint.kind == "image" else "mp4")
    for name in endpoint.required:
        if name == "prompt":
            continue
        schema = endpoint.request_schema["properties"][name]
        body[name] = values.get(name, _example(schema, url))
    return body


def _example(schema: dict[str, Any], url: str) -> Any:
    """A small valid value: the first choice of an enum, one item of an array, a URL string."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "number" or kind == "integer":
        return 1
    if kind == "boolean":
        return False
    if kind == "array":
        return [_example(schema["items"], url)]
    if kind == "object":
        required = schema.get("required", ())
        return {k: _example(v, url) for k, v in schema["properties"].items() if k in required}
    if "pattern" in schema:  # reference tags: ^[a-z][a-z0-9_]+$
        return "ref"
    return url


def check_schema(path: str, method: str, status: int, body: Any) -> None:
    """Assert ``body`` validates against the spec's schema for that response."""
    schema = load_spec().response_schema(path, method, status)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not problems, problems


def mp4_boxes(data: bytes) -> list[tuple[bytes, int]]:
    """Top-level (type, size) boxes; asserts that they tile ``data`` exactly."""
    boxes, position = [], 0
    while position < len(data):
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        if size == 1:
            size = struct.unpack(">Q", data[position + 8 : position + 16])[0]
        assert size >= 8, f"bad box size {size} at {position}"
        boxes.append((kind, size))
        position += size
    assert position == len(data), "boxes do not tile the file"
    return boxes


@dataclass
class Receiver:
    """A tiny webhook endpoint recording every delivery (the ``receiver`` fixture serves it)."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        async with self.arrived:
            self.received.append(payload)
            self.arrived.notify_all()
        return web.Response(status=204)

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.received) >= count), 5)
        return self.received
