"""The page at `GET /` in a real browser: Debian's Chromium (/usr/bin/chromium, headless) driven by
Playwright against real `vidgen serve` processes on the tiny models. A video is made from the page's form
and played to its last frame; a Helios stream is watched while it grows and steered from its box.

Playwright drives the system browser only (never `playwright install`); CI installs Debian's `chromium`
package (.ci/run). Waits poll with generous deadlines, never fixed sleeps.
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEADLINE = 150.0  # seconds: a loaded 2-core machine is slow; a healthy test never waits this long
WAIT_MS = DEADLINE * 1000
KEY = "page-key-" + uuid.uuid4().hex
FAST = ["--steps", "1", "--guidance", "1"]
CHUNK = 33  # a tiny Helios chunk's frames


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PageServer:
    """`vidgen serve ARGS` in a subprocess, its output in a log file."""

    def __init__(self, folder: Path, args: list[str], key: str | None = None) -> None:
        self.folder, self.port = folder, _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = folder.parent / f"{folder.name}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        env.pop("VIDGEN_API_KEY", None)
        command = [sys.executable, "-m", "vidgen", "serve", "--dir", str(folder), "--port", str(self.port)]
        command += [*args, "--api-key", key] if key else args
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self) -> None:
        import urllib.error
        import urllib.request

        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            try:
                with urllib.request.urlopen(self.url + "health", timeout=10) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not load its model:\n{self.log.read_text(errors='replace')}")

    def sidecar(self, video_id: str) -> dict | None:
        try:
            return json.loads((self.folder / f"{video_id}.mp4.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A keyed tiny-cogvideox server and a tiny-helios one, started together (they load side by side)."""
    folder = tmp_path_factory.mktemp("page")
    started = {
        "cog": PageServer(folder / "cog", ["--model", "tiny-cogvideox", *FAST], KEY),
        "helios": PageServer(folder / "helios", ["--model", "tiny-helios", *FAST]),
    }
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the page test needs Debian's Chromium (apt-get install -y chromium)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A tab as narrow as a small phone; every URL it asked for is kept in `page.urls`."""
    context = browser.new_context(viewport={"width": 360, "height": 740})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.urls = []
    tab.on("request", lambda request: tab.urls.append(request.url))
    tab.problems = []
    tab.on("pageerror", lambda error: tab.problems.append(str(error)))
    yield tab
    context.close()


def card(page, prompt: str):
    return page.locator("li.job", has=page.get_by_role("heading", name=prompt))


def video_id(page, prompt: str) -> str:
    return card(page, prompt).get_attribute("data-id")


def wait_played_to_the_end(page, selector: str) -> dict:
    """The video's state once it has played to its last frame (`ended`, or at its duration)."""
    page.wait_for_function(
        """(selector) => {
            const video = document.querySelector(selector);
            return video && video.videoWidth > 0 && Number.isFinite(video.duration) && video.duration > 0
                && (video.ended || video.currentTime >= video.duration - 0.05);
        }""",
        arg=selector,
        timeout=WAIT_MS,
        polling=100,
    )
    return page.eval_on_selector(
        selector,
        "v => ({ended: v.ended, time: v.currentTime, duration: v.duration, width: v.videoWidth,"
        " height: v.videoHeight, error: v.error && v.error.code})",
    )


def test_a_video_made_from_the_page_reaches_100_percent_and_plays_to_its_last_frame(servers, page):
    server = servers["cog"]
    server.wait_ready()
    page.goto(server.url)
    page.get_by_label("API key").fill(KEY)  # the keyed server's list answers 401: the page asks once
    page.get_by_role("button", name="Use key").click()
    page.wait_for_function("() => document.getElementById('health').textContent.includes('ready')")
    assert "tiny-cogvideox" in page.locator("#health").inner_text()
    assert page.get_by_label("Stream: watch it while it is made, steer it chunk by chunk").is_hidden()
    assert page.get_by_label("Start from an image (optional)").is_hidden()  # tiny-cogvideox: text only

    page.get_by_label("Size (WIDTHxHEIGHT)").fill("97x64")  # odd: the API's one-line 400 shows
    page.get_by_label("Prompt", exact=True).fill("a cat walks")
    page.get_by_role("button", name="Generate").click()
    error = page.locator("#create-error")
    error.wait_for(state="visible")
    assert "97" in error.inner_text() and "\n" not in error.inner_text()

    page.get_by_label("Size (WIDTHxHEIGHT)").fill("96x64")
    page.get_by_label("Frames").fill("9")
    page.get_by_label("Seed").fill("5")
    page.get_by_role("button", name="Generate").click()
    job = card(page, "a cat walks")
    job.locator(".status", has_text="completed · 100%").wait_for()
    assert job.locator("progress").evaluate("bar => bar.value") == 100
    assert error.inner_text() == ""

    play = job.get_by_role("button", name="Play")
    play.focus()
    page.keyboard.press("Enter")  # keyboard usable
    played = wait_played_to_the_end(page, f"#job-{video_id(page, 'a cat walks')} video")
    assert played["width"] == 96 and played["height"] == 64 and played["error"] is None, played
    assert abs(played["duration"] - 9 / 8) < 0.1, played  # 9 frames at 8 fps: every frame was there

    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360  # no sideways scrolling
    assert not any(KEY in url for url in page.urls), "the key went into a URL"
    assert page.evaluate("() => sessionStorage.getItem('vidgen-api-key')") == KEY

    the_id = video_id(page, "a cat walks")
    page.once("dialog", lambda dialog: dialog.accept())
    job.get_by_role("button", name="Delete").click()
    job.wait_for(state="detached")
    assert not list(server.folder.glob(f"{the_id}*"))
    assert page.problems == []


def test_a_stream_started_from_the_page_plays_while_it_grows_and_is_steered_from_its_box(servers, page):
    server = servers["helios"]
    server.wait_ready()
    page.goto(server.url)
    stream = page.get_by_label("Stream: watch it while it is made, steer it chunk by chunk")
    stream.wait_for()
    page.get_by_label("Prompt", exact=True).fill("a long walk")
    page.get_by_label("Frames").fill(str(CHUNK * 500))  # more chunks than the test waits for
    page.get_by_label("Seed").fill("3")
    stream.check()
    page.get_by_role("button", name="Generate").click()

    job = card(page, "a long walk")
    steer = job.get_by_label("Steer: a line takes over from the next chunk")
    steer.wait_for()
    the_id = video_id(page, "a long walk")
    player = f"#job-{the_id} video"
    page.wait_for_function(  # the first chunk plays while later ones are made
        "(s) => { const v = document.querySelector(s); return v && v.videoWidth > 0 && v.currentTime > 0; }",
        arg=player,
        timeout=WAIT_MS,
        polling=100,
    )
    assert job.locator(".status").inner_text().startswith("in progress")

    steer.fill("a robot dances")
    steer.press("Enter")
    job.locator(".sent li", has_text="a robot dances").wait_for()
    end = time.monotonic() + DEADLINE
    while not any(cue["prompt"] == "a robot dances" for cue in _cues(server, the_id)):
        assert time.monotonic() < end, "the steering line never reached the stream's record"
        time.sleep(0.2)
    robot = next(cue for cue in _cues(server, the_id) if cue["prompt"] == "a robot dances")
    assert robot["chunk"] >= 1

    job.get_by_role("button", name="End stream").click()
    job.locator(".status", has_text="completed · 100%").wait_for()
    played = wait_played_to_the_end(page, player)
    final = server.sidecar(the_id)
    chunks = final["stream"]["chunks"]
    assert chunks >= 2 and played["error"] is None and played["width"] > 0, played
    frames, fps = final["output"]["frames"], final["settings"]["fps"]
    assert frames == chunks * CHUNK and abs(played["duration"] - frames / fps) < 0.1, (played, final)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    assert page.problems == []


def test_an_image_chosen_in_the_page_is_uploaded_and_animated(servers, page, tmp_path):
    server = servers["helios"]
    server.wait_ready()
    picture = tmp_path / "start.png"
    Image.fromarray(np.full((32, 48, 3), (200, 40, 90), np.uint8)).save(picture)
    page.goto(server.url)
    page.get_by_label("Start from an image (optional)").set_input_files(str(picture))
    page.get_by_label("Prompt", exact=True).fill("the picture moves")
    page.get_by_label("Frames").fill(str(CHUNK))
    page.get_by_role("button", name="Generate").click()
    job = card(page, "the picture moves")
    job.locator(".status", has_text="completed · 100%").wait_for()
    the_id = video_id(page, "the picture moves")
    assert server.sidecar(the_id)["mode"] == "i2v"
    assert (server.folder / "uploads" / the_id).read_bytes() == picture.read_bytes()
    assert page.problems == []


def _cues(server: PageServer, video_id: str) -> list[dict]:
    found = server.sidecar(video_id)
    return (found or {}).get("stream", {}).get("prompts", [])
