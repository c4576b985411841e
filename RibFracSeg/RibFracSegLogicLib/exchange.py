"""RunOutput <-> a folder of files, so a run can happen in another process.

The panel runs `compute` in a PythonSlicer subprocess; the subprocess writes its result here and
Slicer reads it back into the very same dataclasses, so node building never knows which path ran.
Instances go as NRRD (geometry kept by SimpleITK), detections and L3 values as JSON, arrays as .npy.
Reading never imports a module named by the file: each result type is rebuilt by its own from_dict,
and reading pulls in neither torch nor the networks (Slicer's process stays light).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from RibFracSegLib.detections import Detection, FractureResult
from RibFracSegLib.io import write_image, write_text

from .compute import RunOptions, RunOutput

INPUT_NAME = "input.nrrd"
OPTIONS_NAME = "options.json"
RESULT_NAME = "result.json"  # written last: its presence means the result is complete
RESULT_FORMAT = 4  # 4: + the vertebral count (levels); 3: L3 as a checked L3Check and the tissue label image
BODY_ARRAYS = ("mask", "hu")  # BodyComposition's array fields, saved as .npy
RIBS_IMAGE, RIBS_CENTRELINES = "ribs.nrrd", "ribs.centrelines.npz"
TISSUES_IMAGE = "tissues.nrrd"  # the L3 slice's tissue labels on the CT's grid


def _l3_to_json(l3: Any) -> dict | None:
    return None if l3 is None else l3.to_dict()


def _l3_from_json(data: dict | None) -> Any:
    """An L3Check (count + network) or a bare L3Result; imported here, by fixed names, so reading needs
    neither torch nor the network."""
    if data is None:
        return None
    from RibFracSegLib.l3.check import L3Check
    from RibFracSegLib.l3.locator import L3Result

    return L3Check.from_dict(data) if "check" in data else L3Result.from_dict(data)


def _body_to_json(body: Any, folder: Path) -> dict | None:
    """The measures as JSON; the label mask and the HU slice as <name>.npy beside it."""
    if body is None:
        return None
    arrays = {}
    for name in BODY_ARRAYS:
        value = getattr(body, name)
        if value is not None:
            arrays[name] = f"body.{name}.npy"
            np.save(folder / arrays[name], np.asarray(value), allow_pickle=False)
    return {"values": body.to_dict(), "arrays": arrays}


def _body_from_json(data: dict | None, folder: Path) -> Any:
    if data is None:
        return None
    from RibFracSegLib.l3.body_composition import BodyComposition

    unknown = set(data["arrays"]) - set(BODY_ARRAYS)
    if unknown:
        raise ValueError(f"Unexpected arrays {sorted(unknown)} in the run's result; it was not written by this version.")
    arrays = {name: np.load(folder / f"body.{name}.npy", allow_pickle=False) for name in data["arrays"]}
    return BodyComposition.from_dict(data["values"], **arrays)


def _ribs_to_json(ribs: Any, folder: Path) -> dict | None:
    """The rib label image as NRRD, each rib's centreline in one .npz, the rest as JSON."""
    if ribs is None:
        return None
    write_image(ribs.labels, folder / RIBS_IMAGE)
    np.savez(folder / RIBS_CENTRELINES, *[np.asarray(r.centreline_lps, dtype=float) for r in ribs.ribs])
    return {"numbering": ribs.numbering, "notes": list(ribs.notes), "timings_s": dict(ribs.timings_s),
            "ribs": [{"side": r.side, "number": r.number, "voxel_count": int(r.voxel_count),
                      "number_confidence": float(r.number_confidence)} for r in ribs.ribs]}


def _ribs_from_json(data: dict | None, folder: Path) -> Any:
    if data is None:
        return None
    from RibFracSegLib.ribs.labels import Rib, RibLabels

    with np.load(folder / RIBS_CENTRELINES, allow_pickle=False) as centrelines:
        ribs = [Rib(side=str(r["side"]), number=None if r["number"] is None else int(r["number"]),
                    centreline_lps=centrelines[f"arr_{i}"], voxel_count=int(r["voxel_count"]),
                    number_confidence=float(r["number_confidence"])) for i, r in enumerate(data["ribs"])]
    return RibLabels(labels=sitk.ReadImage(str(folder / RIBS_IMAGE)), ribs=ribs, numbering=str(data["numbering"]),
                     notes=[str(n) for n in data["notes"]], timings_s={str(k): float(v) for k, v in data["timings_s"].items()})


def write_input(folder: Path, image: sitk.Image, options: RunOptions) -> None:
    """The CT (uncompressed: a local hand-over) and the options, plus the exact geometry: NRRD keeps
    spacing only inside its direction vectors, which costs the last bits of spacing on reading."""
    write_image(image, folder / INPUT_NAME, compress=False)
    geometry = {"spacing": image.GetSpacing(), "origin": image.GetOrigin(), "direction": image.GetDirection()}
    write_text(json.dumps({"options": options.to_dict(), "geometry": geometry}), folder / OPTIONS_NAME)


def read_input(folder: Path) -> tuple[sitk.Image, RunOptions]:
    data = json.loads((folder / OPTIONS_NAME).read_text())
    image = sitk.ReadImage(str(folder / INPUT_NAME))
    image.SetSpacing(data["geometry"]["spacing"])
    image.SetOrigin(data["geometry"]["origin"])
    image.SetDirection(data["geometry"]["direction"])
    return image, RunOptions(**data["options"])


def write_output(folder: Path, output: RunOutput) -> None:
    fr = output.fractures
    write_image(fr.instances, folder / "instances.nrrd")
    if fr.probability is not None:
        write_image(fr.probability, folder / "probability.nrrd")
    summary = {
        "detections": [d.to_dict() for d in fr.detections],
        "fracture_meta": {"timings_s": fr.timings_s, "patches_total": fr.patches_total,
                          "patches_skipped": fr.patches_skipped, "device": fr.device,
                          "rib_frames": fr.rib_frames, "notes": fr.notes},
        "has_probability": fr.probability is not None,
        "ribs": _ribs_to_json(fr.ribs, folder),
        "format": RESULT_FORMAT,
        "l3": _l3_to_json(output.l3),
        "body": _body_to_json(output.body, folder),
        "has_tissues": output.tissues is not None,
        "levels": output.levels,
        "timings_s": output.timings_s,
    }
    if output.tissues is not None:
        write_image(output.tissues, folder / TISSUES_IMAGE)
    write_text(json.dumps(summary), folder / RESULT_NAME)


def read_output(folder: Path) -> RunOutput:
    summary = json.loads((folder / RESULT_NAME).read_text())
    if summary.get("format") != RESULT_FORMAT:
        raise ValueError(f"The run's result has format {summary.get('format')!r}, this module reads {RESULT_FORMAT}: "
                         "the worker and the module come from different versions; restart Slicer.")
    probability = sitk.ReadImage(str(folder / "probability.nrrd")) if summary["has_probability"] else None
    fractures = FractureResult(
        detections=[Detection.from_dict(d) for d in summary["detections"]],
        instances=sitk.ReadImage(str(folder / "instances.nrrd")),
        probability=probability,
        ribs=_ribs_from_json(summary["ribs"], folder),
        **summary["fracture_meta"],
    )
    tissues = sitk.ReadImage(str(folder / TISSUES_IMAGE)) if summary["has_tissues"] else None
    return RunOutput(fractures=fractures, l3=_l3_from_json(summary["l3"]),
                     body=_body_from_json(summary["body"], folder), tissues=tissues, levels=summary["levels"],
                     timings_s=summary["timings_s"])
