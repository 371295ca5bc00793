"""A chained job's inputs made URLs just before its POST: the result URL, a fresh one, the file.

A job that takes another job's result holds ``{"from": <key>}`` markers (chains.py). The ledger
makes it pending only once each of those jobs has a result, so here each marker becomes, in the
order Krea is most likely to take it:

1. the result URL the ledger recorded for that job (Krea accepts its own result URLs);
2. if Krea refused the POST with an error naming that field (the URL expired): a fresh URL from
   ``GET /jobs/{id}``, once (straight to 3 when Krea no longer has that job);
3. if that is refused too: the job's verified file on disk, uploaded through ``POST /assets``
   and cached by its sha256 like any local file (uploads.py), so one still feeding ten shots is
   uploaded once.

A refusal after the last step rejects the job as any 400 does. The step reached is kept per job
for this run only: a rerun starts again from the recorded URL, which costs at most one refused
POST (free: a 400 creates no job).
"""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator import errors
from orchestrator.chains import field_path, markers, replaced
from orchestrator.clock import now_utc
from orchestrator.jobs import JobRecord, JobState, canonical_json
from orchestrator.pipeline import Pipeline
from orchestrator.transfer import inside, verified_on_disk
from orchestrator.uploads import upload

RECORDED, FRESH, UPLOADED = 0, 1, 2


class InputUrls:
    """How each chained job of one run sends its inputs, and the next way after a refusal."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self._step: dict[str, int] = {}  #: job key -> the way its inputs go now (0..2)
        self._sent: dict[str, str] = {}  #: job key -> its inputs as resolved for its POST
        self._counted: dict[str, JobState] = {}  #: job key -> waiting, see counted_as
        self.started = now_utc()  #: after the progress counted the jobs by state

    def counted_as(self, job: JobRecord) -> JobState:
        """The state this run's progress counted ``job`` in when it began (known once the job
        was resolved): waiting for a job the ledger made pending since, which the progress
        was never told of (a trigger did it); pending for any other."""
        return self._counted.pop(job.key, JobState.PENDING)

    async def resolved(self, job: JobRecord) -> dict[str, Any]:
        """``job``'s request with each marker replaced by a URL of that input's result."""
        found = list(markers(job.request))
        if not found:
            return job.request
        promoted = await self.pipe.ledger.promoted_at(job.key)
        if promoted is not None and promoted > self.started:
            self._counted[job.key] = JobState.WAITING
        request, sent = job.request, {}
        for trail, key in found:
            sent[field_path(trail)] = url = await self._url(job, key)
            request = replaced(request, trail, url)
        self._sent[job.key] = canonical_json(sent)
        return request

    def intent_fields(self, job: JobRecord) -> dict[str, str]:
        """What the intent records of ``job``'s inputs: the URL each went as, by field."""
        sent = self._sent.pop(job.key, None)
        return {} if sent is None else {"inputs_sent": sent}

    def refused(self, job: JobRecord, exc: errors.OrchestratorError) -> bool:
        """After Krea refused ``job``'s POST: True when the refusal names a field holding an
        input and a next way to send the inputs remains (the job is then sent again)."""
        if not isinstance(exc, errors.Rejected) or isinstance(exc, errors.ModelRetired):
            return False
        fields = {field_path(trail[:1]) for trail, _ in markers(job.request)}
        if not any(name in exc.message for name in fields):
            return False
        step = self._step.get(job.key, RECORDED)
        if step >= UPLOADED:
            return False
        self._step[job.key] = step + 1
        return True

    async def _url(self, job: JobRecord, key: str) -> str:
        # the input's newest take with a result: a reroll made the frame again (ledger/takes.py)
        source = await self.pipe.ledger.job(await self.pipe.ledger.newest_result(key))
        if source is None:
            raise errors.OrchestratorError(f"{job.entry_id}: its input job is not in the ledger")
        step = self._step.get(job.key, RECORDED)
        if step == RECORDED and source.result_url:
            return source.result_url
        if step <= FRESH:
            try:
                remote = await self.pipe.client.get_job(source.remote_id or "")
            except errors.NotFound:  # Krea no longer has it: its file is the one way left
                self._step[job.key] = UPLOADED
            else:
                if remote.urls:
                    return remote.urls[0]
        return await self._uploaded(job, source)

    async def _uploaded(self, job: JobRecord, source: JobRecord) -> str:
        """The input's verified file, uploaded once (by sha256)."""
        if not source.sha256 or not source.output_path:
            message = f"no result URL of {source.entry_id} was taken and its file is not saved"
            raise errors.OrchestratorError(f"{job.entry_id}: {message}")
        cached = await self.pipe.ledger.asset_url(source.sha256)
        if cached is not None:
            return cached
        path = inside(self.pipe.out_dir, source.output_path)
        full = await asyncio.to_thread(
            verified_on_disk, path, source.bytes, source.sha256, full=True
        )
        if not full:
            message = f"the file of {source.entry_id} ({source.output_path}) changed or is gone"
            raise errors.OrchestratorError(f"{job.entry_id}: {message}; rerun to fetch it again")
        return await upload(self.pipe, source.sha256, path)
