"""Layout converters on miniature archives built in each official layout."""

import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_datasets import write_liu

from vadbench.datasets import convert_source, fetch_source
from vadbench.datasets.ucsd import parse_gt_m
from vadbench.errors import DatasetError

UCSD_M = """TestDataset = {};
TestDataset{end+1}.gt_frame = [2:3];
TestDataset{end+1}.gt_frame = [1:2, 5:6];  % two intervals
"""


def write_ucsd(root: Path, m_text: str = UCSD_M) -> Path:
    """UCSD_Anomaly_Dataset.v1p2 with Ped1 (ignored) and Ped2: 1-based .tif frames, .bmp masks, the .m file."""
    for scene in ("UCSDped1", "UCSDped2"):
        base = root / "UCSD_Anomaly_Dataset.v1p2" / scene
        for folder, n_frames in (
            ("Train/Train001", 4),
            ("Train/Train002", 5),
            ("Test/Test001", 4),
            ("Test/Test002", 6),
        ):
            d = base / folder
            d.mkdir(parents=True)
            for i in range(1, n_frames + 1):
                Image.fromarray(np.full((24, 36), 20 * i, np.uint8)).save(d / f"{i:03d}.tif")
        masks = base / "Test/Test001_gt"
        masks.mkdir()
        for i in range(1, 5):
            Image.fromarray(np.zeros((24, 36), np.uint8)).save(masks / f"{i:03d}.bmp")
        (base / "Test/Test001/._001.tif").write_bytes(b"macOS resource fork")
        (base / f"Test/{scene}.m").write_text(m_text)
    return root


def test_ucsd_archive_takes_the_requested_scene_with_several_ranges(tmp_path):
    write_ucsd(tmp_path / "tree")
    archive = tmp_path / "UCSD_Anomaly_Dataset.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree/UCSD_Anomaly_Dataset.v1p2", arcname="UCSD_Anomaly_Dataset.v1p2")
    fetch_source("ped2", {"source": str(archive), "layout": "ucsd"}, tmp_path / "source")
    manifest = convert_source(tmp_path / "source", "ucsd", tmp_path / "frames", {"scene": "UCSDped2"})
    assert manifest["splits"] == {"train": {"001": 4, "002": 5}, "test": {"001": 4, "002": 6}}
    labels = np.load(tmp_path / "frames/labels.npz")
    np.testing.assert_array_equal(labels["001"], [0, 1, 1, 0])
    np.testing.assert_array_equal(labels["002"], [1, 1, 0, 0, 1, 1])
    assert sorted(p.name for p in (tmp_path / "frames/masks/001").iterdir()) == [
        "0000.png",
        "0001.png",
        "0002.png",
        "0003.png",
    ]
    assert sorted(p.name for p in (tmp_path / "frames/test/002").iterdir())[0] == "0000.tif"


def test_ucsd_gt_parser_reads_matlab_ranges(tmp_path):
    path = tmp_path / "UCSDped2.m"
    path.write_text(
        "TestVideoFile{end+1}.gt_frame = [61:180];\nTestVideoFile{end+1}.gt_frame = [5 9:12];\n"
        "% TestVideoFile{end+1}.gt_frame = [1:2];\n"
    )
    assert parse_gt_m(path) == [[range(61, 181)], [range(5, 6), range(9, 13)]]


def test_ucsd_stepped_range_lists_every_step_th_frame_like_matlab(tmp_path):
    write_ucsd(tmp_path / "tree", UCSD_M.replace("[1:2, 5:6]", "[1:2:5]"))
    convert_source(tmp_path / "tree", "ucsd", tmp_path / "frames", {"scene": "UCSDped2"})
    np.testing.assert_array_equal(np.load(tmp_path / "frames/labels.npz")["002"], [1, 0, 1, 0, 1, 0])


def test_ucsd_range_outside_the_video_is_named(tmp_path):
    write_ucsd(tmp_path / "tree", UCSD_M.replace("[2:3]", "[2:30]"))
    with pytest.raises(DatasetError, match=r"UCSDped2.m: Test001 has range 2:30, outside its frames 1..4"):
        convert_source(tmp_path / "tree", "ucsd", tmp_path / "frames", {"scene": "UCSDped2"})
    assert not (tmp_path / "frames").exists()


def test_ucsd_missing_scene_says_which_layout_is_expected(tmp_path):
    (tmp_path / "tree").mkdir()
    with pytest.raises(DatasetError, match="no UCSDped2/Train and UCSDped2/Test folders"):
        convert_source(tmp_path / "tree", "ucsd", tmp_path / "frames", {"scene": "UCSDped2"})


def test_liu_shanghaitech_variant_reads_frame_masks(tmp_path):
    root = write_liu(tmp_path / "src", train=[3], test=[4, 5], gt=[[[1], [2]], [[1], [2]]], name="shanghaitech")
    (root / "shanghaitech/shanghaitech.mat").unlink()
    masks = root / "shanghaitech/testing/test_frame_mask"
    masks.mkdir()
    np.save(masks / "01.npy", np.array([0, 0, 1, 1]))
    np.save(masks / "02.npy", np.array([1, 0, 0, 0, 0]))
    convert_source(root, "liu", tmp_path / "frames")
    labels = np.load(tmp_path / "frames/labels.npz")
    np.testing.assert_array_equal(labels["01"], [0, 0, 1, 1])
    np.save(masks / "02.npy", np.array([1, 0, 0]))
    with pytest.raises(DatasetError, match=r"02.npy: 3 labels but .* holds 5 frames"):
        convert_source(root, "liu", tmp_path / "frames2")


def test_missing_shanghaitech_folder_gives_instructions(tmp_path):
    with pytest.raises(DatasetError) as err:
        fetch_source(
            "shanghaitech", {"source": str(tmp_path / "nowhere"), "layout": "shanghaitech"}, tmp_path / "source"
        )
    assert "public ShanghaiTech Campus mirror is dead" in str(err.value)
    assert "testing/test_frame_mask/01_0014.npy" in str(err.value)
