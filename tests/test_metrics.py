"""CDnet metrics: confusion counts by hand, sums, zero divisions, oracle threshold."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import Confusion, ThresholdSweep, best_threshold, confusion, scores

# a 4x4 ground truth with every CDnet label
GT = np.array(
    [
        [0, 0, 50, 50],
        [255, 255, 255, 85],
        [170, 170, 0, 0],
        [255, 0, 50, 85],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [1, 0, 1, 0],  # fp, tn, fp(shadow), tn
        [1, 0, 1, 1],  # tp, fn, tp, (85 ignored)
        [1, 0, 0, 1],  # (170 ignored) x2, tn, fp
        [0, 1, 1, 1],  # fn, fp, fp(shadow), (85 ignored)
    ],
    dtype=bool,
)


def test_confusion_by_hand():
    c = confusion(PRED, GT)
    assert c == Confusion(tp=2, fp=5, tn=3, fn=2, shadow_fp=2)
    assert c.total == 12  # 16 pixels minus two 85 and two 170


def test_confusion_roi_excludes_pixels():
    roi = np.ones((4, 4), dtype=bool)
    roi[:, 0] = False  # drops fp(0,0), tp(1,0), fn(3,0)
    c = confusion(PRED, GT, roi)
    assert c == Confusion(tp=1, fp=4, tn=3, fn=1, shadow_fp=2)
    with pytest.raises(ValueError):
        confusion(PRED, GT, np.ones((3, 4), dtype=bool))


def test_scores_by_hand():
    s = scores(confusion(PRED, GT))  # tp=2, fp=5, tn=3, fn=2, shadow_fp=2
    assert s["recall"] == pytest.approx(2 / 4)
    assert s["specificity"] == pytest.approx(3 / 8)
    assert s["fpr"] == pytest.approx(5 / 8)
    assert s["fnr"] == pytest.approx(2 / 4)
    assert s["pwc"] == pytest.approx(100 * 7 / 12)
    assert s["precision"] == pytest.approx(2 / 7)
    p, r = 2 / 7, 2 / 4
    assert s["f"] == pytest.approx(2 * p * r / (p + r))
    assert s["shadow_fp_share"] == pytest.approx(2 / 5)


def test_sum_of_confusions():
    a = Confusion(1, 2, 3, 4, 1)
    b = Confusion(10, 20, 30, 40, 5)
    assert a + b == Confusion(11, 22, 33, 44, 6)
    assert sum([a, b]) == a + b
    # summing per-frame confusions equals the confusion of the stacked frames
    rng = np.random.default_rng(0)
    labels = np.array([0, 50, 85, 170, 255], dtype=np.uint8)
    gts = rng.choice(labels, (3, 6, 5))
    preds = rng.random((3, 6, 5)) > 0.5
    total = sum(confusion(p, g) for p, g in zip(preds, gts))
    whole = confusion(preds.reshape(18, 5), gts.reshape(18, 5))
    assert total == whole


def test_zero_divisions_are_zero():
    s = scores(Confusion(0, 0, 0, 0))
    assert all(v == 0.0 for v in s.values())
    # no positives in GT and nothing predicted: recall/precision/f are 0 by definition
    s = scores(Confusion(tp=0, fp=0, tn=10, fn=0))
    assert s["recall"] == 0.0 and s["precision"] == 0.0 and s["f"] == 0.0
    assert s["specificity"] == 1.0 and s["pwc"] == 0.0
    # perfect prediction
    s = scores(Confusion(tp=5, fp=0, tn=10, fn=0))
    assert s["f"] == 1.0 and s["pwc"] == 0.0 and s["shadow_fp_share"] == 0.0


def brute_force(maps, gts, t):
    c = sum(confusion(m > t, g) for m, g in zip(maps, gts))
    return scores(c)["f"]


def test_best_threshold_on_constructed_example():
    gt = np.array([[255, 255, 0, 0], [255, 50, 0, 170]], dtype=np.uint8)
    score = np.array([[0.9, 0.7, 0.6, 0.1], [0.4, 0.3, 0.2, 0.95]], dtype=np.float32)
    # score > 0.35 catches all 3 positives and only the 0.6 negative: F = 6/7
    t, f = best_threshold([score], [gt], None, [0.1, 0.25, 0.35, 0.5, 0.65, 0.8])
    assert t == pytest.approx(0.35) and f == pytest.approx(6 / 7)
    # the mask is score > t: at t = 0.4 the 0.4 positive is missed
    assert best_threshold([score], [gt], None, [0.4])[1] == pytest.approx(brute_force([score], [gt], 0.4))
    assert brute_force([score], [gt], 0.4) == pytest.approx(4 / 6)
    # with 0.65 the negative is excluded but the 0.4 positive missed: F = 4/5 < 6/7
    assert brute_force([score], [gt], 0.65) == pytest.approx(4 / 5)


def test_best_threshold_matches_brute_force_with_rois():
    rng = np.random.default_rng(1)
    gts = [rng.choice(np.array([0, 50, 85, 170, 255], np.uint8), (20, 30)) for _ in range(4)]
    maps = [np.where(g == 255, rng.random(g.shape) * 0.6 + 0.4, rng.random(g.shape) * 0.7) for g in gts]
    rois = [rng.random((20, 30)) > 0.2 for _ in range(4)]
    thresholds = np.linspace(0, 1, 41)
    t, f = best_threshold(maps, gts, rois, thresholds)
    fs = [scores(sum(confusion(m > x, g, r) for m, g, r in zip(maps, gts, rois)))["f"] for x in thresholds]
    assert f == pytest.approx(max(fs))
    assert t == pytest.approx(thresholds[int(np.argmax(fs))])
    # one ROI shared by all frames
    t1, f1 = best_threshold(maps, gts, rois[0], thresholds)
    fs1 = [scores(sum(confusion(m > x, g, rois[0]) for m, g in zip(maps, gts)))["f"] for x in thresholds]
    assert f1 == pytest.approx(max(fs1))


def test_best_threshold_without_positives_is_zero():
    gt = np.zeros((3, 3), np.uint8)
    t, f = best_threshold([np.ones((3, 3))], [gt], None, [0.5, 0.2])
    assert f == 0.0 and t == 0.2


def test_threshold_sweep_accumulates_frames():
    rng = np.random.default_rng(2)
    gts = [rng.choice(np.array([0, 255], np.uint8), (8, 8)) for _ in range(3)]
    maps = [rng.random((8, 8)) for _ in range(3)]
    sweep = ThresholdSweep(np.linspace(0, 1, 11))
    for m, g in zip(maps, gts):
        sweep.add(m, g)
    assert sweep.best() == best_threshold(maps, gts, None, np.linspace(0, 1, 11))
    assert sweep.f_scores()[0] == pytest.approx(brute_force(maps, gts, 0.0))


def test_threshold_sweep_curve_matches_hand_counts():
    # positives score 0.9, 0.6, 0.3; negatives 0.7, 0.2, 0.1 (CDnet labels: 255 moving, 0 static)
    gt = np.array([[255, 255, 255, 0, 0, 0]], np.uint8)
    score = np.array([[0.9, 0.6, 0.3, 0.7, 0.2, 0.1]])
    sweep = ThresholdSweep([0.0, 0.25, 0.5, 0.8, 0.95])
    sweep.add(score, gt)
    c = sweep.curve()
    # t=0: all masked (tp 3, fp 3); 0.25: tp 3 fp 1; 0.5: tp 2 fp 1; 0.8: tp 1 fp 0; 0.95: nothing masked, left out
    assert c["threshold"] == [0.0, 0.25, 0.5, 0.8]
    assert c["recall"] == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3], abs=1e-4)
    assert c["precision"] == pytest.approx([0.5, 0.75, 2 / 3, 1.0], abs=1e-4)
    every_other = sweep.curve(every=2)
    assert every_other["threshold"] == [0.0, 0.5]
    # the curve and the F sweep agree
    f = 2 * np.array(c["recall"]) * np.array(c["precision"]) / (np.array(c["recall"]) + np.array(c["precision"]))
    assert f == pytest.approx(sweep.f_scores()[:4], abs=1e-3)
