"""Reading RibFrac-layout prediction and ground-truth folders for the evaluator.

Ground truth: `RibFracN-label.nii.gz` (images and other volumes beside them are ignored) and one or
more info csvs `public_id,label_id,label_code`. Predictions: `RibFracN.nii.gz` and one csv
`public_id,label_id,confidence,label_code`. Case ids follow `RibFracSegLib.cases.case_id` (suffix and
`-label` removed), which agrees with the official NiiDataset on RibFrac names. Volumes are returned in the file's (x, y, z) order because
the official matching depends on that raster order.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..cases import case_id
from ..errors import InputError

GT_COLUMNS = ("public_id", "label_id", "label_code")
PRED_COLUMNS = ("public_id", "label_id", "confidence", "label_code")
OTHER_VOLUME_SUFFIXES = ("-image", "-vertebrae", "-tissue", "-prob", "-probability")


def volume_files(folder: Path, ground_truth: bool) -> dict[str, Path]:
    """{case id: file} of the label volumes in a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Not a folder: {folder}. Give the folder holding the .nii.gz label volumes.")
    files = sorted(p for p in folder.iterdir()  # hidden files are never cases (a killed run's temporary files)
                   if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith("."))
    labels = [p for p in files if p.name.split(".")[0].endswith("-label")]
    if ground_truth and labels:
        files = labels
    files = [p for p in files if not p.name.split(".")[0].endswith(OTHER_VOLUME_SUFFIXES)]
    if not files:
        raise InputError(f"No label volumes (.nii/.nii.gz) in {folder}.")
    return {case_id(p): p for p in files}


def _number(text: str) -> float:
    text = (text or "").strip()
    return float(text) if text else math.nan


def read_info_csvs(folder: Path, columns: tuple[str, ...]) -> dict[str, list[tuple]]:
    """{public_id: [(label_id, ...numeric columns)]} from every csv in `folder` with these columns."""
    rows: dict[str, list[tuple]] = {}
    found = []
    for path in sorted(Path(folder).glob("*.csv")):
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if not set(columns) <= set(header):
                continue
            found.append(path)
            for rec in reader:
                rec = {(k or "").strip(): v for k, v in rec.items()}
                pid = rec["public_id"].strip()
                values = tuple(_number(rec[c]) for c in columns[1:])
                rows.setdefault(pid, []).append((int(values[0]),) + values[1:])
    if not found:
        raise InputError(f"No csv with columns {','.join(columns)} in {folder}.")
    return rows


def read_labels_xyz(path: Path) -> np.ndarray:
    """Integer label volume in (x, y, z) order, never narrowed to uint8."""
    image = sitk.ReadImage(str(path))
    arr = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.rint(arr).astype(np.int64)  # the official reader gets floats from nibabel
    return np.ascontiguousarray(np.transpose(arr, (2, 1, 0)).astype(np.int64, copy=False))
