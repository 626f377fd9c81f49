"""``vadbench evaluate``: score files from other code against label files in every layout."""

import json

import numpy as np
import pytest
import scipy.io

from vadbench.cli import main
from vadbench.errors import DatasetError
from vadbench.metrics import evaluate
from vadbench.protocol import Protocol
from vadbench.scorefiles import load_pair, read_labels

LENGTHS = {"01": 30, "02": 24}
INTERVALS = {"01": [(5, 9), (20, 22)], "02": [(10, 18)]}  # 1-based inclusive


def labels_by_hand():
    out = {}
    for v, n in LENGTHS.items():
        label = np.zeros(n, np.uint8)
        for a, b in INTERVALS[v]:
            label[a - 1 : b] = 1
        out[v] = label
    return out


def noisy_scores(seed=0):
    rng = np.random.default_rng(seed)
    return {v: label + rng.normal(0, 0.7, len(label)) for v, label in labels_by_hand().items()}


def write_liu_mat(path):
    gt = np.empty((1, 2), dtype=object)
    for i, v in enumerate(LENGTHS):
        gt[0, i] = np.array(INTERVALS[v]).T  # 2 x K [start; end]
    scipy.io.savemat(path, {"gt": gt})


def write_ucsd_m(path):
    lines = ["TestDataset = {};"]
    for v in LENGTHS:
        ranges = ", ".join(f"{a}:{b}" for a, b in INTERVALS[v])
        lines.append(f"TestDataset{{end+1}}.gt_frame = [{ranges}];")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def label_files(tmp_path):
    write_liu_mat(tmp_path / "ped2.mat")
    write_ucsd_m(tmp_path / "UCSDped2.m")
    masks = tmp_path / "test_frame_mask"
    masks.mkdir()
    for v, label in labels_by_hand().items():
        np.save(masks / f"{v}.npy", label)
    np.save(tmp_path / "frame_labels_ped2.npy", np.concatenate(list(labels_by_hand().values()))[None, :])
    return tmp_path


@pytest.mark.parametrize("name", ["ped2.mat", "UCSDped2.m", "test_frame_mask", "frame_labels_ped2.npy"])
def test_every_label_layout_gives_the_same_labels(label_files, tmp_path, name):
    scores = noisy_scores()
    np.savez(tmp_path / "scores.npz", **scores)
    _, labels, protocol = load_pair(tmp_path / "scores.npz", label_files / name)
    assert protocol is None and sorted(labels) == ["01", "02"]
    for v, expected in labels_by_hand().items():
        np.testing.assert_array_equal(labels[v], expected)


def test_ucsd_stepped_range_labels_every_step_th_frame_like_matlab(tmp_path):
    (tmp_path / "UCSDped2.m").write_text(
        "TestDataset{end+1}.gt_frame = [1:2:30];\nTestDataset{end+1}.gt_frame = [3];\n"
    )
    labels = read_labels(tmp_path / "UCSDped2.m", {"01": 30, "02": 24})
    assert np.flatnonzero(labels["001"]).tolist() == list(range(0, 30, 2))  # frames 1, 3, ..., 29 (1-based)
    assert np.flatnonzero(labels["002"]).tolist() == [2]


def test_ucsd_names_match_liu_names_by_number(label_files):
    labels = read_labels(label_files / "UCSDped2.m", {"Test001": 30, "Test002": 24})
    assert sorted(labels) == ["001", "002"]


def test_csv_and_flat_npy_scores_equal_per_video_npz(label_files, tmp_path):
    scores = noisy_scores()
    np.savez(tmp_path / "s.npz", **scores)
    np.save(tmp_path / "s.npy", np.concatenate([scores["01"], scores["02"]]))
    with open(tmp_path / "s.csv", "w") as f:
        f.write("video,frame,score\n")
        for v, s in scores.items():
            f.writelines(f"Test0{v},{i},{float(x)!r}\n" for i, x in enumerate(s))
    results = []
    for path in ("s.npz", "s.npy", "s.csv"):
        s, labels, _ = load_pair(tmp_path / path, label_files / "test_frame_mask")
        results.append(evaluate(s, labels, Protocol(), bootstrap_samples=0)["micro_auc"])
    assert results[0] == results[1] == results[2]


def test_cli_prints_json_and_drops_edges_like_memae(label_files, tmp_path, capsys):
    scores = noisy_scores()
    np.savez(tmp_path / "s.npz", **scores)
    assert (
        main(
            [
                "evaluate",
                "--scores",
                str(tmp_path / "s.npz"),
                "--labels",
                str(label_files / "ped2.mat"),
                "--drop-first",
                "8",
                "--drop-last",
                "7",
                "--bootstrap",
                "0",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["frames_scored"] == (30 - 15) + (24 - 15)
    assert result["protocol"]["name"] == "memae" and result["micro_auc_ci95"] is None
    assert main(["evaluate", "--scores", str(tmp_path / "s.npz"), "--labels", str(label_files / "ped2.mat")]) == 0
    table = capsys.readouterr().out
    assert "micro AUC" in table and "95% CI" in table and "02 " in table


def test_cli_errors_name_the_file(label_files, tmp_path, capsys):
    np.savez(tmp_path / "short.npz", **{"01": np.zeros(30), "02": np.zeros(20)})
    assert (
        main(["evaluate", "--scores", str(tmp_path / "short.npz"), "--labels", str(label_files / "test_frame_mask")])
        == 2
    )
    assert "short.npz: video 02 has 20 scores but" in capsys.readouterr().err
    np.savez(tmp_path / "three.npz", **{"01": np.zeros(30), "02": np.zeros(24), "03": np.zeros(5)})
    assert main(["evaluate", "--scores", str(tmp_path / "three.npz"), "--labels", str(label_files / "UCSDped2.m")]) == 2
    assert "UCSDped2.m: 2 gt_frame lines but the scores hold 3 videos" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("clip,score\n1,2\n")
    with pytest.raises(DatasetError, match="bad.csv: the header must name video, frame and score"):
        load_pair(tmp_path / "bad.csv", label_files / "test_frame_mask")
