"""DICOM series folders: which series is the CT, and is its slice stack a regular volume?

ITK's series reader stacks whatever files it is given at an average spacing: a missing slice, an
uneven stack or a tilted gantry silently misplaces every slice after it, and a folder with a scout
or an MR series beside the CT is read as whichever comes first. The stack is checked here from the
slice headers before any voxel is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from . import defaults
from .ct_checks import bytes_per_voxel, check_memory, warn
from .errors import InputError


@dataclass(frozen=True)
class Series:
    uid: str
    files: tuple[str, ...]
    modality: str
    description: str

    def label(self) -> str:
        return f"{self.modality or '?'} '{self.description}' ({len(self.files)} files)"


def _header(path: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return reader


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _vector(reader: sitk.ImageFileReader, key: str, n: int) -> Optional[np.ndarray]:
    try:
        values = np.array([float(v) for v in _tag(reader, key).split("\\")], dtype=float)
    except ValueError:
        return None
    return values if values.size == n else None


def list_series(folder: Path) -> list[Series]:
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # "No Series were found" is said by choose_ct_series
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    series = []
    for uid in ids:
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        head = _header(files[0])
        series.append(Series(uid, tuple(files), _tag(head, "0008|0060").upper(), _tag(head, "0008|103e")))
    return series


def choose_ct_series(folder: Path) -> Series:
    """The CT series with the most slices; warn when the folder holds others, refuse when none is CT."""
    series = list_series(folder)
    if not series:
        raise InputError(f"No DICOM series in folder {folder}. Point to the folder holding the CT's .dcm files.")
    cts = [s for s in series if s.modality in defaults.CT_MODALITIES or not s.modality]
    if not cts:
        raise InputError(f"{folder.name} holds no CT series, only {', '.join(s.label() for s in series)}. "
                         "Give a CT series (Modality CT).")
    chosen = max(cts, key=lambda s: len(s.files))
    if len(series) > 1:
        others = ", ".join(s.label() for s in series if s is not chosen)
        warn(f"{folder.name} holds {len(series)} series; using the largest CT series {chosen.label()}, not {others}. "
             "Give the series folder alone to choose another.")
    return chosen


def check_stack(name: str, files: tuple[str, ...]) -> None:
    """Refuse missing slices, uneven spacing and gantry tilt (positions from the slice headers)."""
    if len(files) < 2:
        raise InputError(f"{name} is a single slice; rib fractures need a CT volume. Give the folder holding the "
                         "whole series.")
    heads = [_header(f) for f in files]
    orientation = _vector(heads[0], "0020|0037", 6)
    positions = [_vector(h, "0020|0032", 3) for h in heads]
    if orientation is None or any(p is None for p in positions):
        return  # no geometry in the headers: ITK stacks the files as they come, nothing to compare
    normal = np.cross(orientation[:3], orientation[3:])
    normal /= np.linalg.norm(normal)
    points = np.array(positions)
    depth = points @ normal
    order = np.argsort(depth)
    steps = np.diff(depth[order])
    median = float(np.median(steps))
    if median <= 0 or steps.min() <= 0:
        raise InputError(f"{name} has several slices at the same position: two series or repeated slices are "
                         "mixed in one folder. Export the CT series alone.")
    worst = int(np.argmax(np.abs(steps - median)))
    if steps[worst] > defaults.SLICE_GAP_FACTOR * median:
        missing = int(round(steps[worst] / median)) - 1
        raise InputError(f"{name} misses slices: a {steps[worst]:.2f} mm gap after slice {worst + 1} of {len(files)} "
                         f"(spacing elsewhere {median:.2f} mm, so about {missing} missing). Give the complete series.")
    if abs(steps[worst] - median) > defaults.SLICE_STEP_TOLERANCE * median:
        raise InputError(f"{name} has uneven slice spacing ({steps.min():.2f} to {steps.max():.2f} mm); the reader "
                         "would place slices wrongly. Resample it to even spacing first (e.g. in 3D Slicer).")
    stack = points[order[-1]] - points[order[0]]
    tilt = math.degrees(math.acos(min(1.0, abs(float(stack @ normal)) / float(np.linalg.norm(stack)))))
    if tilt > defaults.GANTRY_TILT_TOLERANCE_DEG:
        raise InputError(f"{name} was scanned with a gantry tilt of {tilt:.1f} degrees: its slices are sheared. "
                         "Resample it to a straight grid first (dcm2niix or 3D Slicer correct gantry tilt).")


def read_series(folder: Path) -> sitk.Image:
    """The folder's CT series as one image, after the series choice, stack and memory checks."""
    series = choose_ct_series(folder)
    check_stack(folder.name, series.files)
    head = _header(series.files[0])
    size = list(head.GetSize()[:2]) + [len(series.files)]
    check_memory(folder.name, size, bytes_per_voxel(head.GetPixelID(), head.GetNumberOfComponents(), 3))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series.files)
    return reader.Execute()


@dataclass(frozen=True)
class SourceSeries:
    """The headers (no pixel data) of the series a CT image was read from, in the image's slice order:
    `datasets[k]` is the file of slice k. DICOM outputs (SEG frames, SR references) point to these."""

    folder: Path
    datasets: tuple  # pydicom Datasets

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.datasets[0].FrameOfReferenceUID)

    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


def require_series_folder(path: str | Path) -> Path:
    """`path` if it is a folder (a DICOM series), else the one-line refusal of DICOM outputs."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"DICOM SEG needs the source DICOM series; {path.name} is not one: give the series folder "
                         "(or leave out --dicom).")
    return path


def source_series(folder: str | Path, image: sitk.Image) -> SourceSeries:
    """The CT series `read_series` chose in `folder`, each file placed on `image`'s grid by its Image
    Position (never by file name or instance number, which scanners order either way).

    Refused (InputError) when a file does not sit on a slice of the image, or the image is not this
    series' (another folder, or the series changed since it was read).
    """
    import warnings

    import pydicom

    from .errors import InputWarning

    folder = require_series_folder(folder)
    with warnings.catch_warnings():  # the choice was warned about when the CT was read
        warnings.simplefilter("ignore", InputWarning)
        series = choose_ct_series(folder)
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    size, direction = image.GetSize(), np.array(image.GetDirection()).reshape(3, 3)
    slots: list = [None] * size[2]
    for ds, path in zip(datasets, series.files):
        ijk = np.array(image.TransformPhysicalPointToContinuousIndex([float(v) for v in ds.ImagePositionPatient]))
        k = int(round(ijk[2]))
        rows_cols = np.array([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3)
        if (np.abs(ijk - [0, 0, k]).max() > defaults.DICOM_GRID_TOLERANCE_VOXELS or not 0 <= k < size[2]
                or slots[k] is not None or (int(ds.Columns), int(ds.Rows)) != tuple(size[:2])
                or np.abs(rows_cols - direction[:, :2].T).max() > 1e-4):
            raise InputError(f"{Path(path).name} in {folder.name} does not lie on a slice of the CT that was read "
                             "(changed since, or another series): read the series folder again.")
        slots[k] = ds
    if any(ds is None for ds in slots):
        raise InputError(f"{folder.name}: {slots.count(None)} slices of the CT have no file in the series. Read the "
                         "series folder again.")
    return SourceSeries(folder, tuple(slots))
