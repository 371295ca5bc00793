"""Client-side limits: the request pacer and the adaptive in-flight window."""

from __future__ import annotations

import asyncio
import time

import pytest

from orchestrator.limits import PATIENCE, InFlightWindow, Pacer


async def test_window_never_exceeds_its_limit_and_serves_in_order() -> None:
    """Six tasks on a window of 2: at most two hold a slot, and they get slots in arrival order."""
    window = InFlightWindow(2)
    holding, peak, order = 0, 0, []
    gates = [asyncio.Event() for _ in range(6)]
    got = [asyncio.Event() for _ in range(6)]

    async def task(i: int) -> None:
        nonlocal holding, peak
        await window.acquire()
        order.append(i)
        got[i].set()
        holding += 1
        peak = max(peak, holding)
        await gates[i].wait()
        holding -= 1
        await window.release()

    tasks = [asyncio.create_task(task(i)) for i in range(6)]
    for i in range(6):
        await got[i].wait()
        gates[i].set()
    await asyncio.gather(*tasks)
    assert peak == 2
    assert order == list(range(6))


def test_window_shrinks_on_429_and_regains_the_measured_capacity_quickly() -> None:
    """A 429 at 10 held (9 accepted) sets the limit to 9 * beta; each accept while full adds one
    back up to 9 (the capacity the 429 measured), beyond it only 1/20 per accept (small account)."""
    window = InFlightWindow(100, beta=0.8)
    window.hold(10)  # ten jobs in flight, the tenth POST answered 429
    window.on_rate_limited()
    assert window.capacity == 9
    assert window.limit == pytest.approx(9 * 0.8)
    window.in_flight = 7  # full at the new limit
    window.on_accepted()
    assert window.limit == pytest.approx(8.2)
    window.in_flight = 8
    window.on_accepted()
    assert window.limit == pytest.approx(9.0)  # capped at the capacity, not 9.2
    window.in_flight = 9
    for _ in range(10):
        window.on_accepted()
    assert window.limit == pytest.approx(9.5)


def test_window_does_not_grow_when_it_is_not_the_bottleneck() -> None:
    """Acceptances with spare room leave the limit alone (no unbounded growth)."""
    window = InFlightWindow(50)
    window.limit = 10.0
    window.hold(3)
    window.on_accepted()
    assert window.limit == 10.0


def test_hidden_capacity_is_tracked_with_few_429s() -> None:
    """RELIABILITY P3.6: against a hidden capacity of 3 kept full, the limit stays within [2, 4]
    and under 5 % of POSTs get a 429; raised to 6, the limit reaches 5 within 50 successes."""
    window = InFlightWindow(1000)
    capacity, rejected, sent = 3, 0, 0
    limits: list[float] = []
    since_raise: int | None = None
    for step in range(1200):
        if step == 600:
            capacity, since_raise = 6, 0
        while window.in_flight < int(window.limit):  # send until the window is full
            window.in_flight += 1
            sent += 1
            if window.in_flight > capacity:
                window.on_rate_limited()
                window.in_flight -= 1
                rejected += 1
                break
            window.on_accepted()
            if since_raise is not None and window.limit < 5:
                since_raise += 1
        window.in_flight = max(0, window.in_flight - 1)  # one job finishes per step
        if 100 <= step < 600:
            limits.append(window.limit)
    assert rejected / sent < 0.05
    assert min(limits) >= 2
    assert max(limits) <= 4
    assert since_raise is not None
    assert since_raise <= 50
    assert window.limit >= 5


async def test_pacer_holds_the_configured_rate() -> None:
    """At 50 requests/s, 60 calls take at least (60-50)/50 s: no burst beyond one window."""
    pacer = Pacer(50.0)
    started = time.monotonic()
    for _ in range(60):
        await pacer()
    assert time.monotonic() - started >= 0.2


class FakeClock:
    """Real time for the pacer, advanced by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


async def test_unconfigured_pacer_learns_from_a_rate_429() -> None:
    """With no rate set, a 429 about request rate makes the pacer settle below what it achieved."""
    clock = FakeClock()
    pacer = Pacer(None, clock=clock)
    for _ in range(20):
        await pacer()
    assert pacer.on_rate_limited()
    assert pacer.rate == pytest.approx(20 * 0.8)


async def test_one_burst_lowers_the_rate_once() -> None:
    """The 429s answered within one window of the first are one episode: one decrease, not four.

    Lowering on each of them spiralled a learned 100/s down to 25/s (the 140 s recovery).
    """
    clock = FakeClock()
    pacer = Pacer(None, clock=clock)
    for _ in range(50):
        await pacer()
    assert pacer.on_rate_limited()
    for _ in range(3):
        clock.now += 0.2
        assert not pacer.on_rate_limited()
    assert pacer.rate == pytest.approx(40.0)
    assert pacer.decreases == 1
    clock.now += 0.5  # a window after the first: a new episode
    assert pacer.on_rate_limited()
    assert pacer.decreases == 2


async def test_a_learned_rate_counts_the_requests_krea_still_holds() -> None:
    """Right after the 429 the throttle already holds the last window's requests: no new burst."""
    pacer = Pacer(None)  # the throttle reads time.monotonic: so must the pacer here
    for _ in range(20):
        await pacer()
    pacer.on_rate_limited()  # 16/s, with 20 requests in the last second
    waiting = asyncio.ensure_future(pacer())
    await asyncio.wait([waiting], timeout=0)
    assert not waiting.done()
    waiting.cancel()


def test_the_rate_grows_back_while_requests_wait_for_it() -> None:
    """After the episode, each request that waited adds 1/rate: one request/s per second."""
    clock = FakeClock()
    pacer = Pacer(None, clock=clock)
    pacer.set_rate(10.0)
    pacer.on_rate_limited()  # achieved nothing recent: settles at 0.8
    pacer.set_rate(10.0)
    pacer.on_waited()
    assert pacer.rate == pytest.approx(10.0)  # still within the episode: no growth
    clock.now += 1.5
    for _ in range(10):
        pacer.on_waited()
    assert 10.9 < pacer.rate < 11.0


def test_a_configured_rate_is_regained_but_never_exceeded() -> None:
    """A 429 lowers even a configured rate; growth stops at what the user configured."""
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock)
    pacer.on_rate_limited()
    assert pacer.rate is not None
    assert pacer.rate < 10.0
    clock.now += 1.5
    for _ in range(200):
        pacer.on_waited()
    assert pacer.rate == pytest.approx(10.0)


async def test_growing_the_window_wakes_a_waiter_at_once() -> None:
    """A slot opened by on_accepted goes to the task waiting for it, not at the next release."""
    window = InFlightWindow(10)
    window.hold(2)
    window.limit = 2.0  # full
    waiter = asyncio.ensure_future(window.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    window.capacity = 3  # the last 429 measured three
    window.on_accepted()  # full, below the capacity: grows to 3
    await asyncio.wait_for(waiter, timeout=1.0)
    assert window.in_flight == 3


async def test_a_cancelled_waiter_gives_its_slot_to_the_next() -> None:
    """A waiter cancelled after it was handed a slot passes the slot on; none is lost."""
    window = InFlightWindow(1)
    await window.acquire()
    first = asyncio.ensure_future(window.acquire())
    second = asyncio.ensure_future(window.acquire())
    await asyncio.sleep(0)
    await window.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(second, timeout=1.0)
    assert window.in_flight == 1


async def _waiting(
    window: InFlightWindow, rank: tuple[int, ...], got: list[str], name: str
) -> None:
    await window.acquire(rank)
    got.append(name)


async def test_a_higher_priority_batch_gets_a_free_slot_first() -> None:
    window = InFlightWindow(1)
    await window.acquire()
    got: list[str] = []
    low = asyncio.create_task(_waiting(window, (0, 1), got, "second manifest"))
    await asyncio.sleep(0)  # let it queue first
    high = asyncio.create_task(_waiting(window, (0, 0), got, "first manifest"))
    await asyncio.sleep(0)
    await window.release()
    await high
    assert got == ["first manifest"]
    await window.release()
    await low
    assert got == ["first manifest", "second manifest"]


async def test_no_batch_is_starved_of_the_window_forever() -> None:
    """A waiter overtaken PATIENCE times takes the next slot, however many wait above it."""
    window = InFlightWindow(1)
    await window.acquire()
    got: list[str] = []
    low = asyncio.create_task(_waiting(window, (1,), got, "low"))
    await asyncio.sleep(0)
    highs = [asyncio.create_task(_waiting(window, (0,), got, f"high{i}")) for i in range(6)]
    await asyncio.sleep(0)
    for _ in range(PATIENCE + 1):
        await window.release()
        await asyncio.sleep(0)
    assert got == [f"high{i}" for i in range(PATIENCE)] + ["low"]
    await low
    for task in highs:
        task.cancel()
    await asyncio.gather(*highs, return_exceptions=True)
