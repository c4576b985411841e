"""RibFrac FROC on hand-built scans; every expected number below is worked out by hand in comments."""

import numpy as np
import pytest

from RibFracSegLib.evaluation import confidence_thresholds, evaluate_cases, froc, froc_point, match_case

EPS = 1e-8


def bars(n_voxels: list[int], gap: int = 3) -> np.ndarray:
    """Separate 1-voxel-thick bars along x with ids 1..n."""
    arr = np.zeros((sum(n_voxels) + gap * len(n_voxels), 1, 1), np.int64)
    x = 0
    for i, n in enumerate(n_voxels, start=1):
        arr[x:x + n] = i
        x += n + gap
    return arr


def scan(pid, gt, hits, fps, codes=None):
    """hits: [(gt id, conf)] -> a prediction equal to that GT; fps: [conf] -> predictions off any GT."""
    pred = np.zeros((gt.shape[0] + 4 * len(fps) + 4, 1, 1), np.int64)
    gt_big = np.zeros_like(pred)
    gt_big[: gt.shape[0]] = gt
    rows = []
    for pid_i, (g, conf) in enumerate(hits, start=1):
        pred[gt_big == g] = pid_i
        rows.append((pid_i, conf, 1))
    for j, conf in enumerate(fps, start=len(hits) + 1):
        pred[gt.shape[0] + 4 * (j - len(hits)) - 2] = j
        rows.append((j, conf, 1))
    info = [(i, (codes or {}).get(i, 1)) for i in range(1, int(gt.max()) + 1)]
    return match_case(pid, gt_big, pred, info, rows)


def test_scans_without_fractures_count_in_fp_per_scan_and_tie_rule():
    """4 scans, 2 GT (both in scan A): hits at 0.905 and 0.255; scan B: FPs 0.405, 0.305, 0.205;
    scans C, D: nothing. Points (threshold range: FP, TP):
      [0, .20]: 3, 2 -> fp (3+e)/(4+e) = .75, recall 1
      (.20, .25]: 2, 2 -> fp .50000000125, recall 1
      (.25, .30]: 2, 1 -> fp .50000000125, recall .5
      (.30, .40]: 1, 1 -> fp .2500000019, recall .5
      (.40, .90]: 0, 1 ; (.90, .99]: 0, 0.
    Key 0.5: last fp <= .5 is .25 (recall .5); first fp >= .5 in stable order is threshold .21
    (recall 1) -> .5 + .5 * (.5 - fp1q) / (fp2q - fp1q + e). Keys 1, 2, 4, 8: max recall 1."""
    gt_a = bars([6, 6])
    cases = [scan("A", gt_a, [(1, 0.905), (2, 0.255)], []),
             scan("B", np.zeros((3, 1, 1), np.int64), [], [0.405, 0.305, 0.205]),
             scan("C", np.zeros((3, 1, 1), np.int64), [], []),
             scan("D", np.zeros((3, 1, 1), np.int64), [], [])]
    fp, recall, keys, score = froc(cases, sort_kind="stable")
    q = lambda n: (n + EPS) / (4 + EPS)  # noqa: E731
    r = lambda n: (n + EPS) / (2 + EPS)  # noqa: E731
    assert fp[0] == q(3) and fp[21] == q(2) and fp[26] == q(2) and fp[31] == q(1) and fp[41] == q(0)
    assert recall[20] == r(2) and recall[25] == r(2) and recall[26] == r(1) and recall[91] == r(0)
    k05 = r(1) + (r(2) - r(1)) * ((0.5 - q(1)) / (q(2) - q(1) + EPS))
    assert keys[0] == pytest.approx(k05, abs=1e-12)
    assert keys[1:] == [r(2)] * 4
    assert score == pytest.approx((k05 + 4 * r(2)) / 5, abs=1e-12)
    # The other tie order (recall .5 first among the equal-FP points) would give 0.5 at key 0.5.
    assert keys[0] > 0.99
    report = evaluate_cases(cases, sort_kind="stable")
    assert report.max_recall == r(2) and report.fp_at_max_recall == q(3)
    assert report.n_scans == 4 and report.n_gt == 2


def test_two_predictions_on_one_fracture_count_once_and_are_not_fp():
    gt = bars([10])
    pred = np.zeros_like(gt)
    pred[0:3] = 1  # IoU .3
    pred[5:8] = 2  # IoU .3, same GT
    case = match_case("A", gt, pred, [(1, 2)], [(1, 0.6, 2), (2, 0.3, 2)])
    assert [r.hit_label for r in case.rows] == [1, 1]
    fp, rec = froc_point([case], 0.0)
    assert fp == EPS / (1 + EPS) and rec == (1 + EPS) / (1 + EPS) == 1.0
    # Every FP/scan is below 0.5, so every key level takes the max recall: FROC exactly 1.
    assert froc([case])[3] == 1.0


def test_undefined_code_counts_for_detection():
    gt = bars([5, 5, 5])
    case = scan("A", gt, [(1, 0.9), (2, 0.9)], [], codes={1: 1, 2: -1, 3: 3})
    fp, rec = froc_point([case], 0.5)
    assert rec == (2 + EPS) / (3 + EPS)


def test_thresholds_at_the_edges():
    """Confidence exactly 0.7 fails the threshold np.arange gives as 0.7000000000000001 (0.35 too);
    0.0 counts only at threshold 0; 1.0 always counts."""
    t = confidence_thresholds()
    assert len(t) == 100 and t[0] == 0.0 and t[70] > 0.7 and t[35] > 0.35 and t[7] == 0.07 and t[-1] == 0.99
    gt = bars([5, 5, 5])
    case = scan("A", gt, [(1, 0.7), (2, 0.0), (3, 1.0)], [])
    r = lambda n: (n + EPS) / (3 + EPS)  # noqa: E731
    assert froc_point([case], t[0])[1] == r(3)
    assert froc_point([case], t[1])[1] == r(2)
    assert froc_point([case], t[69])[1] == r(2)
    assert froc_point([case], t[70])[1] == r(1)
    assert froc_point([case], t[99])[1] == r(1)


def test_key_levels_below_every_point_give_zero():
    """Every threshold: 1 TP, 2 FP in one scan -> fp (2+e)/(1+e) just under 2, recall 1.
    Keys .5 and 1: no point at or below -> 0. Key 2: no point at or above -> max recall 1. 4, 8: 1."""
    case = scan("A", bars([5]), [(1, 1.0)], [1.0, 1.0])
    fp, recall, keys, score = froc([case])
    assert set(fp) == {(2 + EPS) / (1 + EPS)}
    assert keys == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert score == pytest.approx(0.6, abs=1e-15)


def test_fp_exactly_half_lands_above_the_half_key():
    """2 scans, 1 FP at 0.505 and a hit at 0.905: FP of 1 over 2 scans is .5000000025 > .5.
    Points: [0, .50]: fp .5000000025 recall 1; (.50, .90]: fp ~5e-9 recall 1; above: recall ~0.
    Key .5: last fp <= .5 is the last ~5e-9 point in stable order (threshold .99, recall ~0) and the
    first above is .5000000025 with recall 1 -> interpolation lands a hair under 1."""
    cases = [scan("A", bars([5]), [(1, 0.905)], []), scan("B", np.zeros((2, 1, 1), np.int64), [], [0.505])]
    fp, recall, keys, _ = froc(cases, sort_kind="stable")
    half = (1 + EPS) / (2 + EPS)
    assert fp[0] == half and half > 0.5
    lo_fp, lo_r = EPS / (2 + EPS), EPS / (1 + EPS)
    expected = lo_r + (1.0 - lo_r) * ((0.5 - lo_fp) / (half - lo_fp + EPS))
    assert keys[0] == pytest.approx(expected, abs=1e-12) and keys[0] < 1.0


def test_recall_by_type_counts_hits_per_true_type_at_a_confidence():
    """Scan A: GT 1 displaced hit at 0.9, GT 2 buckle hit at 0.3, GT 3 segmental missed; scan B: GT 1
    buckle hit at 0.6, plus an FP (never counted). At 0: displaced 1/1, buckle 2/2, segmental 0/1; at 0.5 the
    0.3 hit no longer counts: buckle 1/2."""
    from RibFracSegLib.evaluation import recall_by_type

    a = scan("A", bars([3, 3, 3]), [(1, 0.9), (2, 0.3)], [], codes={1: 1, 2: 3, 3: 4})
    b = scan("B", bars([3]), [(1, 0.6)], [0.8], codes={1: 3})
    assert recall_by_type([a, b]) == {"Buckle": (2, 2), "Displaced": (1, 1), "Nondisplaced": (0, 0),
                                      "Segmental": (0, 1)}
    assert recall_by_type([a, b], 0.5)["Buckle"] == (1, 2)
