"""Client-side limits: the request pacer and the adaptive in-flight window."""

from __future__ import annotations

import asyncio
import time

import pytest

from orchestrator.limits import InFlightWindow, Pacer


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


def test_window_shrinks_on_429_and_grows_back_slowly() -> None:
    """A 429 at 10 held sets the limit to 9 * beta; ~limit acceptances grow it by one."""
    window = InFlightWindow(100, beta=0.9)
    window.hold(10)  # ten jobs in flight, the tenth POST answered 429
    window.on_rate_limited()
    assert window.limit == pytest.approx(9 * 0.9)
    window.in_flight = 8  # full at the new limit
    start = window.limit
    for _ in range(8):
        window.on_accepted()
    assert start + 0.8 < window.limit < start + 1.0


def test_window_does_not_grow_when_it_is_not_the_bottleneck() -> None:
    """Acceptances with spare room leave the limit alone (no unbounded growth)."""
    window = InFlightWindow(50)
    window.limit = 10.0
    window.hold(3)
    window.on_accepted()
    assert window.limit == 10.0


def test_hidden_capacity_is_tracked_with_few_429s() -> None:
    """Against a hidden capacity of 3, then 6: few 429s, and the limit follows the capacity up."""
    window = InFlightWindow(1000)
    capacity, rejected, sent = 3, 0, 0
    for step in range(400):
        if step == 200:
            capacity = 6
        if window.in_flight < int(window.limit):
            window.in_flight += 1
            sent += 1
            if window.in_flight > capacity:
                window.on_rate_limited()
                window.in_flight -= 1
                rejected += 1
            else:
                window.on_accepted()
        if window.in_flight >= min(capacity, int(window.limit)):
            window.in_flight -= 1  # a job finishes
    assert rejected / sent < 0.1
    assert window.limit >= 5


async def test_pacer_holds_the_configured_rate() -> None:
    """At 50 requests/s, 60 calls take at least (60-50)/50 s: no burst beyond one window."""
    pacer = Pacer(50.0)
    started = time.monotonic()
    for _ in range(60):
        await pacer()
    assert time.monotonic() - started >= 0.2


async def test_unconfigured_pacer_learns_from_a_rate_429() -> None:
    """With no rate set, a 429 about request rate makes the pacer settle below what it achieved."""
    pacer = Pacer(None)
    for _ in range(20):
        await pacer()
    pacer.on_rate_limited()
    assert pacer.rate is not None
    assert 0 < pacer.rate <= 20
