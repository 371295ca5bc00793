"""The account registry: what several runs of one account on one machine tell each other.

Real registry files in a temporary state directory, real processes for the crash cases: a
child process registers a POST and is killed with SIGKILL, as a run would be.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from orchestrator.registry import HEARTBEAT_S, AccountRegistry, fingerprint, state_dir
from orchestrator.registry.processes import TurnFile, alive, process_started, try_lock

BASE, KEY = "https://api.krea.ai", "sk-registry-secret-0001"

CHILD = """
import asyncio, sys
from pathlib import Path
from orchestrator.registry import AccountRegistry

async def main():
    async with AccountRegistry.open(sys.argv[1], sys.argv[2], Path(sys.argv[3])) as registry:
        await registry.post_started("k1", "2026-01-01T00:00:00.000Z")
        print("sent", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def killed_after(script: str, ledger: Path, said: bytes) -> None:
    """Run ``script`` as a run of ``ledger`` and SIGKILL it once it has printed ``said``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, BASE, KEY, str(ledger), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == said
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def killed_while_posting(ledger: Path) -> None:
    """A run that registers a POST for key ``k1`` of ``ledger`` and dies with it on the wire."""
    await killed_after(CHILD, ledger, b"sent")


def test_the_file_is_named_by_a_fingerprint_never_the_key(tmp_path: Path) -> None:
    assert state_dir() == Path(os.environ["XDG_STATE_HOME"]) / "orchestrator"
    name = fingerprint(BASE, KEY)
    assert KEY not in name
    assert name != fingerprint(BASE, KEY + "x")
    assert name != fingerprint("http://127.0.0.1:1", KEY), "another API base is another account"


async def test_a_post_on_the_wire_is_seen_by_another_run_until_its_job_is_claimed(
    tmp_path: Path,
) -> None:
    async with (
        AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a,
        AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b,
    ):
        await a.post_started("k1", None)
        (seen,) = (await b.snapshot(None)).attempts
        assert (seen.key, seen.state, seen.live) == ("k1", "wire", True)
        assert await b.open_attempts()
        await a.claimed("k1", "job-1", "2026-01-01T00:00:01.000Z")
        after = await b.snapshot(None)
        assert after.attempts == ()
        ((ledger, key, _),) = after.claims.values()
        assert list(after.claims) == ["job-1"]
        assert (ledger, key) == (str((tmp_path / "a.db").resolve()), "k1")
        assert await b.claimed_among(["job-1", "job-2"]) == {"job-1"}
        assert await b.newest_claim() == "2026-01-01T00:00:01.000Z"
    raw = b"".join(p.read_bytes() for p in (state_dir() / "accounts").iterdir())
    assert KEY.encode() not in raw


async def test_a_killed_runs_post_blocks_no_one_and_stays_a_possible_owner(tmp_path: Path) -> None:
    """Dead, its POST is no longer on the wire: ambiguous, bounded by its last heartbeat."""
    before = time.time()
    await killed_while_posting(tmp_path / "a.db")
    async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
        (left,) = (await b.snapshot(None)).attempts
        assert (left.key, left.state, left.live, left.no_answer) == ("k1", "ambiguous", False, True)
        assert left.answered_at is not None
        assert before <= left.sent_at <= left.answered_at <= time.time() + HEARTBEAT_S


CHILD_ANSWERED = """
import asyncio, sys, time
from pathlib import Path
from orchestrator.registry import AccountRegistry

class KilledBeforeItsClaim(AccountRegistry):
    def claim_soon(self, *args, **kwargs):
        pass  # the run is killed before its claim lands

async def main():
    opened = KilledBeforeItsClaim.open(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
    async with opened as registry:
        await registry.before_post("k1", None)  # alone: registered beside its intent
        async with registry.posting("k1"):
            await registry.answered("k1")
            registry.claim_soon("k1", "job-1", "2026-01-01T00:00:01.000Z")
            answered = time.time()
        print(f"answered {answered!r}", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_run_killed_after_its_answer_leaves_a_post_that_ended_there(
    tmp_path: Path,
) -> None:
    """Alone, a run gives the turn back before its claim lands; killed then, its POST ended at
    its answer (noted in the turn), not at its last heartbeat: another run's lost POST made
    just after cannot be taken for it (the two-runs-start-together case)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_ANSWERED, BASE, KEY, str(tmp_path / "a.db"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    word, at = (await proc.stdout.readline()).decode().split()
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert word == "answered"
    async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
        (left,) = (await b.snapshot(None)).attempts
    assert (left.key, left.live, left.no_answer) == ("k1", False, False)
    assert left.answered_at is not None
    assert left.sent_at <= left.answered_at <= float(at), "not its last heartbeat plus a beat"


async def test_the_next_run_on_the_ledger_takes_over_what_the_dead_one_left(tmp_path: Path) -> None:
    ledger = tmp_path / "a.db"
    await killed_while_posting(ledger)
    async with AccountRegistry.open(BASE, KEY, ledger) as again:
        left = await again.left_behind()
        assert list(left) == ["k1"]
        await again.adopt({"k1": (time.time() - 1, left["k1"], None)})
        assert await again.left_behind() == {}, "now this run's own"
        (mine,) = (await again.snapshot(None)).attempts
        assert (mine.run_id, mine.live) == (again.run_id, True)


async def test_an_intent_with_no_registered_post_was_never_sent(tmp_path: Path) -> None:
    """Posts are registered after the intent and before the POST, since the ledger joined."""
    ledger = tmp_path / "a.db"
    async with AccountRegistry.open(BASE, KEY, ledger) as first:
        joined = time.time()
        await first.post_started("on-the-wire", None)
        await first.post_started("answered", None)
        await first.claimed("answered", "job-9", "2026-01-01T00:00:00.000Z")
    async with AccountRegistry.open(BASE, KEY, ledger) as again:
        intents = {"never-sent": joined, "on-the-wire": joined, "answered": joined}
        assert await again.unsent({**intents, "before-the-registry": joined - 3600}) == {
            "never-sent"
        }


async def test_one_post_of_the_account_on_the_wire_at_a_time(tmp_path: Path) -> None:
    async with (
        AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a,
        AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b,
    ):
        await a.look_around()  # a opened first, alone: its next heartbeat sees b
        order: list[str] = []
        holding = asyncio.Event()

        async def take(registry: AccountRegistry, name: str, release: asyncio.Event) -> None:
            async with registry.posting():
                order.append(name)
                holding.set()
                await release.wait()

        first_done, second_done = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(take(a, "a", first_done))
        await holding.wait()
        second = asyncio.create_task(take(b, "b", second_done))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(second), 0.05)
        assert order == ["a"], "b waits while a holds the turn"
        first_done.set()
        second_done.set()
        await asyncio.gather(first, second)
        assert order == ["a", "b"]


async def test_a_run_alone_holds_the_free_turn_but_never_waits_for_its_own_posts(
    tmp_path: Path,
) -> None:
    """Alone, a POST holds the turn if it is free (so a run starting meanwhile waits for it),
    and a second POST of the same run goes out beside it without waiting."""
    async with AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a:
        turn = a.turn_file
        async with a.posting():
            assert try_lock(turn) is None, "alone: the POST on the wire holds the turn"
            async with asyncio.timeout(1):  # a second POST of a's, at once
                async with a.posting():
                    pass
        free = try_lock(turn)
        assert free is not None, "given back after the POST"
        free.close()
        async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
            assert not b.alone, "b sees a at once"
            await a.look_around()  # what a's next heartbeat does
            assert not a.alone
        await a.look_around()
        assert a.alone, "b has gone: alone again"


async def test_a_run_that_believes_it_is_alone_waits_for_a_turn_another_run_holds(
    tmp_path: Path,
) -> None:
    """a looked before b started: a still believes it is alone, yet its POST waits for b's to
    end, and a learns it has company. Two runs' POSTs never overlap, whoever looked when."""
    async with (
        AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a,
        AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b,
    ):
        a.alone = True  # its last look came before b registered
        order: list[str] = []
        b_posting, b_done = asyncio.Event(), asyncio.Event()

        async def post_b() -> None:
            async with b.posting():
                order.append("b")
                b_posting.set()
                await b_done.wait()

        async def post_a() -> None:
            async with a.posting():
                order.append("a")

        task_b = asyncio.create_task(post_b())
        await b_posting.wait()
        task_a = asyncio.create_task(post_a())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task_a), 0.05)
        assert order == ["b"]
        b_done.set()
        await asyncio.gather(task_a, task_b)
        assert order == ["b", "a"]
        assert not a.alone, "a learnt it has company"


async def test_what_a_run_learnt_of_krea_clock_is_kept_per_time_scale(tmp_path: Path) -> None:
    async with AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a:
        await a.post_started("k1", None)
        await a.claimed("k1", "job-1", "2026-01-01T00:00:00.000Z", (60.0, 1.5, 1.7, 0.01))
    async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
        assert await b.clock(60.0) == (1.5, 1.7, 0.01)
        assert await b.clock(1.0) is None


@asynccontextmanager
async def lost_post(
    tmp_path: Path, *, no_answer: bool, margin: float, grace: float
) -> AsyncIterator[tuple[AccountRegistry, float]]:
    """Runs a and b of one account, a's POST ``k1`` ended without its job (in its turn, as the
    submitter calls it): b, and the local time a's POST ended."""
    async with (
        AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a,
        AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b,
    ):
        await a.look_around()
        await a.post_started("k1", None)
        async with a.posting("k1", margin, grace):
            await a.ambiguous("k1", no_answer=no_answer, margin_s=margin, grace_s=grace)
        (lost,) = (await b.snapshot(None)).attempts
        assert lost.answered_at is not None
        yield b, lost.answered_at


async def test_a_post_waits_until_another_runs_lost_post_can_make_no_more_jobs(
    tmp_path: Path,
) -> None:
    """a's POST got no answer: b's next POST leaves only once a's window has closed (its end,
    plus the grace Krea may take, plus the clock margin), and b's window starts as it leaves,
    not at its intent: no job of b's can fit a's window, nor a's job b's."""
    grace, margin = 0.3, 0.1
    async with lost_post(tmp_path, no_answer=True, margin=margin, grace=grace) as (b, ended):
        await b.post_started("k2", None)
        async with b.posting("k2", margin, grace):
            entered = time.time()
        assert entered >= ended + grace + margin
        (waited,) = [x for x in (await b.snapshot(None)).attempts if x.key == "k2"]
        assert waited.sent_at >= ended + grace + margin, "its window starts as it left"


async def test_a_post_answered_with_an_error_holds_the_others_for_the_margin_alone(
    tmp_path: Path,
) -> None:
    """An HTTP answer (a 5xx) means any job was made before it: no grace, only the margin."""
    grace, margin = 30.0, 0.1
    async with lost_post(tmp_path, no_answer=False, margin=margin, grace=grace) as (b, ended):
        async with b.posting("", margin, grace):
            entered = time.time()
        assert ended + margin <= entered < ended + grace


async def test_the_registry_holds_a_post_when_the_turn_file_says_nothing(tmp_path: Path) -> None:
    """With company, the registry's record of a's lost POST holds b's POST on its own (a turn
    file note can be lost to a full disk): b reads the attempt and waits out its window."""
    grace, margin = 0.3, 0.1
    async with (
        AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a,
        AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b,
    ):
        await a.post_started("k1", None)
        await a.ambiguous("k1", no_answer=True)  # outside any turn: the file holds no wait
        (lost,) = (await b.snapshot(None)).attempts
        assert lost.answered_at is not None
        async with b.posting("", margin, grace):
            entered = time.time()
        assert entered >= lost.answered_at + grace + margin


async def test_a_run_that_believes_it_is_alone_still_waits_out_another_runs_lost_post(
    tmp_path: Path,
) -> None:
    """b's last look came before a started: b takes the free turn as a lone run does, yet
    waits out a's lost POST, which a wrote in the turn file while it held the turn."""
    grace, margin = 0.3, 0.1
    async with lost_post(tmp_path, no_answer=True, margin=margin, grace=grace) as (b, ended):
        b.alone = True
        async with b.posting("", margin, grace):
            entered = time.time()
        assert entered >= ended + grace + margin


HOLDER = """
import asyncio, sys
from pathlib import Path
from orchestrator.registry import AccountRegistry

async def main():
    async with AccountRegistry.open(sys.argv[1], sys.argv[2], Path(sys.argv[3])) as registry:
        await registry.post_started("k1", None)
        async with registry.posting("k1"):
            print("posting", flush=True)
            await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_run_killed_in_its_turn_holds_the_next_post_for_the_grace(
    tmp_path: Path,
) -> None:
    """Killed with its POST on the wire, a run cannot say how that POST ended, and its
    process may look alive a while longer: the mark it left in the turn file makes the next
    POST of the account wait the grace, so no later job fits the dead POST's window."""
    grace, margin = 0.3, 0.1
    await killed_after(HOLDER, tmp_path / "dead.db", b"posting")
    async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
        took = time.time()
        async with b.posting("", margin, grace):
            entered = time.time()
        assert entered >= took + grace + margin
        (dead,) = (await b.snapshot(None)).attempts
        assert dead.answered_at is not None
        assert dead.answered_at <= entered, (
            "the dead holder's POST ended when b found its mark, not at its last heartbeat"
        )
        started = time.time()
        async with b.posting("", margin, grace):
            assert time.time() - started < grace, "only once: b's own turn ended cleanly"


WAITER = """
import asyncio, sys
from pathlib import Path
from orchestrator.registry import AccountRegistry

async def main():
    async with AccountRegistry.open(sys.argv[1], sys.argv[2], Path(sys.argv[3])) as registry:
        await registry.before_post("k2", None)
        print("waiting", flush=True)
        async with registry.posting("k2"):
            print("sent", flush=True)

asyncio.run(main())
"""


async def test_a_run_killed_waiting_for_the_turn_never_sent_its_post(tmp_path: Path) -> None:
    """With company, a POST is registered only once it holds the turn: a run killed while it
    waited leaves no attempt, so no run counts it as the owner of a job, and the next run on
    its ledger knows the intent was never sent."""
    ledger = tmp_path / "waiter.db"
    async with AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a:
        async with a.posting():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WAITER, BASE, KEY, str(ledger),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"waiting"
            intent_at = time.time()  # its intent came after its ledger joined the registry
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert (await a.snapshot(None)).attempts == ()
    async with AccountRegistry.open(BASE, KEY, ledger) as again:
        assert await again.unsent({"k2": intent_at}) == {"k2"}


async def test_the_turn_is_given_back_only_once_its_posts_jobs_are_claimed(
    tmp_path: Path,
) -> None:
    """A run killed after its answer but before its claim landed dies in its turn, where the
    next holder bounds its POST: so the turn waits for the claim. The registry file is kept
    busy here, holding a's claim back: the turn stays held until the claim lands."""
    async with (
        AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a,
        AccountRegistry.open(BASE, KEY, tmp_path / "b.db"),
    ):
        await a.look_around()
        await a.before_post("k1", None)
        turn = a.turn_file
        blocker = sqlite3.connect(a.path, isolation_level=None)
        answered = asyncio.Event()

        async def post_a() -> None:
            async with a.posting("k1"):
                blocker.execute("BEGIN EXCLUSIVE")  # a's claim waits for the file
                a.claim_soon("k1", "job-1", "2026-01-01T00:00:01.000Z")
                answered.set()

        task_a = asyncio.create_task(post_a())
        await answered.wait()  # a ran on until it waited for its claim, leaving the POST
        assert try_lock(turn) is None, "a gave the turn back before its claim could land"
        blocker.execute("COMMIT")
        blocker.close()
        await task_a
        free = try_lock(turn)
        assert free is not None, "given back once the claim landed"
        free.close()
        assert (await a.snapshot(None)).attempts == ()


async def test_a_run_alone_keeps_the_turn_until_its_last_overlapping_post_ends(
    tmp_path: Path,
) -> None:
    """Alone, POSTs share one hold: a run starting meanwhile never POSTs beside any of them."""
    async with AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a:
        turn = a.turn_file
        first_done, second_in, second_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

        first_in = asyncio.Event()

        async def first() -> None:
            async with a.posting():
                first_in.set()
                await first_done.wait()

        async def second() -> None:
            async with a.posting():
                second_in.set()
                await second_done.wait()

        tasks = [asyncio.create_task(first())]
        await first_in.wait()
        tasks.append(asyncio.create_task(second()))
        await second_in.wait()
        first_done.set()
        await tasks[0]
        assert try_lock(turn) is None, "the second POST is still on the wire: still held"
        second_done.set()
        await tasks[1]
        free = try_lock(turn)
        assert free is not None, "given back with the last POST"
        free.close()


#: A run alone killed once its POST is registered (beside its intent), before it is sent.
REGISTERED_ALONE = HOLDER.replace(
    """        await registry.post_started("k1", None)
        async with registry.posting("k1"):
            print("posting", flush=True)
            await asyncio.Event().wait()
""",
    """        await registry.before_post("k1", None, 0.4)
        print("registered", flush=True)
        await asyncio.Event().wait()
""",
)


async def test_a_run_alone_killed_between_registering_and_sending_dies_in_its_turn(
    tmp_path: Path,
) -> None:
    """Alone, a POST is registered in the run's hold of the turn, so a run killed before the
    POST left (the registration and the intent are written side by side) leaves its mark: the
    next run, alone too, ends that POST as it takes the turn and waits the grace. Registered
    outside the turn, the POST's window reached to the dead run's last heartbeat plus a beat,
    over the next run's first POSTs: a lost answer among them was a possible duplicate, sent
    again and billed twice (found in stop 26, about once in thirty two-run kill loops)."""
    assert REGISTERED_ALONE != HOLDER
    grace, margin = 0.3, 0.1
    await killed_after(REGISTERED_ALONE, tmp_path / "dead.db", b"registered")
    async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
        assert b.alone
        await b.before_post("k2", None, grace + margin)
        async with b.posting("k2", margin, grace):
            pass
        attempts = {a.key: a for a in (await b.snapshot(None)).attempts}
    dead, sent = attempts["k1"], attempts["k2"]
    assert dead.answered_at is not None
    assert sent.sent_at >= dead.answered_at + grace + margin, (
        "b's POST left once the dead run's could make no more jobs: no job fits both windows"
    )


async def test_a_post_whose_hold_must_wait_is_registered_once_it_may_leave(
    tmp_path: Path,
) -> None:
    """Alone, a run that takes the turn from a holder killed with a POST on the wire waits
    until that POST can make no more jobs, and registers its own POST only then: registered
    as it joined, a run killed while it waited left a POST whose window began inside the dead
    one's, and the dead one's late job fit both (found in stop 26)."""
    grace, margin = 0.3, 0.1
    await killed_after(HOLDER, tmp_path / "dead.db", b"posting")
    async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
        took = time.time()
        await b.before_post("k2", None, grace + margin)
        assert [a.key for a in (await b.snapshot(None)).attempts] == ["k1"], "k2 not yet"
        async with b.posting("k2", margin, grace):
            pass
        attempts = {a.key: a for a in (await b.snapshot(None)).attempts}
    assert attempts["k2"].sent_at >= took + grace + margin
    dead = attempts["k1"].answered_at
    assert dead is not None
    assert attempts["k2"].sent_at >= dead + grace + margin


BEFORE_ITS_WAIT = """
import signal, sys
from orchestrator.registry import fingerprint, state_dir
from orchestrator.registry.processes import TurnFile

turn = TurnFile(state_dir() / "accounts" / f"{fingerprint(sys.argv[1], sys.argv[2])}.posting")
assert turn.try_lock()
turn.enter("run-killed-as-it-entered")
print("entered", flush=True)
signal.pause()  # until it is killed
"""


async def test_a_holder_killed_before_it_ended_a_dead_holders_posts_passes_them_on(
    tmp_path: Path,
) -> None:
    """A run takes the turn from a holder that died with a POST on the wire and is killed
    itself before it ended that POST: the next holder ends it and waits the grace all the
    same, as the note passed the first dead holder on."""
    grace, margin = 0.3, 0.1
    await killed_after(HOLDER, tmp_path / "dead.db", b"posting")
    await killed_after(BEFORE_ITS_WAIT, tmp_path / "second.db", b"entered")
    async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
        _, holder, *dead = b.turn_file.read_text().split()
        assert holder == "run-killed-as-it-entered"
        assert len(dead) == 1, "the first dead holder, not yet ended"
        took = time.time()
        async with b.posting("", margin, grace):
            entered = time.time()
        (first,) = (await b.snapshot(None)).attempts
        assert b.turn_file.read_text().split()[1:] == ["-"], "both ended, none passed on"
    assert entered >= took + grace + margin
    assert first.answered_at is not None
    assert first.answered_at <= entered


async def test_a_post_that_is_not_sent_gives_the_hold_back(tmp_path: Path) -> None:
    """Alone, a POST takes the turn before it is registered; one that is not sent after all
    (its intent could not be written) gives it back, as does a POST that finds company."""
    async with AccountRegistry.open(BASE, KEY, tmp_path / "a.db") as a:
        await a.before_post("k1", None)
        assert try_lock(a.turn_file) is None, "held from the registration on"
        await a.not_created("k1")
        free = try_lock(a.turn_file)
        assert free is not None, "given back: nothing will be sent"
        free.close()
        async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db"):
            await a.before_post("k2", None)
            assert not a.alone
            free = try_lock(a.turn_file)
            assert free is not None, "with company, the POST waits for the turn in posting"
            free.close()
            assert (await a.snapshot(None)).attempts == (), "registered only in its turn"


def killed_unreaped(script: str, ledger: Path, said: bytes) -> subprocess.Popen[bytes]:
    """:func:`killed_after`, but left a zombie: dead, not yet reaped by its parent (call
    ``wait()`` on it to reap it)."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, BASE, KEY, str(ledger)], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    with child.stdout:
        assert child.stdout.readline().strip() == said
    child.send_signal(signal.SIGKILL)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # it has exited; still unreaped
    state = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state == "Z"
    return child


async def test_a_holder_killed_but_not_yet_reaped_holds_the_next_post_for_the_grace(
    tmp_path: Path,
) -> None:
    """A killed run gives its lock back before its parent reaps it: for that while it still
    has a pid and its start time (a zombie). Taken for alive, its mark was ignored and the next
    POST left at once, while the dead POST's window ran on to its last heartbeat plus a beat
    (found in stop 26, in two-run kill loops). It is dead, and its POSTs ended at the mark."""
    grace, margin = 0.3, 0.1
    child = killed_unreaped(HOLDER, tmp_path / "dead.db", b"posting")
    try:
        pid = child.pid
        assert not alive(socket.gethostname(), pid, process_started(pid), time.time())
        async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
            took = time.time()
            async with b.posting("", margin, grace):
                entered = time.time()
            (dead,) = (await b.snapshot(None)).attempts
    finally:
        await asyncio.to_thread(child.wait)
    assert entered >= took + grace + margin
    assert dead.answered_at is not None
    assert dead.answered_at <= entered, "ended at its mark, not at its last heartbeat"


async def test_a_run_killed_in_its_turn_with_no_post_open_holds_no_one(tmp_path: Path) -> None:
    """Its mark is there, but every POST of it is settled: nothing of it can still make a job,
    so the next POST does not wait the grace (a run restarted after a kill would otherwise
    wait it on every restart, for nothing)."""
    idle = HOLDER.replace('        await registry.post_started("k1", None)\n', "")
    assert idle != HOLDER
    await killed_after(idle, tmp_path / "dead.db", b"posting")
    grace = 5.0
    async with AccountRegistry.open(BASE, KEY, tmp_path / "b.db") as b:
        took = time.time()
        async with b.posting("", 0.1, grace):
            assert time.time() - took < grace


def test_the_turn_file_is_one_descriptor_whose_lock_and_note_behave_as_files_did(
    tmp_path: Path,
) -> None:
    """TurnFile takes and gives back the lock other descriptors see, and keeps the note
    ("<until> <holder> <dead> ...") through enter, hold_until, settled and leave; closing it
    gives the lock back."""
    path = tmp_path / "account.posting"
    turn = TurnFile(path)
    assert turn.try_lock()
    assert try_lock(path) is None, "another descriptor (another run) finds the turn held"
    assert turn.enter("run-a") == (0.0, ())
    turn.hold_until(123.5)
    turn.hold_until(100.0)  # an earlier time never shortens the wait
    assert path.read_text() == "123.5 run-a"
    turn.leave()
    assert path.read_text() == "123.5 -"
    turn.unlock()
    other = try_lock(path)
    assert other is not None, "given back: free for another run"
    other.close()
    assert turn.try_lock()
    assert turn.enter("run-b") == (123.5, ())  # the wait stays for the next holder
    turn.close()
    free = try_lock(path)
    assert free is not None, "closed: the kernel gave the lock back"
    free.close()
    path.write_text("7.25 run-dead")  # a holder that died in its turn left its mark
    c = TurnFile(path)
    assert c.enter("run-c") == (7.25, ("run-dead",))
    assert path.read_text() == "7.25 run-c run-dead", "passed on until run-c ends its POSTs"
    c.close()  # run-c is killed before it did
    d = TurnFile(path)
    assert d.enter("run-d") == (7.25, ("run-dead", "run-c")), "both dead, neither ended"
    d.settled(("run-dead", "run-c"), 9.5)
    assert path.read_text() == "9.5 run-d", "ended, and the wait they leave, in one write"
    d.close()
    path.write_text("7.25")  # an older version's note, given back
    assert TurnFile(path).enter("run-e") == (7.25, ())
