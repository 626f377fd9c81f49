"""Score and label files from any code, read for ``vadbench evaluate``.

Scores (per-frame, per video; NaN marks a frame the method did not score):

* ``.npz`` written by the ``score`` rule (keys ``videos``, ``raw/<v>``, ``label/<v>``,
  ``protocol``): its labels and protocol come with it;
* any other ``.npz``: one 1-D array per video, keyed by video name;
* ``.npy``: one 1-D array of every test video's frames concatenated in video order, split by
  the label file's video lengths;
* ``.csv``: a header with ``video``, ``frame`` (0-based) and ``score`` columns.

Labels (1 = anomalous frame), in every layout vadbench reads:

* Liu et al. ``<name>.mat`` (``gt``: [start; end] 1-based intervals per video; lengths from the scores);
* UCSD ``UCSDped1.m`` / ``UCSDped2.m`` (``gt_frame = [a:b]`` lines; lengths from the scores);
* a ShanghaiTech ``test_frame_mask/`` folder of ``<video>.npy``;
* vadbench's ``resources/<dataset>/frames/labels.npz`` (or that ``frames`` folder);
* a single ``.npy`` of every video's labels concatenated (MNAD's ``frame_labels_<dataset>.npy``),
  split by the scores' lengths.

Video names are matched exactly, or else by their numbers (``01``, ``001``, ``Test001`` and
``01.avi`` are the same video 1), so Liu, UCSD and vadbench names line up.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from vadbench.errors import DatasetError
from vadbench.protocol import Protocol


def read_scores(path: str | Path) -> tuple[dict[str, np.ndarray] | np.ndarray, dict[str, np.ndarray] | None,
                                           Protocol | None]:
    """``(scores, labels or None, protocol or None)``; scores is a flat array for a ``.npy``."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: score file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                keys = list(data.keys())
                if "videos" in keys and "protocol" in keys:
                    videos = [str(v) for v in data["videos"]]
                    protocol = Protocol.from_dict(json.loads(str(data["protocol"])))
                    return ({v: data[f"raw/{v}"].astype(np.float64) for v in videos},
                            {v: data[f"label/{v}"] for v in videos}, protocol)
                return {k: _vector(data[k], f"{path}[{k}]") for k in keys}, None, None
        if path.suffix == ".npy":
            return _vector(np.load(path, allow_pickle=False), str(path)), None, None
        if path.suffix == ".csv":
            return _read_csv(path), None, None
    except (ValueError, OSError, EOFError, KeyError) as err:
        raise DatasetError(f"{path}: cannot read this score file ({err})") from None
    raise DatasetError(f"{path}: unknown score file type {path.suffix!r}; use .npz, .npy or .csv (see vadbench evaluate -h)")


def _one_dim(array: np.ndarray) -> np.ndarray:
    """A (1, N) or (N, 1) array as (N,) (MNAD saves its label file as (1, N)); others unchanged."""
    array = np.asarray(array)
    return array.ravel() if array.ndim == 2 and 1 in array.shape else array


def _vector(array: np.ndarray, what: str) -> np.ndarray:
    array = _one_dim(array)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        raise DatasetError(f"{what}: expected a 1-D numeric array of per-frame scores, got shape {array.shape} "
                           f"and dtype {array.dtype}")
    return array.astype(np.float64)


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    rows: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"video", "frame", "score"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: the header must name video, frame and score columns (missing {sorted(missing)})")
        for line, row in enumerate(reader, 2):
            try:
                rows.setdefault(row["video"], {})[int(row["frame"])] = float(row["score"]) if row["score"] else np.nan
            except ValueError:
                raise DatasetError(f"{path}:{line}: frame must be an integer and score a number, got {row}") from None
    out = {}
    for video, frames in rows.items():
        scores = np.full(max(frames) + 1, np.nan)
        scores[list(frames)] = list(frames.values())
        out[video] = scores
    return out


def read_labels(path: str | Path, lengths: dict[str, int] | None = None) -> dict[str, np.ndarray] | np.ndarray:
    """Per-video 0/1 labels (or a flat array for a concatenated ``.npy``) from any supported layout.

    Args:
        path: the label file or folder.
        lengths: frames per video, needed by the interval formats (``.mat``, ``.m``), which do
            not say how long a video is; taken from the score file.
    """
    from vadbench.datasets.liu import parse_intervals
    from vadbench.datasets.ucsd import parse_gt_m, ranges_to_label

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: label file not found")
    if path.is_dir():
        if (path / "labels.npz").is_file():
            return read_labels(path / "labels.npz")
        masks = sorted(path.glob("*.npy"))
        if not masks:
            raise DatasetError(f"{path}: a label folder must hold labels.npz (vadbench) or <video>.npy frame masks "
                               "(ShanghaiTech test_frame_mask/)")
        return {m.stem: _labels_vector(np.load(m, allow_pickle=False), m) for m in masks}
    ordered = _ordered_lengths(lengths)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: _labels_vector(data[k], f"{path}[{k}]") for k in data.keys()}
    if path.suffix == ".npy":
        return _labels_vector(np.load(path, allow_pickle=False), path)
    if path.suffix == ".mat":
        if ordered is None:
            raise DatasetError(f"{path}: a .mat interval file needs the videos' lengths; pass per-video scores")
        labels = parse_intervals(path, [n for _, n in ordered])
        return {f"{i + 1:02d}": label for i, label in enumerate(labels)}
    if path.suffix == ".m":
        if ordered is None:
            raise DatasetError(f"{path}: a .m interval file needs the videos' lengths; pass per-video scores")
        ranges = parse_gt_m(path)
        if len(ranges) != len(ordered):
            raise DatasetError(f"{path}: {len(ranges)} gt_frame lines but the scores hold {len(ordered)} videos")
        return {f"{i + 1:03d}": ranges_to_label(video_ranges, n, path, f"video {i + 1}")
                for i, (video_ranges, (_, n)) in enumerate(zip(ranges, ordered))}
    raise DatasetError(f"{path}: unknown label file type; use a Liu .mat, a UCSD .m, a test_frame_mask/ folder, "
                       "labels.npz or a concatenated .npy")


def _ordered_lengths(lengths: dict[str, int] | None) -> list[tuple[str, int]] | None:
    """Videos with their lengths in number order (01 < 2 < 10), as interval files list them."""
    if lengths is None:
        return None
    return sorted(lengths.items(), key=lambda kv: (_numbers(kv[0]), kv[0]))


def _labels_vector(array: np.ndarray, where: Any) -> np.ndarray:
    array = _one_dim(array)
    if array.ndim != 1 or not np.isin(array, (0, 1)).all():
        raise DatasetError(f"{where}: expected a 1-D array of 0/1 frame labels, got shape {array.shape}")
    return array.astype(np.uint8)


def _numbers(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", Path(name).stem))


def split_flat(flat: np.ndarray, lengths: list[tuple[str, int]], what: str) -> dict[str, np.ndarray]:
    """Cut a concatenated per-frame array into videos of ``lengths`` (in that order)."""
    total = sum(n for _, n in lengths)
    if len(flat) != total:
        raise DatasetError(f"{what}: {len(flat)} frames, but the videos on the other side hold {total}")
    cuts = np.cumsum([n for _, n in lengths])[:-1]
    return dict(zip([v for v, _ in lengths], np.split(flat, cuts)))


def match_videos(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``labels`` re-keyed to the score file's video names (exact names, else by their numbers)."""
    if set(scores) == set(labels):
        return labels
    by_number = {_numbers(v): v for v in labels}
    out = {}
    for v in scores:
        key = _numbers(v)
        if not key or key not in by_number:
            raise DatasetError(
                f"score video {v!r} has no label; score videos {sorted(scores)}, label videos {sorted(labels)}"
            )
        out[v] = labels[by_number[key]]
    extra = sorted(set(labels) - {by_number[_numbers(v)] for v in scores})
    if extra:
        raise DatasetError(f"label videos {extra} have no scores; score every test video (score videos {sorted(scores)})")
    return out


def load_pair(scores_path: str | Path, labels_path: str | Path | None) -> tuple[dict[str, np.ndarray],
                                                                              dict[str, np.ndarray], Protocol | None]:
    """Scores and labels keyed by the same videos, and the protocol a vadbench score file records."""
    scores, own_labels, protocol = read_scores(scores_path)
    if labels_path is None:
        if own_labels is None:
            raise DatasetError(f"{scores_path}: holds no labels; pass --labels")
        return scores, own_labels, protocol
    if isinstance(scores, np.ndarray):  # flat scores: the labels give the videos
        labels = read_labels(labels_path)
        if isinstance(labels, np.ndarray):
            raise DatasetError("flat scores need per-video labels (a mask folder or labels.npz) to be split into videos")
        ordered = _ordered_lengths({v: len(l) for v, l in labels.items()})
        return split_flat(scores, ordered, str(scores_path)), labels, protocol
    lengths = {v: len(s) for v, s in scores.items()}
    labels = read_labels(labels_path, lengths)
    if isinstance(labels, np.ndarray):
        labels = split_flat(labels, _ordered_lengths(lengths), str(labels_path))
    return scores, match_videos(scores, labels), protocol
