"""Source layouts into the canonical frame layout: names, labels and clear errors."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from vadbench.arrays import decode_videos
from vadbench.clips import build_index, load_index
from vadbench.datasets import convert_source, fetch_source
from vadbench.datasets.synthetic import SyntheticSpec, generate
from vadbench.errors import DatasetError


def write_liu(root: Path, train: list[int], test: list[int], gt: list, name: str = "mini", digits: int = 3) -> Path:
    """A miniature dataset in the Liu et al. layout: frame counts per video, gt cells as given."""
    for folder, lengths in (("training", train), ("testing", test)):
        for v, n in enumerate(lengths):
            d = root / name / folder / "frames" / f"{v + 1:02d}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((24, 36, 3), 10 * i % 255, np.uint8)).save(d / f"{i:0{digits}d}.jpg")
    cells = np.empty((1, len(gt)), dtype=object)
    for i, g in enumerate(gt):
        cells[0, i] = np.array(g, dtype=np.uint16)
    scipy.io.savemat(root / name / f"{name}.mat", {"gt": cells})
    return root


def test_liu_layout_becomes_canonical_with_several_intervals(tmp_path):
    src = write_liu(tmp_path / "src", train=[5, 4], test=[6, 10], gt=[[[2], [3]], [[1, 7], [2, 10]]])
    manifest = convert_source(src, "liu", tmp_path / "frames")
    assert manifest["splits"] == {"train": {"01": 5, "02": 4}, "test": {"01": 6, "02": 10}}
    assert sorted(p.name for p in (tmp_path / "frames/train/02").iterdir()) == [
        "0000.jpg",
        "0001.jpg",
        "0002.jpg",
        "0003.jpg",
    ]
    labels = np.load(tmp_path / "frames/labels.npz")
    np.testing.assert_array_equal(labels["01"], [0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(labels["02"], [1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    assert manifest["anomalous_test_frames"] == 8


def test_one_based_four_digit_names_are_renumbered_from_zero(tmp_path):
    src = tmp_path / "src"
    write_liu(src, train=[3], test=[3], gt=[[[1], [3]]], digits=4)
    for d in (src / "mini/training/frames/01", src / "mini/testing/frames/01"):
        for p in sorted(d.iterdir(), reverse=True):
            p.rename(d / f"{int(p.stem) + 1:04d}.jpg")  # 0001.jpg ... 0003.jpg
    convert_source(src, "liu", tmp_path / "frames")
    assert sorted(p.name for p in (tmp_path / "frames/test/01").iterdir()) == ["0000.jpg", "0001.jpg", "0002.jpg"]


def test_missing_frame_is_named_and_nothing_is_written(tmp_path):
    src = write_liu(tmp_path / "src", train=[6], test=[3], gt=[[[1], [2]]])
    (src / "mini/training/frames/01/003.jpg").unlink()
    with pytest.raises(DatasetError, match=r"training/frames/01: 1 frame\(s\) missing \(number 3\)"):
        convert_source(src, "liu", tmp_path / "frames")
    assert not (tmp_path / "frames").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "src"]


def test_corrupt_jpeg_is_named(tmp_path):
    src = write_liu(tmp_path / "src", train=[3], test=[3], gt=[[[1], [2]]])
    (src / "mini/testing/frames/01/001.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError, match=r"testing/frames/01/001.jpg: unreadable image"):
        convert_source(src, "liu", tmp_path / "frames")
    assert not (tmp_path / "frames").exists()


def test_truncated_jpeg_fails_when_decoded(tmp_path):
    src = write_liu(tmp_path / "src", train=[3], test=[3], gt=[[[1], [2]]])
    convert_source(src, "liu", tmp_path / "frames")
    frame = tmp_path / "frames/train/01/0001.jpg"
    frame.write_bytes(frame.read_bytes()[:200])
    with pytest.raises(DatasetError, match="0001.jpg: cannot decode frame"):
        decode_videos(tmp_path / "frames", tmp_path / "arrays", (32, 32), 1)
    assert not (tmp_path / "arrays").exists()


@pytest.mark.parametrize(
    "gt, message",
    [
        ([[[1], [2]]], "'gt' holds 1 entries but testing/frames holds 2 videos"),
        ([[[1], [2]], [[3], [9]]], r"interval \[3, 9\], outside frames 1..4"),
        ([[[1], [2]], [[0], [2]]], r"interval \[0, 2\]"),
    ],
)
def test_malformed_ground_truth_is_named(tmp_path, gt, message):
    src = write_liu(tmp_path / "src", train=[3], test=[3, 4], gt=gt)
    with pytest.raises(DatasetError, match=message):
        convert_source(src, "liu", tmp_path / "frames")


def test_ground_truth_file_that_is_not_a_mat_is_named(tmp_path):
    src = write_liu(tmp_path / "src", train=[3], test=[3], gt=[[[1], [2]]])
    (src / "mini/mini.mat").write_text("gt = [1 2]")
    with pytest.raises(DatasetError, match="mini.mat: cannot read variable 'gt'"):
        convert_source(src, "liu", tmp_path / "frames")


def test_synthetic_dataset_is_deterministic_and_in_the_liu_layout(tmp_path):
    spec = SyntheticSpec(frame_size=32, train_videos=2, test_videos=3, frames_per_video=40, seed=5)
    a, b = generate(tmp_path / "a", spec), generate(tmp_path / "b", spec)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files if f.suffix == ".jpg")
    assert Path("training/frames/01/000.jpg") in files and Path("toy.mat") in files
    manifest = convert_source(a, "liu", tmp_path / "frames")
    labels = np.load(tmp_path / "frames/labels.npz")
    for video, label in labels.items():
        hit = np.flatnonzero(label)
        # one interval per test video that starts after normal frames
        assert len(hit) > 0 and hit[0] > 0 and np.all(np.diff(hit) == 1), video
    assert manifest["splits"]["test"] == {"01": 40, "02": 40, "03": 40}


def test_local_folder_source_is_linked_not_copied(tmp_path):
    write_liu(tmp_path / "src", train=[3], test=[3], gt=[[[1], [2]]])
    out = fetch_source("mini", {"source": str(tmp_path / "src"), "layout": "liu"}, tmp_path / "source")
    assert (out / "data").is_symlink()
    assert convert_source(out, "liu", tmp_path / "frames")["splits"]["train"] == {"01": 3}


def test_missing_local_folder_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="datasets.mini.source = .*no such file or folder"):
        fetch_source("mini", {"source": str(tmp_path / "nope"), "layout": "liu"}, tmp_path / "source")
    assert not (tmp_path / "source").exists()


def test_resize_and_index_give_every_clip_of_the_preset(tmp_path):
    src = write_liu(tmp_path / "src", train=[20, 17], test=[18], gt=[[[1], [2]]])
    convert_source(src, "liu", tmp_path / "frames")
    info = decode_videos(tmp_path / "frames", tmp_path / "arrays", (16, 32), 1)
    assert info["size"] == [16, 32]
    video = np.load(tmp_path / "arrays/train/01.npy", mmap_mode="r")
    assert video.shape == (20, 16, 32, 1) and video.dtype == np.uint8
    counts = build_index(
        tmp_path / "arrays", clip_length=16, train_stride=2, test_stride=1, out_path=tmp_path / "clips.npz"
    )
    # train: video 01 starts 0,2,4 ; video 02 starts 0,(2 would end at 18 > 17) -> 0 only
    assert counts == {"train": 4, "test": 3}
    train = load_index(tmp_path / "clips.npz", "train")
    assert train.videos == ["01", "02"] and list(train.starts) == [0, 2, 4, 0]
