"""The annotated MP4 per test video (:mod:`vadbench.render`).

A tiny synthetic video is rendered for real with libx264 and decoded back with PyAV; every check
is on the decoded pixels, with tolerances for H.264 and 4:2:0 chroma, at the places the returned
geometry names, so the geometry a viewer relies on is checked along with the picture.
"""

from __future__ import annotations

import os
import resource
import signal
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from vadbench.render import BOX_COLOUR, heat_colors, render_video

T, H, W = 12, 32, 32
BOX = (8, 8, 20, 24)  # x0, y0, x1, y1, on frames 4-7
VMAX = 0.5


def make_case() -> dict:
    ramp = np.linspace(60, 180, W)[None, :].repeat(H, axis=0)
    frames = np.stack([ramp + 2 * t for t in range(T)]).astype(np.uint8)
    outputs = (255 - frames).astype(np.uint8)  # unlike the input, so a swapped panel shows
    outputs[:2] = 0  # unscored: no prediction
    errors = np.zeros((T, H, W), np.float16)
    errors[:, :, W // 2 :] = VMAX  # right half at the top of the colormap, left half at 0
    scores = np.linspace(0.1, 0.9, T)
    scores[[0, 1, 9]] = np.nan
    labels = np.zeros(T, np.int64)
    labels[4:8] = 1
    boxes = [[BOX] if 4 <= t < 8 else [] for t in range(T)]
    return dict(frames=frames, outputs=outputs, errors=errors, boxes=boxes, scores=scores, labels=labels)


def decode(path: Path) -> tuple[dict, list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {"codec": stream.codec_context.name, "pix_fmt": stream.format.name, "rate": stream.average_rate}
        frames = [frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(stream)]
    return info, frames


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[dict, dict, list[np.ndarray], Path]:
    path = tmp_path_factory.mktemp("render") / "video.mp4"
    geometry = render_video(path, **make_case(), vmax=VMAX, title="toy 01")
    info, frames = decode(path)
    return geometry, info, frames, path


def region(image: np.ndarray, rect: dict) -> np.ndarray:
    return image[rect["y"] : rect["y"] + rect["h"], rect["x"] : rect["x"] + rect["w"]]


def test_the_mp4_is_h264_yuv420p_with_one_frame_per_input_frame(rendered):
    geometry, info, frames, path = rendered
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["rate"] == 10 and geometry["fps"] == 10
    assert len(frames) == T == geometry["frames"]
    assert frames[0].shape == (geometry["height"], geometry["width"], 3)
    assert geometry["width"] % 2 == 0 and geometry["height"] % 2 == 0
    scale = geometry["panel_scale"]
    assert scale == 8  # the smallest integer factor that makes 32 px at least 256 px
    assert [p["name"] for p in geometry["panels"]] == ["input", "prediction", "error"]
    assert all((p["w"], p["h"]) == (W * scale, H * scale) for p in geometry["panels"])
    assert geometry["path"] == str(path)


def test_the_moov_atom_comes_first_so_a_browser_can_start_playing(rendered):
    data = rendered[3].read_bytes()
    atoms, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        atoms.append(kind.decode())
        offset += size if size else len(data)
    assert atoms.index("moov") < atoms.index("mdat")


def test_panels_show_the_input_and_the_prediction_at_the_returned_places(rendered):
    geometry, _, frames, _ = rendered
    case = make_case()
    scale = geometry["panel_scale"]
    up = lambda image: np.repeat(np.repeat(image, scale, 0), scale, 1).astype(np.int16)  # noqa: E731
    input_panel, prediction_panel, _ = geometry["panels"]
    t = 10  # scored, no box
    assert np.abs(region(frames[t], input_panel)[..., 1] - up(case["frames"][t])).mean() < 4
    assert np.abs(region(frames[t], prediction_panel)[..., 1] - up(case["outputs"][t])).mean() < 4


def box_outline_pixels(image: np.ndarray, panel: dict, scale: int) -> np.ndarray:
    x0, y0, x1, y1 = (c * scale for c in BOX)
    p = region(image, panel)
    return np.concatenate([p[y0, x0:x1], p[y1 - 1, x0:x1], p[y0:y1, x0], p[y0:y1, x1 - 1]])


def test_boxes_are_outlined_on_their_frames_only(rendered):
    geometry, _, frames, _ = rendered
    panel, scale = geometry["panels"][0], geometry["panel_scale"]
    boxed = box_outline_pixels(frames[5], panel, scale)
    unboxed = box_outline_pixels(frames[2], panel, scale)
    assert np.abs(boxed - np.array(BOX_COLOUR)).max(axis=1).mean() < 40  # bright green along the outline
    greenness = lambda px: (px[:, 1] - np.maximum(px[:, 0], px[:, 2])).mean()  # noqa: E731
    assert greenness(boxed) > 150
    assert abs(greenness(unboxed)) < 10  # the grey input, no box
    # inside the box the input is untouched
    x0, y0, x1, y1 = (c * scale for c in BOX)
    inside = region(frames[5], panel)[y0 + 4 : y1 - 4, x0 + 4 : x1 - 4]
    assert abs(greenness(inside.reshape(-1, 3))) < 10


def cursor_column(image: np.ndarray, curve: dict) -> int:
    area = region(image, curve)
    whiteness = area.min(axis=2).astype(np.float64).sum(axis=0)  # white in every channel over the full height
    return int(np.argmax(whiteness))


def test_the_cursor_moves_along_the_score_curve(rendered):
    geometry, _, frames, _ = rendered
    curve = geometry["curve"]
    first, last = cursor_column(frames[0], curve), cursor_column(frames[-1], curve)
    assert abs(first - (0.5 * curve["w"] / T)) <= 3
    assert abs(last - ((T - 0.5) * curve["w"] / T)) <= 3
    # away from the cursor the curve is the same picture in both frames
    a, b = region(frames[0], curve), region(frames[-1], curve)
    middle = slice(curve["w"] // 4, 3 * curve["w"] // 4)
    assert np.abs(a[:, middle] - b[:, middle]).mean() < 2


def test_unscored_frames_are_gaps_in_the_curve_and_anomalous_frames_are_shaded(rendered):
    geometry, _, frames, _ = rendered
    curve = geometry["curve"]
    area = region(frames[-1], curve)
    per_frame = curve["w"] / T
    # the score line is light on a dark background; its blue hue does not survive 4:2:0 on a 2 px line
    line = area.mean(axis=2) > 110

    def columns(a: float, b: float) -> slice:
        return slice(int(a * per_frame) + 4, int(b * per_frame) - 4)

    assert not line[:, columns(0, 2.5)].any()  # frames 0 and 1 are NaN, the line starts at frame 2's centre
    assert not line[:, columns(8.5, 10.5)].any()  # frame 9 is NaN: a gap between frames 8 and 10
    assert line[:, columns(3, 8)].any(axis=0).all()  # a line over every column of the scored run
    redness = lambda cols: (area[:, cols, 0] - area[:, cols, 2]).mean()  # noqa: E731
    assert redness(columns(4, 8)) > 30 > redness(columns(10, 12))  # frames 4-7 are anomalous


def test_the_heat_panel_is_bright_where_the_error_is_high(rendered):
    geometry, _, frames, _ = rendered
    heat = region(frames[6], geometry["panels"][2])
    half = heat.shape[1] // 2
    low, high = heat[:, 4 : half - 4].mean(axis=(0, 1)), heat[:, half + 4 : -4].mean(axis=(0, 1))
    assert np.abs(high - heat_colors(np.array(VMAX), VMAX)).max() < 16
    assert np.abs(low - heat_colors(np.array(0.0), VMAX)).max() < 16
    assert high.mean() > low.mean() + 150


def test_heat_colors_is_inferno_scaled_by_vmax():
    matplotlib = pytest.importorskip("matplotlib")
    inferno = np.round(matplotlib.colormaps["inferno"](np.arange(256) / 255)[:, :3] * 255)
    colours = heat_colors(np.arange(256, dtype=np.float16) * 2 / 255, vmax=2.0)
    assert colours.dtype == np.uint8 and colours.shape == (256, 3)
    assert np.abs(colours.astype(int) - inferno).max() <= 2
    special = heat_colors(np.array([[np.nan, -1.0], [5.0, np.inf]]), vmax=2.0)
    assert special.shape == (2, 2, 3)
    assert (special[0, 0] == colours[0]).all() and (special[0, 1] == colours[0]).all()
    assert (special[1, 0] == colours[255]).all() and (special[1, 1] == colours[255]).all()
    with pytest.raises(ValueError, match="vmax"):
        heat_colors(np.zeros(3), vmax=0)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(outputs=c["outputs"][:-1]), "outputs"),
        (lambda c: c.update(errors=c["errors"][:, :-2]), "errors"),
        (lambda c: c.update(frames=c["frames"][:, :, :-2]), "outputs"),
        (lambda c: c.update(boxes=c["boxes"][:-1]), "boxes holds 11"),
        (lambda c: c.update(scores=c["scores"][:-1]), "scores"),
        (lambda c: c.update(labels=c["labels"][1:]), "labels"),
        (lambda c: c.update(frames=c["frames"].astype(np.float32)), "uint8"),
        (lambda c: c["boxes"].__setitem__(5, [(20, 8, 8, 24)]), r"boxes\[5\]"),
        (lambda c: c["boxes"].__setitem__(5, [(1, 2, 3)]), r"boxes\[5\]"),
        (lambda c: c.update(vmax=float("nan")), "vmax"),
    ],
)
def test_inconsistent_inputs_are_refused_before_anything_is_written(tmp_path, change, message):
    case = make_case() | {"vmax": VMAX}
    change(case)
    with pytest.raises(ValueError, match=message):
        render_video(tmp_path / "v.mp4", **case)
    assert list(tmp_path.iterdir()) == []


def test_the_same_inputs_give_the_same_bytes(tmp_path, rendered):
    render_video(tmp_path / "again.mp4", **make_case(), vmax=VMAX, title="toy 01")
    assert (tmp_path / "again.mp4").read_bytes() == rendered[3].read_bytes()


def test_a_render_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path, rendered):
    path = tmp_path / "video.mp4"
    path.write_bytes(b"the previous render")
    # a full disk in the middle of the encode: writes past half the finished size fail with EFBIG
    limit = os.path.getsize(rendered[3]) // 2
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError, match="File too large"):
            render_video(path, **make_case(), vmax=VMAX, title="toy 01")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert [p.name for p in tmp_path.iterdir()] == ["video.mp4"]
    assert path.read_bytes() == b"the previous render"
    render_video(path, **make_case(), vmax=VMAX, title="toy 01")  # and a rerun replaces it whole
    # whole: every frame decodes and shows what the first render shows (byte identity is the test
    # above's; after an aborted encode on an oversubscribed CPU one CI run got other x264 bytes)
    info, frames = decode(path)
    assert info == rendered[1] and len(frames) == len(rendered[2]) == T
    assert max(float(np.abs(a - b).mean()) for a, b in zip(frames, rendered[2])) < 1.0
