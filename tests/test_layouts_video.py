"""Video layouts (CUHK Avenue, ShanghaiTech Campus) into the canonical frame layout.

Miniature datasets are built in exactly the official layouts, with real .avi files written by
PyAV, and converted through ``convert_source`` as the ``frames`` rule does.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import scipy.io
from PIL import Image

from vadbench.datasets import convert_source, fetch_source
from vadbench.datasets.video import decode_video
from vadbench.errors import DatasetError

H, W = 24, 32


def write_avi(path: Path, n_frames: int, codec: str = "mpeg4") -> Path:
    """A small video of ``n_frames`` frames of distinct gray levels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = W, H
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(n_frames):
            image = np.full((H, W, 3), (30 * i + 20) % 250, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):  # flush the encoder
            container.mux(packet)
    return path


def write_vol_label(path: Path, anomalous: list[int]) -> Path:
    """An Avenue ``volLabel`` file: a 1 x T cell of H x W uint8 masks, nonzero where anomalous."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = np.empty((1, len(anomalous)), dtype=object)
    for i, a in enumerate(anomalous):
        mask = np.zeros((H, W), np.uint8)
        if a:
            mask[3:7, 5 + i % 4 : 9 + i % 4] = 1
        cells[0, i] = mask
    scipy.io.savemat(path, {"volLabel": cells})
    return path


AVENUE_TRAIN = {"01": 4, "02": 3}
AVENUE_TEST = {"01": [0, 1, 1, 0, 0], "02": [1, 0, 0, 1]}


def write_avenue(root: Path, test: dict[str, list[int]] = AVENUE_TEST, frames: dict[str, int] | None = None) -> Path:
    """Both Avenue archives as extracted into ``root``; ``frames`` overrides test video lengths."""
    for video, n in AVENUE_TRAIN.items():
        write_avi(root / "Avenue Dataset" / "training_videos" / f"{video}.avi", n)
    for video, labels in test.items():
        n = (frames or {}).get(video, len(labels))
        write_avi(root / "Avenue Dataset" / "testing_videos" / f"{video}.avi", n)
        write_vol_label(root / "ground_truth_demo" / "testing_label_mask" / f"{int(video)}_label.mat", labels)
    return root


def assert_avenue_converted(frames_dir: Path, manifest: dict) -> None:
    assert manifest["layout"] == "avenue"
    assert manifest["splits"] == {"train": {"01": 4, "02": 3}, "test": {"01": 5, "02": 4}}
    assert manifest["anomalous_test_frames"] == 4
    labels = np.load(frames_dir / "labels.npz")
    assert sorted(labels.files) == ["01", "02"]
    for video, expected in AVENUE_TEST.items():
        np.testing.assert_array_equal(labels[video], expected)
        assert labels[video].dtype == np.uint8
    assert sorted(p.name for p in (frames_dir / "test" / "01").iterdir()) == [f"{i:04d}.jpg" for i in range(5)]


def test_avenue_videos_and_masks_become_canonical_frames_and_labels(tmp_path):
    src = write_avenue(tmp_path / "src")
    manifest = convert_source(src, "avenue", tmp_path / "frames")
    assert_avenue_converted(tmp_path / "frames", manifest)
    # frames keep their content and order: the gray level rises by 30 per frame
    means = [np.asarray(Image.open(tmp_path / "frames/train/01" / f"{i:04d}.jpg")).mean() for i in range(4)]
    assert np.all(np.diff(means) > 20), means
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "src"]  # no scratch left


def test_avenue_is_found_one_level_below_the_given_folder(tmp_path):
    write_avenue(tmp_path / "src" / "avenue")
    manifest = convert_source(tmp_path / "src", "avenue", tmp_path / "frames")
    assert manifest["splits"]["test"] == {"01": 5, "02": 4}


def test_avenue_from_the_two_official_zip_archives(tmp_path):
    extracted = write_avenue(tmp_path / "extracted")
    zips = {}
    for top in ("Avenue Dataset", "ground_truth_demo"):
        zips[top] = tmp_path / ("Avenue_Dataset.zip" if top == "Avenue Dataset" else "ground_truth_demo.zip")
        with zipfile.ZipFile(zips[top], "w") as zf:
            for path in sorted((extracted / top).rglob("*")):
                zf.write(path, path.relative_to(extracted).as_posix())
    dataset = {
        "source": str(zips["Avenue Dataset"]),
        "layout": "avenue",
        "extra_sources": [{"source": str(zips["ground_truth_demo"])}],
    }
    fetch_source("avenue", dataset, tmp_path / "source", resources=tmp_path / "res")
    manifest = convert_source(tmp_path / "source", "avenue", tmp_path / "frames")
    assert_avenue_converted(tmp_path / "frames", manifest)


def test_avenue_frame_count_mismatch_names_both_files(tmp_path):
    src = write_avenue(tmp_path / "src", frames={"02": 6})
    with pytest.raises(DatasetError) as err:
        convert_source(src, "avenue", tmp_path / "frames")
    message = str(err.value)
    assert "testing_videos/02.avi decodes to 6 frames" in message
    assert "testing_label_mask/2_label.mat holds 4 masks" in message
    assert not (tmp_path / "frames").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_avenue_test_video_without_label_file_is_named(tmp_path):
    src = write_avenue(tmp_path / "src")
    (src / "ground_truth_demo/testing_label_mask/2_label.mat").unlink()
    with pytest.raises(DatasetError, match=r"testing_label_mask/2_label.mat: missing; test video 02.avi"):
        convert_source(src, "avenue", tmp_path / "frames")
    assert not (tmp_path / "frames").exists()


def test_avenue_without_ground_truth_says_which_archive_is_expected(tmp_path):
    src = write_avenue(tmp_path / "src")
    for mat in (src / "ground_truth_demo/testing_label_mask").iterdir():
        mat.unlink()
    (src / "ground_truth_demo/testing_label_mask").rmdir()
    with pytest.raises(DatasetError, match=r"no testing_label_mask/ folder.*ground_truth_demo.zip"):
        convert_source(src, "avenue", tmp_path / "frames")


def test_corrupt_video_is_named(tmp_path):
    src = write_avenue(tmp_path / "src")
    (src / "Avenue Dataset/training_videos/02.avi").write_bytes(b"not a video" * 20)
    with pytest.raises(DatasetError, match=r"training_videos/02.avi: PyAV cannot decode this video"):
        convert_source(src, "avenue", tmp_path / "frames")
    assert not (tmp_path / "frames").exists()


@pytest.mark.parametrize("codec", ["mpeg4", "mjpeg"])
def test_decoded_frames_are_numbered_from_zero(tmp_path, codec):
    paths = decode_video(write_avi(tmp_path / "v.avi", 3, codec), tmp_path / "out")
    assert [p.name for p in paths] == ["000000.jpg", "000001.jpg", "000002.jpg"]
    assert Image.open(paths[0]).size == (W, H)


def test_a_video_longer_than_the_frame_cap_is_refused(tmp_path, monkeypatch):
    import vadbench.datasets.video as video

    monkeypatch.setattr(video, "MAX_FRAMES", 2)  # a 3-frame video stands in for an endless one
    with pytest.raises(DatasetError, match=r"v.avi: decodes to more than 2 frames"):
        decode_video(write_avi(tmp_path / "v.avi", 3), tmp_path / "out")


def write_shanghaitech(root: Path, masks: dict[str, list[int]], frames: dict[str, int] | None = None) -> Path:
    """ShanghaiTech Campus as its archive unpacks; ``frames`` overrides test video lengths."""
    write_avi(root / "training/videos/01_001.avi", 3)
    write_avi(root / "training/videos/02_001.avi", 4)
    for video, labels in masks.items():
        d = root / "testing/frames" / video
        d.mkdir(parents=True)
        for i in range((frames or {}).get(video, len(labels))):
            Image.fromarray(np.full((H, W, 3), 20 * i, np.uint8)).save(d / f"{i:03d}.jpg")
        (root / "testing/test_frame_mask").mkdir(parents=True, exist_ok=True)
        np.save(root / "testing/test_frame_mask" / f"{video}.npy", np.array(labels, dtype=np.int64))
    (root / "testing/test_pixel_mask").mkdir(parents=True)  # present in the archive, unused
    return root


def test_shanghaitech_layout_becomes_canonical(tmp_path):
    masks = {"01_0014": [0, 0, 1, 1, 0], "01_0015": [1, 0, 0]}
    write_shanghaitech(tmp_path / "src" / "shanghaitech", masks)
    manifest = convert_source(tmp_path / "src", "shanghaitech", tmp_path / "frames")
    assert manifest["layout"] == "shanghaitech"
    assert manifest["splits"] == {"train": {"01_001": 3, "02_001": 4}, "test": {"01_0014": 5, "01_0015": 3}}
    labels = np.load(tmp_path / "frames/labels.npz")
    for video, expected in masks.items():
        np.testing.assert_array_equal(labels[video], expected)
    assert sorted(p.name for p in (tmp_path / "frames/train/02_001").iterdir()) == [f"{i:04d}.jpg" for i in range(4)]


def test_shanghaitech_missing_folder_explains_how_to_obtain_the_dataset(tmp_path):
    src = tmp_path / "src" / "shanghaitech"
    (src / "testing/frames/01_0014").mkdir(parents=True)
    (src / "testing/test_frame_mask").mkdir(parents=True)
    with pytest.raises(DatasetError) as err:
        convert_source(tmp_path / "src", "shanghaitech", tmp_path / "frames")
    message = str(err.value)
    assert "missing training/videos/" in message
    assert "mirror is dead" in message
    assert "datasets.shanghaitech.source" in message
    assert "testing/test_frame_mask/01_0014.npy" in message  # the layout is drawn
    assert not (tmp_path / "frames").exists()


def test_shanghaitech_mask_length_mismatch_names_the_mask_and_both_counts(tmp_path):
    src = write_shanghaitech(tmp_path / "src", {"01_0014": [0, 1, 1, 0]}, frames={"01_0014": 6})
    with pytest.raises(DatasetError, match=r"test_frame_mask/01_0014.npy: 4 labels .* holds 6 frames"):
        convert_source(src, "shanghaitech", tmp_path / "frames")
    assert not (tmp_path / "frames").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_shanghaitech_test_video_without_mask_is_named(tmp_path):
    src = write_shanghaitech(tmp_path / "src", {"01_0014": [0, 1], "01_0015": [1, 1]})
    (src / "testing/test_frame_mask/01_0015.npy").unlink()
    with pytest.raises(DatasetError, match=r"no frame mask 01_0015.npy"):
        convert_source(src, "shanghaitech", tmp_path / "frames")
    assert not (tmp_path / "frames").exists()


def test_avenue_zipped_on_macos_ignores_resource_fork_debris(tmp_path):
    src = write_avenue(tmp_path / "src")
    for debris in ("__MACOSX/Avenue Dataset/training_videos/._01.avi", "Avenue Dataset/testing_videos/._01.avi"):
        (src / debris).parent.mkdir(parents=True, exist_ok=True)
        (src / debris).write_bytes(b"\x00\x05\x16\x07 resource fork")
    manifest = convert_source(src, "avenue", tmp_path / "frames")
    assert manifest["splits"]["test"] == {"01": 5, "02": 4}
