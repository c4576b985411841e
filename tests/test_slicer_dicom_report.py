"""The Slicer Logic's DICOM and report outputs: `batch(..., dicom=True, report=True)` and `save_report`."""

from __future__ import annotations

import shutil
from pathlib import Path

import highdicom as hd
import pydicom
import torch

from slicer_scene import import_module_file, make_scene

module = import_module_file()

from RibFracSegLib.options import SegmentOptions  # noqa: E402
from RibFracSegLib.pipeline import segment_case  # noqa: E402
from RibFracSegLogicLib import probe, selftest  # noqa: E402
from RibFracSegLogicLib.files import load_segmentation  # noqa: E402

from dicom_series import write_series  # noqa: E402
from test_dicom_outputs import check_fracture_seg, check_report  # noqa: E402

torch.set_num_threads(2)


def test_batch_writes_the_dicom_seg_sr_and_report_of_a_dicom_series(tmp_path):
    """A shuffled DICOM series through the console batch: the SEG's segments are the Slicer segments (names) and,
    frame by frame, the library's instance map of the same run; the SR holds one group per fracture, the report
    (written by the Logic's save_report) lists them."""
    checkpoint = str(probe.write_probe_checkpoint(tmp_path / "probe.pt"))
    case = selftest.phantom_case("oblique", seed=4)
    heads = [pydicom.dcmread(f, stop_before_pixels=True)
             for f in write_series(case.image, tmp_path / "Obl", order="shuffled")]
    holder = make_scene()
    logic = module.RibFracSegLogic(scene=holder.scene)
    [report] = logic.batch([tmp_path / "Obl"], tmp_path / "out", checkpoint=checkpoint, device="cpu", dicom=True,
                           report=True, ribs=True)
    assert report.status == "done", report.error
    out = tmp_path / "out"
    assert {k: Path(v).name for k, v in report.outputs.items() if k in ("fractures_seg", "ribs_seg", "sr", "report")} \
        == {"fractures_seg": "Obl-fractures.seg.dcm", "ribs_seg": "Obl-ribs.seg.dcm", "sr": "Obl-measurements.sr.dcm",
            "report": "Obl-report.html"}
    seg = hd.seg.segread(out / "Obl-fractures.seg.dcm")
    slicer_seg = load_segmentation(make_scene().scene, out / "Obl.seg.nrrd").GetSegmentation()
    names = [slicer_seg.GetNthSegment(n).GetName() for n in range(slicer_seg.GetNumberOfSegments())]
    assert len(names) >= 2 and [seg.get_segment_description(n).segment_label for n in range(1, len(names) + 1)] == names

    library = tmp_path / "library"  # the command line's run of the same series: its NIfTI and JSON
    assert segment_case(tmp_path / "Obl", library, SegmentOptions(checkpoint=checkpoint, device="cpu")).status == "done"
    shutil.copy(out / "Obl-fractures.seg.dcm", library)
    uids = {str(h.SOPInstanceUID): tuple(float(v) for v in h.ImagePositionPatient) for h in heads}
    seg, detections = check_fracture_seg(library, "Obl", uids)
    sr = hd.sr.srread(out / "Obl-measurements.sr.dcm")
    assert len(sr.content.get_volumetric_roi_measurement_groups()) == len(detections) == len(names)
    html = check_report(out / "Obl-report.html", detections, pictures=2)
    assert "probe.pt" in html
