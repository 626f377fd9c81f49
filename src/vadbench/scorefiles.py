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

Every file is validated before it is used, and every problem is a :class:`DatasetError` that names
the file, what is wrong and the fix: arrays are read without unpickling (an object array is
refused), their headers are checked before anything is allocated (at most :data:`MAX_FILE_BYTES`
per file), scores must be finite or NaN, labels 0 or 1, CSV frame indices
``0 <= frame <`` :data:`MAX_FRAMES_PER_VIDEO`, and MATLAB v7.3 (HDF5) files are refused with
how to re-save them.
"""

from __future__ import annotations

import csv
import json
import math
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vadbench.errors import ConfigError, DatasetError
from vadbench.protocol import Protocol

#: A score or label file (or the arrays an .npz expands to) above this is refused before loading.
MAX_FILE_BYTES = 4 * 2**30
#: CSV frame indices and interval ends must stay below this (about 4.6 days of video at 25 fps).
MAX_FRAMES_PER_VIDEO = 10_000_000
#: All videos of a CSV together: at most this many frames (800 MB of float64 scores) are allocated.
MAX_FRAMES_TOTAL = 100_000_000
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_READ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
_RESAVE = "save plain numeric arrays with numpy.save / numpy.savez (e.g. scores.astype(np.float64))"


def check_size(path: Path, what: str = "file") -> None:
    """Refuse a file above :data:`MAX_FILE_BYTES` before it is read."""
    size = Path(path).stat().st_size
    if size > MAX_FILE_BYTES:
        raise DatasetError(
            f"{path}: {_size(size)}, above the {_size(MAX_FILE_BYTES)} vadbench reads as a {what}; "
            "split it (one .npz array per video) or check that this is the right file"
        )


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes} bytes"


def _array_bytes(fp: Any, what: str, available: int) -> int:
    """Bytes of the array whose ``.npy`` header ``fp`` is at, refused if unsafe or larger than its file."""
    try:
        version = np.lib.format.read_magic(fp)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(fp)
    except (ValueError, EOFError) as err:
        raise DatasetError(f"{what}: not a NumPy .npy array ({err}); {_RESAVE}") from None
    if dtype.hasobject:
        raise DatasetError(
            f"{what}: holds a pickled object array (dtype {dtype}), which vadbench never unpickles from a "
            f"user file; {_RESAVE}"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_FILE_BYTES:
        raise DatasetError(
            f"{what}: its header declares a {shape} {dtype} array of {_size(nbytes)}, above the "
            f"{_size(MAX_FILE_BYTES)} limit; check that this is the right file"
        )
    if nbytes > available - fp.tell():
        raise DatasetError(
            f"{what}: truncated: its header declares {nbytes} bytes of data ({shape} {dtype}) but the file holds "
            f"{max(available - fp.tell(), 0)}; copy or save the file again"
        )
    return nbytes


def load_arrays(path: str | Path) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a ``.npy``, or the arrays of an ``.npz`` by key, checked before they are allocated.

    Object (pickled) arrays, arrays above :data:`MAX_FILE_BYTES` and arrays their file is too
    short for are refused from the headers alone.

    Raises:
        DatasetError: naming ``path``, for any unreadable, unsafe or corrupt file.
    """
    path = Path(path)
    check_size(path, "score or label file")
    try:
        if path.suffix != ".npz":
            with open(path, "rb") as fp:
                _array_bytes(fp, str(path), path.stat().st_size)
            return np.load(path, allow_pickle=False)
        with zipfile.ZipFile(path) as archive:
            total = 0
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    raise DatasetError(f"{path}: member {member.filename!r} is not a .npy array; {_RESAVE}")
                with archive.open(member) as fp:
                    total += _array_bytes(fp, f"{path}[{member.filename[:-4]}]", member.file_size)
            if total > MAX_FILE_BYTES:
                raise DatasetError(
                    f"{path}: its arrays hold {_size(total)}, above the {_size(MAX_FILE_BYTES)} "
                    "limit; check that this is the right file"
                )
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except _READ_ERRORS as err:
        raise DatasetError(f"{path}: cannot read this array file ({err}); copy or save it again") from None


def load_mat(path: str | Path, variable: str, expected: str) -> np.ndarray:
    """Variable ``variable`` of a MATLAB ``.mat`` file (v4 to v7; v7.3 is refused with how to re-save it).

    Args:
        path: the ``.mat`` file.
        variable: the variable to read (``gt``, ``volLabel``).
        expected: what the file should be, for the error message.

    Raises:
        DatasetError: naming ``path``: unreadable, HDF5-based (v7.3), or without ``variable``.
    """
    import scipy.io

    path = Path(path)
    check_size(path, ".mat file")
    v73 = DatasetError(
        f"{path}: a MATLAB v7.3 (HDF5) file, which vadbench does not read; re-save it in MATLAB with "
        f"save('{path.name}', '{variable}', '-v7'), or use another label format (see vadbench evaluate -h)"
    )
    try:
        with open(path, "rb") as f:
            head = f.read(520)
        if _HDF5_MAGIC in (head[:8], head[512:520]):
            raise v73
        return scipy.io.loadmat(path, variable_names=[variable])[variable]
    except NotImplementedError:
        raise v73 from None
    except (
        scipy.io.matlab.MatReadError,
        ValueError,
        OSError,
        EOFError,
        KeyError,
        TypeError,
        IndexError,
        zlib.error,
    ) as err:
        raise DatasetError(f"{path}: cannot read variable {variable!r} ({err!r}); expected {expected}") from None


def load_scores(path: str | Path) -> dict[str, Any]:
    """Read a ``score`` rule ``.npz`` back, trusted as the workflow wrote it: ``{"videos",
    "protocol", "raw", "label"}`` and, for MNAD, ``memory_usage`` (test queries per memory item).

    Here and not in :mod:`vadbench.scoring`, which imports torch: the auc, plots and viewer jobs
    read scores, and torch would add 2 s to each. :func:`read_scores` is the checked reader for
    score files from elsewhere.

    Returns:
        ``raw`` and ``label``: per video, (T,) float raw errors (NaN = not scored) and 0/1 labels.
    """
    with np.load(path, allow_pickle=False) as data:
        videos = [str(v) for v in data["videos"]]
        out: dict[str, Any] = {"videos": videos, "protocol": Protocol.from_dict(json.loads(str(data["protocol"])))}
        for key in ("raw", "label"):
            out[key] = {v: data[f"{key}/{v}"] for v in videos}
        if "memory_usage" in data:
            out["memory_usage"] = data["memory_usage"]
    return out


def read_scores(
    path: str | Path,
) -> tuple[dict[str, np.ndarray] | np.ndarray, dict[str, np.ndarray] | None, Protocol | None]:
    """``(scores, labels or None, protocol or None)``; scores is a flat array for a ``.npy``.

    Raises:
        DatasetError: naming ``path``: unreadable, malformed, non-finite (inf) or all-NaN scores.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: score file not found" + (" (it is a folder)" if path.is_dir() else ""))
    labels, protocol = None, None
    if path.suffix == ".npz":
        arrays = load_arrays(path)
        if "videos" in arrays and "protocol" in arrays:
            scores, labels, protocol = _vadbench_scores(path, arrays)
        else:
            scores = {k: _vector(a, f"{path}[{k}]") for k, a in arrays.items()}
        if not scores:
            raise DatasetError(f"{path}: holds no arrays; expected one 1-D array of per-frame scores per video")
    elif path.suffix == ".npy":
        scores = _vector(load_arrays(path), str(path))
    elif path.suffix == ".csv":
        scores = _read_csv(path)
    else:
        raise DatasetError(
            f"{path}: unknown score file type {path.suffix!r}; use .npz, .npy or .csv (see vadbench evaluate -h)"
        )
    _check_finite(path, scores)
    return scores, labels, protocol


def _vadbench_scores(
    path: Path, arrays: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Protocol]:
    """Scores, labels and protocol of a ``score`` rule ``.npz``, each checked."""
    videos = arrays["videos"]
    if videos.ndim != 1 or videos.dtype.kind not in "US":
        raise DatasetError(f"{path}[videos]: expected a 1-D array of video names, got {videos.dtype} {videos.shape}")
    videos = [str(v) for v in videos]
    try:
        record = json.loads(str(arrays["protocol"]))
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, not an object")
        protocol = Protocol.from_dict(record)
    except (ValueError, ConfigError) as err:
        raise DatasetError(
            f"{path}[protocol]: not a valid protocol record ({err}); rescore with the score rule, "
            "or pass per-video scores with --labels and --protocol"
        ) from None
    missing = [k for v in videos for k in (f"raw/{v}", f"label/{v}") if k not in arrays]
    if missing:
        raise DatasetError(
            f"{path}: lists video(s) whose arrays are missing: {', '.join(missing[:5])}; "
            "the file is incomplete, rescore it"
        )
    scores = {v: _vector(arrays[f"raw/{v}"], f"{path}[raw/{v}]") for v in videos}
    labels = {v: _labels_vector(arrays[f"label/{v}"], f"{path}[label/{v}]") for v in videos}
    for v in videos:
        if len(scores[v]) != len(labels[v]):
            raise DatasetError(
                f"{path}: video {v} has {len(scores[v])} scores but {len(labels[v])} labels; "
                "the file is inconsistent, rescore it"
            )
    return scores, labels, protocol


def _check_finite(path: Path, scores: dict[str, np.ndarray] | np.ndarray) -> None:
    items = scores.items() if isinstance(scores, dict) else [("(concatenated)", scores)]
    for video, s in items:
        inf = np.flatnonzero(np.isinf(s))
        if len(inf):
            raise DatasetError(
                f"{path}: video {video} has an infinite score at frame {inf[0]} ({len(inf)} frame(s)); scores must "
                "be finite, or NaN for a frame the method did not score. Replace inf before evaluating "
                "(e.g. with the largest finite score)"
            )
        if len(s) and not np.isnan(s).all() and not np.isfinite(np.nanmax(s) - np.nanmin(s)):
            raise DatasetError(
                f"{path}: video {video}'s scores span {np.nanmin(s):.3g}..{np.nanmax(s):.3g}, too wide "
                "for float64 normalisation; rescale them (e.g. divide by their largest magnitude)"
            )
    if all(np.isnan(s).all() for _, s in items):
        raise DatasetError(
            f"{path}: every score is NaN, so no frame is scored (NaN marks a frame the method did "
            "not score); check that this file holds the method's scores"
        )


def _one_dim(array: np.ndarray) -> np.ndarray:
    """A (1, N) or (N, 1) array as (N,) (MNAD saves its label file as (1, N)); others unchanged."""
    array = np.asarray(array)
    return array.ravel() if array.ndim == 2 and 1 in array.shape else array


def _vector(array: np.ndarray, what: str) -> np.ndarray:
    array = _one_dim(array)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        raise DatasetError(
            f"{what}: expected a 1-D numeric array of per-frame scores, got shape {array.shape} "
            f"and dtype {array.dtype}; {_RESAVE}"
        )
    return array.astype(np.float64)


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    check_size(path, "score file")
    rows: dict[str, dict[int, float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"video", "frame", "score"} - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(
                    f"{path}: the header must name video, frame and score columns "
                    f"(missing {sorted(missing)}); e.g. 'video,frame,score' then '01,0,0.37'"
                )
            for line, row in enumerate(reader, 2):
                _read_csv_row(path, line, row, rows)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(
            f"{path}: cannot read this CSV ({err}); save it as UTF-8 text with video,frame,score columns"
        ) from None
    if not rows:
        raise DatasetError(f"{path}: no score rows after the header; expected one 'video,frame,score' row per frame")
    total = sum(max(frames) + 1 for frames in rows.values())
    if total > MAX_FRAMES_TOTAL:
        raise DatasetError(
            f"{path}: its videos span {total} frames, above the {MAX_FRAMES_TOTAL} vadbench "
            "evaluates at once; check the frame column"
        )
    out = {}
    for video, frames in rows.items():
        scores = np.full(max(frames) + 1, np.nan)
        scores[list(frames)] = list(frames.values())
        out[video] = scores
    return out


def _read_csv_row(path: Path, line: int, row: dict, rows: dict[str, dict[int, float]]) -> None:
    """Check one CSV row and add it to ``rows`` (video -> frame -> score)."""
    video, frame, score = row["video"], row["frame"], row["score"]
    if None in row or frame is None or score is None:
        raise DatasetError(
            f"{path}:{line}: this row has a different number of fields than the header ({row}); "
            "every row needs one value per header column"
        )
    try:
        frame, score = int(frame), float(score) if score.strip() else np.nan
    except ValueError:
        raise DatasetError(f"{path}:{line}: frame must be an integer and score a number, got {row}") from None
    if not 0 <= frame < MAX_FRAMES_PER_VIDEO:
        raise DatasetError(
            f"{path}:{line}: frame {frame} of video {video!r} is outside 0..{MAX_FRAMES_PER_VIDEO - 1}; "
            "frames are 0-based indices within each video"
        )
    frames = rows.setdefault(video, {})
    if frame in frames:
        raise DatasetError(f"{path}:{line}: video {video!r} frame {frame} is listed twice; keep one row per frame")
    frames[frame] = score


def read_labels(path: str | Path, lengths: dict[str, int] | None = None) -> dict[str, np.ndarray] | np.ndarray:
    """Per-video 0/1 labels (or a flat array for a concatenated ``.npy``) from any supported layout.

    Args:
        path: the label file or folder.
        lengths: frames per video, needed by the interval formats (``.mat``, ``.m``), which do
            not say how long a video is; taken from the score file.

    Raises:
        DatasetError: naming the file, for a missing, unreadable or malformed label file.
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
            raise DatasetError(
                f"{path}: a label folder must hold labels.npz (vadbench) or <video>.npy frame masks "
                "(ShanghaiTech test_frame_mask/)"
            )
        return {m.stem: _labels_vector(load_arrays(m), m) for m in masks}
    ordered = _ordered_lengths(lengths)
    if path.suffix == ".npz":
        arrays = load_arrays(path)
        if not arrays:
            raise DatasetError(f"{path}: holds no arrays; expected one 1-D 0/1 label array per video")
        return {k: _labels_vector(a, f"{path}[{k}]") for k, a in arrays.items()}
    if path.suffix == ".npy":
        return _labels_vector(load_arrays(path), path)
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
        return {
            f"{i + 1:03d}": ranges_to_label(video_ranges, n, path, f"video {i + 1}")
            for i, (video_ranges, (_, n)) in enumerate(zip(ranges, ordered))
        }
    raise DatasetError(
        f"{path}: unknown label file type; use a Liu .mat, a UCSD .m, a test_frame_mask/ folder, "
        "labels.npz or a concatenated .npy"
    )


def _ordered_lengths(lengths: dict[str, int] | None) -> list[tuple[str, int]] | None:
    """Videos with their lengths in number order (01 < 2 < 10), as interval files list them."""
    if lengths is None:
        return None
    return sorted(lengths.items(), key=lambda kv: (_numbers(kv[0]), kv[0]))


def _labels_vector(array: np.ndarray, where: Any) -> np.ndarray:
    array = _one_dim(array)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        raise DatasetError(
            f"{where}: expected a 1-D array of 0/1 frame labels, got shape {array.shape} and dtype "
            f"{array.dtype}; save one 0/1 entry per frame"
        )
    if not np.isin(array, (0, 1)).all():
        found = np.unique(array[~np.isin(array, (0, 1))])[:5].tolist()
        raise DatasetError(
            f"{where}: frame labels must be 0 (normal) or 1 (anomalous), found {found}; "
            "binarise the labels (e.g. labels > 0) before evaluating"
        )
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


def match_videos(
    scores: dict[str, np.ndarray], labels: dict[str, np.ndarray], where: str = ""
) -> dict[str, np.ndarray]:
    """``labels`` re-keyed to the score file's video names (exact names, else by their numbers).

    ``where`` (the two files) prefixes every error message.
    """
    where = f"{where}: " if where else ""
    if set(scores) == set(labels):
        return labels
    by_number: dict[tuple[int, ...], str] = {}
    for v in labels:
        if _numbers(v) in by_number:
            raise DatasetError(
                f"{where}label videos {by_number[_numbers(v)]!r} and {v!r} have the same number, so "
                "score videos cannot be matched to them; rename one"
            )
        by_number[_numbers(v)] = v
    out, used = {}, {}
    for v in scores:
        key = _numbers(v)
        if not key or key not in by_number:
            raise DatasetError(
                f"{where}score video {v!r} has no label; score videos {sorted(scores)}, "
                f"label videos {sorted(labels)}. Name the videos alike (or by the same numbers)"
            )
        if key in used:
            raise DatasetError(
                f"{where}score videos {used[key]!r} and {v!r} both match label video {by_number[key]!r}; rename one"
            )
        used[key] = v
        out[v] = labels[by_number[key]]
    extra = sorted(set(labels) - {by_number[k] for k in used})
    if extra:
        raise DatasetError(
            f"{where}label videos {extra} have no scores; score every test video (score videos {sorted(scores)})"
        )
    return out


def _check_both_classes(labels: dict[str, np.ndarray], where: str | Path) -> None:
    """An AUC needs anomalous and normal frames; refuse a label file with only one class."""
    anomalous = sum(int(label.sum()) for label in labels.values())
    total = sum(len(label) for label in labels.values())
    if anomalous in (0, total):
        raise DatasetError(
            f"{where}: all {total} frames are labelled {'anomalous' if anomalous else 'normal'}; an AUC "
            "needs both classes. Check that this is the test split's label file"
        )


def load_pair(
    scores_path: str | Path, labels_path: str | Path | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Protocol | None]:
    """Scores and labels keyed by the same videos, and the protocol a vadbench score file records.

    Raises:
        DatasetError: naming the file(s), for any unreadable or malformed file, or scores and
            labels that do not describe the same videos and frames.
    """
    scores, own_labels, protocol = read_scores(scores_path)
    if labels_path is None:
        if own_labels is None:
            raise DatasetError(f"{scores_path}: holds no labels; pass --labels")
        _check_both_classes(own_labels, scores_path)
        return scores, own_labels, protocol
    if isinstance(scores, np.ndarray):  # flat scores: the labels give the videos
        labels = read_labels(labels_path)
        if isinstance(labels, np.ndarray):
            raise DatasetError(
                f"{scores_path}: flat scores need per-video labels (a mask folder or labels.npz) to be "
                f"split into videos, but {labels_path} is flat too"
            )
        _check_both_classes(labels, labels_path)
        ordered = _ordered_lengths({v: len(label) for v, label in labels.items()})
        return split_flat(scores, ordered, str(scores_path)), labels, protocol
    lengths = {v: len(s) for v, s in scores.items()}
    labels = read_labels(labels_path, lengths)
    if isinstance(labels, np.ndarray):
        labels = split_flat(labels, _ordered_lengths(lengths), str(labels_path))
    _check_both_classes(labels, labels_path)
    labels = match_videos(scores, labels, f"{scores_path} vs {labels_path}")
    for v, s in scores.items():
        if len(s) != len(labels[v]):
            raise DatasetError(
                f"{scores_path}: video {v} has {len(s)} scores but {labels_path} gives it "
                f"{len(labels[v])} labels; score every frame (NaN for frames not scored)"
            )
    return scores, labels, protocol
