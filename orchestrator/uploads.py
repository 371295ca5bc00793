"""A request's local files, uploaded through ``POST /assets`` once each, replaced by their URLs.

Planning put ``asset:sha256:<digest>`` where a manifest named a local file (``local_files``);
here, just before the job's intent, each digest becomes the asset URL Krea gave for that
content. The ledger caches URLs by content hash, so a file used by a thousand jobs, or by a
rerun, is uploaded once; an upload is safe to repeat (it bills nothing), so a crash mid-way
costs at most one more upload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator import errors
from orchestrator.manifest.local_files import ASSET_PREFIX
from orchestrator.pipeline import Pipeline


async def with_assets(pipe: Pipeline, request: dict[str, Any]) -> dict[str, Any]:
    """``request`` with every local file replaced by its uploaded asset URL."""
    urls: dict[str, str] = {}
    for digest in _asset_refs(request):
        url = await pipe.ledger.asset_url(digest)
        if url is None:
            url = await _upload(pipe, digest)
        urls[ASSET_PREFIX + digest] = url
    return _replace(request, urls) if urls else request


async def _upload(pipe: Pipeline, digest: str) -> str:
    path = pipe.files.get(digest)
    if path is None:
        raise errors.ConfigError(
            f"the file with sha256 {digest[:12]}… is no longer in the manifest"
        )
    return await upload(pipe, digest, Path(path))


async def upload(pipe: Pipeline, digest: str, path: Path) -> str:
    """Upload the file at ``path`` (content sha256 ``digest``) and record its asset URL."""
    asset = await pipe.client.upload_asset(path)
    await pipe.ledger.save_asset(
        digest,
        asset.url,
        asset_id=asset.asset_id,
        size_bytes=asset.size_bytes,
        mime_type=asset.mime_type,
    )
    return asset.url


def _asset_refs(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value.removeprefix(ASSET_PREFIX)} if value.startswith(ASSET_PREFIX) else set()
    if isinstance(value, dict):
        return set().union(*(_asset_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_asset_refs(v) for v in value)) if value else set()
    return set()


def _replace(value: Any, urls: dict[str, str]) -> Any:
    if isinstance(value, str):
        return urls.get(value, value)
    if isinstance(value, dict):
        return {k: _replace(v, urls) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, urls) for v in value]
    return value
