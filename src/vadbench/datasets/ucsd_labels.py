"""The official UCSD frame labels of Ped2, and the dataset key ``label_source`` that applies them.

Where the table comes from: ``UCSD_Anomaly_Dataset.v1p2/UCSDped2/Test/UCSDped2.m`` of the official
archive (Mahadevan et al., CVPR 2010; http://www.svcl.ucsd.edu/projects/anomaly/), one line per test
video, ``TestDataset{end+1}.gt_frame = [61:180];``. The same intervals are MNAD's
``data/frame_labels_ped2.npy`` (1,648 anomalous frames of 2,010) and are transcribed in
``../shared/docs/methods.md`` (section 5, "Ped2 frame GT")::

    video     Test001 002     003    004     005    006    007     008    009    010    011    012
    frames    180     180     150    180     150    180    180     180    120    150    180    180
    anomalous 61-180  95-180  1-146  31-180  1-129  1-159  46-180  1-180  1-120  1-150  1-180  88-180

The Liu et al. (CVPR 2018) re-package's ``ped2.mat``, which MNAD's and AMMC-Net's loaders read,
differs: it starts Test003, 005, 008, 009, 010 and 011 at frame 5 instead of 1 (1,624 anomalous
frames; read from ``../shared/datasets/ped2.tar``). Protocols that never score the first 4 frames
of a video are unaffected; one that scores every frame (``mnad_recon``) is.

``label_source`` (a dataset key, applied by the ``frames`` rule and recorded in the frames
manifest):

* ``archive`` (default): what the dataset's own files say (Liu: ``<name>.mat``; UCSD: the
  archive's ``UCSDpedN.m``; Avenue: the masks; ShanghaiTech: ``test_frame_mask``).
* ``ucsd_official``: the UCSD ``.m`` intervals whatever the layout. In the ``ucsd`` layout the
  archive's ``.m`` file *is* the official source, so the labels are the archive's; for Ped2 they
  are also checked against the table above. In the ``liu`` layout Ped2's labels are replaced by the
  table. No table of Ped1 is shipped: for Ped1 use the ``ucsd`` layout (its ``UCSDped1.m``).

Pitfall handled: the table is matched to the videos in sorted order, as the readers match a
label file; a dataset whose test videos do not have exactly the official count and lengths is
refused, naming the first mismatch, rather than labelled by position. One third-party MATLAB
script found in a public repository lists Test006 as 1:162; Liu's ``ped2.mat``, MNAD's labels and
a second transcription give 1-159, as here. The archive itself was not at hand; the check in the
``ucsd`` layout would refuse a table that disagrees with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vadbench.datasets.canonical import SourceVideos
from vadbench.errors import ConfigError, DatasetError

#: The values of the dataset key ``label_source``; the first is the default.
LABEL_SOURCES = ("archive", "ucsd_official")

#: Where :data:`PED2_INTERVALS` and :data:`PED2_LENGTHS` come from.
PED2_SOURCE = "UCSD_Anomaly_Dataset.v1p2/UCSDped2/Test/UCSDped2.m"
#: Frames of Ped2's test videos Test001 ... Test012.
PED2_LENGTHS = (180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180)
#: The anomalous frames of each Ped2 test video, 1-based and inclusive (one interval each).
PED2_INTERVALS = (
    (61, 180),
    (95, 180),
    (1, 146),
    (31, 180),
    (1, 129),
    (1, 159),
    (46, 180),
    (1, 180),
    (1, 120),
    (1, 150),
    (1, 180),
    (88, 180),
)

#: Stems of a Liu-layout label file per UCSD scene (``ped2.mat`` -> UCSDped2).
_LIU_SCENES = {"ped2": "UCSDped2", "ucsdped2": "UCSDped2", "ped1": "UCSDped1", "ucsdped1": "UCSDped1"}


def ped2_official_labels() -> list[np.ndarray]:
    """The official Ped2 frame labels: one (T,) uint8 0/1 array per test video, in order."""
    labels = []
    for n, (start, end) in zip(PED2_LENGTHS, PED2_INTERVALS):
        label = np.zeros(n, dtype=np.uint8)
        label[start - 1 : end] = 1
        labels.append(label)
    return labels


def intervals_of(label: np.ndarray) -> list[tuple[int, int]]:
    """The 1-based inclusive ``(start, end)`` runs of 1s in a (T,) 0/1 label array."""
    padded = np.concatenate([[0], np.asarray(label, dtype=np.int8) != 0, [0]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a) + 1, int(b)) for a, b in zip(edges[::2], edges[1::2])]


def apply_label_source(source: SourceVideos, label_source: str, layout: str, scene: str | None = None) -> None:
    """Set ``source.labels`` (and ``source.label_file``) as ``label_source`` says, in place.

    Args:
        source: what the layout's reader listed, its labels from the dataset's own files.
        label_source: ``archive`` (leave them) or ``ucsd_official`` (module docstring).
        layout: the reader's layout name.
        scene: the UCSD scene of the ``ucsd`` layout (its ``scene`` option); ignored otherwise.

    Raises:
        ConfigError: an unknown ``label_source``, or ``ucsd_official`` for a dataset it has no
            official labels of (not UCSD; Ped1 in the Liu layout).
        DatasetError: the test videos are not the official Ped2 count and lengths, or the
            archive's ``UCSDped2.m`` disagrees with the table.
    """
    if label_source not in LABEL_SOURCES:
        raise ConfigError(f"label_source {label_source!r} is not known; use one of {', '.join(LABEL_SOURCES)}")
    if label_source == "archive":
        return
    if layout == "ucsd":
        if (scene or "UCSDped2") == "UCSDped2":
            where = source.label_file or "UCSDped2.m"
            _check_ped2_videos(source, where)
            for (video, label), official, name in zip(sorted(source.labels.items()), PED2_INTERVALS, _ucsd_names()):
                if intervals_of(label) != [official]:
                    raise DatasetError(
                        f"{where}: {name} (test video {video}) is labelled {_show(intervals_of(label))}, but the "
                        f"official table of vadbench.datasets.ucsd_labels has {_show([official])}. This archive "
                        "is not the official v1p2 release; use label_source: archive for its own labels."
                    )
        # UCSDped1: the archive's UCSDped1.m is the official source, and the reader read it
        return
    if layout != "liu":
        raise ConfigError(
            f"label_source ucsd_official: layout {layout!r} is not UCSD Ped1/Ped2; the official UCSD intervals "
            "exist only for those (layout ucsd, or Ped2 in layout liu). Use label_source: archive."
        )
    stem = Path(source.label_file or "").stem.lower()
    found = _LIU_SCENES.get(stem)
    if found == "UCSDped1":
        raise ConfigError(
            f"label_source ucsd_official: {source.label_file} is Ped1 in the Liu et al. layout, and vadbench ships "
            "no table of the official Ped1 intervals. Use layout ucsd with the official UCSD_Anomaly_Dataset.tar.gz "
            "(its UCSDped1.m is the official source), or label_source: archive."
        )
    if found != "UCSDped2":
        raise ConfigError(
            f"label_source ucsd_official: the Liu-layout labels {source.label_file or '(none)'} are not named "
            "ped2.mat (or ped1.mat), so this is not a UCSD scene with official intervals. Use label_source: archive."
        )
    _check_ped2_videos(source, source.label_file)
    source.labels = dict(zip(sorted(source.frames["test"]), ped2_official_labels()))
    source.label_file = f"{PED2_SOURCE} (vadbench.datasets.ucsd_labels.PED2_INTERVALS)"


def _check_ped2_videos(source: SourceVideos, where: str | None) -> None:
    """The test split holds the 12 Ped2 test videos of the official lengths, in sorted order."""
    lengths = [len(paths) for _, paths in sorted(source.frames["test"].items())]
    names = sorted(source.frames["test"])
    if len(lengths) != len(PED2_LENGTHS):
        raise DatasetError(
            f"{where}: label_source ucsd_official needs the {len(PED2_LENGTHS)} test videos of UCSD Ped2 "
            f"({PED2_SOURCE}), but the test split holds {len(lengths)} ({', '.join(names[:5])}"
            f"{' ...' if len(names) > 5 else ''}). Use label_source: archive for another dataset."
        )
    for video, n, expected, name in zip(names, lengths, PED2_LENGTHS, _ucsd_names()):
        if n != expected:
            raise DatasetError(
                f"{where}: test video {video} has {n} frames, but the official Ped2 {name} has {expected} "
                f"(lengths {', '.join(map(str, PED2_LENGTHS))}); these are not the UCSD Ped2 test videos in order. "
                "Use label_source: archive, or re-extract the dataset."
            )


def _ucsd_names() -> list[str]:
    return [f"Test{i:03d}" for i in range(1, len(PED2_LENGTHS) + 1)]


def _show(intervals: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}-{b}" for a, b in intervals) or "normal throughout"
