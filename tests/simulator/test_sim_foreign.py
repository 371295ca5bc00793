"""Other clients on the same account: the foreign client's jobs, and tokens sharing one account."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from sim_support import OTHER_TOKEN, SPRING, TOKEN, Api

from orchestrator.cli.cli import main
from orchestrator.simulator import SimulatorOptions, running_simulator

THIRD_TOKEN = "sim-test-token-charlie"
PRICE_KLING_1 = 110_193  # the foreign client's request: 60.1 CU x 1833.5, rounded half up
PRICE_KLING_25 = 366_700  # 200 CU x 1833.5


def foreign_jobs(sim: Any, token: str = TOKEN) -> list[dict[str, Any]]:
    """The foreign client's jobs on ``token``'s account, oldest first."""
    ident = sim.account_id(token)
    return [job for job in sim.jobs() if job["foreign"] and job["account"] == ident]


async def listed(api: Api) -> list[dict[str, Any]]:
    """Every job GET /jobs shows the caller (one page is enough here), newest first."""
    status, page = await api.list(limit="1000")
    assert status == 200, page
    assert page["next_cursor"] is None
    return list(page["items"])


async def test_foreign_jobs_arrive_at_the_configured_rate(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """A seen account gets about rate x seconds foreign jobs, marked foreign, on the cheap model."""
    sim = await simulator(
        time_scale=0, start_time=SPRING, foreign_jobs_per_s=0.1, duration_s=10, concurrency=10
    )
    await Api(http, sim.url).list()  # the account exists from its first authenticated request
    sim.advance(1000)
    stats = sim.stats()
    assert 70 <= stats["foreign_jobs"] <= 130  # Poisson, mean 100, sd 10; seeded, so stable
    assert stats["foreign_refused"] == 0
    assert stats["jobs_created"] == 0  # the client under test created nothing
    assert stats["bodies"] == {}
    jobs = foreign_jobs(sim)
    assert len(jobs) == stats["foreign_jobs"]
    assert {job["model"] for job in jobs} == {"kling/kling-1"}
    assert all(job["price_micro"] == PRICE_KLING_1 for job in jobs)


async def test_arrivals_do_not_depend_on_how_the_clock_moves(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """One jump of 600 s and sixty steps of 10 s give the same foreign jobs at the same times."""
    options = {"time_scale": 0, "start_time": SPRING, "foreign_jobs_per_s": 0.05, "seed": 7}
    jumped, stepped = await simulator(**options), await simulator(**options)
    await Api(http, jumped.url).list()
    await Api(http, stepped.url).list()
    jumped.advance(600)
    for _ in range(60):
        stepped.advance(10)

    def timeline(sim: Any) -> list[tuple[Any, ...]]:
        keys = ("created_at", "started_at", "completed_at", "status")
        return [tuple(job[key] for key in keys) for job in foreign_jobs(sim)]

    assert timeline(jumped) == timeline(stepped)
    assert len(timeline(jumped)) > 10


async def test_foreign_jobs_are_listed_in_creation_order(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """GET /jobs shows the foreign jobs beside the caller's own, created_at strictly increasing."""
    sim = await simulator(
        time_scale=0, start_time=SPRING, foreign_jobs_per_s=0.05, duration_s=10, concurrency=10
    )
    api = Api(http, sim.url)
    await api.list()
    sim.advance(300)
    own = await api.created_id()
    sim.advance(300)
    items = await listed(api)
    created = [item["created_at"] for item in reversed(items)]
    assert created == sorted(set(created))  # strictly increasing, oldest first
    truth = {job["job_id"]: job["foreign"] for job in sim.jobs()}
    assert {item["job_id"] for item in items} == set(truth)
    assert truth[own] is False
    assert sum(truth.values()) == len(items) - 1 > 10
    status, answer = await api.job(next(job_id for job_id, theirs in truth.items() if theirs))
    assert status == 200
    assert answer["status"] == "completed"


async def test_a_burst_of_foreign_jobs_keeps_created_at_strictly_increasing(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Hundreds of arrivals in one simulated second still get distinct, ordered timestamps."""
    sim = await simulator(time_scale=0, foreign_jobs_per_s=500, concurrency=1, backlog=2000)
    api = Api(http, sim.url)
    await api.list()
    sim.advance(1)
    created = [item["created_at"] for item in reversed(await listed(api))]
    assert len(created) > 300
    assert created == sorted(set(created))


async def test_foreign_jobs_complete_and_are_billed(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Every foreign job runs to completion and is charged its price to the account's bill."""
    sim = await simulator(time_scale=0, foreign_jobs_per_s=0.05, duration_s=10, concurrency=10)
    await Api(http, sim.url).list()
    sim.advance(600)
    sim.configure(foreign_jobs_per_s=0)
    sim.advance(20)
    jobs = foreign_jobs(sim)
    assert jobs
    assert {job["status"] for job in jobs} == {"completed"}
    assert all(job["charged_micro"] == PRICE_KLING_1 for job in jobs)
    stats = sim.stats()
    account = stats["accounts"][sim.account_id(TOKEN)]
    assert account["billed_micro"] == stats["billed_micro"] == PRICE_KLING_1 * len(jobs)
    assert account["balance_micro"] == 1000 * 1_000_000 - PRICE_KLING_1 * len(jobs)


async def test_a_foreign_job_takes_a_slot_from_the_client(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """While a foreign job runs on a one-slot account, the client's new job waits backlogged."""
    sim = await simulator(time_scale=0, foreign_jobs_per_s=0.01, duration_s=100, concurrency=1)
    api = Api(http, sim.url)
    await api.list()
    while sim.stats()["foreign_jobs"] == 0:
        sim.advance(1)
    sim.configure(foreign_jobs_per_s=0)
    status, answer = await api.create()
    assert status == 200
    assert answer["status"] == "backlogged"
    sim.advance(200)
    assert (await api.job(answer["job_id"]))[1]["status"] == "completed"


async def test_a_full_account_refuses_foreign_jobs(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """With slots and backlog full, foreign jobs are not created (a real client would get 429)."""
    sim = await simulator(
        time_scale=0, foreign_jobs_per_s=0.1, duration_s=1000, concurrency=1, backlog=0
    )
    api = Api(http, sim.url)
    own = await api.created_id()
    sim.advance(900)
    stats = sim.stats()
    assert stats["foreign_jobs"] == 0
    assert stats["foreign_refused"] > 0
    assert [item["job_id"] for item in await listed(api)] == [own]


async def test_short_money_refuses_foreign_jobs(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """An account that cannot pay for the foreign request gets no foreign jobs (402 for them)."""
    sim = await simulator(time_scale=0, foreign_jobs_per_s=0.1, balance_usd="0.1")
    await Api(http, sim.url).list()
    sim.advance(500)
    stats = sim.stats()
    assert stats["foreign_jobs"] == 0
    assert stats["foreign_refused"] > 0


async def test_an_account_never_used_gets_no_foreign_jobs(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Foreign jobs appear only on accounts that sent a request, and only from that moment."""
    sim = await simulator(time_scale=0, foreign_jobs_per_s=0.1, duration_s=10, concurrency=10)
    await Api(http, sim.url).list()
    sim.advance(500)
    assert foreign_jobs(sim)
    assert foreign_jobs(sim, OTHER_TOKEN) == []
    assert sim.account_id(OTHER_TOKEN) not in sim.stats()["accounts"]
    assert await listed(Api(http, sim.url, OTHER_TOKEN)) == []


async def test_configure_stops_and_restarts_foreign_jobs(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Rate 0 stops the foreign client at once; a rate set live (also over HTTP) starts it again,
    on accounts seen before it was on too."""
    sim = await simulator(time_scale=0, duration_s=10, concurrency=10)
    await Api(http, sim.url).list()
    sim.advance(500)
    assert sim.stats()["foreign_jobs"] == 0
    sim.configure(foreign_jobs_per_s=0.1)
    sim.advance(500)
    created = sim.stats()["foreign_jobs"]
    assert created > 0
    sim.configure(foreign_jobs_per_s=0)
    sim.advance(1000)
    assert sim.stats()["foreign_jobs"] == created
    async with http.post(f"{sim.url}/_sim/config", json={"foreign_jobs_per_s": "0.1"}) as r:
        assert r.status == 200
        assert (await r.json())["foreign_jobs_per_s"] == 0.1
    sim.advance(500)
    assert sim.stats()["foreign_jobs"] > created


# -- tokens that share one account ----------------------------------------------------------------


async def test_shared_tokens_see_the_same_jobs_and_slots(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Two tokens of a group list, read and cancel each other's jobs and share one slot; a token
    outside the group sees none of it."""
    sim = await simulator(
        time_scale=0, concurrency=1, backlog=0, shared_tokens=f"{TOKEN},{OTHER_TOKEN}"
    )
    first, second, outsider = (Api(http, sim.url, t) for t in (TOKEN, OTHER_TOKEN, THIRD_TOKEN))
    job_id = await first.created_id()
    assert (await second.create())[0] == 429  # the group's one slot is taken
    assert (await outsider.create())[0] == 200
    assert [item["job_id"] for item in await listed(second)] == [job_id]
    assert (await second.job(job_id))[0] == 200
    assert (await outsider.job(job_id))[0] == 404
    assert job_id not in {item["job_id"] for item in await listed(outsider)}
    assert sim.account_id(OTHER_TOKEN) == sim.account_id(TOKEN) != sim.account_id(THIRD_TOKEN)
    assert set(sim.stats()["accounts"]) == {sim.account_id(TOKEN), sim.account_id(THIRD_TOKEN)}
    assert (await second.cancel(job_id))[0] == 200
    assert (await second.create())[0] == 200  # the slot is free again for the whole group
    dumped = json.dumps(sim.stats()) + json.dumps(sim.jobs())
    assert not any(token in dumped for token in (TOKEN, OTHER_TOKEN, THIRD_TOKEN))


async def test_shared_tokens_share_money(simulator: Any, http: aiohttp.ClientSession) -> None:
    """The group's balance is one: what one token's job reserves, the other cannot spend."""
    sim = await simulator(time_scale=0, balance_usd="0.5", shared_tokens=f"{TOKEN},{OTHER_TOKEN}")
    assert (await Api(http, sim.url).create())[0] == 200
    assert (await Api(http, sim.url, OTHER_TOKEN).create())[0] == 402
    assert (await Api(http, sim.url, THIRD_TOKEN).create())[0] == 200


async def test_a_shared_account_has_one_foreign_client(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Seen through two tokens, a shared account still gets foreign jobs at the rate once."""
    options = {"time_scale": 0, "foreign_jobs_per_s": 0.1, "duration_s": 10, "concurrency": 10}
    shared = await simulator(**options, shared_tokens=f"{TOKEN},{OTHER_TOKEN}", seed=3)
    alone = await simulator(**options, seed=3)
    for token in (TOKEN, OTHER_TOKEN):
        await Api(http, shared.url, token).list()
    await Api(http, alone.url).list()
    shared.advance(500)
    alone.advance(500)
    assert shared.stats()["foreign_jobs"] == alone.stats()["foreign_jobs"] > 0


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"shared_tokens": "a,secret-1;secret-1,c"}, "shared_tokens"),
        ({"shared_tokens": "a,,b"}, "shared_tokens"),
        ({"shared_tokens": "secret-1,secret-1"}, "shared_tokens"),
        ({"foreign_jobs_per_s": -0.5}, "foreign_jobs_per_s"),
        ({"foreign_jobs_per_s": math.inf}, "foreign_jobs_per_s"),
        ({"foreign_jobs_per_s": math.nan}, "foreign_jobs_per_s"),
    ],
)
def test_options_refuse_bad_values(changes: dict[str, Any], name: str) -> None:
    """Overlapping or empty token groups and a negative or non-finite rate are refused, and the
    message never repeats a token."""
    with pytest.raises(ValueError, match=name) as caught:
        SimulatorOptions(**changes)
    assert "secret" not in str(caught.value)


def test_options_parse_token_groups() -> None:
    """Each token of a group maps to the group's first token; stray separators are ignored."""
    groups = SimulatorOptions(shared_tokens=" a , b ;; c,d,e ;").token_groups
    assert dict(groups) == {"a": "a", "b": "a", "c": "c", "d": "c", "e": "c"}
    assert dict(SimulatorOptions().token_groups) == {}


def test_command_line_has_both_flags() -> None:
    """`orchestrator simulate` offers --foreign-jobs-per-s and --shared-tokens and checks them."""
    runner = CliRunner()
    help_text = runner.invoke(main, ["simulate", "--help"]).output
    assert "--foreign-jobs-per-s" in help_text
    assert "--shared-tokens" in help_text
    bad_rate = runner.invoke(main, ["simulate", "--foreign-jobs-per-s", "-1"])
    assert bad_rate.exit_code == 2
    assert "foreign_jobs_per_s" in bad_rate.output
    bad_groups = runner.invoke(main, ["simulate"], env={"KREA_SIM_SHARED_TOKENS": "a,b;b"})
    assert bad_groups.exit_code == 2
    assert "shared_tokens" in bad_groups.output


async def test_the_simulator_stops_when_a_change_wakes_it_as_it_stops(
    http: aiohttp.ClientSession,
) -> None:
    """Stopping ends its waker even when a change wakes the waker in that same instant.

    The waker sleeps until the foreign client's next job; a change (here ``advance``) wakes it
    with no await before the stop. Python 3.11's ``asyncio.wait_for`` swallows a cancel that
    comes with its awaitable's result (CPython gh-86296), which left the waker, and so the
    stop, running for ever: a test's teardown hung until pytest-timeout (CI, stop 24).
    """
    async with asyncio.timeout(5) as limit:
        async with running_simulator(time_scale=1, foreign_jobs_per_s=1.0) as sim:
            await Api(http, sim.url).list()  # an account: its other client's next job is due
            assert sim.stats()["foreign_jobs"] == 0  # the waker is asleep until that job
            sim.advance(0)
    assert not limit.expired(), "the stop ended only when the test's time limit cancelled it"
    assert asyncio.all_tasks() == {asyncio.current_task()}, "nothing of it is left running"
