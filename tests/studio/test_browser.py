"""The studio in a real browser (Playwright driving Debian's chromium).

Screenshots of every page go to tests/artifacts/screenshots/ (git-ignored); with
MEGASIM_DOC_SCREENSHOTS=1 they also replace the ones committed under docs/studio/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.studio.conftest import StudioServer, make_run, private_copy, start_live_run

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "screenshots"
DOCS = Path(__file__).parents[2] / "docs" / "studio"


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    if os.environ.get("MEGASIM_DOC_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, DOCS / f"{name}.png")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "browser tests need Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def big_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of 100,000 surrogate agents over two rounds."""
    runs = tmp_path_factory.mktemp("big")
    make_run(runs, "big", size=100_000, rounds=2)
    return runs


@pytest.fixture
def big_copy(big_runs: Path, tmp_path: Path) -> Path:
    return private_copy(big_runs, tmp_path)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, errors


def test_agent_browser_pages_filters_and_opens_an_agent(big_copy: Path, page: Page) -> None:
    with StudioServer(big_copy) as server:
        page.goto(f"{server.url}/runs/big/agents")
        expect(page.locator("#counts")).to_contain_text("100,000 of 100,000 agents match")
        expect(page.locator("#agents tbody tr")).to_have_count(50)
        page.click("#next")
        expect(page.locator("#page")).to_have_text("51–100 of 100,000")
        page.select_option("#f-col", "education")
        page.fill("#f-val", "PhD")
        page.click("text=Add filter")
        expect(page.locator("#chips")).to_contain_text("education=PhD")
        page.select_option("#f-col", "age")
        page.select_option("#f-op", ">=")
        page.fill("#f-val", "60")
        page.click("text=Add filter")
        expect(page.locator("#counts")).not_to_contain_text("100,000 of")
        counts = page.locator("#counts").inner_text()
        matching = int(re.sub(r"[^0-9]", "", counts.split(" of ")[0]))
        assert 0 < matching < 100_000
        page.click("th[data-key=value]")  # sort by answer, then descending
        page.click("th[data-key=value]")
        expect(page.locator("th[data-key=value]")).to_have_class(re.compile("desc"))
        headers = page.locator("#agents thead th").evaluate_all("hs => hs.map(h => h.dataset.key)")
        column = headers.index("education") + 1
        cells = page.locator(f"#agents tbody tr td:nth-child({column})").all_inner_texts()
        assert cells[:10] == ["PhD"] * 10
        shoot(page, "agents")
        first = page.locator("#agents tbody tr td a").first
        agent_id = first.inner_text()
        first.click()
        expect(page.locator("#title")).to_have_text(f"Agent {agent_id}")
        expect(page.locator("#decisions tbody tr")).to_have_count(2)
        page.locator("#decisions summary").first.click()
        expect(page.locator("#decisions pre").first).to_contain_text("[system]")
        page.fill("#question", "What did you expect the others to do?")
        page.click("#ask button")
        expect(page.locator("#answer")).to_contain_text("[surrogate]")
        shoot(page, "agent")


def test_survey_of_fifty_shows_its_chart(big_copy: Path, page: Page) -> None:
    with StudioServer(big_copy) as server:
        page.goto(f"{server.url}/runs/big/ask")
        expect(page.locator("#answers")).to_contain_text("Nothing asked yet")
        page.fill("#s-question", "Would you play again?")
        page.fill("#s-options", "yes, no, unsure")
        page.fill("#s-where", "model=quick")
        page.fill("#s-sample", "50")
        page.click("#survey button")
        expect(page.locator("#s-result")).to_contain_text("50 agents asked", timeout=30_000)
        expect(page.locator("#answers tbody tr")).to_have_count(50)
        page.select_option("#chart-by", "education")
        expect(page.locator("#chart .bars path").first).to_be_visible()
        expect(page.locator("#answers")).to_contain_text("stand-in model")
        shoot(page, "survey")
        page.fill("#i-agent", "12")
        page.fill("#i-question", "How old are you?")
        page.click("#interview button")
        expect(page.locator("#i-result")).to_contain_text("agent 12")


def test_runs_page_report_and_empty_states(big_copy: Path, page: Page) -> None:
    with StudioServer(big_copy) as server:
        page.goto(server.url)
        expect(page.locator("#runs tbody tr")).to_have_count(1)
        expect(page.locator("#runs")).to_contain_text("stand-in")
        shoot(page, "runs")
        page.goto(f"{server.url}/runs/big/report")
        expect(page.locator("#files")).to_contain_text("No report rendered yet")
        page.click("#render")
        expect(page.locator("#files img").first).to_be_visible(timeout=60_000)
        page.goto(f"{server.url}/runs/big/cluster")
        expect(page.locator("#state")).to_contain_text("done")
        expect(page.locator("#partitions")).to_contain_text("no keyed-state partition")


def test_live_dashboard_updates_and_pause_resume_stop(tmp_path: Path, page: Page) -> None:
    process = start_live_run(tmp_path, "live", size=5000, rounds=40, latency_s=0.3)
    try:
        with StudioServer(tmp_path) as server:
            page.goto(f"{server.url}/runs/live")
            expect(page.locator("#state")).to_contain_text("running")
            label = page.locator("#step-label")
            first = label.inner_text()
            expect(label).not_to_have_text(first, timeout=5_000)  # moved by itself
            expect(page.locator("#outcome .scatterlayer path").first).to_be_attached()
            expect(page.locator("#histogram .bars path").first).to_be_attached()
            expect(page.locator("#breakdown .scatterlayer path").first).to_be_attached()
            expect(page.locator("#breakdown-table tbody tr")).to_have_count(2)
            shoot(page, "dashboard")
            page.click("#pause")
            page.click("#confirm-ok")
            expect(page.locator("#state")).to_contain_text("paused", timeout=10_000)
            paused_at = label.inner_text()
            page.wait_for_timeout(1500)
            expect(label).to_have_text(paused_at)
            page.click("#resume")
            page.click("#confirm-ok")
            expect(page.locator("#state")).to_contain_text("running", timeout=10_000)
            page.goto(f"{server.url}/runs/live/cluster")
            expect(page.locator("#shards tbody tr")).to_have_count(1)
            shoot(page, "cluster")
            page.goto(f"{server.url}/runs/live")
            page.click("#stop")
            page.click("#confirm-ok")
            expect(page.locator("#state")).to_contain_text("stopped", timeout=15_000)
            expect(page.locator("#events")).to_contain_text("stop_requested")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_missing_run_page_and_studio_gone_notice(big_copy: Path, page: Page) -> None:
    """A request that fails (studio stopped) is shown on the page, never an uncaught error."""
    with StudioServer(big_copy) as server:
        page.goto(f"{server.url}/runs/gone/agents")  # a bookmark of a deleted run
        expect(page.locator("#missing")).to_contain_text("no run 'gone' in the runs folder")
        expect(page.locator("header.top a.brand")).to_be_visible()
        shoot(page, "missing")
        page.goto(f"{server.url}/runs/big")
        expect(page.locator("#hist-step option")).to_have_count(2)
        expect(page.locator("#histogram .bars path").first).to_be_attached()
    page.select_option("#hist-step", index=0)
    expect(page.locator("#notice")).to_contain_text("cannot load the step's data")
    expect(page.locator("#notice")).to_contain_text("the studio cannot be reached")
    shoot(page, "studio-gone")
