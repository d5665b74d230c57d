"""Screenshots of the head explorer's head-on-image view on the vision organism (issue 24's closing note).

Scans the organism's VHD (`interp scan --model vision --analyses vhd --samples 8 --out DIR`) unless DIR
already holds a vhd table (DIR defaults to one per build of the organism), starts `interp explore DIR
--headless` as tests/test_app_browser.py does, and drives it in Debian's headless Chromium with Playwright
(never `playwright install`): picks a head in the sidebar, an image in the Image view (a real photo or a
held-out scene), turns the view on, waits for the plot and saves the view (from its heading to the plot)
to OUT/vision_explorer_<layer>.<head>_<image>.png.
Heads: the top two by filtered VHD (the outlier filter drops heads whose output surges with and without the
image). The organism must be built (python -m interp.organisms vision); nothing is built here.

    flock /tmp/interp-heavy.lock python benchmarks/explorer_screenshots.py [--results DIR] [--out notes/figures]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the browser settings live with the browser test (tests/tiny.py)
from tests.tiny import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

from interp.analyses.divergence import default_scenes  # noqa: E402
from interp.base.errors import InterpError  # noqa: E402
from interp.organisms import vision  # noqa: E402
from interp.run.results import open_results  # noqa: E402

START_TIMEOUT = 180  # s: the first page load imports torch and transformers in the server
PLOT_TIMEOUT = 180_000  # ms: the first plot loads the organism


def top_heads(results_dir: Path, n: int = 2) -> list[tuple[int, int]]:
    """The n heads of highest filtered VHD in a results directory."""
    table = open_results(results_dir).read_table("vhd").sort_values(["filtered", "layer", "head"], ascending=[False, True, True])
    return [(int(row.layer), int(row.head)) for row in table.head(n).itertuples()]


def ensure_scan(results_dir: Path, samples: int) -> None:
    """A vhd scan of the vision organism in results_dir, unless one is there already."""
    try:
        open_results(results_dir).read_table("vhd")
        print(f"using the vhd table in {results_dir}")
        return
    except (InterpError, OSError, KeyError):
        pass
    command = [sys.executable, "-m", "interp.cli", "scan", "--model", "vision", "--analyses", "vhd",
               "--samples", str(samples), "--out", str(results_dir)]
    print("running", " ".join(command[2:]))
    subprocess.run(command, cwd=REPO, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_explorer(results_dir: Path, port: int) -> subprocess.Popen:
    """`interp explore` in its own session (so that stopping it also stops its streamlit child), once it answers."""
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}  # no usage stats: no network
    server = subprocess.Popen([sys.executable, "-m", "interp.cli", "explore", str(results_dir), "--port", str(port), "--headless"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    deadline = time.time() + START_TIMEOUT
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
            return server
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                stop(server)
                raise RuntimeError(f"streamlit did not start:\n{server.communicate()[0] if server.poll() is not None else ''}")
            time.sleep(0.5)


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)  # the group of the process started above, nothing else
        server.wait(timeout=30)


def choose(page, label: str, option: str) -> None:
    """Pick an option of a streamlit selectbox: open it, type the option to filter the list, take the match."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()


def select_head(page, layer: int, head: int) -> None:
    choose(page, "layer", str(layer))
    choose(page, "head", str(head))
    page.get_by_role("heading", name=f"Head {layer}.{head} on an image").wait_for(timeout=60_000)


def shoot(page, layer: int, head: int, image: str, label: str, path: Path) -> None:
    """Show the head on one image and save the view, from its heading to the bottom of the plot."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    choose(page, "Held-out scene or photo", label)
    # the whole title: the plot of head 12.1 must not pass for head 2.1's, while the old plot is still shown
    title = re.compile(rf"^head {layer}\.{head} on {re.escape(image)}$")
    plot_title = page.locator(".gtitle", has_text=title)  # plotly's title
    try:
        plot_title.wait_for(timeout=30_000)
    except PlaywrightTimeout:  # the panel of another head can come back with the view off: turn it on
        page.get_by_text("Show this head on the image").click()
        plot_title.wait_for(timeout=PLOT_TIMEOUT)
    page.wait_for_timeout(1500)  # let plotly finish drawing
    # streamlit scrolls its main block, not the window: bring the view to the top of the viewport, then clip
    heading = page.get_by_role("heading", name=f"Head {layer}.{head} on an image")
    heading.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    top = heading.bounding_box()
    plot = page.locator(".js-plotly-plot", has=plot_title).bounding_box()
    page.screenshot(path=str(path), clip={"x": top["x"] - 10, "y": max(top["y"] - 10, 0), "width": 1000,
                                          "height": plot["y"] + plot["height"] - top["y"] + 20})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None,
                        help="a results directory with a vhd table of the organism (scanned if it has none) "
                             "[default: /tmp/vision/explorer-<the build's cache name>, so a rebuilt organism gets a new scan]")
    parser.add_argument("--samples", type=int, default=8, help="held-out scenes the scan runs on")
    parser.add_argument("--out", type=Path, default=REPO / "notes" / "figures", help="where the PNGs go")
    parser.add_argument("--photos", default="astronaut,chelsea", help="photos of interp.data.scenes.photos() to show")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    if not vision.is_built():  # loading it would build it: about 20 minutes, not this script's job
        raise SystemExit(f"the vision organism is not built: {vision.BUILD_COMMAND}")
    from playwright.sync_api import sync_playwright

    started = time.time()
    args.results = args.results or Path("/tmp/vision") / f"explorer-{vision.vision_dir().name}"
    ensure_scan(args.results, args.samples)
    heads = top_heads(args.results)
    photos = args.photos.split(",")
    # (head, image name, the option the selectbox shows): the first head on each photo and on a held-out scene,
    # the second head on the first photo
    scene = default_scenes()[0][0]  # the first held-out scene of the Image view
    shots = [(heads[0], name, f"photo {name}") for name in photos]
    shots.append((heads[0], scene, f"scene {scene}"))
    if len(heads) > 1:
        shots.append((heads[1], photos[0], f"photo {photos[0]}"))
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_explorer(args.results, port)
    saved = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 2400})
                page.goto(f"http://127.0.0.1:{port}")
                page.get_by_text("Show this head on the image").wait_for(timeout=START_TIMEOUT * 1000)
                page.get_by_text("Show this head on the image").click()
                for (layer, head), image, label in shots:
                    select_head(page, layer, head)
                    path = args.out / f"vision_explorer_{layer}.{head}_{image.replace(':', '-')}.png"
                    shoot(page, layer, head, image, label, path)
                    saved.append(path)
                    print(f"saved {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
            finally:
                browser.close()
    finally:
        stop(server)
    print(f"{len(saved)} screenshots in {time.time() - started:.0f} s (top heads by filtered VHD: "
          f"{', '.join(f'{l}.{h}' for l, h in heads)})")


if __name__ == "__main__":
    main()
