"""Scoring protocol and metrics against hand-computed examples."""

import numpy as np
import pytest
import torch

from vadbench.errors import ConfigError
from vadbench.metrics import bootstrap_micro_auc, equal_error_rate, evaluate, macro_auc, micro_auc
from vadbench.models import build_model
from vadbench.protocol import Protocol, pad_nearest
from vadbench.scoring import frame_scores, model_clip_scores


def video_scores(raw, protocol):
    scores, scored = protocol.apply(raw)
    return scores, scored


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
    _, scored = video_scores(raw, Protocol())
    assert scored.sum() == n - 8 - 7
    assert not scored[:8].any() and not scored[n - 7 :].any()


def test_padding_copies_the_nearest_scored_frame():
    raw = np.array([np.nan, np.nan, 3.0, 5.0, np.nan, np.nan, np.nan, 9.0, np.nan])
    np.testing.assert_array_equal(pad_nearest(raw), [3, 3, 3, 5, 5, 5, 9, 9, 9])
    norm, scored = video_scores(raw, Protocol(edges="pad"))
    assert scored.all()
    np.testing.assert_allclose(norm, (pad_nearest(raw) - 3) / 6)


def test_per_video_minmax_uses_only_scored_frames():
    raw = np.array([np.nan, 2.0, 4.0, 6.0, np.nan])
    norm, scored = video_scores(raw, Protocol())
    np.testing.assert_allclose(norm[scored], [0, 0.5, 1])
    assert np.isnan(norm[~scored]).all()
    same, _ = video_scores(raw, Protocol(normalisation="none"))
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
    result = evaluate(raw, labels, Protocol(), bootstrap_samples=50)
    # raw: b's normal frame (100) outranks a's anomaly (10); per-video normalisation fixes it
    assert result["micro_auc"] == pytest.approx(1.0)
    assert result["micro_auc_raw"] == pytest.approx(8 / 9)
    assert result["frames_scored"] == 6 and result["protocol"]["scored_frame_index"] == 8
    assert result["eer"] == pytest.approx(0.0) and result["aupr"] == pytest.approx(1.0)


def test_centre_frame_and_dropped_edges_through_evaluate():
    """Two 40-frame videos with stride-1 16-frame clips: frames 8..32 scored, 8 + 7 dropped each."""
    n = 40
    labels = {v: np.zeros(n, np.uint8) for v in ("a", "b")}
    labels["a"][20:30] = 1
    labels["a"][:8] = 1  # anomalous edge frames must not count
    raw = {}
    for v in labels:
        errors = np.array([float(labels[v][s + 8]) for s in range(n - 15)])  # perfect on the centre frame
        raw[v] = frame_scores(np.arange(n - 15), errors, n, Protocol())
    result = evaluate(raw, labels, Protocol(), bootstrap_samples=0)
    assert result["frames_scored"] == 2 * (n - 15)
    assert result["anomalous_frames_scored"] == 10
    assert result["micro_auc"] == 1.0 and result["macro_skipped_videos"] == ["b"]
    shifted = {
        v: frame_scores(
            np.arange(n - 15), np.array([float(labels[v][s]) for s in range(n - 15)]), n, Protocol(scored_frame="first")
        )
        for v in labels
    }
    first = evaluate(shifted, labels, Protocol(scored_frame="first"), bootstrap_samples=0)
    assert first["frames_scored"] == 2 * (n - 15)  # first frame: the last 15 frames go unscored instead


def test_smoothing_is_a_gaussian_over_the_scored_frames():
    raw = np.array([np.nan, 0, 0, 0, 10.0, 0, 0, 0, np.nan])
    smoothed, scored = Protocol(normalisation="none", smoothing_sigma=1.0).apply(raw)
    assert np.isnan(smoothed[[0, 8]]).all() and scored.sum() == 7
    assert smoothed[4] < 10 and smoothed[3] == pytest.approx(smoothed[5]) and smoothed[3] > 0
    assert smoothed[4] == pytest.approx(10 / np.sqrt(2 * np.pi), rel=1e-3)  # peak of a unit-sigma Gaussian
    with pytest.raises(ConfigError, match="smoothing_sigma"):
        Protocol(smoothing_sigma=-1)


def test_named_protocols_and_overrides():
    assert Protocol.named("memae") == Protocol()
    assert Protocol.named("memae", edges="pad").edges == "pad"
    with pytest.raises(ConfigError, match="known protocols: ammc, memae, mnad"):
        Protocol.named("paper2")
    with pytest.raises(ConfigError, match="unknown protocol key"):
        Protocol.named("memae", centre=True)


def test_eer_by_hand():
    # scores 0.1..0.4 normal, 0.3..0.6 anomalous: at threshold 0.35 one normal of 4 and one
    # anomaly of 4 are on the wrong side -> EER 0.25
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.45, 0.35, 0.5, 0.55, 0.6])
    assert equal_error_rate(y, s) == pytest.approx(0.25)
    assert equal_error_rate(y, s + 10 * y) == pytest.approx(0.0)


def test_bootstrap_interval_resamples_videos_deterministically():
    rng = np.random.default_rng(1)
    labels = {f"v{i}": (np.arange(50) % 10 < 3).astype(np.uint8) for i in range(8)}
    scores = {v: label + rng.normal(0, 0.8, 50) for v, label in labels.items()}
    scored = {v: np.ones(50, bool) for v in labels}
    a = bootstrap_micro_auc(scores, labels, scored, samples=200, seed=0)
    b = bootstrap_micro_auc(scores, labels, scored, samples=200, seed=0)
    point = micro_auc(scores, labels, scored)
    assert a == b and a["samples"] == 200 and a["unit"] == "video"
    assert a["low"] < point < a["high"] and a["high"] - a["low"] < 0.2


def ae_with_zero_output(in_channels: int) -> torch.nn.Module:
    """The AE baseline with its last layer zeroed: x_hat = 0 for every input, so errors are the inputs'."""
    model = build_model("ae", in_channels=in_channels, widths=[2, 2, 2, 2]).eval()
    with torch.no_grad():
        model.decoder[-1].weight.zero_()
        model.decoder[-1].bias.zero_()
    return model


def test_clip_error_measures_by_hand():
    # x_hat = 0: clip a is (0.6, 0.8) in every pixel, clip b (0.3, -0.4)
    x = torch.zeros(2, 2, 8, 16, 16)
    x[0, 0], x[0, 1], x[1, 0], x[1, 1] = 0.6, 0.8, 0.3, -0.4
    model = ae_with_zero_output(2)
    # memae_l2: mean over (T, H, W) of sqrt(sum_c r^2) in [-1, 1]: sqrt(0.36 + 0.64) = 1, sqrt(0.09 + 0.16) = 0.5
    torch.testing.assert_close(model.clip_errors(x, "memae_l2"), torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(model.clip_errors(x), torch.tensor([1.0, 0.5]))  # the default
    # official_mse: mean over (C, T, H, W) of ((x_hat - x) / 2)^2: (0.09 + 0.16) / 2, (0.0225 + 0.04) / 2
    torch.testing.assert_close(model.clip_errors(x, "official_mse"), torch.tensor([0.125, 0.03125]))
    with pytest.raises(ValueError, match="unknown clip error 'mse'"):
        model.clip_errors(x, "mse")


def test_official_mse_ranks_one_large_residual_above_many_small_ones():
    """Why the AE's two scorings can give different AUCs: L2 (MAE-like) and MSE order these clips oppositely."""
    x = torch.zeros(2, 1, 8, 16, 16)
    x[0] = 0.3  # every pixel off by 0.3: memae_l2 0.3, official_mse 0.15^2 = 0.0225
    x[1, :, :, :4] = 1.0  # 4 rows of 16 off by 1, the rest exact: memae_l2 4/16 = 0.25, official_mse 0.5^2 * 4/16
    model = ae_with_zero_output(1)
    torch.testing.assert_close(model.clip_errors(x, "memae_l2"), torch.tensor([0.3, 0.25]))
    torch.testing.assert_close(model.clip_errors(x, "official_mse"), torch.tensor([0.0225, 0.0625]))


def test_protocol_error_is_recorded_and_old_records_read_as_before():
    assert Protocol().error == "memae_l2" and Protocol.named("memae").to_dict()["error"] == "memae_l2"
    assert Protocol.named("memae", error="official_mse").to_dict()["error"] == "official_mse"
    assert Protocol.named("mnad").error is None and Protocol.named("ammc").error is None
    record = Protocol.named("memae", error="official_mse").to_dict()
    assert Protocol.from_dict(record).error == "official_mse"
    # a record written before the field existed: each named protocol's own error
    old_memae = {k: v for k, v in Protocol.named("memae").to_dict().items() if k != "error"}
    old_mnad = {k: v for k, v in Protocol.named("mnad", clip_length=5).to_dict().items() if k != "error"}
    assert Protocol.from_dict(old_memae) == Protocol.named("memae")
    assert Protocol.from_dict(old_mnad) == Protocol.named("mnad", clip_length=5)
    with pytest.raises(ConfigError, match="protocol.error = 'mae'; allowed: memae_l2, official_mse"):
        Protocol(error="mae")


def test_scoring_refuses_an_error_measure_the_model_does_not_use():
    mnad = build_model("mnad", in_channels=1, widths=[4, 4, 4, 8], t_length=5)
    with pytest.raises(ConfigError, match="'official_mse' is a MemAE/AE clip error, but this MNAD model"):
        model_clip_scores(mnad, "unused", None, Protocol.named("mnad", clip_length=5, error="official_mse"), 1, "cpu")
    with pytest.raises(ConfigError, match="protocol 'mnad' sets no clip error for this MemAE model"):
        model_clip_scores(ae_with_zero_output(1), "unused", None, Protocol.named("mnad", clip_length=16), 1, "cpu")


def test_the_scoring_batch_is_no_part_of_the_run_config():
    """``score_batch_size`` batches the score and maps jobs' test pass only: setting it (as the
    ``cpu`` preset does) must not rerun training, nor make a finished checkpoint another run."""
    from conftest import tiny_config

    from vadbench.config import run_config
    from vadbench.training import resume_mode

    config = tiny_config()
    before = run_config(config, "toy", "memae", 0)
    config["presets"]["tiny"]["score_batch_size"] = 3
    run = run_config(config, "toy", "memae", 0)
    assert run == before and "score_batch_size" not in run["preset"]
    data = {"digest": "d" * 64}
    saved = {"config": {**run, "preset": {**run["preset"], "score_batch_size": 16}}, "epoch": 0, "fingerprint": data}
    assert resume_mode(saved, run, data)[0] == "same"
