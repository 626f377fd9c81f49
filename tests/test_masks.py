"""Pixel masks in the canonical layout: made by the synthetic scene, kept from UCSD and Avenue,
read back by ``load_masks`` at the model's frame size."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from test_datasets import write_liu
from test_layouts import write_ucsd
from test_layouts_video import write_avenue

from vadbench.datasets import convert_source
from vadbench.datasets.canonical import SourceVideos, has_masks, load_masks, write_canonical
from vadbench.datasets.synthetic import SyntheticSpec, _draw, _Sprite, generate
from vadbench.errors import DatasetError

SPEC = SyntheticSpec(frame_size=32, train_videos=1, test_videos=3, frames_per_video=24, seed=3)
# Digests of what generate(SPEC) wrote before it wrote masks (commit 43191e5): the masks must not
# have moved a single random draw. The JPEG bytes depend on Pillow's encoder (pinned in
# constraints.txt); the .mat is hashed past its 116-byte text header, which holds the time.
JPEGS_SHA256 = "369c9c3abe50c3457d76a2e2fc7e0fc18c78c322f19cc6c783533c453f55595b"
MAT_SHA256 = "3e41ed82e475ddc4c7a3add06b6acb37bb4b4da771374f67a975108f3954bbab"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """SPEC generated and converted: ``<root>/src`` (Liu layout) and ``<root>/frames`` (canonical)."""
    root = tmp_path_factory.mktemp("synthetic")
    generate(root / "src", SPEC)
    convert_source(root / "src", "liu", root / "frames")
    return root


def test_synthetic_frames_and_labels_are_byte_identical_to_before_masks(synthetic):
    digest = hashlib.sha256()
    for path in sorted((synthetic / "src").rglob("*.jpg")):
        digest.update(str(path.relative_to(synthetic / "src")).encode())
        digest.update(path.read_bytes())
    assert digest.hexdigest() == JPEGS_SHA256
    assert hashlib.sha256((synthetic / "src/toy.mat").read_bytes()[116:]).hexdigest() == MAT_SHA256
    gt = scipy.io.loadmat(synthetic / "src/toy.mat")["gt"]
    assert [cell.ravel().tolist() for cell in gt.ravel()] == [[6, 24], [7, 24], [7, 24]]


def test_draw_reports_the_sprite_rectangle_clipped_to_the_frame():
    frame = np.zeros((32, 32))
    # rows -2..2 and columns 30..33 (rounded from -2.4, 29.6): rows 0..2 and columns 30..31 are on the frame
    painted = _draw(frame, _Sprite(y=-2.4, x=29.6, vy=0, vx=0, height=5, width=4, intensity=0.5))
    assert painted == (slice(0, 3), slice(30, 32))
    expected = np.zeros((32, 32))
    expected[0:3, 30:32] = 0.5
    np.testing.assert_array_equal(frame, expected)
    assert _draw(frame, _Sprite(y=-5.0, x=3.0, vy=0, vx=0, height=5, width=4, intensity=0.5)) is None


def test_synthetic_mask_is_the_anomalous_object_clipped_to_the_frame(synthetic):
    masks = load_masks(synthetic / "frames", "01")  # test video 01 holds the cart, 4 x 6 pixels at this size
    assert masks.shape == (24, 32, 32) and masks.dtype == bool
    assert not masks[:5].any()
    # frame 5, the cart's first: it enters from the right, so only its leftmost column is on the frame
    expected = np.zeros((32, 32), bool)
    expected[8:12, 31] = True
    np.testing.assert_array_equal(masks[5], expected)
    # frame 14: the whole cart, rows 8-11 of the lower walkway edge, columns 25-30
    expected = np.zeros((32, 32), bool)
    expected[8:12, 25:31] = True
    np.testing.assert_array_equal(masks[14], expected)
    frame = np.asarray(Image.open(synthetic / "frames/test/01/0014.jpg").convert("L"))
    assert frame[masks[14]].min() > 200 > np.median(frame[~masks[14]])  # the bright cart (0.92) is where the mask is


def test_every_synthetic_label_is_whether_its_mask_has_a_pixel(synthetic):
    frames = synthetic / "frames"
    labels = np.load(frames / "labels.npz")
    assert has_masks(frames)
    for video in ("01", "02", "03"):
        masks = load_masks(frames, video)
        np.testing.assert_array_equal(labels[video], masks.any(axis=(1, 2)))
        assert labels[video].sum() > 0
    manifest = json.loads((frames / "manifest.json").read_text())
    assert manifest["masks"]["videos"] == ["01", "02", "03"]
    assert "testing/masks" in manifest["masks"]["source"]
    assert sorted(p.name for p in (frames / "masks/02").iterdir())[:2] == ["0000.png", "0001.png"]


def _canonical_from_arrays(tmp: Path, masks: np.ndarray, frame_shape: tuple[int, int] | None = None) -> Path:
    """A canonical layout of one test video whose masks are given as a (T, H, W) array."""
    video = tmp / "src/test01"
    video.mkdir(parents=True)
    for i in range(len(masks)):
        Image.fromarray(np.full(frame_shape or masks.shape[1:], 40 * i, np.uint8)).save(video / f"{i:03d}.png")
    source = SourceVideos(layout="test", mask_arrays={"01": masks}, mask_source="made in the test")
    source.frames["train"]["01"] = sorted(video.iterdir())
    source.frames["test"]["01"] = sorted(video.iterdir())
    source.labels["01"] = masks.any(axis=(1, 2)).astype(np.uint8)
    write_canonical(source, tmp / "frames")
    return tmp / "frames"


def test_load_masks_resizes_to_the_model_size_by_nearest_neighbour(tmp_path):
    masks = np.random.default_rng(0).random((3, 12, 18)) < 0.3
    frames = _canonical_from_arrays(tmp_path, masks)
    np.testing.assert_array_equal(load_masks(frames, "01"), masks)
    np.testing.assert_array_equal(load_masks(frames, "01", size=(24, 36)), masks.repeat(2, axis=1).repeat(2, axis=2))
    # a third of the size: each output pixel takes the source pixel under its centre, the middle of each 3 x 3
    small = load_masks(frames, "01", size=(4, 6))
    assert small.dtype == bool
    np.testing.assert_array_equal(small, masks[:, 1::3, 1::3])


def test_a_video_without_masks_has_none(tmp_path):
    write_liu(tmp_path / "src", train=[3], test=[4], gt=[[[1], [2]]])
    manifest = convert_source(tmp_path / "src", "liu", tmp_path / "frames")
    assert manifest["masks"] == {"videos": [], "source": None}
    assert not has_masks(tmp_path / "frames")
    assert load_masks(tmp_path / "frames", "01") is None


def test_corrupt_canonical_mask_is_named(tmp_path):
    frames = _canonical_from_arrays(tmp_path, np.zeros((3, 8, 8), bool))
    (frames / "masks/01/0001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match=r"masks/01/0001.png: unreadable image of a pixel mask"):
        load_masks(frames, "01")
    (frames / "masks/01/0001.png").unlink()
    with pytest.raises(DatasetError, match=r"masks/01: 2 pixel masks but test video 01 has 3 frames"):
        load_masks(frames, "01")
    shutil.rmtree(frames / "masks/01")
    with pytest.raises(DatasetError, match=r"masks/01: missing, but .*manifest.json lists masks for it"):
        load_masks(frames, "01")


def test_mask_of_another_size_than_its_frames_is_refused(tmp_path):
    generate(tmp_path / "src", SPEC)
    Image.fromarray(np.zeros((16, 16), bool)).save(tmp_path / "src/testing/masks/02/005.png")
    with pytest.raises(DatasetError, match=r"masks/02/005.png: pixel mask of 16x16 pixels .* are 32x32") as err:
        convert_source(tmp_path / "src", "liu", tmp_path / "frames")
    assert "nearest-neighbour" in str(err.value)
    assert not (tmp_path / "frames").exists()
    with pytest.raises(DatasetError, match=r"test video 01 \(made in the test\), frame 0: pixel mask of 6x4 pixels"):
        _canonical_from_arrays(tmp_path / "arrays", np.zeros((3, 4, 6), bool), frame_shape=(8, 12))


def test_mask_folder_of_no_test_video_is_refused(tmp_path):
    generate(tmp_path / "src", SPEC)
    (tmp_path / "src/testing/masks/02").rename(tmp_path / "src/testing/masks/07")
    with pytest.raises(DatasetError, match=r"masks/07: pixel masks for video 07, but testing/frames has no such"):
        convert_source(tmp_path / "src", "liu", tmp_path / "frames")


def test_avenue_vol_label_masks_are_kept(tmp_path):
    manifest = convert_source(write_avenue(tmp_path / "src"), "avenue", tmp_path / "frames")
    assert manifest["masks"]["videos"] == ["01", "02"]
    labels = np.load(tmp_path / "frames/labels.npz")
    for video in ("01", "02"):
        cells = scipy.io.loadmat(tmp_path / f"src/ground_truth_demo/testing_label_mask/{int(video)}_label.mat")
        expected = np.stack([c != 0 for c in cells["volLabel"].ravel()])
        masks = load_masks(tmp_path / "frames", video)
        np.testing.assert_array_equal(masks, expected)
        np.testing.assert_array_equal(labels[video], masks.any(axis=(1, 2)))
    # test video 01, frame 1: the 4 x 4 square the label file holds at rows 3-6, columns 6-9
    assert np.argwhere(load_masks(tmp_path / "frames", "01")[1]).min(0).tolist() == [3, 6]


def test_avenue_mask_of_another_size_than_the_video_is_refused(tmp_path):
    src = write_avenue(tmp_path / "src")
    mat = src / "ground_truth_demo/testing_label_mask/2_label.mat"
    cells = scipy.io.loadmat(mat)["volLabel"]
    for i in range(cells.size):
        cells[0, i] = np.zeros((12, 16), np.uint8)
    scipy.io.savemat(mat, {"volLabel": cells})
    with pytest.raises(
        DatasetError, match=r"2_label.mat: 'volLabel' masks are 16x12 pixels but .*02.avi decodes to 32x24"
    ):
        convert_source(src, "avenue", tmp_path / "frames")


def test_ucsd_masks_of_0_1_and_0_255_read_alike_and_ped2_videos_without_gt_have_none(tmp_path):
    scene = write_ucsd(tmp_path / "tree") / "UCSD_Anomaly_Dataset.v1p2/UCSDped2"
    square = np.zeros((24, 36), np.uint8)
    square[5:9, 10:20] = 1
    Image.fromarray(square).save(scene / "Test/Test001_gt/002.bmp")  # 0/1, as some UCSD masks are
    Image.fromarray(square * 255).save(scene / "Test/Test001_gt/003.bmp")  # 0/255, as most are
    manifest = convert_source(tmp_path / "tree", "ucsd", tmp_path / "frames", {"scene": "UCSDped2"})
    assert manifest["masks"]["videos"] == ["001"] and "Test<video>_gt" in manifest["masks"]["source"]
    masks = load_masks(tmp_path / "frames", "001")
    np.testing.assert_array_equal(masks, np.stack([np.zeros_like(square), square, square, np.zeros_like(square)]) > 0)
    assert load_masks(tmp_path / "frames", "002") is None
    Image.fromarray(np.zeros((24, 35), np.uint8)).save(scene / "Test/Test001_gt/004.bmp")
    with pytest.raises(DatasetError, match=r"Test001_gt/004.bmp: pixel mask of 35x24 pixels .* are 36x24"):
        convert_source(tmp_path / "tree", "ucsd", tmp_path / "frames2", {"scene": "UCSDped2"})
