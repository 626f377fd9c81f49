"""The static viewer pages (vadbench.viewer), checked in real headless Chromium where it is installed.

Each synthetic video shows its frame number as 6 black/white stripes (bit i in stripe i, stripe 6
always white, stripe 7 always black), so a screenshot tells which frame the browser really shows.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import time as time_module
from html.parser import HTMLParser
from pathlib import Path

import av
import numpy as np
import pytest
from browser import Browser, find_chromium
from PIL import Image

from vadbench.viewer import ViewerVideo, collect_index_entries, write_index, write_viewer

FPS = 10
HOSTILE = "</script><script>window.pwned = 1</script>{js}<!--<b>"


def stripes_video(path: Path, frames: int, width: int, height: int) -> None:
    """H.264 MP4 whose frame k shows k in binary as 8 vertical stripes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(frames):
            bits = [(k >> i) & 1 for i in range(6)] + [1, 0]
            row = np.repeat(np.array(bits, np.uint8) * 255, width // 8)
            image = np.ascontiguousarray(np.broadcast_to(row[None, :, None], (height, width, 3)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_stripes(png: bytes, left: float, top: float, width: float, height: float) -> int:
    """The frame number a screenshot shows in the video element at that rectangle."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    y = int(top + 0.15 * height)  # clear of the controls at the bottom and the play button in the middle
    levels = [image[y, int(left + (i + 0.5) * width / 8)] for i in range(8)]
    assert levels[6] > 180 and levels[7] < 75, f"not a stripes frame: {levels}"
    return sum(1 << i for i in range(6) if levels[i] > 128)


def synthetic_video(name: str, frames: int, width: int, anomalous: range, auc: float | None) -> ViewerVideo:
    scores: list[float | None] = [None, None] + [0.2 + 0.1 * math.sin(k / 3) for k in range(2, frames)]
    for k in anomalous:
        scores[k] = 0.9
    return ViewerVideo(
        name=name,
        mp4=f"videos/{name}.mp4",
        fps=FPS,
        scores=scores,
        labels=[int(k in anomalous) for k in range(frames)],
        boxes=[[[k % 20, 4.0, k % 20 + 10, 20.0, k / frames]] if k >= 5 else [] for k in range(frames)],
        auc=auc,
        geometry={
            "width": width,
            "height": 48,
            "panel_scale": 1.0,
            "panels": [{"name": "input", "x": 0, "y": 0, "w": width, "h": 48}],
            "curve": {},
        },
    )


META = {"micro_auc": 0.9123, "pixel_auc": None, "rbdc": 0.41, "variant": "memae", "seed": 0, "mlflow_run_id": "abc"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """results/ with one run's viewer: video 01 (40 frames, 64x48) and 02 (30 frames, 80x48)."""
    results = tmp_path_factory.mktemp("results")
    viewer = results / "toy" / "memae" / "seed0" / "viewer"
    stripes_video(viewer / "videos" / "01.mp4", 40, 64, 48)
    stripes_video(viewer / "videos" / "02.mp4", 30, 80, 48)
    videos = [synthetic_video("01", 40, 64, range(20, 30), 0.875), synthetic_video("02", 30, 80, range(0, 10), None)]
    page = write_viewer(viewer / "index.html", "toy memae seed 0", videos, META)
    return {"results": results, "page": page, "videos": videos}


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it with apt-get)")
    with Browser(timeout=20) as b:
        yield b


def open_page(browser: Browser, page: Path) -> None:
    browser.events.clear()
    browser.open(page.as_uri())
    browser.wait_for("document.getElementById('video').readyState >= 2", timeout=10)


def curve_pixel(browser: Browser, fraction_x: float, y: int) -> list[int]:
    return browser.evaluate(
        f"""(() => {{ const c = document.getElementById('curve');
        return Array.from(c.getContext('2d').getImageData(Math.floor(c.width * {fraction_x}), {y}, 1, 1).data); }})()"""
    )


def test_this_chromium_plays_h264_mp4(browser, run):
    open_page(browser, run["page"])
    assert browser.evaluate("document.getElementById('video').canPlayType('video/mp4; codecs=\"avc1.64001e\"')") in (
        "probably",
        "maybe",
    )
    duration, width = browser.evaluate("[document.getElementById('video').duration, video.videoWidth]")
    assert duration == pytest.approx(4.0, abs=0.05) and width == 64
    assert browser.errors() == []


def test_the_curve_shows_scores_ground_truth_and_unscored_frames(browser, run):
    open_page(browser, run["page"])
    drawn = browser.evaluate(
        """(() => { const c = document.getElementById('curve'), d = c.getContext('2d').getImageData(0, 0, c.width,
        c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] < 750) n++;
        return [n, c.width * c.height]; })()"""
    )
    assert drawn[0] > 0.05 * drawn[1]  # shading, grid, curve and labels: far more than a blank canvas
    r, g, b, _ = curve_pixel(browser, 25 / 40, 2)  # frame 25, above the curve: ground truth anomalous
    assert r > 230 and g < 225 and b < 225, (r, g, b)
    assert curve_pixel(browser, 10.5 / 40, 2)[:3] == [255, 255, 255]  # frame 10, normal
    assert curve_pixel(browser, 1.5 / 40, 20)[:3] == [227, 227, 227]  # frame 1, not scored (the cursor is on 0)
    assert browser.evaluate("document.getElementById('video-auc').textContent") == "0.8750"
    meta = browser.evaluate("document.getElementById('meta').innerText")
    assert "micro AUC" in meta and "0.9123" in meta and "RBDC" in meta and "abc" in meta
    assert browser.errors() == []


def test_clicking_the_curve_at_three_quarters_seeks_the_video_there(browser, run, tmp_path):
    open_page(browser, run["page"])
    rect = browser.evaluate(
        "(() => { const r = curve.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )
    browser.click(rect[0] + 0.75 * rect[2], rect[1] + rect[3] / 2)
    browser.wait_for("video.currentTime > 0 && !video.seeking && video.readyState >= 2", timeout=10)
    browser.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    time, duration, shown = browser.evaluate("[video.currentTime, video.duration, Number(frame.textContent)]")
    assert time / duration == pytest.approx(0.75, abs=1 / 40)  # within a frame of 75 %
    assert shown == math.floor(time * FPS) and shown in (29, 30)

    browser.evaluate("document.activeElement.blur()")  # no focus ring in the picture
    if os.environ.get("VADBENCH_SCREENSHOT"):
        time_module.sleep(1.5)  # for the README picture: Chromium's seek spinner takes ~1.3 s to fade out
    png = browser.screenshot(tmp_path / "viewer.png").read_bytes()
    box = browser.evaluate(
        "(() => { const r = video.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )
    assert read_stripes(png, *box) == shown  # the frame number on screen is the one the page names

    if os.environ.get("VADBENCH_SCREENSHOT"):
        shutil.copyfile(tmp_path / "viewer.png", os.environ["VADBENCH_SCREENSHOT"])

    [[x0, y0, x1, y1, score]] = run["videos"][0].boxes[shown]
    assert listed_boxes(browser) == [f"[{x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}]  score {score:.3f}"]
    assert overlay_alpha(browser) == 0  # off by default: the renderer's MP4 shows its own boxes
    browser.evaluate("document.getElementById('show-boxes').click()")
    assert overlay_alpha(browser) > 0
    assert overlay_alpha(browser, ((x0 + x1) / 2, y0)) > 0  # the top edge, where the input panel has it
    assert overlay_alpha(browser, ((x0 + x1) / 2, (y0 + y1) / 2)) == 0  # an outline, not a filled box
    assert browser.errors() == []


def listed_boxes(browser: Browser) -> list[str]:
    return browser.evaluate("Array.from(document.querySelectorAll('#boxes li')).map((li) => li.textContent)")


def overlay_alpha(browser: Browser, at: tuple[float, float] | None = None) -> int:
    """Opaque pixels on the box overlay: all of them, or the alpha at input pixel ``at``."""
    if at is None:
        return browser.evaluate(
            """(() => { const o = document.getElementById('overlay'), d = o.getContext('2d').getImageData(0, 0,
            o.width, o.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()"""
        )
    return browser.evaluate(
        f"""(() => {{ const o = document.getElementById('overlay'), k = o.width / video.videoWidth;
        return o.getContext('2d').getImageData(Math.round({at[0]} * k), Math.round({at[1]} * k), 1, 1).data[3]; }})()"""
    )


def test_a_run_without_videos_still_shows_its_curve_scores_and_boxes(browser, tmp_path):
    video = synthetic_video("03", 20, 64, range(8, 12), 0.6)
    video.mp4 = None
    page = write_viewer(tmp_path / "viewer" / "index.html", "no videos", [video], META)
    browser.events.clear()
    browser.open(page.as_uri())
    assert browser.evaluate("[document.getElementById('stage').hidden, getComputedStyle(stage).display]") == [
        True,
        "none",
    ]
    assert "rendered no MP4s" in browser.evaluate("document.getElementById('message').textContent")
    assert listed_boxes(browser) == ["no boxes on this frame"]
    rect = browser.evaluate(
        "(() => { const r = curve.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )
    browser.click(rect[0] + 0.52 * rect[2], rect[1] + rect[3] / 2)  # inside frame 10, off its edges
    assert browser.evaluate("[frame.textContent, score.textContent, truth.textContent]") == [
        "10",
        "0.9000",
        "anomalous",
    ]
    assert listed_boxes(browser) == ["[10.0, 4.0, 20.0, 20.0]  score 0.500"]
    assert browser.errors() == []


def test_the_picker_loads_the_other_video(browser, run):
    open_page(browser, run["page"])
    assert browser.evaluate("Array.from(picker.options).map((o) => o.textContent)") == [
        "01  (AUC 0.8750)",
        "02  (AUC n/a)",
    ]
    browser.evaluate("picker.value = '1'; picker.dispatchEvent(new Event('change'))")
    browser.wait_for("video.videoWidth === 80 && video.readyState >= 2", timeout=10)
    assert browser.evaluate("video.duration") == pytest.approx(3.0, abs=0.05)
    assert browser.evaluate("[document.getElementById('video-auc').textContent, frame.textContent]") == [
        "n/a (one class only)",
        "0",
    ]
    r, g, b, _ = curve_pixel(browser, 5 / 30, 2)  # video 02 is anomalous in frames 0-9
    assert r > 230 and g < 225 and b < 225, (r, g, b)
    assert browser.errors() == []


def test_the_frame_number_follows_the_playing_video(browser, run):
    open_page(browser, run["page"])
    browser.evaluate("video.play()")
    browser.wait_for("!video.paused && Number(frame.textContent) >= 5", timeout=10)  # moves while playing
    browser.evaluate("video.pause()")
    browser.wait_for("!video.seeking")
    browser.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    time, shown, last = browser.evaluate("[video.currentTime, Number(frame.textContent), video.paused]")
    assert last and shown >= 5 and shown == math.floor(time * FPS + 0.01)
    assert browser.errors() == []


def script_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_a_hostile_video_name_cannot_leave_the_data_block(tmp_path):
    video = synthetic_video("01", 10, 64, range(3, 5), 0.5)
    video.name, video.mp4 = HOSTILE, "videos/a b#c.mp4"
    page = write_viewer(tmp_path / "viewer" / "index.html", HOSTILE, [video], {"note": HOSTILE})
    text = page.read_text()
    assert text.count("</script>") == 2 and text.count("<script") == 2
    block = text.split('id="data">')[1].split("</script>")[0]
    assert "<" not in block and ">" not in block
    data = script_data(text)  # the first </script> after the data is the block's own: the JSON is whole
    assert data["videos"][0]["name"] == HOSTILE and data["meta"]["note"] == HOSTILE
    assert data["videos"][0]["mp4"] == "videos/a%20b%23c.mp4"
    assert json.loads(page.with_name("viewer.json").read_text())["videos"] == [HOSTILE]


def test_a_hostile_video_name_is_shown_as_text_in_chromium(browser, tmp_path):
    video = synthetic_video("01", 10, 64, range(3, 5), 0.5)
    video.name = HOSTILE
    stripes_video(tmp_path / "viewer" / video.mp4, 10, 64, 48)
    page = write_viewer(tmp_path / "viewer" / "index.html", HOSTILE, [video], {"note": HOSTILE})
    open_page(browser, page)
    assert browser.evaluate("typeof window.pwned") == "undefined"
    assert browser.evaluate("[document.scripts.length, document.querySelectorAll('b, img').length]")[0] == 2
    assert browser.evaluate("picker.options[0].textContent") == HOSTILE + "  (AUC 0.5000)"
    assert browser.evaluate("document.getElementById('title').textContent") == HOSTILE
    assert HOSTILE in browser.evaluate("document.getElementById('meta').textContent")
    assert browser.errors() == []


def test_write_viewer_refuses_inconsistent_videos_and_paths_outside_the_page(tmp_path):
    short = synthetic_video("07", 10, 64, range(3, 5), 0.5)
    short.labels = short.labels[:-1]
    with pytest.raises(ValueError, match="video '07' has 10 scores, 9 labels"):
        write_viewer(tmp_path / "index.html", "t", [short], {})
    for where in ("/abs/01.mp4", "https://example.org/01.mp4", "file:///x.mp4", "C:/x.mp4"):
        video = synthetic_video("01", 10, 64, range(3, 5), 0.5)
        video.mp4 = where
        with pytest.raises(ValueError, match="not a relative path"):
            write_viewer(tmp_path / "index.html", "t", [video], {})
    assert not (tmp_path / "index.html").exists()


class Rows(HTMLParser):
    """Table rows of the index page as lists of cell text, and the links."""

    def __init__(self):
        super().__init__()
        self.rows, self.links, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = ""
        elif tag == "a":
            self.links.append(dict(attrs)["href"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td":
            self.rows[-1].append(self._cell)
            self._cell = None


ENTRIES = [
    {"dataset": "ped2", "variant": "mnad", "seed": 1, "href": "ped2/mnad/seed1/viewer/index.html", "micro_auc": 0.95},
    {"dataset": "ped2", "variant": "mnad", "seed": 0, "href": "ped2/mnad/seed0/viewer/index.html", "micro_auc": 0.97},
    {"dataset": "avenue", "variant": "memae", "seed": 2, "href": "avenue/memae/seed2/viewer/index.html", "rbdc": 0.3},
    {"dataset": "ped2", "variant": "memae", "seed": 0, "href": "ped2/memae/seed0/viewer/index.html", "micro_auc": 0.9},
]


def test_the_index_links_every_page_sorted_by_dataset_variant_and_seed(tmp_path):
    parser = Rows()
    parser.feed(write_index(tmp_path / "viewer.html", ENTRIES).read_text())
    body = [r for r in parser.rows if r]
    assert [r[:3] for r in body] == [
        ["avenue", "memae", "2"],
        ["ped2", "memae", "0"],
        ["ped2", "mnad", "0"],
        ["ped2", "mnad", "1"],
    ]
    assert body[0][3:] == ["", "", "0.3000", ""] and body[2][3:] == ["0.9700", "", "", ""]
    assert parser.links == [e["href"] for e in sorted(ENTRIES, key=lambda e: (e["dataset"], e["variant"], e["seed"]))]
    with pytest.raises(ValueError, match="not a relative path"):
        write_index(tmp_path / "bad.html", [{**ENTRIES[0], "href": "http://example.org/x.html"}])


def test_the_index_sorts_by_a_clicked_column_in_chromium(browser, tmp_path):
    index = write_index(tmp_path / "viewer.html", ENTRIES)
    browser.events.clear()
    browser.open(index.as_uri())
    rows = "Array.from(document.querySelectorAll('#runs tbody tr')).map((r) => r.cells[0].textContent + r.cells[2].textContent + ' ' + r.cells[3].textContent)"
    button = "(() => { const r = document.querySelectorAll('#runs th button')[3].getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    browser.click(*browser.evaluate(button))
    assert browser.evaluate(rows) == ["ped20 0.9000", "ped21 0.9500", "ped20 0.9700", "avenue2 "]  # blank last
    browser.click(*browser.evaluate(button))
    assert browser.evaluate(rows) == ["ped20 0.9700", "ped21 0.9500", "ped20 0.9000", "avenue2 "]
    assert (
        browser.evaluate("document.querySelector('#runs a').href") == (tmp_path / ENTRIES[1]["href"]).as_uri()
    )  # 0.97 on top
    assert browser.errors() == []


def test_collect_index_entries_finds_every_page_and_its_metrics(run):
    results = run["results"]
    other = results / "toy" / "ae" / "seed3" / "viewer"
    write_viewer(
        other / "index.html", "toy ae seed 3", [synthetic_video("01", 10, 64, range(3, 5), 0.5)], {"tbdc": 0.2}
    )
    bare = results / "toy" / "ae" / "seed4" / "viewer"
    bare.mkdir(parents=True)
    (bare / "index.html").write_text("<!DOCTYPE html>")  # a page without its viewer.json
    (results / "toy" / "ae" / "notaseed" / "viewer").mkdir(parents=True)
    (results / "toy" / "ae" / "notaseed" / "viewer" / "index.html").write_text("")
    entries = collect_index_entries(results)
    assert [(e["dataset"], e["variant"], e["seed"], e["href"]) for e in entries] == [
        ("toy", "ae", 3, "toy/ae/seed3/viewer/index.html"),
        ("toy", "ae", 4, "toy/ae/seed4/viewer/index.html"),
        ("toy", "memae", 0, "toy/memae/seed0/viewer/index.html"),
    ]
    assert [e["micro_auc"] for e in entries] == [None, None, 0.9123] and entries[0]["tbdc"] == 0.2
    assert entries[2]["rbdc"] == 0.41 and entries[2]["pixel_auc"] is None and entries[2]["videos"] == ["01", "02"]
    assert entries[2]["title"] == "toy memae seed 0"
    (other / "viewer.json").write_text("{not json")
    with pytest.raises(ValueError, match="seed3/viewer/viewer.json: not valid JSON"):
        collect_index_entries(results)
