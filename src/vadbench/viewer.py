"""Static HTML viewers of one run's annotated videos and scores, and an index over all of them.

One self-contained page per (dataset, variant, seed), beside the MP4s the renderer wrote::

    results/
    ├── viewer.html                         write_index: every page, sortable by metric
    └── {dataset}/{variant}/seed{seed}/viewer/
        ├── index.html                      write_viewer: picker, <video>, score curve, boxes, metrics
        ├── viewer.json                     {"title", "meta", "videos": [names]}, read by the index
        └── videos/<video>.mp4              H.264 (WebM/VP9 plays too), drawn by the renderer

The page plays the MP4 in a ``<video>`` element and draws the protocol's score per frame on a
``<canvas>`` under it (ground-truth anomalous frames shaded, unscored frames grey, a cursor on the
frame shown); a click or drag on the curve seeks the video there, and the boxes of the shown frame
are listed and drawn over the renderer's input panel. Pitfalls it handles:

- It must open from ``file://`` and from any static host, offline: CSS and JS are inline, the data
  is embedded as JSON (no fetch, which ``file://`` forbids), and a Content-Security-Policy forbids
  loading anything but the page's own videos.
- Names come from dataset folders and metadata from MLflow, so nothing is trusted: the embedded
  JSON has every ``<``, ``>`` and ``&`` escaped (no ``</script>`` can end the block early), the page
  inserts text with ``textContent`` only, and the index escapes every cell.
- The frame shown is ``floor(t * fps)``; a seek goes to the middle of the frame, ``(k + 0.5) / fps``,
  because seeking to ``k / fps`` exactly lands on either side of the boundary depending on the
  container's time base. The cursor follows ``requestVideoFrameCallback`` (the frame actually
  presented) and falls back to ``timeupdate``/``seeked``.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from vadbench.fileio import atomic_path

SUMMARY_NAME = "viewer.json"
PAGE_PATTERN = "*/*/seed*/viewer/index.html"
INDEX_METRICS = (("micro_auc", "micro AUC"), ("pixel_auc", "pixel AUC"), ("rbdc", "RBDC"), ("tbdc", "TBDC"))

# The page may load its own videos (same origin, or file: next to it) and nothing else: no
# script, style, image, font or connection from anywhere, so it works offline and leaks nothing.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "media-src 'self' file: blob:; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)


@dataclass
class ViewerVideo:
    """One test video of a run, as the page shows it.

    Attributes:
        name: test video name, e.g. ``"01"``.
        mp4: path of the annotated video relative to the HTML page (``videos/01.mp4``; ``.webm``
            plays too), percent-encoded on writing, so it is a path, not a URL; None when no video
            was rendered (config ``localization: {videos: false}``): the page then shows the curve,
            the frame's score and boxes without a picture.
        fps: frames per second of the video, which maps frame ``k`` to time ``k / fps``.
        scores: ``(T,)`` protocol score per frame, normalised to [0, 1] as the protocol gives it;
            None (or NaN) where the protocol scores no frame.
        labels: ``(T,)`` ground truth per frame, 1 anomalous, 0 normal.
        boxes: ``(T, K_t, 5)`` per frame, ``[x0, y0, x1, y1, score]``, half-open in input-frame pixels
            (``[x0, x1) x [y0, y1)``, as vadbench.localization gives them).
        auc: this video's frame-level AUC, None when it holds one class only.
        geometry: the renderer's layout, ``{"width", "height", "panel_scale", "panels": [{"name",
            "x", "y", "w", "h"}], "curve": {...}}`` in video pixels (vadbench.render's return value);
            the optional box overlay goes on the panel named ``input`` (else the first), input pixel
            ``x`` at video pixel ``panel.x + x * panel_scale``.
    """

    name: str
    mp4: str | None
    fps: float
    scores: list[float | None]
    labels: list[int]
    boxes: list[list[list[float]]]
    auc: float | None
    geometry: dict[str, Any] = field(default_factory=dict)


def write_viewer(path: str | Path, title: str, videos: list[ViewerVideo], meta: dict[str, Any]) -> Path:
    """Write the viewer page of one run and its ``viewer.json`` summary beside it.

    Args:
        path: the page, ``results/{dataset}/{variant}/seed{seed}/viewer/index.html``.
        title: heading and window title, e.g. ``"ped2 memae seed 0"``.
        videos: every test video of the run, in picker order (the first is shown on opening).
        meta: the run's metrics and identity, shown as a list in this order; the index reads
            ``micro_auc``, ``pixel_auc``, ``rbdc`` and ``tbdc`` from it (e.g. also ``variant``,
            ``seed``, ``mlflow_run_id``). NaN becomes null.

    Returns:
        ``path``. Both files are written atomically, the summary first, so a page that exists
        always has its summary.

    Raises:
        ValueError: no video, per-frame lists of different lengths, a non-positive fps, or a video
            path that is absolute or a URL (the page must travel with its folder).
    """
    path = Path(path)
    if not videos:
        raise ValueError(f"{path}: a viewer needs at least one video; the run has none to show")
    entries = [_video_entry(path, v) for v in videos]
    meta = _plain(dict(meta))
    with atomic_path(path.with_name(SUMMARY_NAME)) as tmp:
        summary = {"title": str(title), "meta": meta, "videos": [v.name for v in videos]}
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    data = {"title": str(title), "meta": meta, "videos": entries}
    page = _fill(_PAGE, csp=CSP, title=html.escape(str(title)), css=_PAGE_CSS, data=script_json(data), js=_PAGE_JS)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def script_json(data: Any) -> str:
    """``data`` as JSON that is safe inside ``<script type="application/json">``.

    Every ``<``, ``>`` and ``&`` becomes a ``\\u`` escape (only strings can hold them, and
    ``JSON.parse`` restores them), so no value can close the script element or open a comment.
    """
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _video_entry(page: Path, video: ViewerVideo) -> dict[str, Any]:
    n = len(video.scores)
    if n == 0 or len(video.labels) != n or len(video.boxes) != n:
        raise ValueError(
            f"{page}: video {video.name!r} has {n} scores, {len(video.labels)} labels and {len(video.boxes)} "
            "box lists; the viewer needs one of each per frame (at least one frame)"
        )
    if not (isinstance(video.fps, (int, float)) and math.isfinite(video.fps) and video.fps > 0):
        raise ValueError(f"{page}: video {video.name!r} has fps {video.fps!r}; expected a positive number")
    return {
        "name": str(video.name),
        "mp4": None if video.mp4 is None else relative_href(video.mp4, f"{page}: video {video.name!r}"),
        "fps": float(video.fps),
        "scores": [None if s is None or not math.isfinite(s) else round(float(s), 6) for s in video.scores],
        "labels": [1 if int(v) else 0 for v in video.labels],
        "boxes": [[[round(float(c), 2) for c in box[:5]] for box in frame] for frame in video.boxes],
        "auc": None if video.auc is None or not math.isfinite(video.auc) else float(video.auc),
        "geometry": _plain(video.geometry or {}),
    }


def relative_href(path: str | Path, what: str) -> str:
    """A relative path (``/`` separated) percent-encoded as an href; refuses absolute paths and URLs."""
    text = Path(path).as_posix() if isinstance(path, Path) else str(path).replace("\\", "/")
    parts = urlsplit(text)
    if not text or text.startswith("/") or parts.scheme or parts.netloc or re.match(r"[A-Za-z]:", text):
        raise ValueError(f"{what}: {text!r} is not a relative path; give the path relative to the page")
    return quote(text, safe="/")


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, NaN and infinities to None, tuples to lists."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def collect_index_entries(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every viewer page under ``results_dir`` with the metrics of its ``viewer.json``.

    Returns:
        One dict per ``{dataset}/{variant}/seed{seed}/viewer/index.html``, sorted by dataset,
        variant and seed: ``dataset``, ``variant``, ``seed`` (int, from the path), ``href`` (relative
        to ``results_dir``), ``title``, ``videos`` and the index metrics (None when absent). A page
        without a summary is listed with blank metrics.

    Raises:
        ValueError: a ``viewer.json`` that is not valid JSON (rerun the viewer rule for that run).
    """
    results_dir = Path(results_dir)
    entries = []
    for page in results_dir.glob(PAGE_PATTERN):
        seed_dir = page.parent.parent
        match = re.fullmatch(r"seed(\d+)", seed_dir.name)
        if match is None or not page.is_file():
            continue
        summary: dict[str, Any] = {}
        summary_path = page.with_name(SUMMARY_NAME)
        if summary_path.is_file():
            try:
                summary = json.loads(summary_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                raise ValueError(
                    f"{summary_path}: not valid JSON ({err}); rerun the viewer rule for this run to rewrite it"
                ) from None
        meta = summary.get("meta") if isinstance(summary.get("meta"), dict) else {}
        entry = {
            "dataset": seed_dir.parent.parent.name,
            "variant": seed_dir.parent.name,
            "seed": int(match.group(1)),
            "href": page.relative_to(results_dir).as_posix(),
            "title": str(summary.get("title", "")),
            "videos": list(summary.get("videos", [])),
        }
        for key, _ in INDEX_METRICS:
            entry[key] = _number(meta.get(key))
        entries.append(entry)
    return sorted(entries, key=lambda e: (e["dataset"], e["variant"], e["seed"]))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def write_index(path: str | Path, entries: list[dict[str, Any]]) -> Path:
    """Write the index page: one row per viewer page, sortable by any column, linking to it.

    Args:
        path: the page, ``results/viewer.html``.
        entries: dicts with ``dataset``, ``variant``, ``seed``, ``href`` (path relative to the
            index's folder, as :func:`collect_index_entries` gives) and optionally ``micro_auc``,
            ``pixel_auc``, ``rbdc``, ``tbdc`` (blank when absent or None).

    Returns:
        ``path``, written atomically. Rows are sorted by dataset, variant and seed, so the page
        reads well without JavaScript; clicking a heading re-sorts.

    Raises:
        ValueError: an entry without ``href`` or with an absolute path or URL there.
    """
    path = Path(path)
    rows = []
    ordered = sorted(entries, key=lambda e: (str(e.get("dataset", "")), str(e.get("variant", "")), _seed(e)))
    for entry in ordered:
        if not entry.get("href"):
            raise ValueError(f"{path}: index entry {entry!r} has no href to its viewer page")
        href = relative_href(entry["href"], f"{path}: index entry {entry.get('dataset')}/{entry.get('variant')}")
        cells = [
            f'<td data-value="{html.escape(str(entry.get("dataset", "")))}">'
            f'<a href="{html.escape(href)}">{html.escape(str(entry.get("dataset", "")))}</a></td>',
            _text_cell(entry.get("variant", "")),
            f'<td class="num" data-value="{_seed(entry)}">{html.escape(str(entry.get("seed", "")))}</td>',
        ]
        for key, _ in INDEX_METRICS:
            value = _number(entry.get(key))
            if value is None:
                cells.append('<td class="num" data-value=""></td>')
            else:
                cells.append(f'<td class="num" data-value="{value!r}">{value:.4f}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{3 + len(INDEX_METRICS)}">No viewer pages under results/ yet.</td></tr>')
    headings = [("dataset", "text"), ("variant", "text"), ("seed", "num")] + [(h, "num") for _, h in INDEX_METRICS]
    head = "".join(
        f'<th scope="col" data-kind="{kind}"><button type="button">{html.escape(label)}</button></th>'
        for label, kind in headings
    )
    page = _fill(_INDEX, csp=CSP, head=head, rows="\n".join(rows), count=str(len(ordered)))
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _fill(template: str, **values: str) -> str:
    """Put ``values`` into the ``{name}`` slots of ``template`` in one pass, so an inserted value
    that happens to contain ``{js}`` is never substituted again."""
    return re.sub(r"\{(" + "|".join(values) + r")\}", lambda m: values[m.group(1)], template)


def _text_cell(value: Any) -> str:
    text = html.escape(str(value))
    return f'<td data-value="{text}">{text}</td>'


def _seed(entry: dict[str, Any]) -> int:
    try:
        return int(entry.get("seed", -1))
    except (TypeError, ValueError):
        return -1


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
  <h1 id="title">{title}</h1>
  <dl id="meta"></dl>
</header>
<main>
  <div class="bar">
    <label>video <select id="picker"></select></label>
    <span>video AUC <b id="video-auc"></b></span>
    <span>frame <b id="frame">0</b> / <span id="last-frame"></span> <small>(0-based)</small></span>
    <span>score <b id="score"></b></span>
    <span>ground truth <b id="truth"></b></span>
    <label title="the MP4 already shows the boxes; this draws them again from the data, with their scores">
      <input type="checkbox" id="show-boxes"> overlay boxes</label>
  </div>
  <p id="message" role="alert"></p>
  <div id="stage"><video id="video" controls muted playsinline preload="auto"></video><canvas id="overlay"></canvas></div>
  <canvas id="curve" tabindex="0" aria-label="anomaly score per frame; click or drag to seek, arrow keys step"></canvas>
  <p class="legend"><span class="sw score"></span>anomaly score <span class="sw truth"></span>anomalous (ground truth)
    <span class="sw unscored"></span>not scored <span class="sw cursor"></span>frame shown
    <small>click or drag the curve to seek; arrow keys step one frame</small></p>
  <h2>Boxes on this frame</h2>
  <ul id="boxes"></ul>
</main>
<script type="application/json" id="data">{data}</script>
<script>{js}</script>
</body>
</html>
"""

_PAGE_CSS = """
:root { color-scheme: light; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
body { margin: 0 auto; padding: 12px 16px 32px; max-width: 1000px; }
h1 { font-size: 20px; margin: 0 0 6px; overflow-wrap: anywhere; }
h2 { font-size: 15px; margin: 14px 0 4px; }
#meta { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 0 0 10px; }
#meta div { display: flex; gap: 6px; }
#meta dt { color: #666; }
#meta dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.bar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 18px; margin-bottom: 8px; }
.bar b { font-variant-numeric: tabular-nums; }
#message { color: #b00020; margin: 0 0 6px; }
#message:empty { display: none; }
#stage[hidden] { display: none; }
#stage { position: relative; width: max-content; max-width: 100%; background: #000; }
#video { display: block; }
#overlay { position: absolute; left: 0; top: 0; pointer-events: none; }
#curve { display: block; width: 100%; height: 150px; margin-top: 8px; cursor: crosshair; touch-action: none; }
#curve:focus-visible { outline: 2px solid #1f63b4; outline-offset: 2px; }
.legend { color: #555; margin: 4px 0; }
.legend small { margin-left: 12px; }
.sw { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 10px; vertical-align: baseline; }
.sw.score { background: #1f63b4; height: 3px; vertical-align: middle; }
.sw.truth { background: rgba(214, 39, 40, 0.3); }
.sw.unscored { background: #e3e3e3; }
.sw.cursor { background: #111; width: 2px; }
#boxes { font-variant-numeric: tabular-nums; margin: 0; padding-left: 20px; }
#boxes .none { list-style: none; margin-left: -20px; color: #777; }
"""

_PAGE_JS = r"""
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  const video = $("video"), curve = $("curve"), overlay = $("overlay"), picker = $("picker");
  const LABELS = {
    dataset: "dataset", variant: "variant", seed: "seed", micro_auc: "micro AUC", macro_auc: "macro AUC",
    eer: "EER", aupr: "AUPR", pixel_auc: "pixel AUC", pixel_eer: "pixel EER", rbdc: "RBDC", tbdc: "TBDC",
    mlflow_run_id: "MLflow run", box_threshold: "box threshold", map_measure: "map measure",
  };
  const COLORS = {
    background: "#ffffff", score: "#1f63b4", truth: "rgba(214, 39, 40, 0.22)", unscored: "#e3e3e3",
    grid: "#dddddd", cursor: "#111111", text: "#666666", box: "#ffd400",
  };
  const CURVE_HEIGHT = 150;
  let current = null, frame = 0, layer = null, dragging = false;

  function make(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function fmt(value) {
    if (value === null || value === undefined) return "\u2014";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(4);
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const dpr = () => window.devicePixelRatio || 1;
  const frames = () => current.scores.length;
  // the frame on screen at media time t; the small epsilon absorbs time-base rounding of k / fps
  const frameAt = (t) => clamp(Math.floor(t * current.fps + 0.01), 0, frames() - 1);

  function runs(mask) {
    const out = [];
    let start = -1;
    mask.forEach((on, i) => {
      if (on && start < 0) start = i;
      if (!on && start >= 0) { out.push([start, i - 1]); start = -1; }
    });
    if (start >= 0) out.push([start, mask.length - 1]);
    return out;
  }

  function showMeta() {
    const list = $("meta");
    for (const [key, value] of Object.entries(DATA.meta || {})) {
      const item = make("div");
      item.append(make("dt", LABELS[key] || key), make("dd", fmt(value)));
      list.append(item);
    }
    DATA.videos.forEach((v, i) => {
      const option = make("option", v.name + "  (AUC " + (v.auc === null ? "n/a" : v.auc.toFixed(4)) + ")");
      option.value = String(i);
      picker.append(option);
    });
  }

  function fit() {
    const geometry = current.geometry || {};
    const vw = video.videoWidth || geometry.width || 640, vh = video.videoHeight || geometry.height || 360;
    const room = document.querySelector("main").clientWidth;
    const scale = Math.min(room / vw, Math.max(120, window.innerHeight * 0.55) / vh);
    const w = Math.max(1, Math.floor(vw * scale)), h = Math.max(1, Math.floor(vh * scale));
    video.style.width = w + "px";
    video.style.height = h + "px";
    overlay.style.width = w + "px";
    overlay.style.height = h + "px";
    overlay.width = Math.round(w * dpr());
    overlay.height = Math.round(h * dpr());
    curve.width = Math.max(1, Math.round(curve.clientWidth * dpr()));
    curve.height = Math.round(CURVE_HEIGHT * dpr());
    drawLayer();
    render();
  }

  // the curve without its cursor, drawn once per video and size; render() copies it and adds the cursor
  function drawLayer() {
    const W = curve.width, H = curve.height, n = frames(), k = dpr();
    layer = document.createElement("canvas");
    layer.width = W;
    layer.height = H;
    const g = layer.getContext("2d");
    g.fillStyle = COLORS.background;
    g.fillRect(0, 0, W, H);
    const top = 8 * k, bottom = H - 18 * k;
    const x0 = (i) => (i * W) / n;
    g.fillStyle = COLORS.unscored;
    for (const [a, b] of runs(current.scores.map((s) => s === null))) g.fillRect(x0(a), top, x0(b + 1) - x0(a), bottom - top);
    g.fillStyle = COLORS.truth;
    for (const [a, b] of runs(current.labels.map((l) => l === 1))) g.fillRect(x0(a), 0, x0(b + 1) - x0(a), bottom);
    let lo = 0, hi = 1;
    for (const s of current.scores) if (s !== null) { lo = Math.min(lo, s); hi = Math.max(hi, s); }
    const y = (s) => bottom - ((s - lo) / (hi - lo)) * (bottom - top);
    g.strokeStyle = COLORS.grid;
    g.lineWidth = k;
    g.fillStyle = COLORS.text;
    g.font = 11 * k + "px system-ui, sans-serif";
    for (const level of [lo, (lo + hi) / 2, hi]) {
      g.beginPath(); g.moveTo(0, y(level)); g.lineTo(W, y(level)); g.stroke();
      g.fillText(level.toFixed(1), 3 * k, Math.max(11 * k, y(level) - 2 * k));
    }
    const step = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000].find((s) => (n / s) * 60 * k <= W) || n;
    g.textAlign = "center";
    for (let i = 0; i < n; i += step) {
      const x = x0(i + 0.5);
      g.fillRect(x, bottom, k, 3 * k);
      g.fillText(String(i), clamp(x, 12 * k, W - 12 * k), H - 4 * k);
    }
    g.strokeStyle = COLORS.score;
    g.fillStyle = COLORS.score;
    g.lineWidth = 1.6 * k;
    g.lineJoin = "round";
    g.beginPath();
    current.scores.forEach((s, i) => {
      if (s === null) return;
      const before = i > 0 && current.scores[i - 1] !== null, after = i + 1 < n && current.scores[i + 1] !== null;
      if (!before && !after) g.fillRect(x0(i + 0.5) - k, y(s) - k, 2 * k, 2 * k); // a lone scored frame
      if (before) g.lineTo(x0(i + 0.5), y(s)); else g.moveTo(x0(i + 0.5), y(s));
    });
    g.stroke();
  }

  function render() {
    if (!current || !layer) return;
    const g = curve.getContext("2d"), n = frames(), k = dpr();
    g.drawImage(layer, 0, 0);
    const x = ((frame + 0.5) * curve.width) / n;
    g.fillStyle = COLORS.cursor;
    g.fillRect(Math.round(x - k), 0, Math.max(1, Math.round(2 * k)), curve.height);
    $("frame").textContent = String(frame);
    const s = current.scores[frame];
    $("score").textContent = s === null ? "not scored" : s.toFixed(4);
    $("truth").textContent = current.labels[frame] === 1 ? "anomalous" : "normal";
    listBoxes();
    drawBoxes();
  }

  function listBoxes() {
    const list = $("boxes"), boxes = current.boxes[frame];
    list.replaceChildren();
    if (!boxes.length) list.append(make("li", "no boxes on this frame", "none"));
    for (const b of boxes) {
      const where = "[" + b.slice(0, 4).map((v) => v.toFixed(1)).join(", ") + "]";
      list.append(make("li", where + (b.length > 4 ? "  score " + b[4].toFixed(3) : "")));
    }
  }

  function drawBoxes() {
    const g = overlay.getContext("2d");
    g.clearRect(0, 0, overlay.width, overlay.height);
    const boxes = current.boxes[frame], geometry = current.geometry || {};
    const vw = video.videoWidth || geometry.width;
    if (!$("show-boxes").checked || !boxes.length || !vw) return;
    const panels = geometry.panels || [];
    const panel = panels.find((p) => String(p.name).toLowerCase() === "input") || panels[0] ||
      { x: 0, y: 0, w: vw, h: video.videoHeight || geometry.height };
    const k = overlay.width / vw, s = Number(geometry.panel_scale) || 1;
    g.save();
    g.beginPath();
    g.rect(panel.x * k, panel.y * k, panel.w * k, panel.h * k);
    g.clip();
    g.strokeStyle = COLORS.box;
    g.fillStyle = COLORS.box;
    g.lineWidth = 2 * dpr();
    g.font = 11 * dpr() + "px system-ui, sans-serif";
    for (const b of boxes) {
      const x = (panel.x + b[0] * s) * k, y = (panel.y + b[1] * s) * k;
      g.strokeRect(x, y, (b[2] - b[0]) * s * k, (b[3] - b[1]) * s * k);
      if (b.length > 4) g.fillText(b[4].toFixed(2), x + 2 * dpr(), y + 12 * dpr());
    }
    g.restore();
  }

  function setFrame(k) {
    if (current && k !== frame) { frame = k; render(); }
  }

  function seek(k) {
    k = clamp(k, 0, frames() - 1);
    const t = (k + 0.5) / current.fps; // mid-frame: never on a boundary the time base could round across
    if (current.mp4) video.currentTime = Number.isFinite(video.duration) ? Math.min(t, Math.max(0, video.duration - 1e-3)) : t;
    setFrame(k);
  }

  function frameAtX(clientX) {
    const r = curve.getBoundingClientRect();
    return clamp(Math.floor(((clientX - r.left) / r.width) * frames()), 0, frames() - 1);
  }

  function load(i) {
    current = DATA.videos[i];
    picker.value = String(i);
    frame = 0;
    $("message").textContent = "";
    $("last-frame").textContent = String(frames() - 1);
    $("video-auc").textContent = current.auc === null ? "n/a (one class only)" : current.auc.toFixed(4);
    $("stage").hidden = !current.mp4;
    if (current.mp4) {
      video.src = current.mp4;
    } else {
      video.removeAttribute("src");
      video.load();
      $("message").textContent = "No video for " + current.name + ": this run rendered no MP4s (config " +
        "localization: {videos: true} renders them); the curve, scores and boxes are all here.";
    }
    fit();
  }

  function onVideoFrame(now, metadata) {
    if (current && current.mp4) setFrame(frameAt(metadata.mediaTime));
    video.requestVideoFrameCallback(onVideoFrame);
  }

  showMeta();
  picker.addEventListener("change", () => load(Number(picker.value)));
  $("show-boxes").addEventListener("change", drawBoxes);
  video.addEventListener("loadedmetadata", fit);
  video.addEventListener("seeked", () => { if (current.mp4) setFrame(frameAt(video.currentTime)); });
  const presented = "requestVideoFrameCallback" in HTMLVideoElement.prototype;
  video.addEventListener("timeupdate", () => {
    if (current.mp4 && (!presented || video.paused)) setFrame(frameAt(video.currentTime));
  });
  if (presented) video.requestVideoFrameCallback(onVideoFrame);
  video.addEventListener("error", () => {
    const error = video.error;
    if (!current.mp4) return;
    $("message").textContent = "Cannot play " + decodeURI(current.mp4) + " (" +
      ((error && error.message) || "media error " + (error && error.code)) +
      "). It should lie next to this page; H.264 MP4 or VP9 WebM play in current browsers.";
  });
  curve.addEventListener("pointerdown", (e) => {
    dragging = true;
    curve.setPointerCapture(e.pointerId);
    seek(frameAtX(e.clientX));
  });
  curve.addEventListener("pointermove", (e) => { if (dragging) seek(frameAtX(e.clientX)); });
  curve.addEventListener("pointerup", () => { dragging = false; });
  curve.addEventListener("pointercancel", () => { dragging = false; });
  curve.addEventListener("keydown", (e) => {
    const to = { ArrowLeft: frame - 1, ArrowRight: frame + 1, Home: 0, End: frames() - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    video.pause();
    seek(to);
  });
  window.addEventListener("resize", fit);
  load(0);
})();
"""

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>vadbench viewers</title>
<style>
:root { color-scheme: light; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
body { margin: 0 auto; padding: 12px 16px 32px; max-width: 1000px; }
h1 { font-size: 20px; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e4e4; text-align: left; }
th button { font: inherit; font-weight: 600; border: 0; background: none; padding: 0; cursor: pointer; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
th[data-kind="num"] { text-align: right; }
tbody tr:hover { background: #f4f7fb; }
</style>
</head>
<body>
<h1>vadbench viewers</h1>
<p>{count} runs; one page per dataset, variant and seed. Click a heading to sort.</p>
<table id="runs">
<thead><tr>{head}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<script>
"use strict";
(function () {
  const table = document.getElementById("runs"), body = table.tBodies[0];
  const heads = Array.from(table.tHead.rows[0].cells);
  heads.forEach((th, column) => th.querySelector("button").addEventListener("click", () => {
    const descending = th.getAttribute("aria-sort") === "ascending";
    heads.forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    const numeric = th.dataset.kind === "num", sign = descending ? -1 : 1;
    const rows = Array.from(body.rows).filter((r) => r.cells.length === heads.length);
    rows.sort((a, b) => {
      const x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
      if (x === "" || y === "") return (x === "") - (y === ""); // blanks last either way
      return sign * (numeric ? Number(x) - Number(y) : x.localeCompare(y));
    });
    body.append(...rows);
  }));
})();
</script>
</body>
</html>
"""
