"""The dataset key ``label_source``: the archive's own labels or the official UCSD intervals.

Ped2 is built at its real shape (12 test videos of the official lengths, 2,010 frames of 4x6
pixels) in the Liu et al. layout, with the ``ped2.mat`` intervals of ``../shared/datasets/ped2.tar``,
and in the official UCSD layout, with ``UCSDped2.m``.
"""

import io

import numpy as np
import pytest
import scipy.io
from PIL import Image
from test_datasets import write_liu
from test_layouts import write_ucsd

from vadbench.datasets import convert_source
from vadbench.datasets.ucsd_labels import PED2_INTERVALS, PED2_LENGTHS, intervals_of, ped2_official_labels
from vadbench.errors import ConfigError, DatasetError
from vadbench.fileio import read_json

#: Test videos whose interval Liu's ped2.mat starts at frame 5 instead of the official 1 (1-based numbers).
LIU_STARTS_AT_5 = (3, 5, 8, 9, 10, 11)
#: ped2.mat of ../shared/datasets/ped2.tar, as read by vadbench.datasets.liu (checked by hand against the tar).
LIU_PED2 = ((61, 180), (95, 180), (5, 146), (31, 180), (5, 129), (1, 159), (46, 180), (5, 180), (5, 120), (5, 150))
LIU_PED2 += ((5, 180), (88, 180))


def _image_bytes(suffix: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((4, 6), 128, np.uint8)).save(out, format={"png": "PNG", "tif": "TIFF"}[suffix])
    return out.getvalue()


def write_liu_ped2(root, lengths=PED2_LENGTHS, intervals=LIU_PED2, name="ped2"):
    """Liu et al. layout of Ped2: one training video, the test videos of ``lengths``, ``<name>.mat``."""
    frame = _image_bytes("png")
    for folder, videos in (("training", [3]), ("testing", lengths)):
        for v, n in enumerate(videos):
            d = root / name / folder / "frames" / f"{v + 1:02d}"
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i:03d}.png").write_bytes(frame)
    cells = np.empty((1, len(intervals)), dtype=object)
    for i, (start, end) in enumerate(intervals):
        cells[0, i] = np.array([[start], [end]], dtype=np.uint16)
    scipy.io.savemat(root / name / f"{name}.mat", {"gt": cells})
    return root


def write_ucsd_ped2(root, intervals=PED2_INTERVALS):
    """The official UCSD layout of Ped2: 1-based .tif frames and UCSDped2.m with ``intervals``."""
    frame = _image_bytes("tif")
    base = root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"
    for folder, videos in (("Train/Train", [3]), ("Test/Test", PED2_LENGTHS)):
        for v, n in enumerate(videos):
            d = base / f"{folder}{v + 1:03d}"
            d.mkdir(parents=True)
            for i in range(1, n + 1):
                (d / f"{i:03d}.tif").write_bytes(frame)
    lines = "".join(f"TestDataset{{end+1}}.gt_frame = [{a}:{b}];\n" for a, b in intervals)
    (base / "Test/UCSDped2.m").write_text("TestDataset = {};\n" + lines)
    return root


def labels_of(frames_dir) -> list[np.ndarray]:
    with np.load(frames_dir / "labels.npz") as data:
        return [data[k] for k in sorted(data.files)]


@pytest.fixture(scope="module")
def liu_ped2(tmp_path_factory):
    return write_liu_ped2(tmp_path_factory.mktemp("liu_ped2"))


def test_the_official_ped2_table_has_2010_frames_and_1648_anomalous():
    labels = ped2_official_labels()
    assert [len(label) for label in labels] == [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]
    assert sum(len(label) for label in labels) == 2010 and sum(int(label.sum()) for label in labels) == 1648
    assert [intervals_of(label) for label in labels] == [[interval] for interval in PED2_INTERVALS]
    # Liu's ped2.mat: the same but for the six videos that start at frame 5, 6 x 4 = 24 frames fewer
    for v, (official, liu) in enumerate(zip(PED2_INTERVALS, LIU_PED2), 1):
        assert liu == ((5, official[1]) if v in LIU_STARTS_AT_5 else official)
    assert sum(b - a + 1 for a, b in LIU_PED2) == 1624
    assert intervals_of(np.array([1, 1, 0, 0, 1, 0, 1])) == [(1, 2), (5, 5), (7, 7)]


def test_liu_ped2_takes_the_official_intervals_under_ucsd_official(liu_ped2, tmp_path):
    archive = convert_source(liu_ped2, "liu", tmp_path / "archive")
    official = convert_source(liu_ped2, "liu", tmp_path / "official", label_source="ucsd_official")
    assert (archive["label_source"], archive["label_file"]) == ("archive", "ped2.mat")
    assert official["label_source"] == "ucsd_official" and "UCSDped2.m" in official["label_file"]
    assert (archive["anomalous_test_frames"], official["anomalous_test_frames"]) == (1624, 1648)
    assert read_json(tmp_path / "official/manifest.json")["label_source"] == "ucsd_official"
    for v, (liu, ucsd) in enumerate(zip(labels_of(tmp_path / "archive"), labels_of(tmp_path / "official")), 1):
        differ = np.flatnonzero(liu != ucsd).tolist()
        assert differ == ([0, 1, 2, 3] if v in LIU_STARTS_AT_5 else []), v  # frames 1-4, 0-based
        assert intervals_of(ucsd) == [PED2_INTERVALS[v - 1]]


def test_ucsd_official_refuses_videos_that_are_not_the_ped2_test_set(tmp_path):
    short = write_liu(tmp_path / "short", train=[3], test=[4, 5], gt=[[[1], [2]], [[1], [2]]], name="ped2")
    with pytest.raises(DatasetError, match=r"ped2.mat: label_source ucsd_official needs the 12 test videos .* holds 2"):
        convert_source(short, "liu", tmp_path / "frames", label_source="ucsd_official")
    lengths = list(PED2_LENGTHS)
    lengths[2] = 149
    wrong = write_liu_ped2(tmp_path / "wrong", lengths=lengths, intervals=[(1, 2)] * 12)
    with pytest.raises(DatasetError, match="test video 03 has 149 frames, but the official Ped2 Test003 has 150"):
        convert_source(wrong, "liu", tmp_path / "frames", label_source="ucsd_official")
    assert not (tmp_path / "frames").exists()


def test_ucsd_official_refuses_ped1_in_the_liu_layout(tmp_path):
    ped1 = write_liu(tmp_path / "src", train=[3], test=[4], gt=[[[1], [2]]], name="ped1")
    with pytest.raises(ConfigError, match="ped1.mat is Ped1 in the Liu et al. layout, and vadbench ships no table"):
        convert_source(ped1, "liu", tmp_path / "frames", label_source="ucsd_official")
    avenue = write_liu(tmp_path / "avenue", train=[3], test=[4], gt=[[[1], [2]]], name="avenue")
    with pytest.raises(ConfigError, match="avenue.mat are not named ped2.mat"):
        convert_source(avenue, "liu", tmp_path / "frames", label_source="ucsd_official")
    with pytest.raises(ConfigError, match="label_source 'masks' is not known"):
        convert_source(avenue, "liu", tmp_path / "frames", label_source="masks")


def test_ucsd_layout_reads_the_official_file_itself_and_checks_ped2_against_the_table(tmp_path):
    write_ucsd_ped2(tmp_path / "tree")
    official = convert_source(tmp_path / "tree", "ucsd", tmp_path / "official", label_source="ucsd_official")
    archive = convert_source(tmp_path / "tree", "ucsd", tmp_path / "archive")
    assert official["label_file"] == archive["label_file"] == "UCSDped2/Test/UCSDped2.m"
    assert official["anomalous_test_frames"] == archive["anomalous_test_frames"] == 1648
    for ucsd, table in zip(labels_of(tmp_path / "official"), ped2_official_labels(), strict=True):
        np.testing.assert_array_equal(ucsd, table)
    changed = list(PED2_INTERVALS)
    changed[5] = (1, 162)  # as one third-party copy of the file has it
    write_ucsd_ped2(tmp_path / "other", changed)
    with pytest.raises(DatasetError, match=r"UCSDped2.m: Test006 \(test video 006\) is labelled 1-162, .* has 1-159"):
        convert_source(tmp_path / "other", "ucsd", tmp_path / "frames", label_source="ucsd_official")
    assert convert_source(tmp_path / "other", "ucsd", tmp_path / "frames")["anomalous_test_frames"] == 1651


def test_ucsd_ped1_official_labels_are_the_archives_ucsdped1_m(tmp_path):
    write_ucsd(tmp_path / "tree")  # the miniature of test_layouts: Ped1 and Ped2, two test videos each
    manifest = convert_source(
        tmp_path / "tree", "ucsd", tmp_path / "frames", {"scene": "UCSDped1"}, None, "ucsd_official"
    )
    assert (manifest["label_source"], manifest["label_file"]) == ("ucsd_official", "UCSDped1/Test/UCSDped1.m")
    np.testing.assert_array_equal(labels_of(tmp_path / "frames")[1], [1, 1, 0, 0, 1, 1])
    with pytest.raises(DatasetError, match="needs the 12 test videos of UCSD Ped2"):  # Ped2 of two videos
        convert_source(tmp_path / "tree", "ucsd", tmp_path / "ped2", {"scene": "UCSDped2"}, None, "ucsd_official")
