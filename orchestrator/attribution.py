"""Which unclaimed job on the account a lost POST created, by time alone, never by guess (pure).

Krea's job list has no client data, only ``created_at`` in Krea's clock. A POST sent at local
time ``sent`` and answered (or given up on) at ``answered`` created its job, if any, inside a
window of Krea's clock:

* **below**: after its *floor* (the newest job known when its intent was written), and after
  ``sent`` moved into Krea's clock by the lowest offset the run's acknowledged POSTs allow;
* **above** (*tight*): before ``answered`` moved by the highest offset. A POST Krea answered (a
  5xx, say) ends there. One that got no answer (a dropped connection, a timeout, a run killed
  while sending) most likely made its job within the longest answer time seen after its body
  was *written* to the socket, its tight bound, but may have made it later, up to when it was
  given up on plus a grace (*late*). The tight bound counts from ``written`` when it is
  known, not from ``sent``: ``sent`` is taken before the POST's registration and intent are
  on disk, so the request may leave long after it, and a bound counted from it can end before
  the POST's own job, leaving another client's job alone in the tight window (adopted) and
  ours in the late one (taken for another client's). Without a written time (a killed run's
  mark, lost with it) the bound counts from ``sent``: such a POST is *unsure* anyway, and its
  lone job is a doubt whenever another client has been seen (``attribute``'s
  ``others_active``).

:class:`ClockBounds` learns the offset: an acknowledged POST's ``created_at`` lies between its
send and answer times, so each one bounds ``created_at - scale * local time`` from both sides.
What it learnt is kept in the account registry, so a run restarted after a crash starts with it.
Every bound is widened by a margin for clock drift and timing error; without any acknowledged
POST there is no offset and only the floor bounds a window (as wide as it must be, never less).

:func:`attribute` matches a job to a POST only when no other POST could own it and that POST
could own no other job, first inside the tight windows, then the late ones. Jobs that fall in
some POST's window but cannot be matched are *unattributable*: the POSTs that could own them
are resent and the jobs reported as possible duplicates (never cancelled: they may be another
client's). A job in no window at all is another client's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

#: Allowed on every bound: API seconds for drift between Krea's clock and ours since the
#: samples, plus real seconds of local timing error (times ``scale`` in API seconds).
MARGIN_S = 0.05
LOCAL_ERROR_S = 0.001
SAMPLES = 200  #: acknowledged POSTs the offset is learnt from (the newest)


@dataclass(frozen=True)
class Window:
    """Where in Krea's clock a POST's job can have been created."""

    low: datetime | None  #: None: no lower bound
    tight: datetime | None  #: None: no upper bound
    late: datetime | None  #: the tight bound plus the grace when no answer came

    def holds(self, moment: datetime, *, late: bool) -> bool:
        high = self.late if late else self.tight
        return (self.low is None or moment >= self.low) and (high is None or moment <= high)


@dataclass(frozen=True)
class Attempt:
    """A POST whose job is unknown: ``owner`` names it (a key of ours, or another run's)."""

    owner: str
    window: Window
    ours: bool = True
    #: its run died with it on the wire: it may never have been sent, so a lone job in its
    #: window proves nothing while other clients' jobs are near (see :func:`attribute`)
    unsure_sent: bool = False


@dataclass(frozen=True)
class Candidate:
    """A remote job no run claims."""

    remote_id: str
    created_at: datetime
    status: str
    created_text: str


@dataclass
class Attribution:
    """The verdict of :func:`attribute`."""

    matched: dict[str, Candidate] = field(default_factory=dict)  #: owner -> its job
    not_created: list[str] = field(default_factory=list)  #: our owners whose POST made nothing
    contested: list[str] = field(default_factory=list)  #: our owners of unattributable jobs
    #: jobs one of our POSTs may have made, that no POST can be matched to
    unattributable: list[Candidate] = field(default_factory=list)
    foreign: list[Candidate] = field(default_factory=list)  #: jobs in no POST's window
    theirs: dict[str, Candidate] = field(default_factory=dict)  #: another run's POST -> its job


class ClockBounds:
    """What acknowledged POSTs tell about Krea's clock: ``created = offset + scale * local``.

    Also the longest send-to-answer time seen (``rtt``, real seconds): a POST that got no answer
    most likely made its job within that time of sending, which is its *tight* window; the
    rest, up to when it was given up on plus the grace, is its *late* window.
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._samples: list[tuple[float, float, float]] = []  #: (low, high, rtt) per POST
        self.low: float | None = None
        self.high: float | None = None
        self.rtt = 0.0

    def learn(self, sent: float, answered: float, created: datetime) -> None:
        """One acknowledged POST: sent and answered in local epoch seconds."""
        api = created.timestamp()
        self._add((api - self.scale * answered, api - self.scale * sent, answered - sent))

    def restore(self, low: float, high: float, rtt: float) -> None:
        """Start from what an earlier run of the account learnt (see :meth:`state`)."""
        self._add((low, high, rtt))

    def state(self) -> tuple[float, float, float] | None:
        """(low, high, rtt), to hand to the next run; None before any sample."""
        if self.low is None or self.high is None:
            return None
        return self.low, self.high, self.rtt

    def local_margin(self, unknown_s: float) -> float:
        """Real seconds a local time may be off as a time of Krea's clock (``unknown_s``
        before any sample)."""
        if self.low is None or self.high is None:
            return unknown_s
        return (self.high - self.low + MARGIN_S) / self.scale + LOCAL_ERROR_S

    def _add(self, sample: tuple[float, float, float]) -> None:
        self._samples.append(sample)
        del self._samples[:-SAMPLES]
        low = max(s[0] for s in self._samples)
        high = min(s[1] for s in self._samples)
        if low > high:  # the local clock stepped: keep only the newest sample
            self._samples = self._samples[-1:]
            low, high = sample[0], sample[1]
        self.low, self.high = low, high
        self.rtt = max(s[2] for s in self._samples)

    def window(
        self,
        *,
        floor: datetime | None,
        sent: float | None,
        answered: float | None,
        no_answer: bool,
        grace_s: float,
        written: float | None = None,
    ) -> Window:
        """The window of a POST sent and answered at these local times (see the docstring).

        ``written``: when its body was handed to the socket (local epoch seconds; None if not
        known), the start of a no-answer POST's tight bound."""
        if self.low is None or self.high is None:
            return Window(low=floor, tight=None, late=None)
        margin = MARGIN_S + LOCAL_ERROR_S * self.scale
        low = floor
        if sent is not None:
            earliest = _at(self.low + self.scale * sent - margin)
            low = earliest if low is None else max(low, earliest)
        if answered is None:
            return Window(low=low, tight=None, late=None)
        end = answered
        start = max((t for t in (sent, written) if t is not None), default=None)
        if no_answer and start is not None:
            end = min(answered, start + 2 * self.rtt + LOCAL_ERROR_S)
        tight = _at(self.high + self.scale * end + margin)
        if not no_answer:
            return Window(low=low, tight=tight, late=tight)
        late = _at(self.high + self.scale * answered + margin + grace_s)
        return Window(low=low, tight=tight, late=late)


def attribute(
    attempts: Sequence[Attempt], candidates: Sequence[Candidate], *, others_active: bool = False
) -> Attribution:
    """Match candidates to attempts where only one match is possible; never guess.

    ``others_active``: another client's jobs are known on the account in this stretch of time
    (already recorded, so not among the candidates): see :func:`_doubt_unsure`.
    """
    result = Attribution()
    matched_owners: set[str] = set()
    matched_ids: set[str] = set()
    for late in (False, True):
        owners = {
            c.remote_id: {
                a.owner
                for a in attempts
                if a.owner not in matched_owners and a.window.holds(c.created_at, late=late)
            }
            for c in candidates
            if c.remote_id not in matched_ids
        }
        by_id = {c.remote_id: c for c in candidates}
        while matches := _forced_matches(owners):
            for owner, remote_id in matches.items():
                result.matched[owner] = by_id[remote_id]
                matched_owners.add(owner)
                matched_ids.add(remote_id)
                del owners[remote_id]
                for keys in owners.values():
                    keys.discard(owner)
    _doubt_unsure(attempts, candidates, result, matched_owners, matched_ids, others_active)
    _classify_rest(attempts, candidates, result, matched_owners, matched_ids)
    return result


def _doubt_unsure(
    attempts: Sequence[Attempt],
    candidates: Sequence[Candidate],
    result: Attribution,
    matched_owners: set[str],
    matched_ids: set[str],
    others_active: bool,
) -> None:
    """Undo the match of a POST that may never have been sent while another client is active.

    Its lone job could then be that client's as well as its own. Another client is active when
    the list holds a job that no POST still without its job could have made (a POST makes one
    job at most), or such jobs were recorded before; without one, the lone job is its own.
    """
    open_attempts = [a for a in attempts if a.owner not in matched_owners]
    foreign = others_active or any(  # a job no POST still without its job could have made
        c.remote_id not in matched_ids
        and not any(a.window.holds(c.created_at, late=True) for a in open_attempts)
        for c in candidates
    )
    if not foreign:
        return
    for attempt in attempts:
        job = result.matched.get(attempt.owner)
        if job is not None and attempt.unsure_sent:
            del result.matched[attempt.owner]
            matched_owners.discard(attempt.owner)
            matched_ids.discard(job.remote_id)


def _classify_rest(
    attempts: Sequence[Attempt],
    candidates: Sequence[Candidate],
    result: Attribution,
    matched_owners: set[str],
    matched_ids: set[str],
) -> None:
    ours = {a.owner for a in attempts if a.ours}
    contested: set[str] = set()
    for candidate in candidates:
        if candidate.remote_id in matched_ids:
            continue
        owners = {
            a.owner
            for a in attempts
            if a.owner not in matched_owners and a.window.holds(candidate.created_at, late=True)
        }
        if not owners:  # in no window, or only in one whose POST has its job already
            result.foreign.append(candidate)
        elif owners & ours:
            result.unattributable.append(candidate)
            contested |= owners & ours
    for attempt in attempts:
        if attempt.ours and attempt.owner not in matched_owners:
            bucket = result.contested if attempt.owner in contested else result.not_created
            bucket.append(attempt.owner)
    for owner in list(result.matched):
        if owner not in ours:  # another run's job: that run adopts it
            result.theirs[owner] = result.matched.pop(owner)


def _forced_matches(owners: dict[str, set[str]]) -> dict[str, str]:
    """Attempt -> job for every job only one attempt could own (and that attempt owns no other)."""
    claims: dict[str, list[str]] = {}
    for remote_id, keys in owners.items():
        if len(keys) == 1:
            claims.setdefault(next(iter(keys)), []).append(remote_id)
    # Two jobs that only one attempt could own: one is not its at all; not ours to decide which.
    return {key: ids[0] for key, ids in claims.items() if len(ids) == 1}


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)
