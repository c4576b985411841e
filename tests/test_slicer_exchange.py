"""The worker's result files: explicit to/from-dict per result type, no class named by the file is
imported, and reading in Slicer's process needs neither torch nor the networks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from slicer_scene import MODULE_DIR, REPO, add_module_path

add_module_path()

from RibFracSegLib.detections import Detection, FractureResult  # noqa: E402
from RibFracSegLib.l3.body_composition import BodyComposition, slice_composition  # noqa: E402
from RibFracSegLib.l3.locator import L3Result, decode  # noqa: E402
from RibFracSegLib.l3.projections import compute_projections  # noqa: E402
from RibFracSegLib.ribs.labels import Rib, RibLabels  # noqa: E402
from RibFracSegLogicLib import exchange  # noqa: E402
from RibFracSegLogicLib.compute import RunOutput  # noqa: E402


def _l3_from_decoding() -> tuple[sitk.Image, L3Result]:
    """An L3Result as locate_l3 makes it (projections included), from a made-up profile: no network."""
    from RibFracSegLib.phantom import PhantomParams, generate_phantom

    case = generate_phantom(PhantomParams(shape=(48, 40, 60), spacing=(6.0, 6.0, 7.0), fov="thorax_abdomen",
                                          n_fractures=0, seed=3))
    proj = compute_projections(case.image)
    rows = np.arange(proj.frontal.shape[0])
    profiles = {v: np.exp(-0.5 * ((rows - 200 - i) / 6.0) ** 2) for i, v in enumerate(("frontal", "sagittal"))}
    return case.image, decode(proj, case.image, profiles, threshold=0.3)


def _output(l3, body) -> RunOutput:
    instances = sitk.Image(4, 3, 2, sitk.sitkUInt16)
    instances.SetPixel(1, 1, 1, 1)
    d = Detection(id=1, confidence=0.75, voxel_count=1, volume_mm3=1.0, centroid_ijk=(1.0, 1.0, 1.0),
                  center_ras=(-1.0, -1.0, 1.0), center_lps=(1.0, 1.0, 1.0), bbox_ijk=((1, 1, 1), (1, 1, 1)),
                  rib="L6", rib_arc_mm=42.5, rib_region="lateral")
    labels = sitk.Image(4, 3, 2, sitk.sitkUInt8)
    labels.SetPixel(1, 1, 1, 6)
    ribs = RibLabels(labels=labels, ribs=[Rib("L", 6, np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]]), 1, 0.9),
                                          Rib("R", None, np.zeros((0, 3)), 0, 0.0)], numbering="rib 1", notes=["x"])
    return RunOutput(fractures=FractureResult(detections=[d], instances=instances, ribs=ribs), l3=l3, body=body,
                     timings_s={"l3": 0.25})


def test_l3_result_and_body_composition_round_trip_through_plain_json():
    image, l3 = _l3_from_decoding()
    assert l3.projections is not None and l3.in_view
    data = json.loads(json.dumps(l3.to_dict()))  # JSON types only: a Projections object would raise here
    back = L3Result.from_dict(data)
    assert back == l3 and back.projections is None
    assert back.center_ras == l3.center_ras and isinstance(back.center_ras, tuple)
    assert back.view_rows_mm == l3.view_rows_mm and back.z_mm == l3.z_mm  # unrounded
    hu = np.full((40, 48), -100.0, np.float32)
    hu[10:30, 10:38] = 40.0
    body = slice_composition(hu, (6.0, 6.0), l3.slice_index, height_m=1.8)
    body_back = BodyComposition.from_dict(json.loads(json.dumps(body.to_dict())), mask=body.mask, hu=body.hu)
    assert body_back == body and body_back.pixel_mm == body.pixel_mm and body_back.smi == body.smi
    with pytest.raises(ValueError, match="projections"):
        L3Result.from_dict(data | {"projections": None})


def test_exchange_keeps_every_value_of_a_real_l3_run(tmp_path):
    image, l3 = _l3_from_decoding()
    hu = np.linspace(-200, 200, 40 * 48, dtype=np.float32).reshape(40, 48)
    body = slice_composition(hu, (6.0, 6.0), l3.slice_index)
    output = _output(l3, body)
    exchange.write_output(tmp_path, output)
    assert json.loads((tmp_path / exchange.RESULT_NAME).read_text(encoding="utf-8"))["l3"] == l3.to_dict()
    back = exchange.read_output(tmp_path)
    assert back.l3 == l3 and back.body == body and back.timings_s == {"l3": 0.25}
    np.testing.assert_array_equal(back.body.mask, body.mask)
    np.testing.assert_array_equal(back.body.hu, body.hu)
    assert back.fractures.detections == output.fractures.detections
    ribs, ribs_back = output.fractures.ribs, back.fractures.ribs
    assert [(r.name, r.voxel_count, r.number_confidence) for r in ribs_back.ribs] == [("L6", 1, 0.9), ("unnumbered R", 0, 0.0)]
    np.testing.assert_array_equal(ribs_back.ribs[0].centreline_lps, ribs.ribs[0].centreline_lps)
    assert ribs_back.ribs[1].centreline_lps.shape == (0, 3) and ribs_back.notes == ["x"]
    assert sitk.GetArrayFromImage(ribs_back.labels)[1, 1, 1] == 6 and ribs_back.numbering == "rib 1"


def _read_in_fresh_python(folder, extra_path="") -> subprocess.CompletedProcess:
    """What Slicer's process does with a finished run — read_output, then add the nodes — in a new
    interpreter where importing torch fails."""
    code = ("import sys; sys.modules['torch'] = None; "
            f"sys.path[:0] = [{str(MODULE_DIR)!r}, {str(REPO)!r}, {str(REPO / 'tests')!r}, {extra_path!r}]; "
            "from pathlib import Path; from RibFracSegLogicLib import exchange; out = exchange.read_output(Path(sys.argv[1])); "
            "from slicer_scene import make_scene; from RibFracSegLogicLib.nodes import add_run_nodes; "
            "from RibFracSegLogicLib.volumes import volume_node_from_image; h = make_scene(); "
            "nodes = add_run_nodes(h.scene, volume_node_from_image(h.scene, out.fractures.instances, 'ct'), out); "
            "print(type(out.l3).__name__, type(out.body).__name__, round(out.l3.confidence, 3), "
            "nodes.segmentation.GetSegmentation().GetNumberOfSegments(), nodes.l3_point.GetNumberOfControlPoints(), "
            "'pwned' in sys.modules, sorted(m for m in sys.modules if m.startswith('RibFracSegLib.networks')))")
    return subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)


def test_reading_needs_no_torch_and_imports_nothing_the_file_names(tmp_path):
    image, l3 = _l3_from_decoding()
    exchange.write_output(tmp_path, _output(l3, slice_composition(np.zeros((8, 8), np.float32), (1.0, 1.0))))
    out = _read_in_fresh_python(tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-7:] == ["L3Result", "BodyComposition", str(round(l3.confidence, 3)), "1", "1", "False", "[]"]

    # a result file naming a class to import (the old format's "module:Class"): refused, never imported
    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "pwned.py").write_text("open(__file__ + '.imported', 'w').close()\nclass X:\n    pass\n")
    summary = json.loads((tmp_path / exchange.RESULT_NAME).read_text(encoding="utf-8"))
    summary["l3"] = {"class": "pwned:X", "values": {}, "arrays": {}}
    (tmp_path / exchange.RESULT_NAME).write_text(json.dumps(summary))
    out = _read_in_fresh_python(tmp_path, str(plugin))
    assert out.returncode != 0 and "Not an L3Result" in out.stderr
    assert not (plugin / "pwned.py.imported").exists()


def test_a_result_of_another_format_is_refused_with_a_clear_error(tmp_path):
    exchange.write_output(tmp_path, _output(None, None))
    summary = json.loads((tmp_path / exchange.RESULT_NAME).read_text(encoding="utf-8"))
    assert summary["format"] == exchange.RESULT_FORMAT and summary["l3"] is None
    del summary["format"]
    (tmp_path / exchange.RESULT_NAME).write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="different versions; restart Slicer"):
        exchange.read_output(tmp_path)
