"""End to end: `interp explore DIR` (streamlit on localhost) driven by Playwright in
Debian's headless Chromium (never `playwright install`: nothing is downloaded). Saves
test-artifacts/explorer.png."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from interp.run.results import open_results
from tests.tiny import CHROMIUM, CHROMIUM_ARGS, REPO, make_results

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed: apt-get install -y chromium chromium-driver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    """(url, results directory) of a running head explorer; stopped after the tests."""
    results = make_results(tmp_path_factory.mktemp("browser"))
    port = free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}  # no usage stats: no network
    # `interp explore` runs `streamlit run apps/head_explorer.py ... -- DIR`; its own session, so
    # that stopping it also stops the streamlit child it starts.
    server = subprocess.Popen(
        [sys.executable, "-m", "interp.cli", "explore", str(results), "--port", str(port), "--headless"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"streamlit did not start:\n{server.communicate()[0] if server.poll() is not None else ''}")
                time.sleep(0.3)
        yield url, results
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the group of the process started above, nothing else
        server.wait(timeout=30)


def click_cell(page, heatmap, layer: int, head: int, n_layers: int, n_heads: int) -> None:
    """Click the centre of a heat map cell until the page shows that head (the first click
    can land while plotly is still attaching its handlers)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        area = heatmap.locator(".nsewdrag").first.bounding_box()
        page.mouse.click(area["x"] + (layer + 0.5) / n_layers * area["width"],
                         area["y"] + (head + 0.5) / n_heads * area["height"])
        try:
            page.get_by_role("heading", name=f"Head {layer}.{head}").wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def test_heat_map_click_shows_the_heads_detail_and_attention(explorer):
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package ([dev] extra) is not installed")
    url, results = explorer
    best = open_results(results).read_table("first_token").nlargest(1, "score")
    best_name = f"Head {best['layer'].item()}.{best['head'].item()}"
    target = (1, 3) if best_name != "Head 1.3" else (0, 1)  # a cell that is not selected yet

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(url)
            # the first page load imports torch and transformers in the server: allow for it
            page.get_by_role("heading", name=best_name).wait_for(timeout=120_000)
            heatmap = page.locator(".js-plotly-plot").first
            heatmap.wait_for(timeout=60_000)
            assert page.locator(".js-plotly-plot .heatmaplayer").count() >= 1

            # click the target cell: layers run left to right, heads top to bottom (2 x 4 cells)
            layer, head = target
            click_cell(page, heatmap, layer, head, n_layers=2, n_heads=4)
            page.get_by_text("first_token score").first.wait_for()

            # where the head attends: the server loads the tiny model from the manifest and runs it
            page.get_by_text("Show where this head attends").click()
            page.get_by_text(f"head {layer}.{head}: attention of every token").wait_for(timeout=120_000)
            prompt = page.get_by_label("Prompt").first
            prompt.fill("w5 w17 w3 w42 w8 w5 w17 w60 w2 w9")  # words of the tiny tokenizer
            prompt.press("Control+Enter")  # streamlit commits a text area on Ctrl+Enter
            page.get_by_text(f"head {layer}.{head}: attention of every token (10 tokens)").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)  # let plotly finish drawing before the screenshot

            artifacts = REPO / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "explorer.png"), full_page=True)
        finally:
            browser.close()
    assert (artifacts / "explorer.png").stat().st_size > 10_000
