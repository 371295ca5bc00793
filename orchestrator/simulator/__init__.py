"""A local server that speaks Krea's generate API (video and image), unpleasant parts included.

It is a real aiohttp server on loopback: the client under test talks HTTP to it exactly as it
would to api.krea.ai, and tests read the ground truth (what was created, billed, faulted) from
the ``/_sim/`` routes or the ``RunningSimulator`` handle. It imports only ``orchestrator.spec``
and ``orchestrator.jobs`` (the contract and ``canonical_json``), never the client side, so it
cannot share a bug with the code it checks.

    async with running_simulator(concurrency=2, time_scale=0) as sim:
        ...  # POST to f"{sim.url}/generate/video/kling/kling-2.5", then sim.advance(120)

Image endpoints (``POST /generate/image/{provider}/{model}``, the spec's model
``image/{provider}/{model}``) go through the same admission, faults, slots, backlog, money,
webhooks and listing as video ones; only their length (``image_duration_s``) and their result
(a real PNG, or a baseline JPEG for ``output_format: "jpeg"``) differ.

Modules: ``options`` (every knob), ``clock`` (virtual time), ``accounts`` (per-token state),
``lifecycle`` (the job walk), ``outcomes`` (fates and durations), ``billing`` (prices),
``admission`` (POST checks), ``inputs`` (own result URLs sent as inputs), ``gate`` (auth,
faults, counting), ``app``/``cdn``/``control`` (routes), ``results`` (result paths), ``media``
(MP4 bytes), ``images`` (PNG/JPEG bytes), ``webhooks``, ``assets``, ``counters``, ``stats``,
``runner``.
The ``orchestrator simulate`` command is ``orchestrator.cli.simulate``. The names below load on
first use, so reading ``options`` (the CLI builds its flags from them) costs no aiohttp.

Choices where Krea's behaviour is UNCONFIRMED (see shared/krea-api.md); each is one option away
from the other reading where that matters:

* **429** means "concurrency *and* backlog are full": jobs beyond ``concurrency`` are accepted
  as ``backlogged`` until ``concurrency + backlog`` unfinished jobs exist. The optional request
  rate limit (``rate_limit_rps``) also answers 429, with a different message. No job is ever
  created by a 429.
* **Retry-After** is absent unless ``retry_after_s`` is set; its value is in *simulated* seconds
  (rounded up), or an HTTP-date / garbage with ``retry_after_form``.
* **402**: with ``reserve_in_flight`` (default) a POST is refused when the balance minus the
  prices of the account's unfinished jobs is below the new job's price; otherwise only when the
  balance itself is below the price. Money is taken only when a job completes; jobs in flight
  always finish, so a balance can end slightly negative in the non-reserving mode. The balance
  is ``balance_usd`` minus the bill, so changing ``balance_usd`` live acts as a top-up.
* **DELETE /jobs/{id}** cancels ``backlogged``, ``queued``, ``scheduled`` and ``processing``
  jobs (200 with the cancelled job; never billed). Krea documents cancelling only for queued and
  processing; from ``sampling`` on, and for finished jobs, the simulator answers 409
  ``{error}`` and changes nothing. Cancelled jobs stay visible in GET and in the list.
* **Timestamps** are ISO-8601 UTC with milliseconds and ``Z``, from the simulated clock;
  ``created_at`` is strictly increasing per account (1 ms apart at least) so the list cursor
  ("created before T") can never skip or repeat a job.
* **type** is the job's kind, ``"video"`` or ``"image"`` (Krea's docs show names such as
  ``externalImage`` for image jobs); ``GET /jobs?types=`` filters on it.
* **Unfinished jobs in GET**: the GET schema types ``completed_at`` as a string and ``result`` as
  an object, while Krea's examples show nulls. Default (``pending_shape="spec"``): no
  ``completed_at`` and ``result: {}`` until the job ends; ``"null"`` gives both as null. The POST
  answer always has both null, as its schema requires.
* **Failures** carry ``error: {code, message}`` at the top level *and* in ``result.error``;
  codes ``moderation``, ``provider_error``, ``timeout``, ``system_cancelled``.
* **Previews**: ``intermediate-complete`` jobs show the preview URL in ``result.urls``.
* **Webhooks**: one POST of the GET-shaped job per terminal status, no retries, no signature.
* **Validation**: 400 ``{error}`` by default; ``validation_status=422`` answers
  ``{error, detail: [{loc: ["body", field], msg}]}``. camelCase aliases work only until their
  sunset date on the simulated clock (``start_time`` sets it).
* **Media URLs** are public (no token) and never expire unless ``url_ttl_s`` is set.
* **Own result URLs as inputs**: a string anywhere in a POST body that is one of this
  simulator's result URLs must be one its CDN serves now (valid signature, unexpired, file
  there), else 400 ``{error}`` naming the field; the job records the jobs it came from in
  ``inputs_from`` (``/_sim/jobs``). Whether Krea checks this at POST time or fails the job
  later is UNCONFIRMED; the simulator refuses at POST time.
* **Workspace tokens**: each token is its own account unless ``shared_tokens`` groups it with
  others; a group shares jobs (GET and the list), concurrency slots, backlog, request rate and
  money, like tokens of one Krea workspace may.
* **Other clients**: ``foreign_jobs_per_s`` adds another user to every account the API has seen.
  Its jobs arrive as a seeded Poisson process on the simulated clock (so at any ``time_scale``,
  and on ``advance``), use the spec's cheapest request, take slots, appear in ``GET /jobs`` and
  are billed like any job; when a POST would be refused (429/402) the job is simply not created.
  Introspection marks them ``"foreign": true``; ``jobs_created`` and ``bodies`` count only jobs
  created through the API, ``foreign_jobs``/``foreign_refused`` the other client's.

The ``/_sim/`` routes exist for tests and benchmarks only; they have no auth and are never
faulted or counted.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.simulator.images import image_bytes_for
    from orchestrator.simulator.media import media_bytes_for, media_file, media_sha256_for
    from orchestrator.simulator.options import SimulatorOptions
    from orchestrator.simulator.runner import RunningSimulator, running_simulator, serve

#: Where each public name lives; imported on first use.
_HOMES = {
    "image_bytes_for": "orchestrator.simulator.images",
    "media_bytes_for": "orchestrator.simulator.media",
    "media_file": "orchestrator.simulator.media",
    "media_sha256_for": "orchestrator.simulator.media",
    "SimulatorOptions": "orchestrator.simulator.options",
    "RunningSimulator": "orchestrator.simulator.runner",
    "running_simulator": "orchestrator.simulator.runner",
    "serve": "orchestrator.simulator.runner",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """A public name, imported from its home on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'orchestrator.simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "RunningSimulator",
    "SimulatorOptions",
    "image_bytes_for",
    "media_bytes_for",
    "media_file",
    "media_sha256_for",
    "running_simulator",
    "serve",
]
