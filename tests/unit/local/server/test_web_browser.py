"""The pages in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright's Python API; never
`playwright install`) signs in through the one-time link, sees the kernel's log and confusion matrix, follows a
running kernel's log live, and meets no script error or Content-Security-Policy refusal on the way.

Screenshots go to the test's folder; with KAGFLOW_SCREENSHOTS=DIR (e.g. docs/img) also to DIR/kernel-page.png
and DIR/leaderboard.png, the README's pictures (so CI never rewrites the committed files).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import requests
from web_fixtures import ALICE, COMPETITION, KEYS, TEAMS, TRAIN, client, write_notebook_kernel

from local_fixtures import wait_kernel

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS_ENV = "KAGFLOW_SCREENSHOTS"
TIMEOUT_MS = 60_000

if not CHROMIUM.exists():
    pytest.skip(f"no {CHROMIUM}: install Debian's chromium (make setup does, with apt, where it can)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra has it)")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def alice_page(browser, web_site):
    """A tab signed in as alice through a one-time link; the test fails on any console error or page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    problems = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    with requests.Session() as s:
        s.trust_env = False
        link = s.post(web_site.url + "/web/login-link", auth=(ALICE, KEYS[ALICE]), timeout=30).json()["url"]
    tab.goto(link)
    assert tab.url == web_site.url + "/" and tab.inner_text(".who b") == ALICE
    yield tab
    context.close()
    assert not problems, problems  # a CSP refusal is a console error


def _save(tab, tmp_path: Path, name: str, until: str, margin: int = 24) -> Path:
    """A screenshot of the page from its top to the bottom of the element ``until`` (and ``margin`` pixels)."""
    shot = tmp_path / name
    box = tab.locator(until).first.bounding_box()
    tab.screenshot(path=str(shot), full_page=True, clip={"x": 0, "y": 0, "width": tab.viewport_size["width"],
                                                         "height": box["y"] + box["height"] + margin})
    assert shot.stat().st_size > 10_000
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(folder) / name)
    return shot


def test_kernel_page_shows_the_log_and_the_confusion_matrix(alice_page, web_site, tmp_path):
    tab = alice_page
    tab.goto(f"{web_site.url}/code/{ALICE}/{TRAIN}")
    assert "step 40/40" in tab.inner_text("#log")
    image = tab.locator('img[alt="confusion_matrix.png"]')
    image.wait_for()
    assert tab.wait_for_function("img => img.complete && img.naturalWidth > 300", arg=image.element_handle())
    assert "log_loss" in tab.inner_text("table.metrics")
    assert tab.locator("tr.chosen").first.inner_text().startswith("v3")
    _save(tab, tmp_path, "kernel-page.png", until=".run")


def test_leaderboard_page(alice_page, web_site, tmp_path):
    tab = alice_page
    tab.goto(f"{web_site.url}/competitions/{COMPETITION}/leaderboard")
    rows = tab.locator("table.leaderboard tbody tr")
    assert rows.count() == 1 + len(TEAMS) and "alice" in rows.first.inner_text()
    _save(tab, tmp_path, "leaderboard.png", until="footer", margin=0)


def test_a_running_kernels_log_grows_on_its_page(alice_page, web_site, tmp_path):
    alice = client(web_site.url, ALICE)
    slug = "ticking-notebook"
    alice.kernels_push(str(write_notebook_kernel(tmp_path / "k", ALICE, slug, "Ticking notebook", [
        "import time\nfor i in range(100000):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.3)"])))
    tab = alice_page
    try:
        for _ in range(600):  # until the run has begun writing its log
            tab.goto(f"{web_site.url}/code/{ALICE}/{slug}")
            if "tick" in tab.inner_text("#log"):
                break
            time.sleep(0.2)
        shown = tab.inner_text("#log").count("tick ")
        assert shown and tab.locator(".live").count() == 1
        last = max(int(line.split()[1]) for line in tab.inner_text("#log").splitlines() if line.startswith("tick "))
        # lines printed after the page was served arrive through the stream, each once, in order
        tab.wait_for_function(f"() => document.getElementById('log').textContent.includes('tick {last + 3}\\n')")
        ticks = [int(line.split()[1]) for line in tab.inner_text("#log").splitlines() if line.startswith("tick ")]
        assert ticks == list(range(ticks[0], ticks[-1] + 1)), ticks
    finally:
        assert web_site.cancel_kernel(ALICE, slug)
    wait_kernel(alice, f"{ALICE}/{slug}")
    tab.wait_for_selector(".status-line .status-cancel_acknowledged")  # the page reloaded when the stream ended
    assert tab.locator(".live").count() == 0
