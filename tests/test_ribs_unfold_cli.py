"""`ribfracseg segment --qc` and `ribfracseg ribs --unfold`: the pictures per case, and each
detection's unfolded coordinates in the JSON summary (`unfolded`, by id) agreeing with its own rib."""

from __future__ import annotations

import json

import SimpleITK as sitk
import torch
from PIL import Image

from RibFracSegLib.checkpoint import save_checkpoint
from RibFracSegLib.cli import main
from RibFracSegLib.phantom.dataset import sample_params
from RibFracSegLib.phantom.generate import generate_phantom
from RibFracSegLib.ribs.qc import LEGEND_PX

from test_inference_phantom import MARKER_CKPT, _marked

torch.set_num_threads(1)


def test_segment_qc_and_ribs_unfold_write_pictures_and_unfolded_fields(tmp_path):
    case = generate_phantom(sample_params(11, size=160, fov="thorax", orientation="LPS", n_fractures=4, slice_mm=2.5))
    sitk.WriteImage(_marked(case), str(tmp_path / "RibFrac7-image.nii.gz"))
    save_checkpoint(tmp_path / "marker.pt", MARKER_CKPT)
    out = tmp_path / "pred"
    assert main(["segment", str(tmp_path / "RibFrac7-image.nii.gz"), "--checkpoint", str(tmp_path / "marker.pt"),
                 "--out", str(out), "--threads", "1", "--qc"]) == 0
    summary = json.loads((out / "RibFrac7.json").read_text())
    detections = summary["detections"]
    unfolded = summary["unfolded"]  # by detection id
    assert len(detections) >= len(case.fractures) and sorted(unfolded) == sorted(str(d["id"]) for d in detections)
    truth = {f.rib for f in case.fractures}
    on_ribs = [d for d in detections if unfolded[str(d["id"])] is not None]
    assert len(on_ribs) >= len(detections) - 1
    for d in on_ribs:  # the unfolded mark sits on the rib the rib step named, near its arc length
        assert unfolded[str(d["id"])]["rib"] == d["rib"] and d["rib"] in truth
        assert abs(unfolded[str(d["id"])]["arc_mm"] - d["rib_arc_mm"]) < 5.0
    flat = Image.open(out / "RibFrac7-unfolded.png")
    qc = Image.open(out / "RibFrac7-qc.png")
    assert qc.height == flat.height and qc.width > flat.width
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["RibFrac7.nii.gz"]  # the submission stays clean

    ribs_out = tmp_path / "ribs"
    assert main(["ribs", str(tmp_path / "RibFrac7-image.nii.gz"), "--out", str(ribs_out), "--unfold"]) == 0
    assert {p.name for p in ribs_out.glob("*.png")} == {"RibFrac7-ribs.png", "RibFrac7-unfolded.png", "RibFrac7-qc.png"}
    typed = any(d["label_code"] in (1, 2, 3, 4) for d in on_ribs)  # typed in the rib frame: a key line below
    assert typed  # same ribs, same layout; the ribs alone have no fractures, so no key line
    assert Image.open(ribs_out / "RibFrac7-unfolded.png").size == (flat.width, flat.height - LEGEND_PX)
