"""Admission of ``POST /generate/{video,image}/{provider}/{model}``: the checks, in Krea's order.

Both kinds of endpoint are admitted the same way; ``model`` is the spec's name of the endpoint
(``kling/kling-2.5``, ``image/google/nano-banana-pro``) and messages name it by its path under
``/generate/`` (``video/kling/kling-2.5``, ``image/google/nano-banana-pro``).
Authentication and the request-rate limit run before this (``gate``). Then, first failure wins:

1. unknown model → 404 ``{error}``; a model listed in ``retired_models`` (by the same name) →
   410 with Krea's ``model_unavailable`` body;
2. the body is not a JSON object → 400;
3. validation against the endpoint's schema (``orchestrator.spec.request_problems``). camelCase
   aliases are translated only while the *simulated* date is on or before the endpoint's
   ``alias_sunset``; afterwards they are plain unknown keys. Refused with 400 ``{error}`` or,
   in the 422 mode, ``{error, detail: [{loc: ["body", field], msg}]}``; the text names every
   offending field. A malformed ``X-Webhook-URL`` is refused the same way;
3b. result URLs of the simulator's own jobs among the inputs must be ones its CDN serves now,
   else 400 ``{error}`` naming the field (``inputs``);
4. capacity: unfinished jobs (running + backlogged) ≥ concurrency + backlog → 429;
5. money → 402 (``reserve_in_flight``: balance minus unfinished jobs' prices < price;
   otherwise balance < price);
6. the job is created (backlogged or queued).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from orchestrator.simulator.billing import request_price_micro
from orchestrator.simulator.clock import date_of, to_ms
from orchestrator.simulator.inputs import own_inputs
from orchestrator.simulator.job import SimJob, body_digest
from orchestrator.simulator.responses import CONCURRENCY_MESSAGE, Refusal, error, too_many, usd
from orchestrator.simulator.results import extension
from orchestrator.simulator.service import Service
from orchestrator.spec import (
    GENERATE_PREFIX,
    Endpoint,
    Problem,
    generate_path,
    load_spec,
    request_problems,
)

MIGRATION_URL = "https://docs.krea.ai/developers/deprecations"


def admit(
    service: Service, account: str, model: str, raw: bytes, webhook_url: str | None
) -> SimJob | Refusal:
    """Create a job for a generate POST, or say why not."""
    endpoint = load_spec().endpoint(model)
    found = _model_check(service, model, endpoint)
    if isinstance(found, Refusal):
        return found
    body = _json_object(raw)
    if body is None:
        return error(400, "The request body must be a JSON object.")
    problems = _webhook_problems(webhook_url)
    translated = _translate_aliases(found, body, date_of(service.clock.now()))
    problems += request_problems(found.model, translated)
    if problems:
        return _invalid(problems, service.options.validation_status)
    inputs_from = own_inputs(service, translated)
    if isinstance(inputs_from, Refusal):
        return inputs_from
    price = request_price_micro(found, translated, service.options.unpriced_cu)
    refusal = _limits(service, account, price)
    if refusal is not None:
        return refusal
    return _create(service, account, found, (body, translated), price, webhook_url, inputs_from)


def shown(model: str) -> str:
    """A model as Krea's messages name it: its path under /generate/ (``video/kling/kling-2.5``)."""
    return generate_path(model).removeprefix(GENERATE_PREFIX)


def _model_check(service: Service, model: str, endpoint: Endpoint | None) -> Endpoint | Refusal:
    retired = service.options.retired
    if model in retired:
        return _gone(model, retired[model], service.started_date)
    if endpoint is None:
        return error(404, f"Model not found: {shown(model)}")
    return endpoint


def _gone(model: str, replacement: str, sunset_date: str) -> Refusal:
    body: dict[str, Any] = {
        "error": "model_unavailable",
        "reason": "deprecated",
        "message": f"The model {shown(model)} was retired on {sunset_date}.",
        "sunset_date": sunset_date,
    }
    if replacement:
        body["replacement"] = shown(replacement)
        body["message"] += f" Use {shown(replacement)} instead."
    body["migration_url"] = f"{MIGRATION_URL}#{model.replace('/', '-')}"
    return Refusal(410, body)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _webhook_problems(url: str | None) -> list[Problem]:
    if url is None:
        return []
    parts = urlsplit(url.strip())
    if parts.scheme in ("http", "https") and parts.hostname:
        return []
    return [Problem("X-Webhook-URL", "must be an absolute http(s) URL")]


def _translate_aliases(endpoint: Endpoint, body: dict[str, Any], today: str) -> dict[str, Any]:
    """camelCase aliases renamed while they are still accepted; unchanged after the sunset."""
    if endpoint.alias_sunset is None or today > endpoint.alias_sunset:
        return body
    translated = dict(body)
    for alias, target in endpoint.aliases.items():
        if alias in translated:
            value = translated.pop(alias)
            translated.setdefault(target, value)
    return translated


def _invalid(problems: list[Problem], status: int) -> Refusal:
    text = "; ".join(str(p) for p in problems)
    if status == 400:
        return error(400, f"Invalid request body: {text}")
    unknown = [p.field for p in problems if p.field and p.message.startswith("unknown field")]
    title = f"Unrecognized keys: {', '.join(unknown)}" if unknown else "Invalid request body"
    detail = [
        {"loc": ["body", p.field] if p.field else ["body"], "msg": p.message} for p in problems
    ]
    return Refusal(422, {"error": f"{title}: {text}", "detail": detail})


def _limits(service: Service, account_id: str, price: int) -> Refusal | None:
    options = service.options
    account = service.accounts.get(account_id)
    if account.unfinished >= options.concurrency + options.backlog:
        return too_many(options, service.clock.now(), CONCURRENCY_MESSAGE)
    available = account.available_micro(options.balance_micro, options.reserve_in_flight)
    if available < price:
        message = f"Insufficient balance: this job costs {usd(price)}, available {usd(available)}."
        return error(402, message)
    return None


def _create(
    service: Service,
    account_id: str,
    endpoint: Endpoint,
    bodies: tuple[dict[str, Any], dict[str, Any]],
    price: int,
    webhook_url: str | None,
    inputs_from: dict[str, str],
) -> SimJob:
    """The job: ``bodies`` is (as received, with aliases translated)."""
    body, translated = bodies
    now = service.clock.now()
    account = service.accounts.get(account_id)
    options = service.options
    fixed_s = options.image_duration_s if endpoint.kind == "image" else options.duration_s
    plan = service.planner.plan(endpoint, translated, service.outcome_rates(), fixed_s)
    digest = body_digest(endpoint.model, body)
    job = SimJob(
        job_id=str(uuid.uuid4()),
        account=account_id,
        model=endpoint.model,
        request=body,
        body_sha256=digest,
        created_ms=account.next_created_ms(to_ms(now)),
        price_micro=price,
        plan=plan,
        webhook_url=webhook_url.strip() if webhook_url else None,
        kind=endpoint.kind,
        media_ext=extension(endpoint.kind, translated),
        inputs_from=inputs_from,
    )
    service.lifecycle.submit(job, now)
    service.counters.jobs_created += 1
    service.counters.bodies[digest] += 1
    return job
