"""Official RibFrac IoU matching on hand-built volumes: strict 0.2, raster order, last wins, merging."""

import numpy as np

from RibFracSegLib.evaluation import match_case

EPS = 1e-8


def plate_case(order_xyz: bool = True):
    """GT: one 10x10 plate in the x-z plane (100 voxels). Prediction 1 overlaps it in two pieces:
    piece A (x 0-4, z 6-9): 20 voxels -> IoU 20/100 (not > 0.2); piece B (x 6-9, z 0-5): 24 -> 0.24.
    In (x, y, z) raster order A comes first and B wins; in (z, y, x) order B first and A wins."""
    gt = np.zeros((10, 1, 10), np.int64)
    gt[:, 0, :] = 1
    pred = np.zeros_like(gt)
    pred[0:5, 0, 6:10] = 1
    pred[6:10, 0, 0:6] = 1
    if not order_xyz:
        gt, pred = gt.transpose(2, 1, 0), pred.transpose(2, 1, 0)
    return match_case("c", gt, pred, [(1, 1)], [(1, 0.5, 1)])


def test_last_intersection_component_wins_in_xyz_raster_order():
    row = plate_case(order_xyz=True).rows[0]
    assert row.hit_label == 1
    assert abs(row.max_iou - 24 / (100 + EPS)) < 1e-12
    # The same objects read in (z, y, x) order give the other piece's IoU: the reason we transpose.
    other = plate_case(order_xyz=False).rows[0]
    assert abs(other.max_iou - 20 / (100 + EPS)) < 1e-12
    assert other.max_iou < 0.2 < row.max_iou


def test_iou_exactly_one_fifth_is_not_above_threshold():
    gt = np.zeros((12, 1, 1), np.int64)
    gt[0:10] = 1  # 10 voxels
    pred = np.zeros_like(gt)
    pred[0:2] = 1  # 2 of them: IoU 2 / (10 + 1e-8), a hair below 0.2
    case = match_case("c", gt, pred, [(1, 2)], [(1, 0.9, 2)])
    assert case.rows[0].max_iou < 0.2 and case.rows[0].hit_label == 1
    assert case.inter_sum == 2 and case.union_sum == 10 and case.gt_sum == 10 and case.pred_sum == 2


def test_touching_objects_merge_in_union():
    """A prediction equal to GT 1 (4 voxels) touching GT 2 (16 voxels): IoU = 4 / 20, a miss."""
    gt = np.zeros((21, 1, 1), np.int64)
    gt[0:4] = 1
    gt[4:20] = 2
    pred = np.zeros_like(gt)
    pred[0:4] = 1
    row = match_case("c", gt, pred, [(1, 1), (2, 1)], [(1, 0.9, 1)]).rows[0]
    assert row.hit_label == 1 and abs(row.max_iou - 4 / (20 + EPS)) < 1e-12


def test_prediction_ids_without_voxels_and_csv_rows():
    """Ids 1..max(pred) count; id 2 has no voxels (IoU 0); id 3 has no csv row (NaN confidence)."""
    gt = np.zeros((10, 1, 1), np.int64)
    gt[0:3] = 1
    pred = np.zeros_like(gt)
    pred[0:3] = 1
    pred[6] = 3
    case = match_case("c", gt, pred, [(0, 0), (1, 3)], [(0, 0, 0), (1, 0.7, 3), (2, 0.6, 3)])
    assert [r.pred_label for r in case.rows] == [1, 2, 3]
    assert [r.hit_label for r in case.rows] == [1, 0, 0]
    assert case.rows[0].max_iou == 3 / (3 + EPS)
    assert np.isnan(case.rows[2].prob)
    assert case.num_gt == 1


def test_first_gt_wins_equal_iou():
    """One prediction touching two GTs with the same IoU takes the lower GT id (numpy argmax)."""
    gt = np.zeros((20, 1, 1), np.int64)
    gt[0:5] = 2
    gt[10:15] = 1
    pred = np.zeros_like(gt)
    pred[0:5] = 1
    pred[10:15] = 1
    row = match_case("c", gt, pred, [(1, 1), (2, 2)], [(1, 0.5, 1)]).rows[0]
    assert row.hit_label == 1 and row.max_iou == 5 / (5 + EPS)


def test_more_than_255_instances_do_not_wrap():
    gt = np.zeros((40, 30, 1), np.int64)
    ids = np.arange(1, 301).reshape(20, 15)
    gt[::2, ::2, 0] = ids
    pred = gt.copy()
    info = [(i, 1) for i in range(1, 301)]
    case = match_case("c", gt, pred, info, [(i, 0.5, 1) for i in range(1, 301)])
    assert case.num_gt == 300 and len(case.rows) == 300
    assert sorted(r.hit_label for r in case.rows) == list(range(1, 301))
    assert all(abs(r.max_iou - 1.0) < 1e-7 for r in case.rows)
