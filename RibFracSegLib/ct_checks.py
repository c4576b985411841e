"""Is this a CT the tools can use? Checks on a file before its voxels are read, and on the image after.

Every front-end reads CTs through `io.read_ct` (and the Slicer Logic checks its volume nodes with
`check_image`), so a bad input is refused the same way everywhere, with one line saying what was
seen and what to do. What is only doubtful (very thick slices, a folder with several series) is
reported as an `InputWarning` and the CT is used.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from . import defaults, nifti
from .errors import InputError, InputWarning

CT_LOOKS_LIKE = ("a CT in Hounsfield units has air at about -1000 HU, soft tissue near 0-100 HU and bone "
                 "above 300 HU")


def warn(message: str) -> None:
    warnings.warn(message, InputWarning, stacklevel=3)


def available_memory_bytes() -> Optional[int]:
    """Memory the OS can give without swapping (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(name: str, size: Sequence[int], bytes_per_voxel: int) -> None:
    """Refuse before reading a volume whose processing would not fit in the memory available now."""
    voxels = int(np.prod([int(s) for s in size], dtype=np.float64))
    need = voxels * (bytes_per_voxel + defaults.WORKING_BYTES_PER_VOXEL)
    have = available_memory_bytes()
    if have is not None and need > have:
        dims = " x ".join(str(int(s)) for s in size)
        raise InputError(f"{name} has {dims} voxels and needs about {need / 2**30:.1f} GiB to process; "
                         f"{have / 2**30:.1f} GiB is available. Crop or downsample the CT, or use a machine "
                         "with more memory.")


def bytes_per_voxel(pixel_id: int, components: int, dimension: int) -> int:
    probe = sitk.Image([1] * max(2, dimension), pixel_id, max(1, components))
    return sitk.GetArrayViewFromImage(probe).itemsize * max(1, components)


def _nonfinite(name: str, bad: int, total: int) -> InputError:
    return InputError(f"{name} has {bad} NaN/Inf voxels ({100 * bad / max(total, 1):.2g}%); a CT has a finite HU "
                      "value in every voxel. Re-export it, filling the gaps (e.g. with -1024).")


def check_file(path: Path) -> bool:
    """Before reading voxels: the header's volume fits in memory; a gzip stream is whole; a NIfTI file
    holds all the voxels its header declares, none of them NaN/Inf (ITK would read all these as 0).
    Returns whether the file has a readable image header."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        check_memory(path.name, reader.GetSize(), bytes_per_voxel(reader.GetPixelID(), reader.GetNumberOfComponents(),
                                                                   reader.GetDimension()))
        header = True
    except RuntimeError:
        header = False
        if not path.name.lower().endswith(".gz"):
            return header  # not an image header at all: read_ct's own read names the problem
    compressed = path.name.lower().endswith(".gz")
    if not (nifti.is_nifti(path) or compressed):
        return header
    with path.open("rb") as fh:
        if compressed and fh.read(2) != b"\x1f\x8b":
            raise InputError(f"Cannot read {path.name}: not gzip-compressed although its name ends in .gz, so not an "
                             "image. Give a NIfTI/NRRD/MHA file or a DICOM series folder.")
    try:
        found = nifti.scan(path)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise InputError(f"{path.name} is a damaged or truncated gzip file ({str(err).strip() or type(err).__name__}); "
                         f"copy or download it again (`gzip -t {path.name}` shows the damage).") from None
    declared = found.header.length if found.header is not None else 0
    if found.length < declared:
        raise InputError(f"{path.name} is truncated: it holds {found.length} of the {declared} bytes its header "
                         f"declares ({100 * found.length / declared:.0f}%); copy or export it again.")
    if found.nonfinite:
        raise _nonfinite(path.name, found.nonfinite, found.header.data_bytes // found.header.dtype.itemsize)
    return header


def _sample(array: np.ndarray) -> np.ndarray:
    step = max(1, int(round((array.size / defaults.CHECK_SAMPLE_VOXELS) ** (1 / 3))))
    return np.asarray(array[::step, ::step, ::step])


def _check_intensities(array: np.ndarray, name: str) -> None:
    """Refuse NaN/Inf and anything that is not Hounsfield units, saying what was seen."""
    if array.dtype.kind == "f":
        bad = sum(int(np.count_nonzero(~np.isfinite(array[k:k + 16]))) for k in range(0, array.shape[0], 16))
        if bad:
            raise _nonfinite(name, bad, array.size)
    sample = _sample(array)
    lo, hi = float(array.min()), float(array.max())
    seen = f"values {lo:g} to {hi:g}"
    if array.dtype.itemsize == 1:
        raise InputError(f"{name} holds 8-bit voxels ({seen}): a windowed export (PNG/JPEG/screenshot), not "
                         f"Hounsfield units; {CT_LOOKS_LIKE}. Give the original CT (DICOM, or NIfTI/NRRD in HU).")
    if array.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        raise InputError(f"{name} holds {seen}: a normalised image, not Hounsfield units; {CT_LOOKS_LIKE}. "
                         "Give the CT before normalisation.")
    if hi <= defaults.CT_PADDING_HU:
        raise InputError(f"{name} holds only {seen}: no air, tissue or bone on the HU scale; {CT_LOOKS_LIKE}. "
                         "Re-export it in HU (check the rescale intercept).")
    inside = sample[sample > defaults.CT_PADDING_HU]
    lowest = float(inside.min()) if inside.size else lo
    if lowest > defaults.CT_AIR_MAX_HU:
        hint = "no voxel is air"
        if lowest >= 0:
            hint = ("values 0-255 look like an 8-bit windowed export" if hi <= 255 else
                    "values starting at 0 mean MR/PET, or a CT whose rescale intercept (usually -1024) was not applied")
        raise InputError(f"{name} is not a CT in Hounsfield units ({seen}; {hint}); {CT_LOOKS_LIKE}. "
                         "Give a CT exported in HU.")


def check_image(image: sitk.Image, name: str) -> None:
    """Refuse an image that is not a usable CT volume; warn about doubtful geometry. One line each."""
    if image.GetDimension() != 3:
        raise InputError(f"{name} is {image.GetDimension()}-D; a CT volume must be 3-D. Give the whole series "
                         "(a 2-D slice or a 4-D series is not a CT volume).")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or "
                         "vector image); a CT must be single-channel HU. Give the original grey-scale CT.")
    size, spacing = image.GetSize(), image.GetSpacing()
    if min(size) < 2:
        raise InputError(f"{name} is a single slice ({' x '.join(map(str, size))} voxels); rib fractures need a CT "
                         "volume. Give the file or DICOM folder holding the whole series.")
    extent = [n * s for n, s in zip(size, spacing)]
    if min(extent) < defaults.MIN_CT_EXTENT_MM:
        raise InputError(f"{name} is too small to hold a rib: it covers {' x '.join(f'{e:.0f}' for e in extent)} mm "
                         f"(at least {defaults.MIN_CT_EXTENT_MM:g} mm on every axis needed). Give the whole CT, "
                         "not a crop.")
    _check_intensities(sitk.GetArrayViewFromImage(image), name)
    if max(spacing) > defaults.MAX_SLICE_SPACING_MM:
        warn(f"{name} has {max(spacing):g} mm voxels (spacing {', '.join(f'{s:g}' for s in spacing)} mm): thin ribs and "
             f"fractures are invisible above {defaults.MAX_SLICE_SPACING_MM:g} mm; results will miss them. Use a "
             "thin-slice reconstruction if there is one.")
