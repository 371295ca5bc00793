"""`orchestrator view` in a real browser: Debian's Chromium, driven by Playwright, no downloads.

Skipped when /usr/bin/chromium (or playwright) is missing, unless ORCHESTRATOR_REQUIRE_BROWSER=1
(CI sets it), which makes that a failure. Every wait is on a condition in the page
(``wait_for_function``), never a sleep.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger import Ledger
from orchestrator.view.app import make_app
from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir, orchestrator, write_manifest
from tests.integration.pipeline_support import TOKEN, ledger_rows, run_manifest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
DEMO = Path(__file__).parents[2] / "jobs.yaml.example"
WAIT_MS = 20_000
TRAVERSALS = (
    "/clips/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2fapp.py",
    "/clips/..%252f..%252fetc%252fpasswd",
    "/posters/../../etc/passwd",
)


def _browser_or_skip() -> Any:
    """Playwright's entry point, or a skip (a failure under ORCHESTRATOR_REQUIRE_BROWSER=1)."""
    required = os.environ.get("ORCHESTRATOR_REQUIRE_BROWSER") == "1"
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        if required:
            pytest.fail("ORCHESTRATOR_REQUIRE_BROWSER=1 but playwright is not installed")
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        if required:
            pytest.fail(f"ORCHESTRATOR_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    return async_playwright


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    """A fresh Chromium page (one browser per test)."""
    async_playwright = _browser_or_skip()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            # bypass_csp: the page's CSP forbids eval, which wait_for_function's predicates use
            tab = await browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
            tab.set_default_timeout(WAIT_MS)
            yield tab
        finally:
            await browser.close()


async def rows_by_id(ledger: Path, batch: str) -> dict[str, JobRecord]:
    """The batch's rows by job id, read as the page reads them (read-only)."""
    return {row.entry_id: row for row in await ledger_rows(ledger, batch)}


@asynccontextmanager
async def view_of(ledger: Path, **options: Any) -> AsyncIterator[str]:
    """The view of ``ledger`` served on 127.0.0.1; its base URL."""
    server = TestServer(make_app(ledger, **options), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def demo(simulator, tmp_path: Path) -> Path:
    """The demo manifest's 13 jobs (12 clips, a still), run to the end against the simulator."""
    shutil.copytree(DEMO.parent / "data", tmp_path / "data")  # its start frame
    sim = await simulator(time_scale=1000)
    fast = {"requests_per_second": 100.0, "max_in_flight": 13}  # not the manifest's politeness
    outcome = await run_manifest(sim, tmp_path, DEMO.read_text(), **fast)
    assert outcome.summary.exit_code == 0
    return outcome.ledger_path


async def test_gallery_posters_play_and_a_reject_survives_reload(page: Any, demo: Path) -> None:
    """All 13 cards show a poster (a still is its own); one plays; keys reject and unmark; a
    reload keeps the mark."""
    async with view_of(demo) as base:
        await page.goto(f"{base}/")
        await page.wait_for_function("document.body.dataset.liveVersion")
        await page.screenshot(path="/tmp/view-batches.png", full_page=True)
        await page.goto(f"{base}/batches/demo")
        await page.wait_for_function("document.querySelectorAll('#grid .card').length === 13")
        await page.wait_for_function(
            "[...document.querySelectorAll('#grid .card img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        await page.screenshot(path="/tmp/view-gallery.png", full_page=True)

        await page.click("#grid .card .frame")
        await page.wait_for_function(
            "(() => { const v = document.querySelector('#grid .card video');"
            " return v && v.readyState >= 2 && v.currentTime > 0; })()"
        )

        await page.focus("#grid .card")
        await page.keyboard.press("ArrowRight")
        key = await page.evaluate("document.activeElement.dataset.key")
        second = f"#grid .card[data-key='{key}']"
        await page.keyboard.press("x")
        await page.wait_for_function(
            f"document.querySelector(\"{second}\").dataset.mark === 'reject'"
        )
        await page.keyboard.press("p")
        await page.wait_for_function(
            f"document.querySelector(\"{second}\").dataset.mark === 'pick'"
        )
        await page.keyboard.press("p")  # again: unmarked
        await page.wait_for_function(f"document.querySelector(\"{second}\").dataset.mark === ''")
        await page.keyboard.press("x")
        await page.wait_for_function(
            f"document.querySelector(\"{second}\").dataset.mark === 'reject'"
        )

        await page.reload()
        await page.wait_for_function(
            f'(() => {{ const c = document.querySelector("{second}");'
            " return c && c.classList.contains('reject'); })()"
        )
        assert await page.text_content("#mark-counts [data-count=reject]") == "1"
        await page.goto(f"{base}/jobs/{key}")
        await page.wait_for_function(
            "document.querySelector('article.job').dataset.mark === 'reject'"
        )
        await page.screenshot(path="/tmp/view-job.png", full_page=True)


async def test_traversal_urls_get_404_in_the_browser(page: Any, demo: Path) -> None:
    """``..`` and its encodings, typed in the address bar or sent as is, reach nothing."""
    async with view_of(demo) as base:
        for path in TRAVERSALS:
            response = await page.goto(f"{base}{path}")
            assert response is not None
            assert response.status == 404, path
            raw = await page.request.get(f"{base}{path}")
            assert raw.status == 404, path


async def test_batches_page_follows_a_run(page: Any, simulator, tmp_path: Path) -> None:
    """While a run proceeds in another process, the batches page's counts rise without reload."""
    sim = await simulator(time_scale=40, concurrency=2)
    work = Workdir(tmp_path, sim, 40.0)
    write_manifest(tmp_path, 6)
    code, _, err = await work.run("--limit", "1")  # the batch exists, one clip done
    assert code == 0, err
    async with view_of(work.ledger) as base:
        await page.goto(f"{base}/")
        done = "document.querySelector('[data-batch=e2e] [data-field=\"state.done\"]')"
        await page.wait_for_function(f"{done}.textContent === '1'")
        await page.evaluate("window.notReloaded = true")
        run = await work.start()
        try:
            await page.wait_for_function(
                f"window.notReloaded && Number({done}.textContent) >= 3", timeout=60_000
            )
        finally:
            await asyncio.wait_for(run.communicate(), 120)
        assert run.returncode == 0
        await page.wait_for_function(
            f"window.notReloaded && {done}.textContent === '6'", timeout=60_000
        )


async def test_reroll_from_the_gallery_makes_a_new_take_and_keeps_the_old_file(
    page: Any, simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reject eagle, press "Reroll rejected": the real `orchestrator reroll` runs, Krea gets
    exactly one new job, eagle~r2 appears with its poster, eagle.mp4 is the same file."""
    shutil.copytree(DEMO.parent / "data", tmp_path / "data")
    sim = await simulator(time_scale=1000)
    fast = {"requests_per_second": 100.0, "max_in_flight": 13}
    outcome = await run_manifest(sim, tmp_path, DEMO.read_text(), **fast)
    assert outcome.summary.exit_code == 0
    eagle = outcome.out_dir / "demo" / "kling_kling-2.5" / "eagle.mp4"
    first = eagle.read_bytes()
    monkeypatch.setenv("KREA_API_KEY", TOKEN)
    argv = orchestrator(
        "reroll", "--ledger", str(outcome.ledger_path), "--api-base", sim.url,
        "--time-scale", "1000", "--progress", "plain",
    )  # fmt: skip

    async with view_of(outcome.ledger_path, reroll_argv=lambda b: [*argv, "--batch", b]) as base:
        await page.goto(f"{base}/batches/demo")
        await page.wait_for_function("document.querySelectorAll('#grid .card').length === 13")
        await page.click("#grid .card:first-child button[data-set=reject]")
        await page.wait_for_function(
            "document.querySelector('#grid .card:first-child').dataset.mark === 'reject'"
        )
        await page.click("#reroll")
        await page.wait_for_function(
            "document.querySelector('#reroll-status').dataset.exitCode", timeout=60_000
        )
        status = await page.text_content("#reroll-status")
        assert await page.get_attribute("#reroll-status", "data-exit-code") == "0", status
        await page.wait_for_function("document.querySelectorAll('#grid .card').length === 14")
        await page.wait_for_function(
            "[...document.querySelectorAll('#grid .card img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        await page.screenshot(path="/tmp/view-reroll.png", full_page=True)

    assert eagle.read_bytes() == first
    take = (await rows_by_id(outcome.ledger_path, "demo"))["eagle~r2"]
    assert take.state is JobState.DONE
    assert (outcome.out_dir / (take.output_path or "")).read_bytes() != first
    assert len(sim.jobs()) == 14


async def test_reroll_of_a_rejected_frame_makes_its_shot_again_from_the_new_frame(
    page: Any, simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reject the demo's keeper-frame (a still), press "Reroll rejected": the page says the
    shot made from it is taken again too, and both new takes appear as cards, the new shot
    made by Krea from the new frame's result."""
    shutil.copytree(DEMO.parent / "data", tmp_path / "data")
    sim = await simulator(time_scale=1000)
    fast = {"requests_per_second": 100.0, "max_in_flight": 13}
    outcome = await run_manifest(sim, tmp_path, DEMO.read_text(), **fast)
    assert outcome.summary.exit_code == 0
    frame = (await rows_by_id(outcome.ledger_path, "demo"))["keeper-frame"]
    monkeypatch.setenv("KREA_API_KEY", TOKEN)
    argv = orchestrator(
        "reroll", "--ledger", str(outcome.ledger_path), "--api-base", sim.url,
        "--time-scale", "1000", "--progress", "plain",
    )  # fmt: skip
    card = f"#grid .card[data-key='{frame.key}']"

    async with view_of(outcome.ledger_path, reroll_argv=lambda b: [*argv, "--batch", b]) as base:
        await page.goto(f"{base}/batches/demo")
        await page.wait_for_function("document.querySelectorAll('#grid .card').length === 13")
        await page.click(f"{card} button[data-set=reject]")
        await page.wait_for_function(
            f"document.querySelector(\"{card}\").dataset.mark === 'reject'"
        )
        await page.click("#reroll")
        await page.wait_for_function(
            "document.querySelector('#reroll-status').dataset.exitCode", timeout=60_000
        )
        status = await page.text_content("#reroll-status") or ""
        assert await page.get_attribute("#reroll-status", "data-exit-code") == "0", status
        assert "keeper-shot: new take keeper-shot~r2, from keeper-frame~r2" in status
        await page.wait_for_function("document.querySelectorAll('#grid .card').length === 15")
        new_cards = (
            "[...document.querySelectorAll('#grid .card')]"
            ".filter(c => c.querySelector('.id').textContent.endsWith('~r2'))"
        )
        await page.evaluate(f"{new_cards}.at(-1).scrollIntoView()")  # posters load lazily
        await page.wait_for_function(
            f"{new_cards}.length === 2 && {new_cards}.every(c => c.dataset.state === 'done' "
            "&& c.querySelector('img').complete && c.querySelector('img').naturalWidth > 0)"
        )
        await page.screenshot(path="/tmp/view-reroll-chain.png", full_page=True)

    rows = await rows_by_id(outcome.ledger_path, "demo")
    new_frame, new_shot = rows["keeper-frame~r2"], rows["keeper-shot~r2"]
    assert (new_frame.state, new_shot.state) == (JobState.DONE, JobState.DONE)
    made_from = {job["job_id"]: job for job in sim.jobs()}[new_shot.remote_id or ""]["inputs_from"]
    assert made_from == {"start_image": new_frame.remote_id}
    assert len(sim.jobs()) == 15


async def test_a_mark_made_while_a_run_writes_the_ledger_is_kept(
    page: Any, simulator: StartSimulator, tmp_path: Path
) -> None:
    """A reviewer rejects a clip while a run is sending and downloading the rest: the mark is
    in the ledger at once, and still there after the run ends and the page reloads. Meanwhile
    the gallery follows the run: each card turns done, with its poster, without a reload."""
    sim = await simulator(time_scale=40, concurrency=2)
    work = Workdir(tmp_path, sim, 40.0)
    write_manifest(tmp_path, 6)
    code, _, err = await work.run("--limit", "1")
    assert code == 0, err
    async with view_of(work.ledger) as base:
        await page.goto(f"{base}/batches/e2e")
        await page.wait_for_function("document.querySelectorAll('#grid .card').length === 6")
        await page.evaluate("window.notReloaded = true")
        run = await work.start()
        try:
            await sim.wait_until(lambda stats: stats["jobs_created"] >= 3)  # the run is writing
            await page.click("#grid .card:first-child button[data-set=reject]")
            await page.wait_for_function(
                "document.querySelector('#grid .card:first-child').dataset.mark === 'reject'"
            )
            async with Ledger.open(work.ledger, readonly=True) as ledger:
                assert list((await ledger.marks("e2e")).values()) == ["reject"]
        finally:
            await asyncio.wait_for(run.communicate(), 120)
        assert run.returncode == 0
        await page.wait_for_function(
            "window.notReloaded && [...document.querySelectorAll('#grid .card')]"
            ".every(c => c.dataset.state === 'done' && c.querySelector('img').naturalWidth > 0)"
        )
        await page.reload()
        await page.wait_for_function(
            "document.querySelector('#grid .card:first-child')?.dataset.mark === 'reject'"
        )


async def test_a_still_is_shown_as_itself_in_the_gallery_and_on_its_page(
    page: Any, simulator, tmp_path: Path
) -> None:
    """A still's card shows the still (not a poster of a clip) and does not play; its page
    shows it as an image of the simulator's 64 x 36 pixels, served as image/png."""
    sim = await simulator(time_scale=1000)
    text = (
        "batch: s\njobs:\n"
        "  - {id: frame, model: image/google/nano-banana-pro, prompt: a lighthouse keeper}\n"
        "  - {id: shot, model: kling/kling-2.5, prompt: the keeper climbs, duration: 5}\n"
    )
    outcome = await run_manifest(sim, tmp_path, text)
    assert outcome.summary.exit_code == 0
    keys = {entry: row.key for entry, row in (await rows_by_id(outcome.ledger_path, "s")).items()}
    still = f"#grid .card[data-key='{keys['frame']}']"
    async with view_of(outcome.ledger_path) as base:
        await page.goto(f"{base}/batches/s")
        await page.wait_for_function(
            "[...document.querySelectorAll('#grid .card img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        assert await page.eval_on_selector(f"{still} img", "i => i.naturalWidth") == 64
        await page.screenshot(path="/tmp/view-stills.png", full_page=True)
        await page.click(f"{still} .frame")
        assert await page.query_selector(f"{still} video") is None, "a still does not play"

        answer = await page.goto(f"{base}/clips/{keys['frame']}")
        assert answer is not None
        assert answer.headers["content-type"] == "image/png"
        await page.goto(f"{base}/jobs/{keys['frame']}")
        await page.wait_for_function(
            "(() => { const i = document.querySelector('article.job .media img');"
            " return i && i.complete && i.naturalWidth === 64; })()"
        )
        assert await page.query_selector("article.job .media video") is None
        await page.screenshot(path="/tmp/view-still-job.png", full_page=True)


async def test_a_blocked_shot_says_why_on_its_card_and_its_page(
    page: Any, simulator, tmp_path: Path
) -> None:
    """A storyboard whose keeper still Krea flagged: the shot taking it is waiting, in the
    waiting colour, and its card and page say it is blocked and why; the page links the still."""
    sim = await simulator(time_scale=1000)
    sea = (
        "batch: s\njobs:\n"
        "  - {id: sea-frame, model: image/google/nano-banana-pro, prompt: the sea at dawn}\n"
        "  - {id: sea-shot, model: kling/kling-2.5, prompt: waves roll in, duration: 5,"
        " start_image: {from: sea-frame}}\n"
    )
    assert (await run_manifest(sim, tmp_path, sea)).summary.exit_code == 0
    sim.configure(moderation_rate=1.0)
    keeper = (
        "  - {id: keeper-frame, model: image/google/nano-banana-pro, prompt: a keeper}\n"
        "  - {id: keeper-shot, model: kling/kling-2.5, prompt: he climbs, duration: 5,"
        " start_image: {from: keeper-frame}}\n"
    )
    outcome = await run_manifest(sim, tmp_path, sea + keeper)
    assert outcome.summary.exit_code == 1
    keys = {entry: row.key for entry, row in (await rows_by_id(outcome.ledger_path, "s")).items()}
    shot = f"#grid .card[data-key='{keys['keeper-shot']}']"
    async with view_of(outcome.ledger_path) as base:
        await page.goto(f"{base}/batches/s")
        await page.wait_for_function("document.querySelectorAll('#grid .card').length === 4")
        reason = await page.text_content(f"{shot} .reason")
        assert reason is not None
        assert reason.startswith("blocked: input keeper-frame failed: moderation: ")
        badge = await page.eval_on_selector(f"{shot} .badge", "b => getComputedStyle(b).color")
        assert badge == "rgb(138, 147, 201)"  # --waiting, not the default text colour
        await page.screenshot(path="/tmp/view-blocked.png", full_page=True)

        await page.goto(f"{base}/jobs/{keys['keeper-shot']}")
        assert await page.text_content("article.job .placeholder") == "waiting (blocked)"
        await page.click("text=keeper-frame · failed")
        await page.wait_for_function("document.querySelector('h1').textContent === 'keeper-frame'")
        await page.go_back()
        await page.screenshot(path="/tmp/view-blocked-job.png", full_page=True)
