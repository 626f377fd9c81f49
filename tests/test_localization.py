"""Localisation criteria on hand-made maps and masks whose answers are worked out by hand: the regions of
an error map, the UCSD pixel-level ROC (40% coverage), Street Scene's RBDC/TBDC, and mask resizing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from vadbench.errors import ConfigError, DatasetError
from vadbench.localization import (
    Region,
    find_regions,
    localization_metrics,
    pixel_level_roc,
    rbdc_tbdc,
    resize_mask,
)

# ------------------------------------------------------------------------------------------- regions


def two_blobs() -> np.ndarray:
    """A 2x3 blob with a 0.9 peak at rows 1-2, cols 1-3, and a lone 0.6 pixel at (7, 9)."""
    error = np.zeros((10, 12))
    error[1:3, 1:4] = 0.8
    error[2, 2] = 0.9
    error[7, 9] = 0.6
    return error


def test_every_region_above_the_threshold_is_found_with_its_box_area_and_peak():
    assert find_regions(two_blobs(), 0.5) == [
        Region(x0=1, y0=1, x1=4, y1=3, area=6, score=0.9),
        Region(x0=9, y0=7, x1=10, y1=8, area=1, score=0.6),
    ]


def test_min_area_drops_the_small_region_only():
    assert find_regions(two_blobs(), 0.5, min_area=2) == [Region(1, 1, 4, 3, 6, 0.9)]


def test_the_threshold_itself_counts_as_above():
    assert find_regions(two_blobs(), 0.6)[-1] == Region(9, 7, 10, 8, 1, 0.6)
    assert len(find_regions(two_blobs(), np.nextafter(0.6, 1))) == 1


def test_diagonal_neighbours_form_one_region():
    error = np.zeros((8, 8))
    error[5, 5] = error[6, 6] = 1.0
    assert find_regions(error, 0.5) == [Region(5, 5, 7, 7, 2, 1.0)]


def test_smoothing_merges_two_blobs_one_pixel_apart():
    error = np.zeros((9, 13))
    error[3:6, 2:5] = 1.0
    error[3:6, 6:9] = 1.0  # column 5 is the gap
    assert len(find_regions(error, 0.5)) == 2
    (merged,) = find_regions(error, 0.5, sigma=1.0)
    # smoothed: the gap's middle pixel reaches ~0.53 (0.30 from each side times 0.88 across the rows),
    # the squares' four outer corners fall to ~0.48, so 9 + 9 - 4 + 1 pixels in one 7x3 box
    assert (merged.x0, merged.y0, merged.x1, merged.y1, merged.area) == (2, 3, 9, 6, 15)
    # the score is the smoothed peak (~0.883 * 0.888 at the squares' centres), not the raw 1.0
    assert merged.score == pytest.approx(gaussian_filter(error, 1.0).max())
    assert merged.score == pytest.approx(0.7835, abs=1e-4)


def test_nothing_above_the_threshold_gives_no_region():
    assert find_regions(np.zeros((5, 5)), 0.1) == []


def test_float16_maps_are_compared_at_their_stored_values():
    error = np.zeros((4, 4), np.float16)
    error[1, 1:3] = 0.9  # stored as 0.89990234375
    (region,) = find_regions(error, 0.8)
    assert region == Region(1, 1, 3, 2, 2, 0.89990234375)
    assert find_regions(error, 0.9) == []


def test_region_to_dict_is_plain_json_and_round_trips():
    region = find_regions(two_blobs().astype(np.float32), 0.5)[0]
    d = region.to_dict()
    assert d == {"x0": 1, "y0": 1, "x1": 4, "y1": 3, "area": 6, "score": pytest.approx(0.9)}
    assert [type(v) for v in d.values()] == [int, int, int, int, int, float]
    assert Region.from_dict(json.loads(json.dumps(d))) == region


def test_find_regions_refuses_a_volume_and_a_zero_min_area():
    with pytest.raises(DatasetError, match=r"\(H, W\)"):
        find_regions(np.zeros((2, 4, 4)), 0.5)
    with pytest.raises(ConfigError, match="min_area"):
        find_regions(np.zeros((4, 4)), 0.5, min_area=0)


# ---------------------------------------------------------------------------------------- resize_mask


def test_resize_mask_doubling_repeats_every_pixel_exactly():
    mask = np.random.default_rng(0).random((2, 5, 7)) > 0.5
    out = resize_mask(mask, (10, 14))
    assert out.dtype == bool and out.shape == (2, 10, 14)
    assert np.array_equal(out, mask.repeat(2, axis=1).repeat(2, axis=2))


def test_resize_mask_shrinking_by_three_takes_each_blocks_centre():
    mask = np.random.default_rng(1).random((1, 6, 9)) > 0.5
    assert np.array_equal(resize_mask(mask, (2, 3)), mask[:, 1::3, 1::3])


def test_resize_mask_of_ped2_to_256_equals_pillows_nearest():
    mask = np.random.default_rng(2).random((1, 240, 360)) > 0.5
    pillow = np.asarray(Image.fromarray(mask[0].astype(np.uint8) * 255).resize((256, 256), Image.NEAREST)) > 0
    assert np.array_equal(resize_mask(mask, (256, 256))[0], pillow)


# --------------------------------------------------------------------------------- pixel-level criterion


def coverage_video(detected: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame 0: a 10x10 mask with ``detected`` of its 100 pixels at 1.0; frame 1: normal, all 0."""
    mask = np.zeros((2, 20, 20), bool)
    mask[0, 5:15, 5:15] = True
    error = np.zeros((2, 20, 20))
    error[0, 5:15, 5:15].flat[:detected] = 1.0
    return error, mask


@pytest.mark.parametrize(("detected", "tpr"), [(39, 0.0), (40, 1.0)])
def test_an_anomalous_frame_counts_when_forty_percent_of_its_mask_is_detected(detected, tpr):
    error, mask = coverage_video(detected)
    result = pixel_level_roc([error], [mask], thresholds=[0.5])
    assert result["tpr"] == [tpr] and result["fpr"] == [0.0]


def test_a_decimal_coverage_is_met_exactly_despite_float_rounding():
    error, mask = coverage_video(55)  # 0.55 * 100 is 55.00000000000001 in floating point
    assert pixel_level_roc([error], [mask], thresholds=[0.5], coverage=0.55)["tpr"] == [1.0]
    error, mask = coverage_video(54)
    assert pixel_level_roc([error], [mask], thresholds=[0.5], coverage=0.55)["tpr"] == [0.0]


def test_detections_outside_the_mask_of_an_anomalous_frame_do_not_count():
    error, mask = coverage_video(39)
    error[0, 0:5, :] = 1.0  # 100 more pixels, none inside the mask
    assert pixel_level_roc([error], [mask], thresholds=[0.5])["tpr"] == [0.0]


def test_one_pixel_over_the_threshold_makes_a_normal_frame_a_false_positive():
    error, mask = coverage_video(40)
    error[1, 19, 19] = 0.6
    result = pixel_level_roc([error], [mask], thresholds=[0.7, 0.5])
    assert result["thresholds"] == [0.7, 0.5]
    assert result["fpr"] == [0.0, 1.0]


def test_a_map_that_is_the_mask_scores_auc_one():
    mask = np.random.default_rng(3).random((6, 8, 8)) > 0.7
    mask[[1, 4]] = False  # two normal frames
    result = pixel_level_roc([mask.astype(np.float16)], [mask])
    assert (result["auc"], result["eer"]) == (1.0, 0.0)
    assert (result["anomalous_frames"], result["normal_frames"]) == (4, 2)
    assert (result["fpr"][0], result["tpr"][0], result["fpr"][-1], result["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)


def test_a_map_high_only_on_normal_frames_scores_auc_zero():
    mask = np.zeros((4, 6, 6), bool)
    mask[:2, 2:4, 2:4] = True
    error = np.zeros(mask.shape)
    error[2:] = 1.0
    result = pixel_level_roc([error], [mask])
    assert (result["auc"], result["eer"]) == (0.0, 1.0)


def test_unscored_frames_are_left_out_even_when_they_hold_nan():
    mask = np.zeros((4, 6, 6), bool)
    mask[1, 1:3, 1:3] = True
    error = mask.astype(np.float64)
    error[3] = 5.0  # a normal frame brighter than any anomaly...
    error[0] = np.nan  # ...and a frame no clip landed on
    scored = np.array([False, True, True, False])
    result = pixel_level_roc([error], [mask], scored=[scored])
    assert (result["auc"], result["anomalous_frames"], result["normal_frames"]) == (1.0, 1, 1)
    # scored, frame 3 outranks the anomaly (5 > 1) and frames 0 and 2 do not: AUC 2/3
    assert pixel_level_roc([np.nan_to_num(error)], [mask])["auc"] == pytest.approx(2 / 3)


def hand_case() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frame critical values worked out by hand: anomalous 0.8, 0.6, 0.4; normal 0.65, 0.2.

    Video A, frame 0: 4 mask pixels [0.9, 0.8, 0.3, 0.2], ceil(0.4 * 4) = 2nd largest = 0.8 (the 0.99
    outside the mask does not count); frame 1: 5 pixels [0.7, 0.6, 0.5, 0.1, 0.1], ceil(2.0) = 2nd
    largest = 0.6; frame 2: normal, max 0.65. Video B, frame 0: normal, max 0.2; frame 1: one pixel 0.4.
    """
    ma, ea = np.zeros((3, 4, 4), bool), np.zeros((3, 4, 4))
    ma[0, 0:2, 0:2] = True
    ea[0, 0:2, 0:2] = [[0.9, 0.8], [0.3, 0.2]]
    ea[0, 3, 3] = 0.99
    ma[1, 0, :] = ma[1, 1, 0] = True
    ea[1, 0, :], ea[1, 1, 0] = [0.7, 0.6, 0.5, 0.1], 0.1
    ea[2, 2, 2] = 0.65
    mb, eb = np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4))
    eb[0, 1, 1] = 0.2
    mb[1, 3, 0], eb[1, 3, 0] = True, 0.4
    return [ea, eb], [ma, mb]


def test_pixel_roc_of_the_hand_case_at_one_threshold():
    errors, masks = hand_case()
    result = pixel_level_roc(errors, masks, thresholds=[0.55])
    assert result["tpr"] == [pytest.approx(2 / 3)] and result["fpr"] == [0.5]  # 0.8, 0.6 hit; 0.65 false alarm


def test_pixel_roc_of_the_hand_case_over_all_thresholds():
    errors, masks = hand_case()
    result = pixel_level_roc(errors, masks)
    assert result["thresholds"][1:] == [0.8, 0.65, 0.6, 0.4, 0.2]
    assert result["fpr"] == [0, 0, 0.5, 0.5, 0.5, 1]
    assert result["tpr"] == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    assert result["auc"] == pytest.approx(2 / 3)  # 4 of the 6 (anomalous, normal) pairs are ordered right
    assert result["eer"] == pytest.approx(0.5)


def test_pixel_roc_equals_the_definition_applied_at_every_pixel_value():
    rng = np.random.default_rng(4)
    masks = [rng.random((12, 9, 9)) > 0.8 for _ in range(2)]
    for m in masks:
        m[::3] = False  # normal frames
    errors = [(rng.random(m.shape) + 0.3 * m).astype(np.float16) for m in masks]
    grid = np.unique(np.concatenate([e.ravel() for e in errors]).astype(np.float64))[::-1]
    tpr, fpr = [], []
    for t in grid:
        hits = [(e[i][m[i]] >= t).mean() >= 0.4 for e, m in zip(errors, masks) for i in range(len(m)) if m[i].any()]
        alarms = [(e[i] >= t).any() for e, m in zip(errors, masks) for i in range(len(m)) if not m[i].any()]
        tpr.append(np.mean(hits))
        fpr.append(np.mean(alarms))
    on_grid = pixel_level_roc(errors, masks, thresholds=grid)
    assert on_grid["tpr"] == pytest.approx(tpr) and on_grid["fpr"] == pytest.approx(fpr)
    brute_auc = np.trapezoid([0, *tpr, 1], [0, *fpr, 1])
    assert pixel_level_roc(errors, masks)["auc"] == pytest.approx(brute_auc)
    assert on_grid["auc"] == pytest.approx(brute_auc)


def test_pixel_roc_without_a_class_has_no_auc():
    mask = np.zeros((3, 4, 4), bool)
    result = pixel_level_roc([np.zeros((3, 4, 4))], [mask])
    assert (result["auc"], result["eer"], result["tpr"], result["normal_frames"]) == (None, None, [], 3)


def test_maps_and_masks_of_different_sizes_are_refused_naming_the_fix():
    with pytest.raises(DatasetError, match="resize_mask"):
        pixel_level_roc([np.zeros((3, 8, 8))], [np.zeros((3, 4, 4), bool)])


# ------------------------------------------------------------------------------------------ RBDC/TBDC


def box_of(y0: int, x0: int, y1: int, x1: int, score: float) -> Region:
    return Region(x0=x0, y0=y0, x1=x1, y1=y1, area=(y1 - y0) * (x1 - x0), score=score)


def street_case() -> tuple[list[list[list[Region]]], list[np.ndarray]]:
    """Two videos, 6 frames, 8 GT regions in 3 tracks, 4 detections of which one is a false positive.

    Video A (4 frames): track a1, rows/cols 2-5, in every frame; track a2, rows/cols 10-13, in frames 2-3.
    Video B (2 frames): track b1, rows/cols 0-3, in both frames.
    Detections: a1 at frame 0 (0.9) and 1 (0.5); a false positive in A frame 2 (0.7); b1 at B frame 0 (0.3).
    a2 is never detected (the missed track).
    """
    ma = np.zeros((4, 16, 16), bool)
    ma[:, 2:6, 2:6] = True
    ma[2:, 10:14, 10:14] = True
    mb = np.zeros((2, 16, 16), bool)
    mb[:, 0:4, 0:4] = True
    det_a = [[box_of(2, 2, 6, 6, 0.9)], [box_of(2, 2, 6, 6, 0.5)], [box_of(0, 8, 2, 10, 0.7)], []]
    det_b = [[box_of(0, 0, 4, 4, 0.3)], []]
    return [det_a, det_b], [ma, mb]


def test_rbdc_tbdc_of_the_hand_case():
    detections, masks = street_case()
    result = rbdc_tbdc(detections, masks)
    assert (result["gt_regions"], result["gt_tracks"], result["detections"]) == (8, 3, 4)
    assert (result["false_positives"], result["frames"]) == (1, 6)
    # scores 0.9, 0.7, 0.5, 0.3 in turn: a1@0, the false positive, a1@1, b1@0
    assert result["fpr"] == pytest.approx([0, 0, 1 / 6, 1 / 6, 1 / 6])
    assert result["rbdc_curve"] == pytest.approx([0, 1 / 8, 1 / 8, 2 / 8, 3 / 8])
    assert result["tbdc_curve"] == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 2 / 3])  # a1, then b1; never a2
    # areas over FPR 0..1, flat after 1/6: 1/6 * 1/8 + 5/6 * 3/8 and 1/6 * 1/3 + 5/6 * 2/3
    assert result["rbdc"] == pytest.approx(1 / 3)
    assert result["tbdc"] == pytest.approx(11 / 18)


def test_rbdc_tbdc_integrate_only_up_to_max_fp_per_frame():
    detections, masks = street_case()
    result = rbdc_tbdc(detections, masks, max_fp_per_frame=0.1)  # before the false positive at 1/6
    assert (result["rbdc"], result["tbdc"]) == (pytest.approx(1 / 8), pytest.approx(1 / 3))


def test_a_hit_and_a_false_positive_of_equal_score_are_joined_by_a_straight_segment():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 0:2, 0:2] = True
    detections = [[[box_of(0, 0, 2, 2, 0.5), box_of(6, 6, 8, 8, 0.5)]]]
    assert rbdc_tbdc(detections, [mask])["rbdc"] == pytest.approx(0.5)  # (0, 0) to (1, 1)
    assert rbdc_tbdc(detections, [mask], max_fp_per_frame=0.5)["rbdc"] == pytest.approx(0.25)  # cut at (0.5, 0.5)


def test_perfect_detections_score_one_and_none_score_zero():
    _, masks = street_case()
    perfect = [
        [[box_of(2, 2, 6, 6, 1.0)], [box_of(2, 2, 6, 6, 0.8)]]
        + [[box_of(2, 2, 6, 6, 0.6), box_of(10, 10, 14, 14, 0.4)]] * 2,
        [[box_of(0, 0, 4, 4, 0.2)]] * 2,
    ]
    result = rbdc_tbdc(perfect, masks)
    assert (result["rbdc"], result["tbdc"], result["false_positives"]) == (1.0, 1.0, 0)
    nothing = rbdc_tbdc([[[]] * 4, [[]] * 2], masks)
    assert (nothing["rbdc"], nothing["tbdc"]) == (0.0, 0.0)


@pytest.mark.parametrize(("width", "hit"), [(10, True), (9, False)])
def test_an_iou_of_exactly_one_tenth_hits(width, hit):
    mask = np.zeros((1, 12, 12), bool)
    mask[0, 0:10, 0:10] = True
    detection = box_of(0, 0, 1, width, 1.0)  # IoU = width / 100
    result = rbdc_tbdc([[[detection]]], [mask])
    assert (result["rbdc"], result["false_positives"]) == ((1.0, 0) if hit else (0.0, 1))


def test_unscored_frames_hold_no_ground_truth_and_no_false_positive():
    detections, masks = street_case()
    detections[0][2] = [box_of(0, 8, 2, 10, 0.7)]  # the false positive's frame is not scored
    scored = [np.array([True, True, False, True]), np.array([True, True])]
    result = rbdc_tbdc(detections, masks, scored=scored)
    assert (result["gt_regions"], result["false_positives"], result["frames"]) == (6, 0, 5)
    assert result["rbdc"] == pytest.approx(3 / 6)


def test_tracks_follow_diagonal_motion_and_split_at_jumps():
    mask = np.zeros((3, 12, 12), bool)
    mask[0, 0:2, 0:2] = True
    mask[1, 2:4, 2:4] = True  # touches frame 0's square at a corner: same track
    mask[2, 8:10, 8:10] = True  # jumped: a new track
    assert rbdc_tbdc([[[]] * 3], [mask])["gt_tracks"] == 2


def test_no_ground_truth_gives_no_rbdc():
    result = rbdc_tbdc([[[box_of(0, 0, 2, 2, 1.0)]]], [np.zeros((1, 4, 4), bool)])
    assert (result["rbdc"], result["tbdc"], result["false_positives"]) == (None, None, 1)


def test_localization_metrics_of_maps_equal_to_the_masks_are_perfect():
    _, masks = street_case()
    errors = [m.astype(np.float16) for m in masks]
    detections = [[find_regions(frame, 0.5) for frame in e] for e in errors]
    result = localization_metrics(errors, masks, detections)
    assert (result["pixel_auc"], result["pixel_eer"], result["rbdc"], result["tbdc"]) == (None, None, 1.0, 1.0)
    assert (result["anomalous_frames"], result["normal_frames"], result["gt_regions"]) == (6, 0, 8)
    masks[1][1] = False  # one normal frame makes the pixel criterion defined
    errors = [m.astype(np.float16) for m in masks]
    detections = [[find_regions(frame, 0.5) for frame in e] for e in errors]
    result = localization_metrics(errors, masks, detections)
    assert (result["pixel_auc"], result["pixel_eer"], result["rbdc"], result["tbdc"]) == (1.0, 0.0, 1.0, 1.0)
    assert result["criteria"]["coverage"] == 0.4 and result["criteria"]["iou"] == 0.1


def test_criteria_outside_their_range_and_mismatched_videos_are_refused():
    detections, masks = street_case()
    with pytest.raises(ConfigError, match="coverage"):
        pixel_level_roc([m.astype(float) for m in masks], masks, coverage=0.0)
    with pytest.raises(ConfigError, match="iou"):
        rbdc_tbdc(detections, masks, iou=1.5)
    with pytest.raises(DatasetError, match="video 1: detections for 1 frames but the mask has 2"):
        rbdc_tbdc([detections[0], detections[1][:1]], masks)
