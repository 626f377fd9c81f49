"""An annotated MP4 per test video: what the model saw, what it predicted, where it was surprised.

Each output frame, for frame ``t`` of a test video::

    +-----------------+-----------------+-----------------+
    | input           | prediction      | error (vmax ..) |   panel titles
    | frame t + boxes | model output t  | heat map of t   |   each upscaled by an integer factor
    +-----------------+-----------------+-----------------+
    | title  frame t/T-1                   legend, range  |   caption
    | ~~~~ score curve of the whole video ~~~~~|~~~~~~~~~ |   ground truth shaded, cursor at t
    +-----------------------------------------------------+

The panels are upscaled by nearest neighbour (so a pixel stays a pixel) to at least
``min_panel`` pixels high; the heat map divides the error by one ``vmax`` for the whole video, so
a colour means the same error in every frame, and maps it through a 33-point copy of matplotlib's
*inferno* (perceptually uniform, readable in grey; within 2/255 of the 256-entry original, without
importing matplotlib). The curve and every static label are drawn once; per frame only the panels,
the boxes, the frame counter and the cursor change, so encoding (libx264) dominates the time.

Pitfalls handled: H.264 in ``yuv420p`` (the only pixel format every browser decodes) needs even
dimensions, so the canvas is padded; the panels start on even pixels so that 2 px box outlines
keep their colour through 2x2 chroma subsampling; the ``moov`` atom is moved to the front
(``movflags=+faststart``) so a browser plays the file before it has all of it; the RGB-to-YUV
conversion is BT.709 and the stream is tagged so, or browsers shift the colours; the encoder's
thread count is fixed, because x264's output depends on it, so the same inputs give the same bytes
on any machine with the same PyAV; and the file is written to a temporary sibling and renamed
(:func:`vadbench.fileio.atomic_path`), so a killed or failed render never leaves a truncated MP4.
"""

from __future__ import annotations

import functools
import math
import numbers
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vadbench.fileio import atomic_path

# inferno sampled at 33 evenly spaced points of matplotlib's 256-entry table (RGB hex)
_INFERNO_33 = (
    "000004 040312 0b0724 150b37 210c4a 2f0a5b 3d0965 4a0c6b 56106e 63156e 70196e 7d1e6d 89226a 962766 a32c61 "
    "af315b bb3654 c63d4d d14545 da4f3c e35932 eb6529 f1721e f67f14 f98c0a fb9b06 fcaa0f fbba1f f9c932 f5d949 "
    "f2e865 f3f586 fcffa4"
)
CRF = 26  # x264 quality: 23 is its default, higher is smaller; 26 keeps a 180-frame clip well under a MB
PRESET = "veryfast"
THREADS = 1  # fixed, not "auto": the bitstream depends on it; with 2 frame threads one render differed from the next under an oversubscribed CPU, and the rules give the job one core
MARGIN, GAP, STRIP = 4, 4, 14  # outer margin, gap between panels, height of a text strip
BOX_COLOUR = (0, 255, 0)
BOX_WIDTH = 2
BACKGROUND = (16, 16, 16)
TEXT_COLOUR = (220, 220, 220)
CURVE_BACKGROUND = (36, 36, 36)
ANOMALOUS_COLOUR = (110, 30, 40)
UNSCORED_COLOUR = (90, 90, 90)  # a band along the bottom of the curve
SCORE_COLOUR = (90, 170, 255)
CURSOR_COLOUR = (255, 255, 255)

Box = tuple[float, float, float, float]


@functools.lru_cache(maxsize=1)
def _inferno_lut() -> np.ndarray:
    points = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _INFERNO_33.split()], dtype=np.float64)
    at = np.linspace(0, 255, len(points))
    lut = np.stack([np.interp(np.arange(256), at, points[:, c]) for c in range(3)], axis=1)
    lut = np.round(lut).astype(np.uint8)
    lut.setflags(write=False)
    return lut


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def heat_colors(errors: np.ndarray, vmax: float) -> np.ndarray:
    """Colour an error map through the inferno look-up table, ``vmax`` at the top.

    Args:
        errors: Any shape, float (float16 is fine); NaN is drawn as 0 and +inf as ``vmax``.
        vmax: The error drawn in the brightest colour; larger errors are clipped to it. Pass the
            same value for every frame of a video so that colours compare across frames.

    Returns:
        ``errors.shape + (3,)`` uint8 RGB.

    Raises:
        ValueError: ``vmax`` is not a positive finite number.
    """
    vmax = _check_vmax(vmax)
    e = np.nan_to_num(np.asarray(errors, dtype=np.float32), nan=0.0, posinf=vmax, neginf=0.0)
    index = np.clip(e * np.float32(255.0 / vmax) + np.float32(0.5), 0, 255).astype(np.uint8)
    return _inferno_lut()[index]


def render_video(
    out_path: str | Path,
    frames: np.ndarray,
    outputs: np.ndarray,
    errors: np.ndarray,
    boxes: Sequence[Sequence[Box]],
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    vmax: float,
    scored: np.ndarray | None = None,
    fps: float = 10,
    min_panel: int = 256,
    title: str = "",
) -> dict[str, Any]:
    """Write one test video as an annotated H.264 MP4 (input with boxes, prediction, heat map, score curve).

    Args:
        out_path: The ``.mp4`` to write; replaced atomically if it exists.
        frames: (T, H, W) or (T, H, W, C) uint8 input frames, C = 1 or 3.
        outputs: (T, H, W) or (T, H, W, C) uint8, the model's reconstruction or prediction of each
            frame (zeros where unscored).
        errors: (T, H, W) float (float16 is fine), the error map behind the heat panel.
        boxes: T lists of ``(x0, y0, x1, y1)`` half-open pixel boxes in input-frame coordinates;
            fractional coordinates are widened to whole pixels and parts outside the frame dropped.
        scores: (T,) float, the anomaly score per frame, NaN where unscored (drawn as a gap).
        labels: (T,) 0/1 ground truth; anomalous frames are shaded under the curve.
        vmax: The error drawn at the top of the colormap, the same for the whole video.
        scored: (T,) bool, which frames the protocol scored; defaults to the finite ``scores``.
            Unscored frames get a grey band under the curve and "not scored" above the prediction.
        fps: Frames per second of the MP4 (there is one MP4 frame per input frame).
        min_panel: Each panel is upscaled by the smallest integer factor that makes it at least
            this many pixels high.
        title: Shown in the caption above the curve, e.g. the dataset and video name.

    Returns:
        The geometry a viewer needs to map clicks and overlay boxes: ``{"path", "frames", "fps",
        "width", "height", "panel_scale", "panels": [{"name", "x", "y", "w", "h"}, ...], "curve":
        {"x", "y", "w", "h"}}``, in MP4 pixels. Input pixel ``(i, j)`` of frame t is MP4 pixels
        ``panel.x + j * panel_scale`` ... ``+ panel_scale - 1`` (and likewise for y); frame t of the
        curve covers columns ``[curve.x + t * curve.w / T, curve.x + (t + 1) * curve.w / T)``, so a
        click at column ``c`` is frame ``floor((c - curve.x) * T / curve.w)``.

    Raises:
        ValueError: The arrays disagree in T, H or W, a dtype or shape is not the one above, a box is
            not 4 finite numbers with ``x0 <= x1`` and ``y0 <= y1``, or a parameter is out of range.
    """
    frames_rgb, outputs_rgb, errors, scores, labels, scored, clean_boxes = _check_inputs(
        frames, outputs, errors, boxes, scores, labels, scored
    )
    vmax = _check_vmax(vmax)
    if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"render_video: fps must be a positive number, got {fps!r}.")
    fps = int(fps) if float(fps).is_integer() else float(fps)  # plain Python, for the JSON a caller writes
    if not (isinstance(min_panel, numbers.Integral) and min_panel >= 1):
        raise ValueError(f"render_video: min_panel must be a positive integer, got {min_panel!r}.")
    min_panel = int(min_panel)
    T, H, W = errors.shape
    scale = max(1, -(-min_panel // H))
    geometry = _layout(T, H, W, scale)
    width, height = geometry["width"], geometry["height"]
    panels = geometry["panels"]
    curve = geometry["curve"]

    bases = _static_canvases(geometry, T, scores, labels, scored, vmax, title)
    font = _font()
    caption_y = curve["y"] - STRIP
    rate = Fraction(fps).limit_denominator(1001)

    with atomic_path(out_path) as tmp:
        # the temporary's name does not end in .mp4, hence format=
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(CRF), "preset": PRESET}
            context = stream.codec_context
            context.thread_count = THREADS
            context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709
            context.color_range = 1  # limited ("MPEG") range, what browsers expect
            for t in range(T):
                canvas = bases[bool(scored[t])].copy()
                for panel, image in zip(panels, (frames_rgb[t], outputs_rgb[t], heat_colors(errors[t], vmax))):
                    x, y = panel["x"], panel["y"]
                    canvas[y : y + panel["h"], x : x + panel["w"]] = _upscale(image, scale)
                _draw_boxes(canvas, panels[0], clean_boxes[t], scale)
                strip = Image.fromarray(canvas[caption_y : caption_y + STRIP, : width // 2])
                ImageDraw.Draw(strip).text((MARGIN, 1), _caption(title, t, T), fill=TEXT_COLOUR, font=font)
                canvas[caption_y : caption_y + STRIP, : width // 2] = np.asarray(strip)
                column = curve["x"] + min(int((t + 0.5) * curve["w"] / T), curve["w"] - 1)
                canvas[curve["y"] : curve["y"] + curve["h"], column : min(column + 2, curve["x"] + curve["w"])] = (
                    CURSOR_COLOUR
                )
                frame = av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(
                    format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG", threads=1
                )
                frame.pts = t
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    return {"path": str(out_path), "fps": fps, **geometry}


def _check_vmax(vmax: float) -> float:
    try:
        value = float(vmax)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"vmax must be a positive finite number (the error drawn at the top of the colormap), got {vmax!r}; "
            "use e.g. a high percentile of the errors of all test videos."
        )
    return value


def _as_rgb(name: str, array: np.ndarray) -> np.ndarray:
    """(T, H, W, 1 or 3) uint8 view of ``array``; no copy, a long video can be large."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"render_video: {name} must be uint8 (0-255), got {array.dtype}; convert before rendering.")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim == 4 and array.shape[-1] in (1, 3):
        return array  # a grey (..., 1) frame broadcasts to RGB when it is pasted into the canvas
    raise ValueError(f"render_video: {name} must be (T, H, W) or (T, H, W, C) with C = 1 or 3, got {array.shape}.")


def _check_inputs(
    frames: np.ndarray,
    outputs: np.ndarray,
    errors: np.ndarray,
    boxes: Sequence[Sequence[Box]],
    scores: np.ndarray,
    labels: np.ndarray,
    scored: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[list[tuple[int, ...]]]]:
    frames_rgb = _as_rgb("frames", frames)
    outputs_rgb = _as_rgb("outputs", outputs)
    T, H, W = frames_rgb.shape[:3]
    if T == 0:
        raise ValueError("render_video: frames holds 0 frames; a video needs at least one.")
    if outputs_rgb.shape[:3] != (T, H, W):
        raise ValueError(
            f"render_video: outputs is (T, H, W) = {outputs_rgb.shape[:3]} but frames is {(T, H, W)}; "
            "pass the model's output for every input frame, at the input's size."
        )
    errors = np.asarray(errors)
    if errors.shape != (T, H, W) or not np.issubdtype(errors.dtype, np.floating):
        raise ValueError(
            f"render_video: errors must be float {(T, H, W)} like frames, got {errors.dtype} {errors.shape}."
        )
    checked = {}
    for name, array in (("scores", scores), ("labels", labels), ("scored", scored)):
        if array is None:
            continue
        array = np.asarray(array)
        if array.shape != (T,):
            raise ValueError(f"render_video: {name} must be ({T},), one value per frame, got {array.shape}.")
        checked[name] = array
    scores = checked["scores"].astype(np.float64)
    scored = checked["scored"].astype(bool) if "scored" in checked else np.isfinite(scores)
    if len(boxes) != T:
        raise ValueError(
            f"render_video: boxes holds {len(boxes)} lists but the video has {T} frames; pass one per frame."
        )
    clean: list[list[tuple[int, ...]]] = []
    for t, frame_boxes in enumerate(boxes):
        kept = []
        for box in frame_boxes:
            b = np.asarray(box, dtype=np.float64) if _is_numeric(box) else None
            if b is None or b.shape != (4,) or not np.isfinite(b).all() or b[2] < b[0] or b[3] < b[1]:
                raise ValueError(
                    f"render_video: boxes[{t}] holds {box!r}; a box is (x0, y0, x1, y1), half-open, with x0 <= x1 "
                    "and y0 <= y1, in input-frame pixels."
                )
            x0, y0 = max(0, math.floor(b[0])), max(0, math.floor(b[1]))
            x1, y1 = min(W, math.ceil(b[2])), min(H, math.ceil(b[3]))
            if x1 > x0 and y1 > y0:
                kept.append((x0, y0, x1, y1))
        clean.append(kept)
    return frames_rgb, outputs_rgb, errors, scores, checked["labels"] != 0, scored, clean


def _is_numeric(box: Any) -> bool:
    try:
        np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def _layout(T: int, H: int, W: int, scale: int) -> dict[str, Any]:
    pw, ph = W * scale, H * scale
    step = pw + GAP + (pw + GAP) % 2  # every panel starts on an even column (chroma is 2x2)
    panels = [
        {"name": name, "x": MARGIN + i * step, "y": MARGIN + STRIP, "w": pw, "h": ph}
        for i, name in enumerate(("input", "prediction", "error"))
    ]
    curve_w = panels[2]["x"] + pw - MARGIN
    curve_y = MARGIN + STRIP + ph + GAP + STRIP
    curve_h = max(48, ph // 3 // 2 * 2)
    width = MARGIN + curve_w + MARGIN
    height = curve_y + curve_h + MARGIN
    return {
        "frames": T,
        "width": width + width % 2,
        "height": height + height % 2,
        "panel_scale": scale,
        "panels": panels,
        "curve": {"x": MARGIN, "y": curve_y, "w": curve_w, "h": curve_h},
    }


def _caption(title: str, t: int, T: int) -> str:
    return f"{title}  frame {t}/{T - 1}" if title else f"frame {t}/{T - 1}"


def _static_canvases(
    geometry: dict[str, Any],
    T: int,
    scores: np.ndarray,
    labels: np.ndarray,
    scored: np.ndarray,
    vmax: float,
    title: str,
) -> dict[bool, np.ndarray]:
    """The canvas without the per-frame parts, one for a scored and one for an unscored frame."""
    width, height, curve = geometry["width"], geometry["height"], geometry["curve"]
    x, y, w, h = curve["x"], curve["y"], curve["w"], curve["h"]
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    area = canvas[y : y + h, x : x + w]
    area[:] = CURVE_BACKGROUND
    frame_of_column = np.minimum((np.arange(w) * T) // w, T - 1)
    area[:, labels[frame_of_column]] = ANOMALOUS_COLOUR
    area[h - 4 :, ~scored[frame_of_column]] = UNSCORED_COLOUR

    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = _font()
    finite = np.isfinite(scores)
    legend = "red: anomalous (ground truth)  grey band: not scored"
    if finite.any():
        lo, hi = float(scores[finite].min()), float(scores[finite].max())
        span = hi - lo if hi > lo else 1.0
        pad = 3
        px = x + (np.arange(T) + 0.5) * w / T
        py = y + pad + (h - 1 - 2 * pad) * (1 - (np.where(finite, scores, lo) - lo) / span)
        start = None
        for t in range(T + 1):
            if t < T and finite[t]:
                start = t if start is None else start
                continue
            if start is not None:
                points = [(float(px[i]), float(py[i])) for i in range(start, t)]
                if len(points) == 1:
                    (cx, cy) = points[0]
                    draw.rectangle((cx - 1, cy - 1, cx + 1, cy + 1), fill=SCORE_COLOUR)
                else:
                    draw.line(points, fill=SCORE_COLOUR, width=2)
                start = None
        legend = f"score {lo:.4g} to {hi:.4g}  " + legend
    else:
        legend = "no frame scored  " + legend
    caption_y = y - STRIP
    left = font.getlength(_caption(title, T - 1, T)) + MARGIN + 2 * GAP
    for text in (legend, legend.split("  ")[0]):
        length = font.getlength(text)
        if left + length <= width - MARGIN and left <= width // 2:
            draw.text((width - MARGIN - length, caption_y + 1), text, fill=TEXT_COLOUR, font=font)
            break
    labels_of = {"input": "input", "prediction": "prediction", "error": f"error (0 to {vmax:.4g})"}
    for panel in geometry["panels"]:
        draw.text((panel["x"], MARGIN), labels_of[panel["name"]], fill=TEXT_COLOUR, font=font)
    scored_canvas = np.array(image)
    prediction = geometry["panels"][1]
    draw.text((prediction["x"] + font.getlength("prediction "), MARGIN), "(not scored)", fill=(255, 170, 90), font=font)
    return {True: scored_canvas, False: np.array(image)}


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return image
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def _draw_boxes(canvas: np.ndarray, panel: dict[str, int], boxes: list[tuple[int, ...]], scale: int) -> None:
    """Outline each box inside its own pixels, BOX_WIDTH px wide, in the panel's coordinates."""
    px, py = panel["x"], panel["y"]
    for x0, y0, x1, y1 in boxes:
        X0, Y0, X1, Y1 = px + x0 * scale, py + y0 * scale, px + x1 * scale, py + y1 * scale
        lw = min(BOX_WIDTH, X1 - X0, Y1 - Y0)
        canvas[Y0 : Y0 + lw, X0:X1] = BOX_COLOUR
        canvas[Y1 - lw : Y1, X0:X1] = BOX_COLOUR
        canvas[Y0:Y1, X0 : X0 + lw] = BOX_COLOUR
        canvas[Y0:Y1, X1 - lw : X1] = BOX_COLOUR
