"""DICOM SEG and SR of a real DICOM series, read back and checked: `python benchmarks/check_dicom_outputs.py`.

Runs `ribfracseg segment SERIES --dicom --ribs --report --l3` with the shipped model (default series:
../shared/data/real/Lung-PET-CT-Dx-A0001, TCIA Lung-PET-CT-Dx, CC BY 4.0: 64 slices at 5 mm), then
reads the SEG and SR back with highdicom and applies the checks tests/test_dicom_outputs.py applies
to phantom series: segment labels and codes, each fracture's frames equal to the NIfTI instance map
file by file, every referenced SOP instance in the input, the SR's groups referencing their segments
with every measurement and unit. Prints what it found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the read-back checks of the unit tests, applied to a real series


def series_positions(folder: Path) -> dict[str, tuple[float, float, float]]:
    """SOP Instance UID -> Image Position of the folder's largest CT series (read here with pydicom alone)."""
    import pydicom

    series = defaultdict(dict)
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality == "CT":
            series[ds.SeriesInstanceUID][str(ds.SOPInstanceUID)] = tuple(float(v) for v in ds.ImagePositionPatient)
    return max(series.values(), key=len)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", nargs="?", default=str(ROOT.parent / "shared/data/real/Lung-PET-CT-Dx-A0001"))
    parser.add_argument("--out", default=str(ROOT / ".cache" / "dicom-outputs"))
    args = parser.parse_args()

    import highdicom as hd

    from RibFracSegLib.cli import main as ribfracseg
    from test_dicom_outputs import check_fracture_seg, check_report, check_sr

    folder, out = Path(args.series), Path(args.out)
    case = folder.name
    start = time.perf_counter()
    code = ribfracseg(["segment", str(folder), "--out", str(out), "--dicom", "--ribs", "--report", "--l3", "--force"])
    print(f"segment exit {code} in {time.perf_counter() - start:.0f} s")
    uids = series_positions(folder)
    summary = json.loads((out / f"{case}.json").read_text())
    seg, detections = check_fracture_seg(out, case, uids)
    print(f"fractures SEG: {seg.number_of_segments} segments = {len(detections)} detections; {seg.NumberOfFrames} "
          f"frames, each fracture's voxels equal to {case}.nii.gz on all {len(uids)} source files; "
          f"{len(uids)} of {len(uids)} referenced instances in the input")
    sr = check_sr(out, case, seg, detections, uids)
    groups = sr.content.get_volumetric_roi_measurement_groups()
    print(f"SR: {len(groups)} fracture groups, {sum(len(g.get_measurements()) for g in groups)} measurements with "
          f"units, each referencing its segment; L3 groups: {len(sr.content.get_image_measurement_groups())} "
          f"(L3 in view: {summary['l3']['in_view']})")
    ribs = hd.seg.segread(out / f"{case}-ribs.seg.dcm") if summary["outputs"].get("ribs_seg") else None
    print("ribs SEG: " + ("none (no rib found)" if ribs is None else
                          f"{ribs.number_of_segments} segments: "
                          + ", ".join(ribs.get_segment_description(n).segment_label
                                      for n in range(1, ribs.number_of_segments + 1))))
    ribs_found = bool(summary["ribs"] and sum(summary["ribs"]["ribs_found"].values()))
    check_report(out / f"{case}-report.html", detections, pictures=2 * ribs_found + bool(summary["body_composition"]))
    print(f"report: {out / f'{case}-report.html'} self-contained, lists all {len(detections)} detections")
    return code


if __name__ == "__main__":
    sys.exit(main())
