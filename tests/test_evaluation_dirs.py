"""Classification, segmentation and folder reading of the RibFrac evaluator, on files written to disk."""

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib.cli import main as cli_main
from RibFracSegLib.evaluation import confusion_matrix, evaluate_dirs, macro_f1, match_case
from RibFracSegLib.evaluation.classification import COLUMNS, ROWS

EPS = 1e-8


def write_xyz(arr_xyz: np.ndarray, path) -> None:
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr_xyz.transpose(2, 1, 0)).astype(np.uint16))
    image.SetSpacing((0.7, 0.7, 1.25))
    sitk.WriteImage(image, str(path))


def classification_case():
    """GT codes 1, -1, 3 (bars at x 0-4, 8-12, 16-20). pred 1 = GT 1 coded 1; pred 2 = GT 2 coded 2;
    pred 3 off any GT coded 3; GT 3 missed."""
    gt = np.zeros((30, 1, 1), np.int64)
    gt[0:5], gt[8:13], gt[16:21] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[0:5], pred[8:13], pred[26] = 1, 2, 3
    return match_case("A", gt, pred, [(0, 0), (1, 1), (2, -1), (3, 3)],
                      [(0, 0, 0), (1, 0.9, 1), (2, 0.8, 2), (3, 0.7, 3)])


def test_confusion_matrix_and_macro_f1_by_hand():
    mat = confusion_matrix([classification_case()])
    cell = lambda r, c: mat[ROWS.index(r), COLUMNS.index(c)]  # noqa: E731
    assert cell("Displaced", "Displaced") == 1
    assert cell("Nondisplaced", "Ignore") == 1
    assert cell("Buckle", "FP") == 1
    assert cell("FN", "Buckle") == 1
    assert mat.sum() == 4
    # Only Displaced has a TP: p = r = 1/(1+1e-8); the other three classes score 0.
    p = 1 / (1 + EPS)
    f1_d = 2 * p * p / (2 * p + EPS)
    total, target, pred_aware = macro_f1(mat)
    assert total == pytest.approx(f1_d / 4, abs=1e-12)
    assert target == pytest.approx(f1_d / 4, abs=1e-12) and pred_aware == pytest.approx(f1_d / 4, abs=1e-12)


def test_evaluate_dirs_end_to_end(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    # Case 1: the plate of test_evaluation_matching (hit only in x,y,z raster order), plus a missed GT.
    gt1 = np.zeros((12, 2, 10), np.int64)
    gt1[:10, 0, :] = 1
    gt1[11, 1, 0:4] = 2
    pred1 = np.zeros_like(gt1)
    pred1[0:5, 0, 6:10] = 1
    pred1[6:10, 0, 0:6] = 1
    # Case 2: no fracture, one false positive at 0.6 and an empty-id 2 with no csv row.
    gt2 = np.zeros((6, 6, 6), np.int64)
    pred2 = np.zeros_like(gt2)
    pred2[1:3, 1:3, 1:3] = 1
    pred2[5, 5, 5] = 3  # id 3 has a csv row; id 2 has none and no voxels
    write_xyz(gt1, gt_dir / "RibFrac1-label.nii.gz")
    write_xyz(gt2, gt_dir / "RibFrac2-label.nii.gz")
    write_xyz(gt1 * 0 + 100, gt_dir / "RibFrac1-image.nii.gz")  # images beside labels are ignored
    write_xyz(pred1, pred_dir / "RibFrac1.nii.gz")
    write_xyz(pred2, pred_dir / "RibFrac2.nii.gz")
    (gt_dir / "ribfrac-val-info.csv").write_text(
        "public_id,label_id,label_code\nRibFrac1,0,0\nRibFrac1,1,2\nRibFrac1,2,-1\nRibFrac2,0,0\n")
    (gt_dir / "ribfrac-val-l3.csv").write_text("public_id,slice\nRibFrac1,3\n")
    (pred_dir / "pred.csv").write_text(
        "public_id,label_id,confidence,label_code\nRibFrac1,0,0,0\nRibFrac1,1,0.905,2\n"
        "RibFrac2,0,0,0\nRibFrac2,1,0.605,3\nRibFrac2,3,0.205,3\n")
    report = evaluate_dirs(pred_dir, gt_dir)
    # Points: [0,.20]: FP 2, TP 1; (.20,.60]: FP 1; (.60,.90]: FP 0; above: nothing. GT = 2, scans 2.
    half = (1 + EPS) / (2 + EPS)
    assert report.n_gt == 2 and report.n_scans == 2 and report.n_predictions == 4
    assert report.fp_per_scan[0] == 1.0 and report.fp_per_scan[30] == half
    assert report.recall[0] == half and report.max_recall == half
    assert report.key_recall[1:] == [half] * 4
    # Dice: |GT∩P| = 44 in case 1; |GT| = 104; |P| = 44 + 9 (8 + 1 voxels in case 2).
    assert report.dice == pytest.approx(2 * 44 / (104 + 53 + EPS), abs=1e-12)
    assert report.iou == pytest.approx(44 / (104 + 9 + EPS), abs=1e-12)
    mat = np.array(report.confusion)
    assert mat[ROWS.index("Nondisplaced"), COLUMNS.index("Nondisplaced")] == 1
    assert mat[ROWS.index("Buckle"), COLUMNS.index("FP")] == 2
    assert mat[ROWS.index("FN"), COLUMNS.index("Ignore")] == 1
    # The CLI prints the same score and writes the plot and the JSON.
    assert cli_main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir),
                     "--plot", str(tmp_path / "froc.png"), "--json", str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "froc.png").stat().st_size > 1000 and (tmp_path / "r.json").exists()


def test_more_than_255_instances_in_files_warn_and_do_not_wrap(tmp_path):
    gt = np.zeros((40, 30, 1), np.int64)
    gt[::2, ::2, 0] = np.arange(1, 301).reshape(20, 15)
    for d, name in ((tmp_path / "gt", "RibFrac9-label.nii.gz"), (tmp_path / "pred", "RibFrac9.nii.gz")):
        d.mkdir()
        write_xyz(gt, d / name)
    (tmp_path / "gt" / "info.csv").write_text(
        "public_id,label_id,label_code\n" + "".join(f"RibFrac9,{i},1\n" for i in range(1, 301)))
    (tmp_path / "pred" / "p.csv").write_text(
        "public_id,label_id,confidence,label_code\n" + "".join(f"RibFrac9,{i},0.5,1\n" for i in range(1, 301)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
    assert any("uint8" in str(w.message) for w in caught)
    assert report.n_gt == 300 and report.max_recall == 1.0 and report.froc == 1.0


def test_missing_prediction_is_a_clear_error(tmp_path):
    from RibFracSegLib.io import InputError

    (tmp_path / "gt").mkdir(), (tmp_path / "pred").mkdir()
    write_xyz(np.zeros((3, 3, 3), np.int64), tmp_path / "gt" / "RibFrac1-label.nii.gz")
    write_xyz(np.zeros((3, 3, 3), np.int64), tmp_path / "pred" / "RibFrac2.nii.gz")
    with pytest.raises(InputError, match="missing predictions"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
