"""Scoring protocol and metrics against hand-computed examples."""

import numpy as np
import pytest

from vadbench.errors import ConfigError
from vadbench.metrics import evaluate, macro_auc, micro_auc
from vadbench.protocol import Protocol
from vadbench.scoring import frame_scores, pad_nearest, video_scores


def test_centre_of_a_16_frame_clip_is_index_8():
    assert Protocol(clip_length=16).offset == 8
    assert Protocol(clip_length=16, scored_frame="first").offset == 0
    assert Protocol(clip_length=16, scored_frame="last").offset == 15


def test_clip_error_lands_on_its_centre_frame_and_edges_are_dropped():
    n = 40
    starts = np.arange(n - 15)  # stride 1: T - 15 clips
    errors = np.arange(n - 15, dtype=float) + 100
    raw = frame_scores(starts, errors, n, Protocol())
    assert raw[8] == 100 and raw[9] == 101 and raw[n - 8] == 100 + n - 16
    assert np.isnan(raw[:8]).all() and np.isnan(raw[n - 7 :]).all()
    _, _, scored = video_scores(raw, Protocol())
    assert scored.sum() == n - 8 - 7


def test_padding_copies_the_nearest_scored_frame():
    raw = np.array([np.nan, np.nan, 3.0, 5.0, np.nan, np.nan, np.nan, 9.0, np.nan])
    np.testing.assert_array_equal(pad_nearest(raw), [3, 3, 3, 5, 5, 5, 9, 9, 9])
    padded, norm, scored = video_scores(raw, Protocol(edges="pad"))
    assert scored.all()
    np.testing.assert_allclose(norm, (padded - 3) / 6)


def test_per_video_minmax_uses_only_scored_frames():
    raw = np.array([np.nan, 2.0, 4.0, 6.0, np.nan])
    _, norm, scored = video_scores(raw, Protocol())
    np.testing.assert_allclose(norm[scored], [0, 0.5, 1])
    assert np.isnan(norm[~scored]).all()
    _, same, _ = video_scores(raw, Protocol(normalisation="none"))
    np.testing.assert_allclose(same[scored], [2, 4, 6])


def test_invalid_protocol_names_the_key():
    with pytest.raises(ConfigError, match="protocol.edges"):
        Protocol(edges="trim")


def test_micro_auc_by_hand():
    # positives {0.8, 0.4}, negatives {0.5, 0.1}: pairs won 3 of 4 -> 0.75
    scores = {"a": np.array([0.8, 0.5]), "b": np.array([0.4, 0.1])}
    labels = {"a": np.array([1, 0]), "b": np.array([1, 0])}
    scored = {"a": np.array([True, True]), "b": np.array([True, True])}
    assert micro_auc(scores, labels, scored) == pytest.approx(0.75)
    # masking out b's positive leaves {0.8} vs {0.5, 0.1}: 1.0
    scored["b"] = np.array([False, True])
    assert micro_auc(scores, labels, scored) == pytest.approx(1.0)


def test_macro_auc_skips_single_class_videos():
    scores = {"a": np.array([0.9, 0.1, 0.5]), "b": np.array([0.3, 0.2]), "c": np.array([0.1, 0.2, 0.3, 0.4])}
    labels = {"a": np.array([1, 0, 0]), "b": np.array([1, 1]), "c": np.array([0, 1, 0, 1])}
    scored = {k: np.ones(len(v), bool) for k, v in scores.items()}
    mean, per_video, skipped = macro_auc(scores, labels, scored)
    assert skipped == ["b"]
    assert per_video == {"a": 1.0, "c": 0.75}
    assert mean == pytest.approx(0.875)


def test_evaluate_reports_raw_and_normalised_micro_auc():
    raw = {"a": np.array([1.0, 2.0, 10.0]), "b": np.array([100.0, 140.0, 150.0])}
    labels = {"a": np.array([0, 0, 1]), "b": np.array([0, 1, 1])}
    scored = {k: np.ones(3, bool) for k in raw}
    norm = {k: (v - v.min()) / (v.max() - v.min()) for k, v in raw.items()}
    result = evaluate({"raw": raw, "norm": norm, "scored": scored, "label": labels, "protocol": Protocol()})
    # raw: b's normal frame (100) outranks a's anomaly (10); per-video normalisation fixes it
    assert result["micro_auc"] == pytest.approx(1.0)
    assert result["micro_auc_raw"] == pytest.approx(8 / 9)
    assert result["frames_scored"] == 6 and result["protocol"]["scored_frame_index"] == 8
