"""RunOutput <-> a folder of files, so a run can happen in another process.

The panel runs `compute` in a PythonSlicer subprocess; the subprocess writes its result here and
Slicer reads it back into the very same dataclasses, so node building never knows which path ran.
Instances go as NRRD (geometry kept by SimpleITK), detections and L3 values as JSON, arrays as .npy.
"""

from __future__ import annotations

import dataclasses
import importlib
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


def _tuplify(value: Any) -> Any:
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def detection_from_dict(data: dict) -> Detection:
    return Detection(**{k: _tuplify(v) for k, v in data.items()})


def _dump_dataclass(obj: Any, folder: Path, stem: str) -> dict | None:
    """JSON description of a result dataclass; numpy fields go to <stem>.<field>.npy beside it."""
    if obj is None:
        return None
    values, arrays = {}, {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = f"{stem}.{f.name}.npy"
            np.save(folder / arrays[f.name], value)
        elif isinstance(value, np.generic):
            values[f.name] = value.item()
        else:
            values[f.name] = value
    cls = type(obj)
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "values": values, "arrays": arrays}


def _load_dataclass(data: dict | None, folder: Path) -> Any:
    if data is None:
        return None
    module_name, qualname = data["class"].split(":")
    cls = getattr(importlib.import_module(module_name), qualname)
    kwargs = {k: _tuplify(v) for k, v in data["values"].items()}
    kwargs.update({k: np.load(folder / name) for k, name in data["arrays"].items()})
    return cls(**kwargs)


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
                          "patches_skipped": fr.patches_skipped, "device": fr.device},
        "has_probability": fr.probability is not None,
        "l3": _dump_dataclass(output.l3, folder, "l3"),
        "body": _dump_dataclass(output.body, folder, "body"),
        "timings_s": output.timings_s,
    }
    write_text(json.dumps(summary), folder / RESULT_NAME)


def read_output(folder: Path) -> RunOutput:
    summary = json.loads((folder / RESULT_NAME).read_text())
    probability = sitk.ReadImage(str(folder / "probability.nrrd")) if summary["has_probability"] else None
    fractures = FractureResult(
        detections=[detection_from_dict(d) for d in summary["detections"]],
        instances=sitk.ReadImage(str(folder / "instances.nrrd")),
        probability=probability,
        **summary["fracture_meta"],
    )
    return RunOutput(fractures=fractures, l3=_load_dataclass(summary["l3"], folder),
                     body=_load_dataclass(summary["body"], folder), timings_s=summary["timings_s"])
