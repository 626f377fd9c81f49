"""A synthetic pedestrian scene written in the Liu et al. (CVPR 2018) layout of UCSD Ped2.

It ships with the code so the whole pipeline runs with no download, through the same
conversion code as the real data::

    <root>/
      <name>.mat                     gt: 1 x n_test cell, one [start; end] 1-based interval
      training/frames/01/000.jpg ... normal videos only
      testing/frames/01/000.jpg  ... each test video holds one anomalous event
      testing/masks/01/000.png   ... 1-bit pixel mask per test frame, white on the anomalous
                                     object: an extension of the layout (the Liu archives have
                                     none) that :mod:`vadbench.datasets.liu` reads when present

The scene imitates a fixed surveillance camera: a static textured background with two
light walkways across darker grass, sensor noise on every frame, and small dark pedestrians
walking slowly along the walkways in both directions. Each test video adds one anomaly that
starts after some normal frames and ends before the video does:

* ``cart``: a large bright object moving fast along a walkway (Ped2's carts and trucks);
* ``cyclist``: a wide dark figure moving three times faster than anyone walks;
* ``crosser``: a pedestrian walking across the grass, where nobody walks in training.

A frame is labelled anomalous exactly when a pixel of the anomalous object is drawn in it, and
its mask is exactly the pixels the object painted (its rectangle clipped to the frame; walkers
drawn under it are covered, none is drawn over it), so ``label[t] == mask[t].any()``.
Everything is a function of the seed, so the dataset is byte-identical on every machine
that has the same Pillow JPEG encoder; the masks take no random draw, so adding them left the
frames and labels of every seed as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import scipy.ndimage
from PIL import Image

ANOMALY_KINDS = ("cart", "cyclist", "crosser")

_WALK_SPEED = (0.3, 0.7)  # px per frame at 64 px; scaled with the frame size


@dataclass(frozen=True)
class SyntheticSpec:
    """Size of the generated dataset; every field is a config key under ``synthetic``."""

    frame_size: int = 64
    train_videos: int = 8
    test_videos: int = 6
    frames_per_video: int = 96
    seed: int = 0


@dataclass
class _Sprite:
    y: float
    x: float
    vy: float
    vx: float
    height: int
    width: int
    intensity: float
    anomalous: bool = False


def _background(size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Static scene in [0, 1] and the (top, bottom) rows of its two walkways."""
    coarse = scipy.ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma=size / 12)
    fine = scipy.ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma=0.8)
    grass = 0.35 + 0.6 * coarse / (np.abs(coarse).max() + 1e-9) * 0.12 + 0.05 * fine
    scene = grass.copy()
    half = max(2, size // 16)
    walkways = []
    for centre in (int(size * 0.3), int(size * 0.7)):
        top, bottom = centre - half, centre + half
        scene[top:bottom] = 0.68 + 0.02 * fine[top:bottom]
        scene[top, :] = scene[bottom - 1, :] = 0.55  # kerbs
        walkways.append((top, bottom))
    return np.clip(scene, 0, 1), walkways


def _walker(size: int, walkways, rng: np.random.Generator, at_edge: bool) -> _Sprite:
    top, bottom = walkways[rng.integers(len(walkways))]
    scale = size / 64
    height, width = max(3, round(5 * scale)), max(2, round(3 * scale))
    speed = rng.uniform(*_WALK_SPEED) * scale
    leftwards = rng.random() < 0.5
    if at_edge:
        x = size + width if leftwards else -width
    else:
        x = rng.uniform(0, size - width)
    y = (top + bottom) / 2 - height / 2 + rng.uniform(-1, 1) * scale
    return _Sprite(y, x, 0.0, -speed if leftwards else speed, height, width, rng.uniform(0.1, 0.25))


def _anomaly(kind: str, size: int, walkways, rng: np.random.Generator) -> _Sprite:
    scale = size / 64
    leftwards = rng.random() < 0.5
    sign = -1.0 if leftwards else 1.0
    top, bottom = walkways[rng.integers(len(walkways))]
    if kind == "cart":
        height, width = round(9 * scale), round(12 * scale)
        vx, vy, intensity = sign * rng.uniform(1.2, 1.6) * scale, 0.0, 0.92
        y = bottom - height + 1
    elif kind == "cyclist":
        height, width = max(4, round(6 * scale)), max(5, round(8 * scale))
        vx, vy, intensity = sign * rng.uniform(1.4, 1.8) * scale, 0.0, 0.05
        y = (top + bottom) / 2 - height / 2
    elif kind == "crosser":
        height, width = max(3, round(5 * scale)), max(2, round(3 * scale))
        down = rng.random() < 0.5
        return _Sprite(
            -height if down else size,
            rng.uniform(0.2, 0.8) * size,
            (1 if down else -1) * 0.9 * scale,
            0.0,
            height,
            width,
            0.12,
            anomalous=True,
        )
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}; known: {ANOMALY_KINDS}")
    x = size if leftwards else -width
    return _Sprite(y, x, vy, vx, height, width, intensity, anomalous=True)


def _draw(frame: np.ndarray, sprite: _Sprite) -> tuple[slice, slice] | None:
    """Paint ``sprite`` into ``frame`` in place.

    Returns:
        The rows and columns it painted, clipped to the frame; ``None`` when it is off the frame.
    """
    size = frame.shape[0]
    y0, x0 = int(round(sprite.y)), int(round(sprite.x))
    y1, x1 = y0 + sprite.height, x0 + sprite.width
    cy0, cx0, cy1, cx1 = max(y0, 0), max(x0, 0), min(y1, size), min(x1, size)
    if cy0 >= cy1 or cx0 >= cx1:
        return None
    frame[cy0:cy1, cx0:cx1] = sprite.intensity
    if sprite.height >= 8:  # carts get a dark outline and wheels, so they are not a flat block
        frame[cy0:cy1, cx0] = frame[cy0:cy1, cx1 - 1] = 0.2
        frame[min(cy1, size) - 1, cx0:cx1] = 0.05
    return slice(cy0, cy1), slice(cx0, cx1)


def _render_video(
    n_frames: int, scene: np.ndarray, walkways, rng: np.random.Generator, anomaly: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (T, S, S) uint8, the per-frame 0/1 anomaly label (T,) and its pixel masks (T, S, S) bool.

    The random draws and their order are the generator's contract (a seed must keep giving
    the same dataset): the masks are bookkeeping of what :func:`_draw` painted and draw nothing.
    """
    size = scene.shape[0]
    walkers = [_walker(size, walkways, rng, at_edge=False) for _ in range(rng.integers(1, 4))]
    onset = int(rng.integers(n_frames // 6, n_frames // 3)) if anomaly else n_frames
    odd: _Sprite | None = None
    frames = np.empty((n_frames, size, size), dtype=np.uint8)
    labels = np.zeros(n_frames, dtype=np.uint8)
    masks = np.zeros((n_frames, size, size), dtype=bool)
    for t in range(n_frames):
        if rng.random() < 0.04 and len(walkers) < 5:
            walkers.append(_walker(size, walkways, rng, at_edge=True))
        if t == onset:
            odd = _anomaly(anomaly, size, walkways, rng)
        frame = scene.copy()
        for w in walkers:
            _draw(frame, w)
            w.x += w.vx
            # a walker's gait makes it bob by a pixel, as real pedestrians do at this scale
            w.y += 0.25 * np.sin(0.6 * t + w.x)
        walkers = [w for w in walkers if -2 * w.width < w.x < size + 2 * w.width]
        if odd is not None:
            painted = _draw(frame, odd)
            if painted is not None:
                masks[t][painted] = True
            labels[t] = painted is not None
            odd.x += odd.vx
            odd.y += odd.vy
        frame += rng.normal(0.0, 0.015, size=frame.shape)
        frames[t] = np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)
    return frames, labels, masks


def _write_frames(video_dir: Path, frames: np.ndarray) -> None:
    video_dir.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        # three identical channels, as in the real re-packaged Ped2 JPEGs
        Image.fromarray(np.repeat(frame[..., None], 3, axis=2)).save(video_dir / f"{i:03d}.jpg", quality=95)


def _write_masks(video_dir: Path, masks: np.ndarray) -> None:
    video_dir.mkdir(parents=True, exist_ok=True)
    for i, mask in enumerate(masks):
        Image.fromarray(mask).save(video_dir / f"{i:03d}.png")  # a bool array is a 1-bit image


def generate(root: str | Path, spec: SyntheticSpec, name: str = "toy") -> Path:
    """Write the synthetic dataset under ``root`` in the Liu et al. layout, with pixel masks.

    Args:
        root: directory to create; must not already hold a dataset.
        spec: dataset size and seed.
        name: dataset name; the ground truth goes to ``<root>/<name>.mat``.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    scene, walkways = _background(spec.frame_size, rng)
    for i in range(spec.train_videos):
        frames, _, _ = _render_video(spec.frames_per_video, scene, walkways, rng, anomaly=None)
        _write_frames(root / "training" / "frames" / f"{i + 1:02d}", frames)
    intervals = []
    for i in range(spec.test_videos):
        kind = ANOMALY_KINDS[i % len(ANOMALY_KINDS)]
        frames, labels, masks = _render_video(spec.frames_per_video, scene, walkways, rng, anomaly=kind)
        _write_frames(root / "testing" / "frames" / f"{i + 1:02d}", frames)
        _write_masks(root / "testing" / "masks" / f"{i + 1:02d}", masks)
        hit = np.flatnonzero(labels)
        intervals.append(np.array([[hit[0] + 1], [hit[-1] + 1]], dtype=np.uint16))
    gt = np.empty((1, len(intervals)), dtype=object)
    for i, interval in enumerate(intervals):
        gt[0, i] = interval
    scipy.io.savemat(root / f"{name}.mat", {"gt": gt})
    return root
