"""Bad input is refused with one line that names the file, never a traceback or a wrong number.

Two catalogs: every score and label format ``vadbench evaluate`` reads (run in-process through
``main``, as a user would from the shell), and every dataset layout the ``frames`` rule reads
(through ``convert_source``, or ``decode_frame`` for the ``resize`` rule). Each case builds its
own tiny malformed input in a temporary directory. A last test runs the real workflow on a
folder source holding a corrupt JPEG and checks what the user sees.
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.io
from conftest import TINY_CONFIG, copy_workflow, run_snakemake
from PIL import Image
from test_datasets import write_liu
from test_layouts import UCSD_M, write_ucsd
from test_layouts_video import write_avenue, write_shanghaitech

from vadbench.cli import main
from vadbench.datasets import convert_source
from vadbench.errors import DatasetError

LENGTHS = {"01": 30, "02": 24}


def good_labels() -> dict[str, np.ndarray]:
    labels = {v: np.zeros(n, np.uint8) for v, n in LENGTHS.items()}
    labels["01"][5:10] = 1
    labels["02"][10:18] = 1
    return labels


def good_scores() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {v: label + rng.normal(0, 0.5, len(label)) for v, label in good_labels().items()}


def mask_folder(tmp: Path, labels: dict | None = None) -> Path:
    folder = tmp / "test_frame_mask"
    folder.mkdir(exist_ok=True)
    for v, label in (labels or good_labels()).items():
        np.save(folder / f"{v}.npy", label, allow_pickle=True)
    return folder


def scores_npz(tmp: Path, scores: dict | None = None) -> Path:
    np.savez(tmp / "scores.npz", **(scores or good_scores()))
    return tmp / "scores.npz"


def vadbench_npz(tmp: Path, protocol: object = None, label: dict | None = None, drop: str | None = None) -> Path:
    """A score file as the ``score`` rule writes it, optionally tampered with."""
    record = (
        protocol
        if protocol is not None
        else {
            "clip_length": 16,
            "scored_frame": "centre",
            "edges": "drop",
            "normalisation": "per_video_minmax",
            "smoothing_sigma": 0.0,
            "name": "memae",
            "scored_frame_index": 8,
        }
    )
    arrays = {
        "videos": np.array(list(LENGTHS)),
        "protocol": np.array(record if isinstance(record, str) else json.dumps(record)),
    }
    for v, s in good_scores().items():
        arrays[f"raw/{v}"] = s
        arrays[f"label/{v}"] = (label or good_labels())[v]
    arrays.pop(drop, None)
    np.savez(tmp / "vadbench_scores.npz", **arrays)
    return tmp / "vadbench_scores.npz"


def liu_mat(path: Path, cells: list) -> Path:
    """A Liu et al. ground-truth file: ``gt`` a 1 x n cell of the given [start; end] arrays."""
    gt = np.empty((1, len(cells)), dtype=object)
    for i, c in enumerate(cells):
        gt[0, i] = np.array(c, dtype=np.float64)
    scipy.io.savemat(path, {"gt": gt})
    return path


def matlab_v73(path: Path) -> Path:
    """The first bytes of a MATLAB ``save -v7.3`` file: a 512-byte MAT header, then HDF5."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM"
    path.write_bytes(header.ljust(512, b"\0") + b"\x89HDF\r\n\x1a\n" + b"\0" * 200)
    return path


def npy_header_only(path: Path, shape: tuple, data: bytes = b"\0" * 64) -> Path:
    """A ``.npy`` whose header declares ``shape`` float64 but which holds only ``data``."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": shape})
        f.write(data)
    return path


def ucsd_m(tmp: Path, lines: list[str]) -> Path:
    (tmp / "UCSDped2.m").write_text(
        "TestDataset = {};\n" + "".join(f"TestDataset{{end+1}}.gt_frame = [{line}];\n" for line in lines)
    )
    return tmp / "UCSDped2.m"


def csv_file(tmp: Path, text: str | bytes) -> Path:
    path = tmp / "scores.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def good_csv_rows(scores: dict | None = None) -> str:
    return "".join(f"{v},{i},{x!r}\n" for v, s in (scores or good_scores()).items() for i, x in enumerate(s.tolist()))


# Each evaluate case: tmp_path -> (scores, labels or None, extra CLI args, what the line must name, message part)
Case = Callable[[Path], tuple]
EVALUATE: dict[str, Case] = {
    # --- formats holding arrays ---
    "pickled_labels_npz": lambda t: (
        scores_npz(t),
        _save_npz(t / "labels.npz", {"01": np.array([0, 1], dtype=object)}),
        [],
        "labels.npz[01]",
        "pickled object array",
    ),
    "pickled_scores_npz": lambda t: (
        _save_npz(t / "s.npz", {"01": np.array([0.1, "x"], dtype=object)}),
        mask_folder(t),
        [],
        "s.npz[01]",
        "pickled object array",
    ),
    "pickled_mask_in_folder": lambda t: (
        scores_npz(t),
        mask_folder(t, {**good_labels(), "02": np.array([1, None])}),
        [],
        "02.npy",
        "pickled object array",
    ),
    "pickle_file_named_npy": lambda t: (
        _write(t / "s.npy", pickle.dumps([0.1, 0.2])),
        mask_folder(t),
        [],
        "s.npy",
        "not a NumPy .npy array",
    ),
    "truncated_npz": lambda t: (_truncate(scores_npz(t), 0.5), mask_folder(t), [], "scores.npz", "cannot read"),
    "corrupt_compressed_npz": lambda t: (_corrupt_compressed(t / "s.npz"), mask_folder(t), [], "s.npz", "cannot read"),
    "npy_header_declares_7_tib": lambda t: (
        npy_header_only(t / "s.npy", (10**12,)),
        mask_folder(t),
        [],
        "s.npy",
        "GiB, above the",
    ),
    "npz_member_declares_7_tib": lambda t: (
        _zip_member(t / "s.npz", "01.npy", npy_header_only(t / "m.npy", (10**12,))),
        mask_folder(t),
        [],
        "s.npz[01]",
        "GiB, above the",
    ),
    "npy_truncated_data": lambda t: (npy_header_only(t / "s.npy", (54,)), mask_folder(t), [], "s.npy", "truncated"),
    "empty_npz": lambda t: (_save_npz(t / "s.npz", {}), mask_folder(t), [], "s.npz", "holds no arrays"),
    "string_scores": lambda t: (
        scores_npz(t, {"01": np.array(["a"] * 30), "02": np.zeros(24)}),
        mask_folder(t),
        [],
        "scores.npz[01]",
        "1-D numeric array",
    ),
    "two_dim_scores": lambda t: (
        scores_npz(t, {"01": np.zeros((30, 2)), "02": np.zeros(24)}),
        mask_folder(t),
        [],
        "scores.npz[01]",
        "1-D numeric array",
    ),
    "inf_score": lambda t: (
        scores_npz(t, {**good_scores(), "01": _with(good_scores()["01"], 3, np.inf)}),
        mask_folder(t),
        [],
        "scores.npz",
        "video 01 has an infinite score at frame 3",
    ),
    "minus_inf_in_flat_scores": lambda t: (
        _save_npy(t / "s.npy", _with(np.zeros(54), 40, -np.inf)),
        mask_folder(t),
        [],
        "s.npy",
        "infinite score at frame 40",
    ),
    "nan_only_scores": lambda t: (
        scores_npz(t, {v: np.full(n, np.nan) for v, n in LENGTHS.items()}),
        mask_folder(t),
        [],
        "scores.npz",
        "every score is NaN",
    ),
    "fractional_labels": lambda t: (
        scores_npz(t),
        _save_npz(t / "labels.npz", {**good_labels(), "02": np.full(24, 0.5)}),
        [],
        "labels.npz[02]",
        "must be 0 (normal) or 1",
    ),
    "string_labels": lambda t: (
        scores_npz(t),
        _save_npz(t / "labels.npz", {**good_labels(), "02": np.array(["1"] * 24)}),
        [],
        "labels.npz[02]",
        "dtype <U1",
    ),
    "mask_value_2": lambda t: (
        scores_npz(t),
        mask_folder(t, {**good_labels(), "01": _with(good_labels()["01"], 0, 2)}),
        [],
        "01.npy",
        "found [2]",
    ),
    "flat_labels_value_minus_1": lambda t: (
        scores_npz(t),
        _save_npy(t / "flat.npy", np.r_[-np.ones(30), np.zeros(24)]),
        [],
        "flat.npy",
        "found [-1.0]",
    ),
    "scores_too_wide_for_float64": lambda t: (
        scores_npz(t, {"01": np.tile([1e308, -1e308, 0.0], 10), "02": np.zeros(24)}),
        mask_folder(t),
        [],
        "scores.npz: video 01's scores span",
        "rescale them",
    ),
    "labels_without_anomalies": lambda t: (
        scores_npz(t),
        mask_folder(t, {v: np.zeros(n) for v, n in LENGTHS.items()}),
        [],
        "test_frame_mask",
        "all 54 frames are labelled normal",
    ),
    "mismatched_video_names": lambda t: (
        scores_npz(t, {"01": np.zeros(30), "03": np.zeros(24)}),
        mask_folder(t),
        [],
        "scores.npz",
        "score video '03' has no label",
    ),
    "mismatched_lengths": lambda t: (
        scores_npz(t, {"01": np.zeros(30), "02": np.zeros(20)}),
        mask_folder(t),
        [],
        "scores.npz",
        "video 02 has 20 scores",
    ),
    "label_names_that_collide": lambda t: (
        scores_npz(t),
        mask_folder(t, {**good_labels(), "1": np.zeros(30)}),
        [],
        "test_frame_mask",
        "have the same number",
    ),
    # --- the score rule's own .npz ---
    "unknown_protocol_key": lambda t: (
        vadbench_npz(t, {"name": "memae", "bogus": 1}),
        None,
        [],
        "vadbench_scores.npz",
        "unknown protocol key(s) bogus; known keys: alpha",
    ),
    "protocol_value_of_wrong_type": lambda t: (
        vadbench_npz(t, {"clip_length": "16"}),
        None,
        [],
        "vadbench_scores.npz",
        "clip_length must be an integer",
    ),
    "protocol_not_json": lambda t: (
        vadbench_npz(t, "{clip_length: 16"),
        None,
        [],
        "vadbench_scores.npz",
        "not a valid protocol record",
    ),
    "protocol_json_list": lambda t: (vadbench_npz(t, "[1, 2]"), None, [], "vadbench_scores.npz", "not an object"),
    "vadbench_label_value_2": lambda t: (
        vadbench_npz(t, label={**good_labels(), "02": np.full(24, 2)}),
        None,
        [],
        "vadbench_scores.npz[label/02]",
        "must be 0 (normal) or 1",
    ),
    "vadbench_missing_raw_array": lambda t: (vadbench_npz(t, drop="raw/02"), None, [], "vadbench_scores.npz", "raw/02"),
    # --- CSV ---
    "csv_frame_999999999999": lambda t: (
        csv_file(t, "video,frame,score\n01,999999999999,0.5\n"),
        mask_folder(t),
        [],
        "scores.csv:2",
        "frame 999999999999 of video '01' is outside 0..9999999",
    ),
    "csv_negative_frame": lambda t: (
        csv_file(t, "video,frame,score\n" + good_csv_rows() + "01,-1,0.5\n"),
        mask_folder(t),
        [],
        "scores.csv:56",
        "frame -1",
    ),
    "csv_duplicate_frame": lambda t: (
        csv_file(t, "video,frame,score\n" + good_csv_rows() + "02,3,0.5\n"),
        mask_folder(t),
        [],
        "scores.csv:56",
        "frame 3 is listed twice",
    ),
    "csv_inf_score": lambda t: (
        csv_file(
            t, "video,frame,score\n" + good_csv_rows({**good_scores(), "02": _with(good_scores()["02"], 7, np.inf)})
        ),
        mask_folder(t),
        [],
        "scores.csv",
        "video 02 has an infinite score at frame 7",
    ),
    "csv_empty_file": lambda t: (csv_file(t, ""), mask_folder(t), [], "scores.csv", "header must name video"),
    "csv_header_only": lambda t: (
        csv_file(t, "video,frame,score\n"),
        mask_folder(t),
        [],
        "scores.csv",
        "no score rows",
    ),
    "csv_missing_column": lambda t: (
        csv_file(t, "video,score\n01,0.5\n"),
        mask_folder(t),
        [],
        "scores.csv",
        "missing ['frame']",
    ),
    "csv_short_row": lambda t: (
        csv_file(t, "video,frame,score\n01,0\n"),
        mask_folder(t),
        [],
        "scores.csv:2",
        "different number of fields",
    ),
    "csv_not_a_number": lambda t: (
        csv_file(t, "video,frame,score\n01,zero,0.5\n"),
        mask_folder(t),
        [],
        "scores.csv:2",
        "frame must be an integer",
    ),
    "csv_field_above_csv_limit": lambda t: (
        csv_file(t, "video,frame,score\n01,0," + "9" * 200_000 + "\n"),
        mask_folder(t),
        [],
        "scores.csv",
        "cannot read this CSV",
    ),
    "csv_not_utf8": lambda t: (
        csv_file(t, b"video,frame,score\n\xff\xfe,0,1\n"),
        mask_folder(t),
        [],
        "scores.csv",
        "cannot read this CSV",
    ),
    # --- MATLAB ground truth ---
    "mat_v7_3_hdf5": lambda t: (
        scores_npz(t),
        matlab_v73(t / "ped2.mat"),
        [],
        "ped2.mat",
        "v7.3 (HDF5) file, which vadbench does not read; re-save it in MATLAB with save(",
    ),
    "hdf5_named_mat": lambda t: (
        scores_npz(t),
        _write(t / "ped2.mat", b"\x89HDF\r\n\x1a\n" + b"\0" * 600),
        [],
        "ped2.mat",
        "'-v7')",
    ),
    "mat_without_gt": lambda t: (
        scores_npz(t),
        _savemat(t / "ped2.mat", {"labels": np.zeros(3)}),
        [],
        "ped2.mat",
        "cannot read variable 'gt'",
    ),
    "mat_that_is_text": lambda t: (
        scores_npz(t),
        _write(t / "ped2.mat", b"gt = [1 2]"),
        [],
        "ped2.mat",
        "cannot read variable 'gt'",
    ),
    "mat_gt_3_rows": lambda t: (
        scores_npz(t),
        liu_mat(t / "ped2.mat", [[[1, 2], [3, 4], [5, 6]], [[1], [2]]]),
        [],
        "ped2.mat",
        "entry 1 of 'gt' is not a 2 x K array",
    ),
    "mat_gt_transposed": lambda t: (
        scores_npz(t),
        liu_mat(t / "ped2.mat", [[[1, 2], [5, 6], [9, 10]], [[1], [2]]]),
        [],
        "ped2.mat",
        "looks transposed",
    ),
    "mat_gt_fractional_frame": lambda t: (
        scores_npz(t),
        liu_mat(t / "ped2.mat", [[[2.5], [4]], [[1], [2]]]),
        [],
        "ped2.mat",
        "whole-number",
    ),
    "mat_interval_out_of_range": lambda t: (
        scores_npz(t),
        liu_mat(t / "ped2.mat", [[[5], [40]], [[1], [2]]]),
        [],
        "ped2.mat",
        "interval [5, 40], outside frames 1..30",
    ),
    "m_without_gt_lines": lambda t: (
        scores_npz(t),
        _write(t / "UCSDped2.m", b"% nothing here\n"),
        [],
        "UCSDped2.m",
        "no 'TestDataset{end+1}.gt_frame",
    ),
    "m_range_with_four_parts": lambda t: (
        scores_npz(t),
        ucsd_m(t, ["1:2:3:4", "5:6"]),
        [],
        "UCSDped2.m:2",
        "cannot read range '1:2:3:4'",
    ),
    "m_empty_range": lambda t: (scores_npz(t), ucsd_m(t, ["9:2", "5:6"]), [], "UCSDped2.m:2", "lists no frame"),
    "m_stepped_range_past_the_end": lambda t: (
        scores_npz(t),
        ucsd_m(t, ["1:2:41", "5:6"]),
        [],
        "UCSDped2.m",
        "range 1:2:41, outside its frames 1..30",
    ),
    # --- command-line options ---
    "negative_drop_first": lambda t: (
        scores_npz(t),
        mask_folder(t),
        ["--drop-first", "-39"],
        "--drop-first -39",
        "must be a number of frames",
    ),
    "negative_drop_last": lambda t: (
        scores_npz(t),
        mask_folder(t),
        ["--drop-last", "-1"],
        "--drop-last -1",
        "must be a number of frames",
    ),
    "negative_bootstrap": lambda t: (
        scores_npz(t),
        mask_folder(t),
        ["--bootstrap", "-5"],
        "--bootstrap -5",
        "must be in 0..100000",
    ),
    "huge_bootstrap": lambda t: (
        scores_npz(t),
        mask_folder(t),
        ["--bootstrap", "10000000"],
        "--bootstrap 10000000",
        "must be in 0..100000",
    ),
    "infinite_smoothing": lambda t: (
        scores_npz(t),
        mask_folder(t),
        ["--smoothing-sigma", "inf"],
        "--smoothing-sigma inf",
        "finite number of frames",
    ),
    "nan_smoothing": lambda t: (
        scores_npz(t),
        mask_folder(t),
        ["--smoothing-sigma", "nan"],
        "--smoothing-sigma nan",
        "finite number of frames",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _with(array: np.ndarray, index: int, value: float) -> np.ndarray:
    array = array.astype(np.float64 if isinstance(value, float) else array.dtype)
    array[index] = value
    return array


def _save_npz(path: Path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return path


def _save_npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _savemat(path: Path, variables: dict) -> Path:
    scipy.io.savemat(path, variables)
    return path


def _truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _corrupt_compressed(path: Path) -> Path:
    np.savez_compressed(path, **{"01": np.random.default_rng(0).random(30), "02": np.zeros(24)})
    data = bytearray(path.read_bytes())
    data[120:180] = b"\0" * 60
    path.write_bytes(bytes(data))
    return path


def _zip_member(path: Path, name: str, member: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(member, name)
    return path


@pytest.mark.parametrize("case", sorted(EVALUATE))
def test_bad_evaluate_input_is_one_line_naming_the_file(tmp_path, capsys, case):
    scores, labels, extra, named, message = EVALUATE[case](tmp_path)
    argv = [
        "evaluate",
        "--scores",
        str(scores),
        *(["--labels", str(labels)] if labels else []),
        "--bootstrap",
        "0",
        *extra,
    ]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("vadbench evaluate: error: ") and err.count("\n") == 1, err
    assert named in err and message in err, err


def test_score_file_above_the_size_cap_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    import vadbench.scorefiles

    monkeypatch.setattr(vadbench.scorefiles, "MAX_FILE_BYTES", 100)
    scores = scores_npz(tmp_path)
    assert main(["evaluate", "--scores", str(scores), "--labels", str(mask_folder(tmp_path))]) == 2
    assert f"{scores}: {scores.stat().st_size} bytes, above the 100 bytes" in capsys.readouterr().err


def bomb_png(path: Path, width: int, height: int) -> Path:
    """Only the header of a ``width`` x ``height`` PNG: Pillow reads the size without decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def liu(tmp: Path, gt: list | None = None) -> Path:
    return write_liu(tmp / "src", train=[3], test=[3, 4], gt=gt or [[[1], [2]], [[2], [3]]])


def replace_frame(src: Path, name: str, width: int, height: int) -> Path:
    frame = src / "mini/testing/frames/01" / name
    frame.unlink()
    return bomb_png(frame.with_suffix(".png"), width, height)


def convert(tmp: Path, src: Path, layout: str = "liu", options: dict | None = None) -> Callable[[], object]:
    return lambda: convert_source(src, layout, tmp / "frames", options)


def _liu_case(build: Callable[[Path, Path], tuple]) -> Case:
    def case(tmp: Path) -> tuple:
        src = liu(tmp)
        return build(tmp, src)

    return case


def _with_mat(src: Path, make: Callable[[Path], Path]) -> Path:
    mat = src / "mini/mini.mat"
    mat.unlink()
    return make(mat)


def _shanghaitech(tmp: Path, mask: np.ndarray | None = None, video: bytes | None = None) -> tuple:
    src = write_shanghaitech(tmp / "src", {"01_0014": [0, 1, 1, 0]})
    npy = src / "testing/test_frame_mask/01_0014.npy"
    if mask is not None:
        np.save(npy, mask, allow_pickle=True)
    if video is not None:
        (src / "training/videos/02_001.avi").write_bytes(video)
    return src, npy


def _decode_bomb(tmp: Path) -> tuple:
    from vadbench.arrays import decode_frame

    frame = bomb_png(tmp / "0000.png", 20000, 10000)
    return (lambda: decode_frame(frame, (32, 32), 1)), frame, "frame of 200000000 pixels, above the limit of"


def _decode_truncated(tmp: Path) -> tuple:
    from vadbench.arrays import decode_frame

    frame = tmp / "0000.jpg"
    Image.fromarray(np.full((24, 36), 100, np.uint8)).save(frame)
    frame.write_bytes(frame.read_bytes()[:200])
    return (lambda: decode_frame(frame, (32, 32), 1)), frame, "cannot decode frame"


def _ucsd_case(tmp: Path, change: Callable[[Path], Path], message: str, m_text: str = UCSD_M) -> tuple:
    src = write_ucsd(tmp / "src", m_text)
    named = change(src / "UCSD_Anomaly_Dataset.v1p2/UCSDped2")
    return convert(tmp, src, "ucsd", {"scene": "UCSDped2"}), named, message


def _avenue(tmp: Path, change: Callable[[Path], Path], message: str) -> tuple:
    src = write_avenue(tmp / "src")
    return convert(tmp, src, "avenue"), change(src), message


def _drop_mask(scene: Path) -> Path:
    (scene / "Test/Test001_gt/004.bmp").unlink()
    return scene / "Test/Test001_gt"


# Each layout case: tmp_path -> (the reader call, the file its error must name, message part)
LAYOUT: dict[str, Case] = {
    "liu_corrupt_jpeg": _liu_case(
        lambda t, s: (convert(t, s), _write(s / "mini/testing/frames/01/001.jpg", b"no jpeg"), "unreadable image")
    ),
    "liu_missing_frame": _liu_case(
        lambda t, s: (convert(t, s), _unlink_dir(s / "mini/testing/frames/02/001.jpg"), "1 frame(s) missing (number 1)")
    ),
    "liu_frame_of_200_megapixels": _liu_case(
        lambda t, s: (
            convert(t, s),
            replace_frame(s, "001.jpg", 20000, 10000),
            "frame of 200000000 pixels, above the limit of 89478485",
        )
    ),
    "liu_frame_of_96_megapixels": _liu_case(
        lambda t, s: (convert(t, s), replace_frame(s, "001.jpg", 12000, 8000), "frame of 96000000 pixels")
    ),
    "liu_mat_v7_3": _liu_case(lambda t, s: (convert(t, s), _with_mat(s, matlab_v73), "save('mini.mat', 'gt', '-v7')")),
    "liu_mat_without_gt": _liu_case(
        lambda t, s: (convert(t, s), _with_mat(s, lambda p: _savemat(p, {"x": 1})), "cannot read variable 'gt'")
    ),
    "liu_gt_3_rows": _liu_case(
        lambda t, s: (
            convert(t, s),
            _with_mat(s, lambda p: liu_mat(p, [[[1, 2], [2, 3], [3, 3]], [[1], [2]]])),
            "entry 1 of 'gt' is not a 2 x K array",
        )
    ),
    "liu_gt_transposed": _liu_case(
        lambda t, s: (
            convert(t, s),
            _with_mat(s, lambda p: liu_mat(p, [[[1], [2]], [[1, 2], [3, 4], [4, 4]]])),
            "entry 2 of 'gt' is not a 2 x K array",
        )
    ),
    "liu_gt_fractional_frame": _liu_case(
        lambda t, s: (convert(t, s), _with_mat(s, lambda p: liu_mat(p, [[[1.5], [2]], [[1], [2]]])), "whole-number")
    ),
    "liu_gt_out_of_range": _liu_case(
        lambda t, s: (
            convert(t, s),
            _with_mat(s, lambda p: liu_mat(p, [[[1], [2]], [[3], [9]]])),
            "interval [3, 9], outside frames 1..4",
        )
    ),
    "decode_frame_bomb": _decode_bomb,
    "decode_truncated_jpeg": _decode_truncated,
    "shanghaitech_mask_pickled": lambda t: (lambda s, n: (convert(t, s, "shanghaitech"), n, "pickled object array"))(
        *_shanghaitech(t, mask=np.array([0, 1, None, 0], dtype=object))
    ),
    "shanghaitech_mask_value_3": lambda t: (lambda s, n: (convert(t, s, "shanghaitech"), n, "found [3]"))(
        *_shanghaitech(t, mask=np.array([0, 1, 3, 0]))
    ),
    "shanghaitech_mask_2d": lambda t: (lambda s, n: (convert(t, s, "shanghaitech"), n, "shape (2, 2)"))(
        *_shanghaitech(t, mask=np.array([[0, 1], [1, 0]]))
    ),
    "shanghaitech_mask_declares_7_tib": lambda t: _huge_mask(t),
    "shanghaitech_unreadable_video": lambda t: (
        lambda s, n: (convert(t, s, "shanghaitech"), s / "training/videos/02_001.avi", "PyAV cannot decode this video")
    )(*_shanghaitech(t, video=b"not a video" * 30)),
    "avenue_unreadable_video": lambda t: _avenue(
        t,
        lambda s: _write(s / "Avenue Dataset/testing_videos/01.avi", b"RIFF" + b"\0" * 400),
        "PyAV cannot decode this video",
    ),
    "avenue_label_v7_3": lambda t: _avenue(
        t,
        lambda s: matlab_v73(s / "ground_truth_demo/testing_label_mask/2_label.mat"),
        "save('2_label.mat', 'volLabel', '-v7')",
    ),
    "ucsd_m_without_gt_lines": lambda t: _ucsd_case(
        t, lambda s: s / "Test/UCSDped2.m", "no 'TestDataset{end+1}", "% nothing\n"
    ),
    "ucsd_m_range_with_four_parts": lambda t: _ucsd_case(
        t,
        lambda s: s / "Test/UCSDped2.m",
        "cannot read range '1:2:3:4'",
        "TestDataset{end+1}.gt_frame = [1:2:3:4];\nTestDataset{end+1}.gt_frame = [1:2];\n",
    ),
    "ucsd_corrupt_tif": lambda t: _ucsd_case(
        t, lambda s: _write(s / "Train/Train002/003.tif", b"II*\0garbage"), "unreadable image"
    ),
    "ucsd_corrupt_pixel_mask": lambda t: _ucsd_case(
        t, lambda s: _write(s / "Test/Test001_gt/002.bmp", b"BM broken"), "unreadable image"
    ),
    "ucsd_pixel_mask_missing": lambda t: _ucsd_case(t, _drop_mask, "3 pixel masks for test video 001 of 4 frames"),
}


def _unlink_dir(frame: Path) -> Path:
    frame.unlink()
    return frame.parent


def _huge_mask(tmp: Path) -> tuple:
    src, npy = _shanghaitech(tmp)
    npy_header_only(npy, (10**12,))
    return convert(tmp, src, "shanghaitech"), npy, "GiB, above the"


@pytest.mark.parametrize("case", sorted(LAYOUT))
def test_bad_source_is_refused_naming_the_file(tmp_path, case):
    read, named, message = LAYOUT[case](tmp_path)
    with pytest.raises(DatasetError) as err:
        read()
    assert str(named) in str(err.value) and message in str(err.value), err.value
    assert not (tmp_path / "frames").exists()


def test_workflow_script_error_is_one_line_in_the_log_and_on_stderr_and_exit_2(tmp_path, capsys):
    from vadbench.logs import redirect_to

    with pytest.raises(SystemExit) as exit_:
        with redirect_to(tmp_path / "job.log"):
            print("decoding")
            raise DatasetError("frames/01/003.jpg: unreadable image (truncated). Re-extract the dataset.")
    assert exit_.value.code == 2
    line = "error: frames/01/003.jpg: unreadable image (truncated). Re-extract the dataset."
    assert (tmp_path / "job.log").read_text() == f"decoding\n{line}\n"
    assert capsys.readouterr().err == f"{line}\n"


def test_a_library_that_configures_the_root_logger_does_not_double_the_log(tmp_path):
    """mlflow.pytorch calls logging.basicConfig on import, inside the maps job's redirect."""
    import logging

    from vadbench.logs import get_logger, redirect_to

    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        with redirect_to(tmp_path / "job.log"):
            root.addHandler(logging.StreamHandler(sys.stderr))  # what basicConfig does, to the log
            get_logger("maps").info("logged the model")
            logging.getLogger("py.warnings").warning("UserWarning: a library's warning")  # as captured
    finally:
        root.handlers[:] = handlers
    text = (tmp_path / "job.log").read_text()
    assert text.count("logged the model") == 1 and text.count("UserWarning: a library's warning") == 1, text
    assert get_logger().propagate and logging.getLogger("py.warnings").propagate


def test_workflow_script_bug_keeps_its_traceback(tmp_path):
    from vadbench.logs import redirect_to

    with pytest.raises(ZeroDivisionError):
        with redirect_to(tmp_path / "job.log"):
            1 / 0
    assert "Traceback" in (tmp_path / "job.log").read_text()


@pytest.mark.workflow
def test_corrupt_jpeg_fails_the_workflow_with_one_line_and_no_traceback(tmp_path):
    src = write_liu(tmp_path / "src", train=[3], test=[3], gt=[[[1], [2]]])
    (src / "mini/testing/frames/01/001.jpg").write_bytes(b"not a jpeg at all")
    workdir = copy_workflow(tmp_path / "wf")
    dataset = f"datasets:\n  bad:\n    source: {src}\n    layout: liu\n    preset: tiny\n"
    (workdir / "tiny.yaml").write_text(TINY_CONFIG.replace("datasets:\n", dataset, 1))
    proc = run_snakemake(workdir, "resources/bad/frames", check=False)
    output = proc.stdout + proc.stderr
    # the source is linked in as resources/bad/source/data, so the line names the frame there
    named = [
        line
        for line in output.splitlines()
        if line.startswith("error: ")
        and "mini/testing/frames/01/001.jpg: unreadable image" in line
        and "Re-extract or re-download" in line
    ]
    assert proc.returncode != 0 and named, output
    assert "Traceback" not in output
    assert not (workdir / "resources/bad/frames").exists()
    log = (workdir / "logs/bad/frames.log").read_text()
    assert log.splitlines() == [named[0]], log
