"""Export: the RibFrac submission, a JSON summary per case, and the probability map on request.

The submission folder holds `<public_id>.nii.gz` instance labels on the CT's grid and one csv
`public_id,label_id,confidence,label_code` with a background row per case — the official
evaluator reads every .nii.gz there as a prediction and takes the first csv, so nothing else of
those types may live beside them (probability maps go to a sub-folder).
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Iterable, Optional, Sequence

import SimpleITK as sitk

from . import defaults
from .detections import Detection, FractureResult
from .io import OutputError, write_image, write_text

CSV_COLUMNS = ("public_id", "label_id", "confidence", "label_code")
RIB_TABLE = "ribfrac-pred-ribs.tsv"  # side table: a .tsv, so the evaluator's "first *.csv" never picks it up
RIB_COLUMNS = ("public_id", "label_id", "rib", "rib_arc_mm", "rib_region", "gap_mm", "step_mm", "angulation_deg")
MEASURES = ("gap_mm", "step_mm", "angulation_deg")  # measured in the rib's frame (ribs/frame_measure); empty: not measured
UINT8_LIMIT = 255  # the official evaluator casts labels to uint8


def _replace_case_rows(path: Path, public_id: str, rows: list[dict], columns: Sequence[str],
                       delimiter: str = ",") -> Path:
    """Rewrite a folder-wide table (atomically) with this case's rows replaced. One writer at a time:
    in a parallel run only the process that owns the manifest calls this."""
    old: list[dict] = []
    if path.exists():
        with path.open(newline="") as fh:
            old = [r for r in csv.DictReader(fh, delimiter=delimiter) if r["public_id"] != public_id]
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(old + rows)
    return write_text(buffer.getvalue(), path)


def _as_dicts(detections: Iterable[Detection | dict]) -> list[dict]:
    return [d if isinstance(d, dict) else d.to_dict() for d in detections]


def submission_rows(public_id: str, detections: Iterable[Detection | dict]) -> list[dict]:
    """A case's csv rows: the background row, then one per detection (objects or their dicts)."""
    rows = [{"public_id": public_id, "label_id": 0, "confidence": 0, "label_code": 0}]
    rows += [{"public_id": public_id, "label_id": d["id"], "confidence": f"{float(d['confidence']):.6f}",
              "label_code": d["label_code"]} for d in _as_dicts(detections)]
    return rows


def rib_rows(public_id: str, detections: Iterable[Detection | dict]) -> list[dict]:
    """A case's rows of the rib side table: which rib each detection is on, and what its rib frame measured."""
    return [{"public_id": public_id, "label_id": d["id"], "rib": d["rib"],
             "rib_arc_mm": "" if d["rib_arc_mm"] is None else f"{d['rib_arc_mm']:.1f}", "rib_region": d["rib_region"],
             **{k: "" if d.get(k) is None else f"{d[k]:.1f}" for k in MEASURES}}
            for d in _as_dicts(detections)]


def write_case_tables(public_id: str, detections: Iterable[Detection | dict], out_dir: str | os.PathLike,
                      csv_name: str = defaults.SUBMISSION_CSV) -> tuple[Path, Path]:
    """This case's rows of the folder's submission csv and of its rib side table (RIB_TABLE)."""
    detections = _as_dicts(detections)
    out_dir = Path(out_dir)
    return (_replace_case_rows(out_dir / csv_name, public_id, submission_rows(public_id, detections), CSV_COLUMNS),
            _replace_case_rows(out_dir / RIB_TABLE, public_id, rib_rows(public_id, detections), RIB_COLUMNS, "\t"))


def write_submission(result: FractureResult, public_id: str, out_dir: str | os.PathLike,
                     csv_name: Optional[str] = defaults.SUBMISSION_CSV) -> tuple[Path, Optional[Path]]:
    """Write `<public_id>.nii.gz` and, unless csv_name is None, this case's rows of the folder's csv
    and rib side table (None: the caller writes them, see `write_case_tables`)."""
    out_dir = Path(out_dir)
    if len(result.detections) > UINT8_LIMIT:
        warnings.warn(f"{public_id}: {len(result.detections)} instances; the official RibFrac evaluator casts "
                      f"labels to uint8 and would misread ids above {UINT8_LIMIT}", stacklevel=2)
    labels = sitk.Cast(result.instances, sitk.sitkUInt16)
    nii = write_image(labels, out_dir / f"{public_id}.nii.gz")
    if csv_name is None:
        return nii, None
    return nii, write_case_tables(public_id, result.detections, out_dir, csv_name)[0]


def case_summary(result: FractureResult, public_id: str, source: Optional[str] = None, **extra) -> dict:
    return {"public_id": public_id, "source": source, "device": result.device,
            "patches_total": result.patches_total, "patches_skipped": result.patches_skipped,
            "patches_computed": result.patches_total - result.patches_skipped, "skip_rule": result.skip_rule,
            "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
            "ribs": None if result.ribs is None else {k: v for k, v in result.ribs.to_dict().items() if k != "ribs"},
            "rib_frames": result.rib_frames, "notes": list(result.notes),
            "detections": [d.to_dict() for d in result.detections], **extra}


def write_case_summary(result: FractureResult, public_id: str, path: str | os.PathLike,
                       source: Optional[str] = None, **extra) -> Path:
    """JSON with detections (ids, confidences, mm³, ijk/RAS/LPS centroids, boxes), timings and skips."""
    return write_text(json.dumps(case_summary(result, public_id, source, **extra), indent=2) + "\n", path)


def write_probability(result: FractureResult, path: str | os.PathLike) -> Path:
    if result.probability is None:
        raise ValueError("no probability map in this result; call segment_ct(..., return_probability=True)")
    return write_image(result.probability, path)


def write_case(result: FractureResult, public_id: str, out_dir: str | os.PathLike, probability: bool = False,
               tables: bool = True, **summary_fields) -> Path:
    """All files of one case, the JSON summary last (it marks the case done); returns the summary path.

    tables=False leaves the folder-wide csv and rib table to the caller (a parallel run's driver).

    The largest files come first, so a full disk usually stops the case before anything is shared;
    on an OutputError the case's image files written so far are removed again (a rerun redoes it).
    """
    out_dir = Path(out_dir)
    start = time.perf_counter()
    written: list[Path] = []
    try:
        if probability:
            written.append(write_probability(result, out_dir / defaults.PROBABILITY_DIR / f"{public_id}.nii.gz"))
        written.append(write_submission(result, public_id, out_dir, csv_name=defaults.SUBMISSION_CSV if tables else None)[0])
        result.timings_s["write"] = time.perf_counter() - start
        return write_case_summary(result, public_id, out_dir / f"{public_id}.json", **summary_fields)
    except OutputError:
        for path in written:
            path.unlink(missing_ok=True)
        if probability:
            with contextlib.suppress(OSError):
                (out_dir / defaults.PROBABILITY_DIR).rmdir()  # only if empty
        raise
